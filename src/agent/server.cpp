#include "agent/server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <utility>

#include <fmt/format.h>

#include "agent/transport.hpp"
#include "kms/clock.hpp"
#include "kms/error.hpp"
#include "kms/secrets.hpp"

namespace kms::agent {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }

void check_private_dir(const fs::path& dir) {
  switch (trust_of_dir(dir)) {
    case DirTrust::missing:
      throw Error(Code::usage, fmt::format("no directory {} for the agent socket", dir.string()));
    case DirTrust::shared:
      throw Error(Code::refused,
                  fmt::format("the directory {} is not yours alone: another user could replace the "
                              "agent's socket",
                              dir.string()),
                  "put the socket in a directory only you can write, or leave out --socket");
    case DirTrust::owned_alone:
      break;
  }
}

// A socket no agent answers on any more is left over; anything else stays.
void clear_stale(const fs::path& p) {
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

}  // namespace

void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;  // no SA_RESTART: poll() returns at once
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

// ---- Listener ----

Listener::Listener(const std::string& socket_flag) {
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
  fd_ = posix::Fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd_ || ::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
      ::chmod(path_.c_str(), 0600) != 0) {
    const std::string what =
        fmt::format("cannot listen on {}: {}", path_.string(), std::strerror(errno));
    close();
    throw Error(Code::failed, what);
  }
}

void Listener::listen() {
  if (::listen(fd_.get(), 64) != 0) {
    throw Error(Code::failed,
                fmt::format("cannot listen on {}: {}", path_.string(), std::strerror(errno)));
  }
}

void Listener::close() noexcept {
  fd_.reset();
  if (!path_.empty()) ::unlink(path_.c_str());
  if (!dir_.empty()) ::rmdir(dir_.c_str());
  release();
}

// ---- Agent ----

Agent::Agent(Service& svc, const Listener& listener, fs::path vault, Limits limits,
             CommandLine command_line)
    : svc_(svc),
      listener_(listener),
      vault_(std::move(vault)),
      vault_id_(files::file_id(vault_)),
      limits_(limits),
      command_line_(std::move(command_line)),
      self_(Caller::current()),
      started_(format_rfc3339(now())) {}

void Agent::record_start() {
  svc_.serve_client(self_);
  svc_.run({Action::agent_start,
            resource(),
            {{"pid", ::getpid()},
             {"socket", listener_.path().string()},
             {"idle_timeout_s", limits_.idle.count()},
             {"max_lifetime_s", limits_.lifetime.count()}}},
           [](audit::Event&) {});
}

std::string Agent::serve() {
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
    posix::Fd conn(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
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

void Agent::stopped() {
  if (stopped_by_) reply(stopped_by_.get(), {Answer::done, 0, {}, {}});
  stopped_by_.reset();
}

void Agent::record_stop(const std::string& reason) noexcept {
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

std::string Agent::resource() { return "vault/" + svc_.vault().meta().vault_id; }

// One connection: one request, one reply. Returns why to stop, if it should.
std::optional<std::string> Agent::handle(posix::Fd& connection) {
  const int conn = connection.get();
  const timeval limit{2, 0};  // for the request: a client sends it as it connects
  ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  const ucred who = peer_of(conn);
  if (who.uid != ::geteuid()) {
    refuse_stranger(conn, Caller::peer(who.uid, who.gid, who.pid, Channel::agent));
    return std::nullopt;
  }
  // The agent's own user: its name and groups were looked up once, at start; no user database
  // lookup per request.
  Caller client = self_;
  client.pid = who.pid;
  client.channel = Channel::agent;
  svc_.serve_client(std::move(client));
  std::vector<posix::Fd> fds;
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
      reply(conn, {Answer::info,
                   0,
                   status_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   {}});
      return std::nullopt;
    case Kind::stop:
      stopped_by_ = std::move(connection);  // answered by stopped(), once the agent is gone
      return "stop";
    case Kind::run:
    case Kind::exec:
      break;
  }
  if (files::file_id(vault_) != vault_id_) {
    reply(conn, {Answer::refused, exit_code(Code::unavailable),
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
void Agent::write_exec_values(const Request& req, int pipe) {
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
    for (int b = 0; b < 4; ++b) len[b] = static_cast<std::uint8_t>(v.value.size() >> (24 - 8 * b));
    if (!posix::write_all(pipe, ByteView(len, 4)) || !posix::write_all(pipe, v.value.view())) {
      throw Error(Code::failed, "the client of the agent went away");
    }
  }
}

// A process of another user reached the socket (its directory's mode would have to have been
// changed): refused, and recorded as denied under that user's name.
void Agent::refuse_stranger(int conn, Caller who) {
  const Error denied(Code::refused,
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
std::optional<int> Agent::run_with(std::vector<posix::Fd>& fds, const std::string& vault,
                                   const std::vector<const char*>& argv) {
  std::fflush(nullptr);
  posix::Fd saved[3];
  for (int i = 0; i < 3; ++i) saved[i] = posix::Fd(::fcntl(i, F_DUPFD_CLOEXEC, 3));
  posix::Fd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i < 3; ++i) ::dup2(fds[i].get(), i);
  const bool moved = ::fchdir(fds[3].get()) == 0;
  fds.clear();  // only 0, 1 and 2 keep the client's files open
  ::setenv("KMSCTL_VAULT", vault.c_str(), 1);
  bool local = false;
  const CommandLine::Admit admit = [&](const std::vector<std::string>& path,
                                       const fs::path& named) {
    if (!serves(path) || files::file_id(named) != vault_id_) {
      local = true;
      return false;
    }
    ++requests_;
    svc_.vault().refresh_meta();
    return true;  // run it here
  };
  const int code = moved ? command_line_.run(argv, svc_, admit)
                         : command_line_.report(Error(
                               Code::failed, "the agent cannot enter your working directory",
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

void Agent::reply(int conn, const Reply& r) { send_message(conn, encode(r)); }

nlohmann::json Agent::status_json() {
  return {{"pid", ::getpid()},
          {"socket", listener_.path().string()},
          {"vault", vault_.string()},
          {"started", started_},
          {"requests", requests_},
          {"idle_timeout_s", limits_.idle.count()},
          {"max_lifetime_s", limits_.lifetime.count()}};
}

}  // namespace kms::agent
