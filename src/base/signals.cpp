#include "kms/signals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <initializer_list>

#include <fmt/format.h>

namespace kms::signals {
namespace {

sigset_t make_terminating() noexcept {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM, SIGUSR1, SIGUSR2, SIGXCPU, SIGXFSZ,
                  SIGVTALRM, SIGPROF}) {
    sigaddset(&s, sig);
  }
  return s;
}

constexpr int kCaught[] = {SIGINT, SIGTERM, SIGHUP};

// What the handler touches: lock-free atomics and write(2), all async-signal-safe.
std::atomic<int> g_caught{0};
std::atomic<int> g_wake_read{-1}, g_wake_write{-1};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_signal(int sig) {
  const int saved = errno;
  int none = 0;
  g_caught.compare_exchange_strong(none, sig);
  const int fd = g_wake_write.load();
  if (fd >= 0) {
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(fd, &byte, 1);  // full pipe: already awake
  }
  errno = saved;
}

}  // namespace

const sigset_t& terminating() noexcept {
  static const sigset_t set = make_terminating();
  return set;
}

Deferred::Deferred() noexcept { ::pthread_sigmask(SIG_BLOCK, &terminating(), &old_); }

Deferred::~Deferred() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

Catch::Catch() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw Error(Code::failed, fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  }
  g_caught = 0;
  g_wake_read = p[0];
  g_wake_write = p[1];
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_mask = terminating();  // the handler runs once at a time
  sa.sa_flags = SA_RESTART;
  for (std::size_t i = 0; i < std::size(kCaught); ++i) ::sigaction(kCaught[i], &sa, &old_[i]);
}

Catch::~Catch() {
  for (std::size_t i = 0; i < std::size(kCaught); ++i) ::sigaction(kCaught[i], &old_[i], nullptr);
  ::close(g_wake_write.exchange(-1));
  ::close(g_wake_read.exchange(-1));
  g_caught = 0;
}

int caught() noexcept { return g_caught.load(); }

void check() {
  if (const int sig = g_caught.load()) throw Interrupted(sig);
}

void await(int fd, short events) {
  const int wake = g_wake_read.load();
  if (wake < 0) return;
  for (;;) {
    check();
    pollfd p[2] = {{fd, events, 0}, {wake, POLLIN, 0}};
    const int n = ::poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // the read or write that follows reports what is wrong
    if (p[1].revents != 0) check();
    if (p[0].revents != 0) return;
  }
}

std::string name(int signo) {
  switch (signo) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return fmt::format("signal {}", signo);
  }
}

Interrupted::Interrupted(int signo)
    : Error(Code::failed, fmt::format("interrupted by {}", name(signo)),
            "nothing was published under an output file's name (output to a pipe is cut short); "
            "the audit log records the interruption: run the command again"),
      signo_(signo) {}

}  // namespace kms::signals
