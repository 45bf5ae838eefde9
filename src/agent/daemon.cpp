#include "agent/daemon.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "agent/protocol.hpp"
#include "base/posix.hpp"
#include "kms/error.hpp"
#include "kms/grants.hpp"
#include "kms/service.hpp"

namespace kms::agent {
namespace fs = std::filesystem;
namespace {

// The agent's own process: serve, then record why it stopped.
void run_agent(Service& svc, Listener& listener, const fs::path& vault, const Limits& limits,
               const std::function<void()>& ready) {
  catch_stop_signals();
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is an EPIPE in its command
  listener.listen();
  Agent agent(svc, {{&listener, Reach::full}}, vault, Mode{false, limits, {}, {}});
  agent.record_start();
  ready();
  std::error_code ec;
  fs::current_path("/", ec);  // keep no directory busy
  agent.record_stop(agent.serve());
  listener.close();
  agent.stopped();
}

// The agent outlives the command that started it: descriptors that command inherited (a CI
// runner's log, a pipe a script reads to its end) are closed in the agent, so that it holds
// nothing of its parent's and no reader waits for it. Only `keep` (and 0-2, detached later)
// stay.
void close_inherited(std::initializer_list<int> keep) {
  std::vector<int> open_fds;
  {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
      const std::string name = e.path().filename().string();
      int fd = -1;
      const auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), fd);
      if (err == std::errc() && end == name.data() + name.size()) open_fds.push_back(fd);
    }
  }  // the iterator's own descriptor is closed here
  for (int fd : open_fds) {
    if (fd > 2 && std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);
  }
}

void detach_stdio() {
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int i = 0; i < 3; ++i) ::dup2(null, i);
  if (null > 2) ::close(null);
}

}  // namespace

std::chrono::seconds parse_duration(const std::string& text, const char* flag) {
  return kms::parse_duration(text, flag, std::chrono::seconds(30LL * 86400));
}

void start(const fs::path& vault, SecureBytes pin_bytes, const StartOptions& options,
           const std::function<void(const fs::path& socket, pid_t pid)>& started) {
  std::optional<SecureBytes> pin(std::move(pin_bytes));  // wiped once the token session is open
  const Limits& limits = options.limits;
  Listener listener(options.socket);
  if (options.foreground) {
    std::unique_ptr<Service> svc = Service::open(vault, *pin);
    pin.reset();
    run_agent(*svc, listener, vault, limits, [&] { started(listener.path(), ::getpid()); });
    return;
  }
  // The token is loaded only in the agent's process: PKCS#11 state does not survive a fork.
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) throw Error(Code::failed, "cannot create a pipe");
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0)
    throw Error(Code::failed, fmt::format("cannot start the agent: {}", std::strerror(errno)));
  if (pid == 0) {
    ::close(ready[0]);
    close_inherited({ready[1], listener.fd()});
    ::setsid();
    // Until it serves, the agent's errors go to the starting process, which reports them.
    bool told = false;
    auto tell = [&](const wire::Writer& frame) {
      (void)posix::write_all(ready[1], frame.view());
      ::close(ready[1]);
      told = true;
    };
    try {
      std::unique_ptr<Service> svc = Service::open(vault, *pin);
      pin.reset();
      run_agent(*svc, listener, vault, limits, [&] {
        detach_stdio();
        tell(reply_frame([](wire::Writer&) {}));
      });
    } catch (const Error& e) {
      if (told) throw;
      tell(error_frame(e));
    }
    return;  // the socket goes with `listener`
  }
  ::close(ready[1]);
  Bytes buf(64 * 1024);
  buf.resize(posix::read_full(ready[0], buf));
  ::close(ready[0]);
  const fs::path socket = listener.path();
  listener.release();  // the agent's now, or removed by it when it failed
  if (buf.size() < 4) throw Error(Code::failed, "the agent exited while it started");
  wire::Reader in(ByteView(buf).subspan(4));
  parse_reply_head(in);  // throws the agent's error
  started(socket, pid);
}

}  // namespace kms::agent
