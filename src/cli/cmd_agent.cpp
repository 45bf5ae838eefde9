// kmsctl agent: one process that keeps a vault open (its token session logged in, its master
// key unsealed) and runs commands for the other kmsctl processes of the same user, as gpg-agent
// does for gpg (README "The agent"). The messages are in agent_wire.hpp (docs/FORMAT.md §13 Agent
// protocol); the commands run through the same parser and service as in any other process.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <utility>

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "cli/agent_wire.hpp"
#include "cli/app.hpp"
#include "kms/clock.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"

namespace kms::cli {
namespace agent {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kWholeGroups[] = {
    "status", "audit", "key", "encrypt", "decrypt", "re-encrypt", "data-key", "random", "file"};

// What an agent runs for a client (exec, which replaces the client's process, has the agent
// read its secrets: Kind::exec). Not: init and the vault group (token and file
// administration), and what runs rotation hooks (secret rotate, maintain): a hook would run
// with the agent's environment, not the caller's. `path` is the command as parsed (parsed_path),
// never words picked from argv by their places: `secret --vault V rotate` is `secret rotate`.
bool serves(const std::vector<std::string>& path) {
  if (path.empty()) return false;
  if (path[0] == "secret") return path.size() == 2 && path[1] != "rotate";
  return std::find(std::begin(kWholeGroups), std::end(kWholeGroups), path[0]) !=
         std::end(kWholeGroups);
}

// The vault a parsed command names, as the command itself finds it (--vault, KMSCTL_VAULT or
// the default), made absolute against the working directory.
fs::path vault_of(const Globals& g) {
  std::error_code ec;
  const fs::path p = vault_path(g);
  const fs::path abs = fs::absolute(p, ec);
  return ec ? p : abs;
}

class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_;
};

sockaddr_un address_of(const fs::path& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof a.sun_path) {
    throw Error(Code::usage, fmt::format("the socket path {} is too long", path.string()),
                fmt::format("a Unix socket path has at most {} bytes", sizeof a.sun_path - 1));
  }
  std::memcpy(a.sun_path, path.c_str(), path.native().size());
  return a;
}

ucred peer_of(int fd) {
  ucred c{};
  socklen_t len = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0) {
    throw Error(Code::failed,
                fmt::format("cannot read the peer of the agent socket: {}", std::strerror(errno)));
  }
  return c;
}

// One message, with `fds` as SCM_RIGHTS. False when the peer is gone.
bool send_message(int sock, ByteView msg, std::span<const int> fds = {}) {
  iovec iov{const_cast<std::uint8_t*>(msg.data()), msg.size()};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  if (!fds.empty()) {
    h.msg_control = control;
    h.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &h, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n) == msg.size();
    if (errno != EINTR) return false;
  }
}

// One message and the descriptors that came with it (at most 4). Nothing at end of stream, on a
// timeout, or for a message longer than kMaxMessage.
std::optional<Bytes> receive_message(int sock, std::vector<Fd>* fds = nullptr) {
  Bytes buf(kMaxMessage + 1);
  iovec iov{buf.data(), buf.size()};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  h.msg_control = control;
  h.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &h, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::nullopt;
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      Fd owned(fd);  // closed unless the caller takes it
      if (fds != nullptr) fds->push_back(std::move(owned));
    }
  }
  if (n == 0 || (h.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return buf;
}

// KMSCTL_AGENT_SOCK, or null when it is unset or empty (no agent).
const char* socket_in_env() {
  const char* env = std::getenv("KMSCTL_AGENT_SOCK");
  return env != nullptr && *env != '\0' ? env : nullptr;
}

// KMSCTL_AGENT_SOCK, if the directory that holds it is this user's alone (as the agent makes
// it): in a directory someone else can write, the socket could be theirs by the time a command
// connects. Nothing otherwise, and the command runs in this process.
const char* trusted_socket_in_env() {
  const char* sock = socket_in_env();
  if (sock == nullptr) return nullptr;
  struct stat st {};
  const fs::path dir = fs::absolute(fs::path(sock)).parent_path();
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
      (st.st_mode & 022) != 0) {
    return nullptr;
  }
  return sock;
}

std::string socket_from(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = socket_in_env()) return env;
  throw Error(
      Code::usage, "no agent socket named",
      "set KMSCTL_AGENT_SOCK (`eval \"$(kmsctl agent start)\"` does) or pass --socket PATH");
}

// Connects to the agent at `path` and checks that it runs as this user: a socket of someone
// else's would otherwise receive this process's input and output. Nothing when no agent
// listens there.
std::optional<Fd> connect_to(const fs::path& path, pid_t* agent_pid = nullptr) {
  const sockaddr_un a = address_of(path);
  Fd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s)
    throw Error(Code::failed, fmt::format("cannot create a socket: {}", std::strerror(errno)));
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return std::nullopt;
  const ucred c = peer_of(s.get());
  if (c.uid != ::geteuid()) {
    throw Error(
        Code::refused,
        fmt::format("the agent socket {} belongs to a process of uid {}, not to you (uid {})",
                    path.string(), c.uid, ::geteuid()),
        "unset KMSCTL_AGENT_SOCK, or point it at your own agent");
  }
  if (agent_pid != nullptr) *agent_pid = c.pid;
  return s;
}

// The request's reply. Nothing when no agent listens at `path`. `between` runs once the request
// is sent (exec reads its values there); false: the agent went away.
std::optional<Reply> call(const fs::path& path, const Bytes& request, std::span<const int> fds = {},
                          pid_t* agent_pid = nullptr, const std::function<bool()>& between = {}) {
  std::optional<Fd> s = connect_to(path, agent_pid);
  if (!s) return std::nullopt;
  const Error lost(
      Code::unavailable,
      fmt::format("the agent at {} closed the connection without an answer", path.string()),
      "see whether it still runs: `kmsctl agent status`");
  if (!send_message(s->get(), request, fds)) throw lost;
  if (between && !between()) throw lost;
  const std::optional<Bytes> msg = receive_message(s->get());
  std::optional<Reply> r = msg ? parse_reply(*msg) : std::nullopt;
  if (!r) throw lost;
  return r;
}

// Waits (up to 5 s) for process `pid` to exit.
void wait_for_exit(pid_t pid) {
  const Fd p(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!p) return;  // gone already
  pollfd w{p.get(), POLLIN, 0};
  while (::poll(&w, 1, 5000) < 0 && errno == EINTR) {
  }
}

Reply call_agent(const std::string& socket_flag, Kind kind, pid_t* agent_pid = nullptr) {
  const std::string path = socket_from(socket_flag);
  std::optional<Reply> r = call(path, *encode(Request{kind, {}}), {}, agent_pid);
  if (!r) {
    throw Error(Code::unavailable, fmt::format("no agent listens at {}", path),
                "start one: `eval \"$(kmsctl agent start)\"`");
  }
  if (r->answer == Answer::refused) throw Error(static_cast<Code>(r->code), r->text, r->hint);
  return *r;
}

// ---- the agent ----

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }

// The listening socket: in a fresh 0700 directory (or at --socket, in a directory only this
// user can write); removed, with that directory, when the agent ends.
class Listener {
 public:
  explicit Listener(const std::string& socket_flag) {
    if (socket_flag.empty()) {
      const char* base = std::getenv("XDG_RUNTIME_DIR");
      if (base == nullptr || *base == '\0' || !fs::is_directory(base)) base = std::getenv("TMPDIR");
      if (base == nullptr || *base == '\0' || !fs::is_directory(base)) base = "/tmp";
      std::string tmpl = (fs::path(base) / "kmsctl-agent.XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) {
        throw Error(Code::failed,
                    fmt::format("cannot create a directory in {}: {}", base, std::strerror(errno)),
                    "set XDG_RUNTIME_DIR or TMPDIR to a writable directory, or pass --socket PATH");
      }
      dir_ = tmpl;
      path_ = dir_ / "agent.sock";
    } else {
      path_ = fs::absolute(socket_flag);
      check_private_dir(path_.parent_path());
      clear_stale(path_);
    }
    const sockaddr_un a = address_of(path_);
    fd_ = Fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        ::chmod(path_.c_str(), 0600) != 0) {
      const std::string what = fmt::format("cannot listen on {}: {}", path_.string(), std::strerror(errno));
      close();
      throw Error(Code::failed, what);
    }
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener() { close(); }

  // In the agent's own process: a client reads the credentials of the process that listens
  // (SO_PEERCRED), `agent stop` waits for that pid to exit.
  void listen() {
    if (::listen(fd_.get(), 64) != 0) {
      throw Error(Code::failed, fmt::format("cannot listen on {}: {}", path_.string(), std::strerror(errno)));
    }
  }
  int fd() const noexcept { return fd_.get(); }
  const fs::path& path() const noexcept { return path_; }
  // Stops listening and removes the socket (and its directory).
  void close() noexcept {
    fd_.reset();
    if (!path_.empty()) ::unlink(path_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
    release();
  }
  // In the process that started the agent: the socket is the agent's to remove.
  void release() noexcept {
    path_.clear();
    dir_.clear();
  }

 private:
  static void check_private_dir(const fs::path& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      throw Error(Code::usage, fmt::format("no directory {} for the agent socket", dir.string()));
    }
    if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
      throw Error(Code::refused,
                  fmt::format("the directory {} is not yours alone: another user could replace the "
                              "agent's socket",
                              dir.string()),
                  "put the socket in a directory only you can write, or leave out --socket");
    }
  }
  // A socket no agent answers on any more is left over; anything else stays.
  static void clear_stale(const fs::path& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return;
    if (!S_ISSOCK(st.st_mode)) {
      throw Error(Code::refused, fmt::format("{} exists and is not a socket", p.string()),
                  "name another path with --socket");
    }
    if (connect_to(p)) {
      throw Error(Code::refused, fmt::format("an agent already listens at {}", p.string()),
                  fmt::format("stop it first: `kmsctl agent stop --socket {}`", p.string()));
    }
    ::unlink(p.c_str());
  }

  Fd fd_;
  fs::path path_;
  fs::path dir_;  // made by us: removed too
};

struct Limits {
  std::chrono::seconds idle;
  std::chrono::seconds lifetime;
};

class Agent {
 public:
  Agent(Service& svc, const Listener& listener, fs::path vault, Limits limits)
      : svc_(svc),
        listener_(listener),
        vault_(std::move(vault)),
        vault_id_(files::file_id(vault_)),
        limits_(limits),
        self_(Caller::current()),
        started_(format_rfc3339(now())) {}

  void record_start() {
    svc_.serve_client(self_);
    svc_.run({Action::agent_start,
              resource(),
              {{"pid", ::getpid()},
               {"socket", listener_.path().string()},
               {"idle_timeout_s", limits_.idle.count()},
               {"max_lifetime_s", limits_.lifetime.count()}}},
             [](audit::Event&) {});
  }

  // Serves until stopped; returns why it stopped.
  std::string serve() {
    const Clock::time_point end = Clock::now() + limits_.lifetime;
    Clock::time_point last = Clock::now();
    for (;;) {
      if (g_signal != 0) return fmt::format("signal {}", static_cast<int>(g_signal));
      const Clock::time_point t = Clock::now();
      if (t >= end) return "max lifetime";
      if (t >= last + limits_.idle) return "idle";
      const auto wait =
          std::chrono::ceil<std::chrono::milliseconds>(std::min(end, last + limits_.idle) - t);
      pollfd p{listener_.fd(), POLLIN, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(wait.count(), 60'000)));
      if (n <= 0) continue;  // a timeout, or a signal (EINTR)
      Fd conn(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      std::optional<std::string> stop;
      try {
        stop = handle(conn);
      } catch (const std::exception&) {
        // This connection failed (its client went away); the agent goes on.
      }
      last = Clock::now();
      if (stop) return *stop;
    }
  }

  // After `agent stop`, with the socket removed: tells the client, which can start another at once.
  void stopped() {
    if (stopped_by_) reply(stopped_by_.get(), {Answer::done, 0, {}, {}});
    stopped_by_.reset();
  }

  // agent.stop, unless the vault is no longer the one opened (a record there would move the
  // token anchor away from the live log).
  void record_stop(const std::string& reason) noexcept {
    if (reason == kVaultGone) return;
    try {
      svc_.run({Action::agent_stop,
                resource(),
                {{"pid", ::getpid()}, {"reason", reason}, {"requests", requests_}}},
               [](audit::Event&) {});
    } catch (const Error&) {
      // Nothing to report it to: the agent's standard error is /dev/null.
    }
  }

 private:
  static constexpr std::string_view kVaultGone = "vault replaced";

  std::string resource() { return "vault/" + svc_.vault().meta().vault_id; }

  // One connection: one request, one reply. Returns why to stop, if it should.
  std::optional<std::string> handle(Fd& connection) {
    const int conn = connection.get();
    const timeval limit{2, 0};  // for the request: a client sends it as it connects
    ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    const ucred who = peer_of(conn);
    Caller client = Caller::peer(who.uid, who.gid, who.pid, Channel::agent);
    if (who.uid != ::geteuid()) {
      refuse_stranger(conn, client);
      return std::nullopt;
    }
    svc_.serve_client(std::move(client));
    std::vector<Fd> fds;
    const std::optional<Bytes> msg = receive_message(conn, &fds);
    if (!msg) return std::nullopt;
    const std::optional<Request> req = parse_request(*msg);
    if (!req) {
      reply(conn, {Answer::refused, exit_code(Code::usage),
                   "the agent could not read the request (another version of kmsctl?)",
                   "stop the agent and start it with this kmsctl"});
      return std::nullopt;
    }
    switch (req->kind) {
      case Kind::status:
        reply(conn, {Answer::info, 0, json_text(status_json()), {}});
        return std::nullopt;
      case Kind::stop:
        stopped_by_ = std::move(connection);  // answered by stopped(), once the agent is gone
        return "stop";
      case Kind::run:
      case Kind::exec:
        break;
    }
    if (files::file_id(vault_) != vault_id_) {
      reply(conn,
            {Answer::refused, exit_code(Code::unavailable),
             fmt::format("the vault file {} was replaced or removed after the agent opened it; "
                         "the agent has stopped",
                         vault_.string()),
             "start it again: `eval \"$(kmsctl agent start)\"`"});
      return std::string(kVaultGone);
    }
    const bool run = req->kind == Kind::run;
    const bool ours = files::file_id(req->args[0]) == vault_id_ && fds.size() == (run ? 4u : 1u);
    if (!ours) {
      reply(conn, {Answer::local, 0, {}, {}});
      return std::nullopt;
    }
    try {
      int code = 0;
      if (run) {
        std::vector<const char*> argv{"kmsctl"};
        for (size_t i = 1; i < req->args.size(); ++i) argv.push_back(req->args[i].c_str());
        const std::optional<int> ran = run_with(fds, req->args[0], argv);
        if (!ran) {
          reply(conn, {Answer::local, 0, {}, {}});
          return std::nullopt;
        }
        code = *ran;
      } else {
        ++requests_;
        svc_.vault().refresh_meta();
        write_exec_values(*req, fds[0].get());
      }
      fds.clear();  // for exec: the end of the values
      reply(conn, {Answer::done, code, {}, {}});
    } catch (const Error& e) {
      fds.clear();
      reply(conn, {Answer::refused, exit_code(e.code()), e.what(), e.hint()});
    }
    return std::nullopt;
  }

  // `kmsctl exec` through the agent: each secret read as exec reads it (one audited read each),
  // its value written to the client's pipe as u32be length ‖ bytes. The client sets the
  // variables and runs the command itself.
  void write_exec_values(const Request& req, int pipe) {
    const std::optional<SecretStage> stage = parse_secret_stage(req.args[1]);
    const std::string& command = req.args[2];
    if (stage != SecretStage::current && stage != SecretStage::previous) {
      throw Error(Code::usage,
                  fmt::format("--stage {}: exec reads current or previous", req.args[1]));
    }
    for (size_t i = 3; i + 1 < req.args.size(); i += 2) {
      secrets::check_name(req.args[i]);
      const secrets::Value v =
          svc_.secret_get(req.args[i], stage, std::nullopt,
                          {{"exec", {{"env", req.args[i + 1]}, {"command", command}}}});
      std::uint8_t len[4];
      for (int b = 0; b < 4; ++b)
        len[b] = static_cast<std::uint8_t>(v.value.size() >> (24 - 8 * b));
      if (!write_all(pipe, ByteView(len, 4)) || !write_all(pipe, v.value.view())) {
        throw Error(Code::failed, "the client of the agent went away");
      }
    }
  }

  static bool write_all(int fd, ByteView data) {
    for (size_t done = 0; done < data.size();) {
      const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // A process of another user reached the socket (its directory's mode would have to have been
  // changed): refused, and recorded as denied under that user's name.
  void refuse_stranger(int conn, Caller who) {
    const Error denied(
        Code::refused,
        fmt::format("this agent serves only uid {}, not uid {}", ::geteuid(), who.uid),
        "start your own agent: `eval \"$(kmsctl agent start)\"`");
    svc_.serve_client(std::move(who));
    try {
      svc_.run({Action::agent_connect, resource(), {}}, [&](audit::Event&) { throw denied; });
    } catch (const Error&) {
    }
    svc_.serve_client(self_);
    reply(conn, {Answer::refused, exit_code(denied.code()), denied.what(), denied.hint()});
  }

  // Runs the command with the client's standard input, output and error and its working
  // directory, then puts the agent's back. Nothing, and nothing run, when the command as parsed
  // is not one the agent serves, or names another vault: the client runs it itself.
  std::optional<int> run_with(std::vector<Fd>& fds, const std::string& vault,
                              const std::vector<const char*>& argv) {
    std::fflush(nullptr);
    Fd saved[3];
    for (int i = 0; i < 3; ++i) saved[i] = Fd(::fcntl(i, F_DUPFD_CLOEXEC, 3));
    Fd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; i < 3; ++i) ::dup2(fds[i].get(), i);
    const bool moved = ::fchdir(fds[3].get()) == 0;
    fds.clear();  // only 0, 1 and 2 keep the client's files open
    ::setenv("KMSCTL_VAULT", vault.c_str(), 1);
    bool local = false;
    auto serve_it = [&](const std::vector<std::string>& path,
                        const Globals& g) -> std::optional<int> {
      if (!serves(path) || files::file_id(vault_of(g)) != vault_id_) {
        local = true;
        return 0;
      }
      ++requests_;
      svc_.vault().refresh_meta();
      return std::nullopt;  // run it here
    };
    const int code =
        moved ? run_command(static_cast<int>(argv.size()), argv.data(), &svc_, serve_it)
              : report_error(Error(Code::failed, "the agent cannot enter your working directory",
                                   "run the command without the agent (unset KMSCTL_AGENT_SOCK)"));
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    for (int i = 0; i < 3; ++i) ::dup2(saved[i].get(), i);
    if (here) ::fchdir(here.get());
    // A closed pipe or an end of input in one command must not stick to the next one.
    std::cin.clear();
    std::cout.clear();
    std::cerr.clear();
    std::clearerr(stdin);
    std::clearerr(stdout);
    std::clearerr(stderr);
    if (local) return std::nullopt;
    return code;
  }

  void reply(int conn, const Reply& r) { send_message(conn, encode(r)); }

  nlohmann::json status_json() {
    return {{"pid", ::getpid()},
            {"socket", listener_.path().string()},
            {"vault", vault_.string()},
            {"started", started_},
            {"requests", requests_},
            {"idle_timeout_s", limits_.idle.count()},
            {"max_lifetime_s", limits_.lifetime.count()}};
  }

  Service& svc_;
  const Listener& listener_;
  fs::path vault_;
  std::optional<files::FileId> vault_id_;
  Limits limits_;
  Caller self_;
  std::string started_;
  std::int64_t requests_ = 0;
  Fd stopped_by_;  // the connection of `agent stop`
};

// "90s", "15m", "2h", "1d" (a bare number is seconds), 1 s … 30 days.
std::chrono::seconds parse_duration(const std::string& text, const char* flag) {
  size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  const std::string unit = text.substr(std::min(used, text.size()));
  const long long mult = unit.empty() || unit == "s" ? 1
                         : unit == "m"               ? 60
                         : unit == "h"               ? 3600
                         : unit == "d"               ? 86400
                                                     : 0;
  if (n < 1 || mult == 0 || !std::isdigit(static_cast<unsigned char>(text[0])) ||
      n > 30LL * 86400 / mult) {
    throw Error(Code::usage, fmt::format("{} {}: not a duration between 1s and 30d", flag, text),
                "write a number with s, m, h or d, e.g. 15m");
  }
  return std::chrono::seconds(n * mult);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct StartArgs {
  std::string idle = "10m";
  std::string lifetime = "2h";
  std::string socket;
  bool foreground = false;
  bool json = false;
};

void print_started(const StartArgs& a, const fs::path& socket, const fs::path& vault, pid_t pid,
                   const Limits& limits) {
  if (a.json) {
    print_json({{"socket", socket.string()},
                {"pid", pid},
                {"vault", vault.string()},
                {"idle_timeout_s", limits.idle.count()},
                {"max_lifetime_s", limits.lifetime.count()}});
  } else {
    fmt::print(
        "KMSCTL_AGENT_SOCK={}; export KMSCTL_AGENT_SOCK;\necho kmsctl agent pid {} serves {};\n",
        shell_quote(socket.string()), pid, shell_quote(vault.string()));
  }
  std::fflush(stdout);
}

// The agent's own process: serve, then record why it stopped.
void run_agent(Service& svc, Listener& listener, const fs::path& vault, const Limits& limits,
               const std::function<void()>& ready) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;  // no SA_RESTART: poll() returns at once
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is an EPIPE in its command
  listener.listen();
  Agent agent(svc, listener, vault, limits);
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

void start(Globals& g, const StartArgs& a) {
  const Limits limits{parse_duration(a.idle, "--idle-timeout"),
                      parse_duration(a.lifetime, "--max-lifetime")};
  const fs::path vault = fs::absolute(existing_vault(g));
  std::optional<SecureBytes> pin = read_pin(g);  // wiped once the token session is open
  Listener listener(a.socket);
  if (a.foreground) {
    std::unique_ptr<Service> svc = Service::open(vault, *pin);
    pin.reset();
    run_agent(*svc, listener, vault, limits,
              [&] { print_started(a, listener.path(), vault, ::getpid(), limits); });
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
    auto tell = [&](const Reply& r) {
      const Bytes msg = encode(r);
      (void)!::write(ready[1], msg.data(), msg.size());
      ::close(ready[1]);
      told = true;
    };
    try {
      std::unique_ptr<Service> svc = Service::open(vault, *pin);
      pin.reset();
      run_agent(*svc, listener, vault, limits, [&] {
        detach_stdio();
        tell({});
      });
    } catch (const Error& e) {
      if (told) throw;
      tell({Answer::refused, static_cast<std::int32_t>(e.code()), e.what(), e.hint()});
    }
    return;  // the socket goes with `listener`
  }
  ::close(ready[1]);
  Bytes buf(kMaxMessage);
  size_t len = 0;
  for (ssize_t n;
       len < buf.size() && (n = ::read(ready[0], buf.data() + len, buf.size() - len)) != 0;) {
    if (n > 0)
      len += static_cast<size_t>(n);
    else if (errno != EINTR)
      break;
  }
  ::close(ready[0]);
  buf.resize(len);
  const fs::path socket = listener.path();
  listener.release();  // the agent's now, or removed by it when it failed
  const std::optional<Reply> r = parse_reply(buf);
  if (!r) throw Error(Code::failed, "the agent exited while it started");
  if (r->answer == Answer::refused) throw Error(static_cast<Code>(r->code), r->text, r->hint);
  print_started(a, socket, vault, pid, limits);
}

bool read_all(int fd, std::uint8_t* out, size_t n) {
  for (size_t done = 0; done < n;) {
    const ssize_t got = ::read(fd, out + done, n - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    done += static_cast<size_t>(got);
  }
  return true;
}

}  // namespace agent

std::optional<std::vector<SecureBytes>> exec_values_from_agent(
    const Globals& g, const std::vector<std::pair<std::string, std::string>>& bindings,
    const std::string& stage, const std::string& command) {
  const char* sock = agent::trusted_socket_in_env();
  if (sock == nullptr) return std::nullopt;
  std::error_code ec;
  const std::filesystem::path vault = std::filesystem::absolute(vault_path(g), ec);
  agent::Request req{agent::Kind::exec, {vault.string(), stage, command}};
  for (const auto& [name, env] : bindings) {
    req.args.push_back(name);
    req.args.push_back(env);
  }
  const std::optional<Bytes> msg = agent::encode(req);
  if (!msg) return std::nullopt;  // too many secrets for one message: in this process
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return std::nullopt;
  agent::Fd in(p[0]), out(p[1]);
  const int fds[] = {out.get()};
  // The agent writes every value before it answers; a 64 KiB one does not fit the pipe, so they
  // are read as it writes them.
  std::vector<SecureBytes> values;
  auto read_values = [&] {
    out.reset();
    for (size_t i = 0; i < bindings.size(); ++i) {
      std::uint8_t len[4];
      if (!agent::read_all(in.get(), len, 4)) return true;  // it failed: the answer says why
      const size_t n = size_t{len[0]} << 24 | size_t{len[1]} << 16 | size_t{len[2]} << 8 | len[3];
      if (n > secrets::kMaxValueSize) return false;
      SecureBytes v(n);
      if (!agent::read_all(in.get(), v.data(), n)) return false;
      values.push_back(std::move(v));
    }
    return true;
  };
  const std::optional<agent::Reply> r = agent::call(sock, *msg, fds, nullptr, read_values);
  if (!r || r->answer == agent::Answer::local) return std::nullopt;
  if (r->answer == agent::Answer::refused)
    throw Error(static_cast<Code>(r->code), r->text, r->hint);
  if (r->answer != agent::Answer::done || values.size() != bindings.size()) {
    throw Error(Code::unavailable, "the agent answered without every value",
                "run the command without the agent (unset KMSCTL_AGENT_SOCK)");
  }
  return values;
}

std::optional<int> forward_to_agent(const std::vector<std::string>& path, const Globals& g,
                                    int argc, const char* const* argv) {
  const char* sock = agent::trusted_socket_in_env();
  if (sock == nullptr || !agent::serves(path)) return std::nullopt;
  try {
    agent::Request req{agent::Kind::run, {agent::vault_of(g).string()}};
    for (int i = 1; i < argc; ++i) req.args.emplace_back(argv[i]);
    const std::optional<Bytes> msg = agent::encode(req);
    if (!msg) return std::nullopt;  // too long for one message
    agent::Fd cwd(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cwd) return std::nullopt;
    for (int i = 0; i < 3; ++i) {
      if (::fcntl(i, F_GETFD) < 0) return std::nullopt;  // a closed standard descriptor
    }
    const int fds[] = {0, 1, 2, cwd.get()};
    const std::optional<agent::Reply> r = agent::call(sock, *msg, fds);
    if (!r || r->answer == agent::Answer::local) return std::nullopt;
    if (r->answer == agent::Answer::done) return r->code;
    if (r->answer == agent::Answer::refused) {
      return report_error(Error(static_cast<Code>(r->code), r->text, r->hint));
    }
    return report_error(Error(Code::failed, "the agent gave an answer this kmsctl does not know"));
  } catch (const Error& e) {
    return report_error(e);
  }
}

void register_agent(CLI::App& app, Globals& g) {
  CLI::App* group = app.add_subcommand(
      "agent", "Keep the vault open for this user's kmsctl commands (like gpg-agent)");
  group->require_subcommand(1);

  auto sa = std::make_shared<agent::StartArgs>();
  CLI::App* start = group->add_subcommand(
      "start",
      "Unlock the vault once and serve this user's commands until stopped or idle; "
      "prints KMSCTL_AGENT_SOCK for eval");
  start
      ->add_option("--idle-timeout", sa->idle,
                   "Stop after this long without a request (default 10m)")
      ->type_name("DURATION");
  start->add_option("--max-lifetime", sa->lifetime, "Stop this long after starting (default 2h)")
      ->type_name("DURATION");
  start
      ->add_option("--socket", sa->socket,
                   "Listen at PATH (its directory must be yours alone; default: a new private "
                   "directory in $XDG_RUNTIME_DIR, $TMPDIR or /tmp)")
      ->type_name("PATH");
  start->add_flag("--foreground", sa->foreground,
                  "Serve in this process instead of in the background");
  start->add_flag("--json", sa->json, "Print the socket and pid as JSON");
  start->callback([&g, sa] { agent::start(g, *sa); });

  auto stop_socket = std::make_shared<std::string>();
  CLI::App* stop = group->add_subcommand("stop", "Stop the agent (KMSCTL_AGENT_SOCK or --socket)");
  stop->add_option("--socket", *stop_socket, "The agent's socket")->type_name("PATH");
  stop->callback([stop_socket] {
    pid_t pid = 0;
    agent::call_agent(*stop_socket, agent::Kind::stop, &pid);
    agent::wait_for_exit(pid);  // its socket is gone already: another can start at once
    note("kmsctl: the agent stopped");
  });

  auto st_socket = std::make_shared<std::string>();
  auto st_json = std::make_shared<bool>(false);
  CLI::App* status =
      group->add_subcommand("status", "Show the running agent (KMSCTL_AGENT_SOCK or --socket)");
  status->add_option("--socket", *st_socket, "The agent's socket")->type_name("PATH");
  status->add_flag("--json", *st_json, "Print as JSON");
  status->callback([st_socket, st_json] {
    const agent::Reply r = agent::call_agent(*st_socket, agent::Kind::status);
    const nlohmann::json j = nlohmann::json::parse(r.text, nullptr, /*allow_exceptions=*/false);
    if (*st_json) return print_json(j);
    if (!j.is_object()) throw Error(Code::failed, "the agent's status is not JSON");
    fmt::print(
        "pid           {}\nvault         {}\nsocket        {}\nstarted       {}\nrequests      {}\n"
        "idle timeout  {} s\nmax lifetime  {} s\n",
        j.value("pid", 0), escape_text(j.value("vault", "")), escape_text(j.value("socket", "")),
        escape_text(j.value("started", "")), j.value("requests", 0), j.value("idle_timeout_s", 0),
        j.value("max_lifetime_s", 0));
  });
}

}  // namespace kms::cli
