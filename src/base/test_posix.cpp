// Unit tests of kms::posix (src/base/posix.hpp): the owning descriptor, and reads and writes
// that go on after short transfers and EINTR.
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "base/posix.hpp"

using namespace kms;
using kms::posix::Fd;

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

struct Pipe {
  Fd r, w;
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    r.reset(fds[0]);
    w.reset(fds[1]);
  }
};

Bytes pattern(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 7 + i / 251);
  return b;
}

extern "C" void ignore_signal(int) {}

// SIGUSR1 interrupts a blocked read or write (no SA_RESTART) while this lives.
class InterruptingSignal {
 public:
  InterruptingSignal() {
    struct sigaction sa {};
    sa.sa_handler = ignore_signal;
    ::sigaction(SIGUSR1, &sa, &old_);
  }
  ~InterruptingSignal() { ::sigaction(SIGUSR1, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

}  // namespace

TEST_CASE("an Fd closes its descriptor when destroyed, and only once it is given up") {
  int raw = -1;
  {
    Pipe p;
    raw = p.r.get();
    CHECK(is_open(raw));
  }
  CHECK_FALSE(is_open(raw));

  Pipe p;
  const int kept = p.w.release();
  CHECK_FALSE(p.w);
  CHECK(p.w.get() == -1);
  CHECK(is_open(kept));
  ::close(kept);
}

TEST_CASE("moving an Fd moves the ownership; reset closes the old descriptor") {
  Pipe p;
  const int raw = p.r.get();
  Fd moved(std::move(p.r));
  CHECK_FALSE(p.r);
  CHECK(moved.get() == raw);

  Fd target(::dup(p.w.get()));
  const int replaced = target.get();
  target = std::move(moved);
  CHECK(target.get() == raw);
  CHECK_FALSE(is_open(replaced));
  CHECK(is_open(raw));

  target.reset();
  CHECK_FALSE(target);
  CHECK_FALSE(is_open(raw));
  Fd none;
  CHECK_FALSE(none);
}

TEST_CASE("read_full reads across short reads until the buffer is full") {
  Pipe p;
  const Bytes data = pattern(10000);
  std::thread writer([&] {
    for (std::size_t off = 0; off < data.size(); off += 777) {
      const std::size_t n = std::min<std::size_t>(777, data.size() - off);
      REQUIRE(::write(p.w.get(), data.data() + off, n) == static_cast<ssize_t>(n));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  Bytes got(data.size());
  int err = -1;
  CHECK(posix::read_full(p.r.get(), got, &err) == data.size());
  CHECK(err == 0);
  writer.join();
  CHECK(got == data);
}

TEST_CASE("read_full stops at the end of the input, and reports an error by its errno") {
  Pipe p;
  REQUIRE(::write(p.w.get(), "abc", 3) == 3);
  p.w.reset();
  Bytes got(10);
  int err = -1;
  CHECK(posix::read_full(p.r.get(), got, &err) == 3);
  CHECK(err == 0);
  CHECK(got[0] == 'a');
  CHECK(got[2] == 'c');
  CHECK(posix::read_full(p.r.get(), got) == 0);

  CHECK(posix::read_full(p.w.get(), got, &err) == 0);  // closed: EBADF
  CHECK(err == EBADF);
  CHECK(posix::read_full(p.r.get(), std::span<std::uint8_t>(), &err) == 0);
  CHECK(err == 0);
}

TEST_CASE("write_all writes more than a pipe holds, across short writes") {
  Pipe p;
  const Bytes data = pattern(1 << 20);  // pipes hold 64 KiB by default
  Bytes got(data.size());
  std::thread reader([&] { CHECK(posix::read_full(p.r.get(), got) == data.size()); });
  CHECK(posix::write_all(p.w.get(), data));
  reader.join();
  CHECK(got == data);
  CHECK(posix::write_all(p.w.get(), ByteView()));
}

TEST_CASE("write_all reports a reader that went away (EPIPE)") {
  std::signal(SIGPIPE, SIG_IGN);
  Pipe p;
  p.r.reset();
  errno = 0;
  CHECK_FALSE(posix::write_all(p.w.get(), as_bytes("value")));
  CHECK(errno == EPIPE);
  std::signal(SIGPIPE, SIG_DFL);
}

TEST_CASE("a signal that interrupts a blocked read or write does not end it (EINTR)") {
  InterruptingSignal sig;
  const pthread_t self = ::pthread_self();
  const Bytes data = pattern(200000);

  SUBCASE("read") {
    Pipe p;
    std::thread other([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ::pthread_kill(self, SIGUSR1);  // read_full waits on an empty pipe
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      REQUIRE(posix::write_all(p.w.get(), data));
      p.w.reset();
    });
    Bytes got(data.size());
    int err = -1;
    CHECK(posix::read_full(p.r.get(), got, &err) == data.size());
    CHECK(err == 0);
    other.join();
    CHECK(got == data);
  }
  SUBCASE("write") {
    Pipe p;
    Bytes got(data.size());
    std::thread other([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ::pthread_kill(self, SIGUSR1);  // write_all waits on a full pipe
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK(posix::read_full(p.r.get(), got) == data.size());
    });
    CHECK(posix::write_all(p.w.get(), data));
    other.join();
    CHECK(got == data);
  }
}
