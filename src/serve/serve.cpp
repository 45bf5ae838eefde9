#include "serve/serve.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <charconv>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "serve/policy_file.hpp"
#include <fmt/format.h>

#include "agent/server.hpp"
#include "kms/error.hpp"
#include "kms/service.hpp"

namespace kms::serve {
namespace fs = std::filesystem;

namespace {

// Anyone may connect: the policy decides what each user may do.
constexpr mode_t kSocketMode = 0666;

int env_int(const char* name) {
  const char* v = std::getenv(name);
  int n = -1;
  if (v == nullptr) return -1;
  const std::string_view s(v);
  const auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), n);
  return err == std::errc() && end == s.data() + s.size() ? n : -1;
}

fs::path bound_path(int fd) {
  sockaddr_un a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || a.sun_family != AF_UNIX) {
    return {};
  }
  return fs::path(a.sun_path);
}

struct Sockets {
  std::vector<std::unique_ptr<agent::Listener>> listeners;
  std::vector<agent::Endpoint> endpoints;
  void add(std::unique_ptr<agent::Listener> l, agent::Reach reach) {
    endpoints.push_back({l.get(), reach});
    listeners.push_back(std::move(l));
  }
};

// The sockets systemd passed (sd_listen_fds(3)): named "use-only" in LISTEN_FDNAMES for the
// use-only socket (FileDescriptorName=), any other name for the full one.
bool from_systemd(Sockets& out) {
  const int n = env_int("LISTEN_FDS");
  if (n <= 0 || env_int("LISTEN_PID") != ::getpid()) return false;
  std::vector<std::string> names;
  if (const char* v = std::getenv("LISTEN_FDNAMES")) {
    std::string_view s(v);
    for (std::size_t at = 0; at <= s.size();) {
      const std::size_t colon = std::min(s.find(':', at), s.size());
      names.emplace_back(s.substr(at, colon - at));
      at = colon + 1;
    }
  }
  for (int i = 0; i < n; ++i) {
    const int fd = 3 + i;  // SD_LISTEN_FDS_START
    posix::Fd owned(fd);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
        bound_path(fd).empty()) {
      throw Error(Code::usage,
                  fmt::format("descriptor {} passed by systemd is not a Unix stream socket", fd),
                  "use ListenStream=PATH in the socket unit");
    }
    const bool use_only = i < static_cast<int>(names.size()) && names[i] == "use-only";
    out.add(std::make_unique<agent::Listener>(std::move(owned), bound_path(fd)),
            use_only ? agent::Reach::use_only : agent::Reach::full);
  }
  for (const char* v : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}) ::unsetenv(v);
  return true;
}

Sockets open_sockets(const Options& o) {
  Sockets s;
  if (o.socket.empty() && o.use_only_socket.empty() && from_systemd(s)) return s;
  std::string full = o.socket;
  if (full.empty()) {
    const char* runtime = std::getenv("RUNTIME_DIRECTORY");  // systemd's RuntimeDirectory=
    if (runtime == nullptr || *runtime == '\0') {
      throw Error(Code::usage, "no socket for the service",
                  "name it with --socket PATH (in a directory only the service's user can "
                  "write), or run it from the systemd units in contrib/systemd");
    }
    full = (fs::path(runtime) / "kmsctl.sock").string();
  }
  s.add(std::make_unique<agent::Listener>(full, kSocketMode), agent::Reach::full);
  if (!o.use_only_socket.empty()) {
    s.add(std::make_unique<agent::Listener>(o.use_only_socket, kSocketMode),
          agent::Reach::use_only);
  }
  return s;
}

}  // namespace

void run(const fs::path& vault, SecureBytes pin_bytes, const Options& options,
         const std::function<void(const nlohmann::json& status)>& started) {
  std::optional<SecureBytes> pin(std::move(pin_bytes));
  PolicyFile policy(options.policy);  // a policy with problems is refused before anything else
  Sockets sockets = open_sockets(options);
  std::unique_ptr<Service> svc = Service::open(vault, *pin);
  pin.reset();
  const std::int64_t admin = static_cast<std::int64_t>(::getuid());
  svc->set_authorizer(authorizer(*svc, policy, admin));

  agent::catch_stop_signals(true);
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is an EPIPE in its command
  for (auto& l : sockets.listeners) l->listen();
  agent::Mode mode;
  mode.service = true;
  mode.reload = [&policy] { return policy.reload(); };
  mode.describe = [&policy] { return policy.describe(); };
  agent::Agent server(*svc, sockets.endpoints, vault, std::move(mode));
  server.record_start();
  started(server.status_json());
  std::error_code ec;
  fs::current_path("/", ec);  // keep no directory busy
  server.record_stop(server.serve());
  for (auto& l : sockets.listeners) l->close();
  server.stopped();
}

}  // namespace kms::serve
