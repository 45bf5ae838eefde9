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
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "agent/transport.hpp"
#include "core/fields.hpp"
#include "kms/clock.hpp"
#include "kms/error.hpp"
#include "kms/requests.hpp"
#include "kms/signals.hpp"
#include "runner/runner.hpp"
#include "secrets/secret_store.hpp"
#include "store/store.hpp"

namespace kms::agent {
namespace fs = std::filesystem;

namespace {

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_reload = 0;
volatile std::sig_atomic_t g_wake_fd = -1;  // the running agent's wake pipe
void wake_from_handler() {
  const int saved = errno;
  if (g_wake_fd >= 0) (void)!::write(g_wake_fd, "!", 1);  // wakes poll() in any thread's case
  errno = saved;
}
extern "C" void on_stop_signal(int sig) {
  g_signal = sig;
  wake_from_handler();
}
extern "C" void on_reload_signal(int) {
  g_reload = 1;
  wake_from_handler();
}

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

void catch_stop_signals(bool hup_reloads) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;  // no SA_RESTART: poll() returns at once
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  if (hup_reloads) {
    sa.sa_handler = on_reload_signal;
    ::sigaction(SIGHUP, &sa, nullptr);
  }
}

std::string_view reach_name(Reach r) noexcept { return r == Reach::full ? "full" : "use-only"; }

bool reaches(Reach reach, std::uint16_t op) noexcept {
  if (reach == Reach::full) return true;
  switch (static_cast<Op>(op)) {
    case Op::encrypt:
    case Op::decrypt:
    case Op::re_encrypt:
    case Op::data_key_generate:
    case Op::file_wrap:
    case Op::file_unwrap:
    case Op::file_end:
    case Op::file_failed:
    case Op::file_rewrap:
    case Op::secret_get:
    case Op::sign:
    case Op::verify:
    case Op::mac:
    case Op::verify_mac:
    case Op::key_get_public_key:
      return true;
    default:
      return op == kOpAgentHello;
  }
}

// ---- Listener ----

Listener::Listener(const std::string& socket_flag, mode_t mode) {
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
  fd_ = posix::Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd_ || ::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
      ::chmod(path_.c_str(), mode) != 0) {
    const std::string what =
        fmt::format("cannot listen on {}: {}", path_.string(), std::strerror(errno));
    close();
    throw Error(Code::failed, what);
  }
}

void Listener::listen() {
  // One systemd made listens already; listening again would make this process the one its
  // clients see (SO_PEERCRED) for the connections after, and not for those before.
  if (!owned_) return;
  if (::listen(fd_.get(), 64) != 0) {
    throw Error(Code::failed,
                fmt::format("cannot listen on {}: {}", path_.string(), std::strerror(errno)));
  }
}

void Listener::close() noexcept {
  fd_.reset();
  if (!path_.empty() && owned_) ::unlink(path_.c_str());
  if (!dir_.empty()) ::rmdir(dir_.c_str());
  release();
}

// ---- Agent ----

namespace {

// A client sends its request as it connects, and each next one of a connection (a file's
// end) when it is ready: the first must arrive whole within this time.
constexpr std::chrono::seconds kRequestTime{5};
// A reply the client does not read within this time is dropped with its connection: a stalled
// client holds neither its thread nor, when the agent stops, the agent.
constexpr timeval kReplyTime{10, 0};
// Connections served at once; more wait in the listen backlog.
constexpr std::size_t kMaxConnections = 128;

struct Malformed {
  std::string why;
};

template <class R>
R parse(wire::Reader& in) {
  std::optional<R> r = wire::decode<R>(in);
  if (!r)
    throw Malformed{
        fmt::format("the fields of operation {} do not parse", static_cast<unsigned>(R::op))};
  return std::move(*r);
}

// Whether a request sets a secret's rotation command (read from a copy of the request's fields).
bool sets_rotation_command(std::uint16_t op, wire::Reader in) {
  if (op == static_cast<std::uint16_t>(Op::secret_create)) {
    const std::optional<req::SecretCreate> r = wire::decode<req::SecretCreate>(in);
    return r && r->spec.rotation_command;
  }
  if (op == static_cast<std::uint16_t>(Op::secret_set_rotation)) {
    const std::optional<req::SecretSetRotation> r = wire::decode<req::SecretSetRotation>(in);
    return r && r->change.set_command && r->change.command;
  }
  return false;
}

template <class T>
wire::Writer ok(const T& response) {
  return reply_frame([&](wire::Writer& w) { wire::encode(w, response); });
}

template <class... R>
std::optional<wire::Writer> dispatch(RequestList<R...>, std::uint16_t op, Service& svc,
                                     wire::Reader& in) {
  std::optional<wire::Writer> out;
  (void)((op == static_cast<std::uint16_t>(R::op) ? (out = ok(handle(svc, parse<R>(in))), true)
                                                  : false) ||
         ...);
  return out;
}

}  // namespace

// A service's connections of one user at once; more are refused (one user cannot take every
// connection the service serves).
constexpr std::size_t kMaxPerUser = 32;

struct Agent::Connection {
  posix::Fd fd;
  Reach reach = Reach::full;
  std::int64_t uid = -1;  // the peer's, read when it was accepted
  Caller caller;
  std::unique_ptr<FileSession> file;  // a file encrypt, decrypt or rewrap in progress
  bool hello = false;                 // the agent's own user asked whether it serves its vault
  std::atomic<bool> done{false};      // its worker is done with it
};

Agent::Agent(Service& svc, std::vector<Endpoint> endpoints, fs::path vault, Mode mode)
    : svc_(svc),
      endpoints_(std::move(endpoints)),
      vault_(std::move(vault)),
      in_database_(store::is_postgres_location(vault_.string())),
      database_(in_database_ ? store::location_without_passwords(vault_.string()) : ""),
      shown_vault_(store::shown_location(vault_.string())),
      vault_id_(in_database_ ? std::nullopt : files::file_id(vault_)),
      mode_(std::move(mode)),
      self_(Caller::current()),
      started_(format_rfc3339(now())) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw Error(Code::failed, fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  }
  wake_read_ = posix::Fd(p[0]);
  wake_write_ = posix::Fd(p[1]);
  g_wake_fd = wake_write_.get();
}

Agent::~Agent() {
  g_wake_fd = -1;
  stop_workers();
}

void Agent::hand_off(Connection& c) {
  std::unique_lock lock(mutex_);
  pending_.push_back(&c);
  if (idle_ >= pending_.size()) {
    work_.notify_one();
    return;
  }
  // The stop signals go to serve()'s thread, whose poll() they interrupt: a worker starts with
  // them blocked.
  sigset_t stop_signals, before;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, &before);
  try {
    workers_.emplace_back([this] { work(); });
  } catch (const std::system_error&) {
    // No thread (out of resources): a busy worker takes it when it is done, or, with none at
    // all, the connection is dropped.
    if (workers_.empty()) {
      pending_.pop_back();
      c.done = true;
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

void Agent::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    work_.wait(lock, [&] { return !pending_.empty() || workers_stop_; });
    --idle_;
    if (pending_.empty()) return;  // stopping, nothing left to serve
    Connection& c = *pending_.front();
    pending_.pop_front();
    lock.unlock();
    try {
      serve_connection(c);
    } catch (...) {
      // This connection failed (its client went away); the agent goes on.
    }
    last_activity_ns_ = Clock::now().time_since_epoch().count();
    lock.lock();
    c.done = true;  // serve() may destroy it now
    (void)!::write(wake_write_.get(), "c", 1);
  }
}

void Agent::stop_workers() {
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mutex_);
    workers_stop_ = true;
    workers.swap(workers_);
  }
  work_.notify_all();
  for (std::thread& t : workers) t.join();
}

nlohmann::json Agent::sockets_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const Endpoint& e : endpoints_) {
    out.push_back({{"path", e.listener->path().string()}, {"reach", reach_name(e.reach)}});
  }
  return out;
}

void Agent::record_start() {
  svc_.serve_client(self_);
  if (mode_.service) {
    svc_.runner().run(
        {Action::service_start,
         resource(),
         {{"pid", ::getpid()}, {"sockets", sockets_json()}, {"policy", mode_.describe()}}},
        [](audit::Event&) {});
    return;
  }
  svc_.runner().run({Action::agent_start,
                     resource(),
                     {{"pid", ::getpid()},
                      {"socket", endpoints_.front().listener->path().string()},
                      {"idle_timeout_s", mode_.limits.idle.count()},
                      {"max_lifetime_s", mode_.limits.lifetime.count()}}},
                    [](audit::Event&) {});
}

nlohmann::json Agent::reload(const Caller& who) {
  std::lock_guard lock(svc_mutex_);
  svc_.serve_client(who);
  nlohmann::json loaded;
  svc_.runner().run({Action::service_reload, resource(), {}},
                    [&](audit::Event& ev) { ev.params["policy"] = loaded = mode_.reload(); });
  return loaded;
}

std::string Agent::serve() {
  const Clock::time_point end = Clock::now() + mode_.limits.lifetime;
  last_activity_ns_ = Clock::now().time_since_epoch().count();
  std::string why;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      // Finished connections go; the others count against the limit.
      for (auto it = connections_.begin(); it != connections_.end();) {
        it = (*it)->done ? connections_.erase(it) : std::next(it);
      }
      if (stop_reason_) {
        why = *stop_reason_;
        break;
      }
    }
    if (g_signal != 0) {
      why = fmt::format("signal {}", static_cast<int>(g_signal));
      break;
    }
    if (g_reload != 0) {
      g_reload = 0;
      try {
        (void)reload(self_);
      } catch (const Error& e) {
        // Kept the old policy, and recorded why; the service's log says so too.
        std::cerr << "kmsctl serve: " << e.what() << '\n';
      }
    }
    const Clock::time_point t = Clock::now();
    const Clock::time_point last{Clock::duration(last_activity_ns_.load())};
    bool busy = false;
    {
      std::lock_guard lock(mutex_);
      busy = !connections_.empty();
    }
    if (t >= end && !mode_.service) {
      why = "max lifetime";
      break;
    }
    if (!busy && t >= last + mode_.limits.idle && !mode_.service) {
      why = "idle";
      break;
    }
    // Busy (a connection open, a file streaming, say): the idle time does not run.
    const Clock::time_point until = mode_.service ? t + std::chrono::minutes(1)
                                    : busy        ? end
                                                  : std::min(end, last + mode_.limits.idle);
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(until - t);
    // The wake pipe first, then each socket.
    std::vector<pollfd> p{{wake_read_.get(), POLLIN, 0}};
    bool full = false;
    {
      std::lock_guard lock(mutex_);
      full = connections_.size() >= kMaxConnections;  // the backlog waits
    }
    for (const Endpoint& e : endpoints_) p.push_back({full ? -1 : e.listener->fd(), POLLIN, 0});
    const int n = ::poll(p.data(), p.size(),
                         static_cast<int>(std::clamp<std::int64_t>(wait.count(), 10, 60'000)));
    if (n <= 0) continue;  // a timeout, or a signal (EINTR)
    if ((p[0].revents & POLLIN) != 0) {
      char buf[64];
      while (::read(wake_read_.get(), buf, sizeof buf) > 0) {
      }
    }
    std::size_t ready = 1;
    while (ready < p.size() && (p[ready].revents & POLLIN) == 0) ++ready;
    if (ready == p.size()) continue;
    const Endpoint& at = endpoints_[ready - 1];
    posix::Fd conn(::accept4(at.listener->fd(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;
    ::setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &kReplyTime, sizeof kReplyTime);
    last_activity_ns_ = Clock::now().time_since_epoch().count();
    auto c = std::make_unique<Connection>();
    c->fd = std::move(conn);
    c->reach = at.reach;
    c->uid = peer_of(c->fd.get()).uid;  // before the connection counts against its user's limit
    Connection& ref = *c;
    {
      std::lock_guard lock(mutex_);
      connections_.push_back(std::move(c));
    }
    hand_off(ref);
  }
  // Stopping: no connection reads any more; those running a request finish it and write its
  // answer (an `agent stop` too: its answer waits in stopped_by_), within kReplyTime. A file
  // being streamed through the agent is interrupted (recorded so; its client takes its output
  // back). The threads are joined without the lock, which a request that stops the agent takes.
  std::list<std::unique_ptr<Connection>> ending;
  {
    std::lock_guard lock(mutex_);
    for (auto& c : connections_) {
      if (!c->done) ::shutdown(c->fd.get(), SHUT_RD);
    }
    ending.swap(connections_);
  }
  stop_workers();  // each ends its connection, and those still waiting for a worker
  return why;
}

void Agent::stop_with(std::string reason) {
  std::lock_guard lock(mutex_);
  if (!stop_reason_) stop_reason_ = std::move(reason);
  (void)!::write(wake_write_.get(), "s", 1);
}

void Agent::stopped() {
  for (const posix::Fd& fd : stopped_by_) write_frame(fd.get(), reply_frame([](wire::Writer&) {}));
  stopped_by_.clear();
}

void Agent::record_stop(const std::string& reason) noexcept {
  if (reason == kVaultGone) return;
  try {
    svc_.serve_client(self_);
    svc_.runner().run({mode_.service ? Action::service_stop : Action::agent_stop,
                       resource(),
                       {{"pid", ::getpid()}, {"reason", reason}, {"requests", requests_.load()}}},
                      [](audit::Event&) {});
  } catch (const Error& e) {
    // An agent's standard error is /dev/null; a service's is its log.
    if (mode_.service) std::cerr << "kmsctl serve: the stop was not recorded: " << e.what() << '\n';
  }
}

std::string Agent::resource() { return "vault/" + svc_.vault().meta().vault_id; }

void Agent::serve_connection(Connection& c) {
  const ucred who = peer_of(c.fd.get());
  // The groups the connecting process holds, as the kernel recorded them: for the agent's own
  // user too (a process that gained or dropped a group since the agent started is judged by
  // what it holds now).
  std::vector<std::int64_t> groups;
  for (gid_t g : peer_groups(c.fd.get())) groups.push_back(static_cast<std::int64_t>(g));
  const Channel channel = mode_.service ? Channel::service : Channel::agent;
  if (who.uid == self_.uid) {
    // The agent's own user: its name was looked up once, at start.
    c.caller = self_;
    c.caller.pid = who.pid;
    c.caller.channel = channel;
    c.caller.groups = Caller::group_list(who.gid, groups);
  } else {
    c.caller = Caller::peer(who.uid, who.gid, who.pid, groups, channel);
  }
  if (mode_.service) {
    std::size_t same = 0;
    {
      std::lock_guard lock(mutex_);
      for (const auto& other : connections_) same += !other->done && other->uid == c.uid ? 1 : 0;
    }
    if (same > kMaxPerUser) {
      write_frame(c.fd.get(),
                  error_frame(Error(Code::unavailable,
                                    fmt::format("{} (uid {}) has {} connections to the service "
                                                "open, the most it serves at once",
                                                c.caller.user, c.caller.uid, kMaxPerUser),
                                    "close some, or try again when they finished")));
      return;
    }
  }
  // However the connection ends (its client went away, a request threw): a file operation
  // still running ends as interrupted, as that of a process that died does (FORMAT.md §8.1),
  // under the vault's lock and for its caller. Which signal, if any, the agent cannot know.
  struct EndFile {
    Agent& agent;
    Connection& c;
    ~EndFile() {
      if (!c.file) return;
      std::lock_guard lock(agent.svc_mutex_);
      agent.svc_.serve_client(c.caller);
      c.file->fail(signals::Interrupted(0));
      c.file.reset();
    }
  } end_file{*this, c};
  for (;;) {
    // Within a file session (or once the agent's own user said hello: a file's header may be
    // slow to arrive) the client streams before its next request: no deadline.
    const bool waits = c.file != nullptr || c.hello;
    const std::optional<Clock::time_point> deadline =
        waits ? std::nullopt : std::optional(Clock::now() + kRequestTime);
    Frame f = read_frame(c.fd.get(), kMaxRequest, deadline);
    if (f.status == FrameStatus::closed) break;
    if (f.status == FrameStatus::timeout) {
      refuse_message(c, fmt::format("no whole request within {} s", kRequestTime.count()), false);
      break;
    }
    if (f.status == FrameStatus::too_large) {
      refuse_message(c, fmt::format("a message of {} bytes (at most {})", f.size, kMaxRequest),
                     true);
      break;
    }
    if (f.status == FrameStatus::cut) {
      refuse_message(c, "the connection closed in the middle of a message", false);
      break;
    }
    wire::Reader in(f.payload.view());
    bool go_on = false;
    try {
      go_on = serve_request(c, in);
    } catch (const Malformed& m) {
      refuse_message(c, m.why, true);
    }
    last_activity_ns_ = Clock::now().time_since_epoch().count();
    // Another user's connection to an agent carries one request: a refused caller cannot keep
    // a connection (and its thread) to send more. A service's users may: each request is
    // decided by the policy.
    if (!go_on || (!mode_.service && c.caller.uid != self_.uid)) break;
  }
}

bool Agent::serve_request(Connection& c, wire::Reader& in) {
  const std::optional<RequestHead> head = parse_request_head(in);
  if (!head) throw Malformed{fmt::format("not a request of wire version {}", kWireVersion)};
  const int fd = c.fd.get();
  const bool control =
      head->op == kOpAgentStatus || head->op == kOpAgentStop || head->op == kOpServeReload;
  if (control && !administers(c.caller)) {
    // Its socket, its vault's path and its pid are its user's business, as is stopping it.
    return refuse_request(
        c, head->op, "not-administrator",
        Error(Code::refused,
              mode_.service ? "only the service's own user (or root) can ask for its status, "
                              "reload its policy or stop it"
                            : "only the agent's own user can ask for its status or stop it",
              mode_.service ? Remedy::act_as_service_user : Remedy::act_as_owner));
  }
  if (!reaches(c.reach, head->op)) {
    return refuse_request(
        c, head->op, "use-only-socket",
        Error(Code::refused,
              fmt::format(
                  "operation {} is not served on the use-only socket, which serves "
                  "encrypt, decrypt, re-encrypt, data keys, files, sign, verify, MACs, public "
                  "keys and secret get",
                  head->op),
              Remedy::use_full_socket));
  }
  if (mode_.service && head->op == static_cast<std::uint16_t>(Op::audit_export)) {
    // It would write a file where the service runs, as the service's user, at a path its client
    // names.
    return refuse_request(
        c, head->op, "service-writes-no-files",
        Error(Code::usage, "a kmsctl service does not write audit exports for its clients",
              "page the log with `kmsctl audit list --json` through the service, or export it "
              "where the vault is, as the service's user"));
  }
  if (mode_.service && !administers(c.caller) && sets_rotation_command(head->op, in)) {
    // `secret rotate` and `maintain` run it where the vault is, as the service's user.
    return refuse_request(
        c, head->op, "rotation-command-by-administrator",
        Error(Code::refused,
              "through a kmsctl service only its own user (or root) sets a secret's rotation "
              "command: the command runs as the service's user",
              Remedy::act_as_service_user));
  }
  if (head->op == kOpAgentStatus) {
    const std::string text =
        status_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return write_frame(fd, reply_frame([&](wire::Writer& w) { w.bytes(as_bytes(text)); }));
  }
  if (head->op == kOpAgentStop) {
    {
      std::lock_guard lock(mutex_);
      stopped_by_.emplace_back(::dup(fd));  // answered by stopped(), once the agent is gone
    }
    stop_with("stop");
    return false;
  }
  if (head->op == kOpServeReload) {
    if (!mode_.service) throw Malformed{"an agent has no policy to reload"};
    try {
      const std::string text =
          reload(c.caller).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return write_frame(fd, reply_frame([&](wire::Writer& w) { w.bytes(as_bytes(text)); }));
    } catch (const Error& e) {
      return write_frame(fd, error_frame(e));
    }
  }
  if (!in_database_ && files::file_id(vault_) != vault_id_) {
    write_frame(
        fd, error_frame(Error(Code::unavailable,
                              fmt::format("the vault file {} was replaced or removed after the {} "
                                          "opened it; it has stopped",
                                          vault_.string(), mode_.service ? "service" : "agent"),
                              mode_.service ? "start the service again"
                                            : "start it again: `eval \"$(kmsctl agent start)\"`")));
    stop_with(std::string(kVaultGone));
    return false;
  }
  // An agent serves the vault the request names (a client of another vault runs it itself);
  // a service, its one vault, whichever its clients name.
  const bool named = in_database_
                         ? head->vault == database_
                         : !head->vault.empty() && files::file_id(head->vault) == vault_id_;
  if (!mode_.service && !named) {
    return write_frame(fd, local_frame());
  }
  if (head->op == kOpAgentHello) {
    c.hello = mode_.service || c.caller.uid == self_.uid;
    return write_frame(fd, reply_frame([](wire::Writer&) {}));
  }
  std::optional<wire::Writer> reply;
  {
    std::lock_guard lock(svc_mutex_);
    svc_.serve_client(c.caller);
    try {
      svc_.vault().refresh_meta();
      reply = serve_file(c, head->op, in);
      if (!reply) reply = dispatch(CallRequests{}, head->op, svc_, in);
    } catch (const Error& e) {
      reply = error_frame(e);
    } catch (const std::exception& e) {
      reply = error_frame(Error(Code::failed, e.what()));  // out of memory, say
    }
    // A file counts once (FileEnd is its second request); an operation it does not know, not.
    if (reply && head->op != static_cast<std::uint16_t>(Op::file_end)) ++requests_;
  }
  if (!reply) throw Malformed{fmt::format("an operation this agent does not know ({})", head->op)};
  if (reply->size() - 4 > kMaxReply) {
    return write_frame(
        fd, error_frame(Error(Code::usage,
                              fmt::format("the answer has {} bytes, more than an agent sends at "
                                          "once ({})",
                                          reply->size() - 4, kMaxReply),
                              "ask for less at a time (a smaller limit)")));
  }
  return write_frame(fd, *reply);
}

// The requests of a file encrypt, decrypt or rewrap: the session lives as long as the
// connection, or until its end.
std::optional<wire::Writer> Agent::serve_file(Connection& c, std::uint16_t op, wire::Reader& in) {
  const bool open = c.file != nullptr;
  if (op == static_cast<std::uint16_t>(Op::file_wrap)) {
    const auto r = parse<req::FileWrap>(in);
    if (open) throw Error(Code::usage, "a file session wraps one data key");
    // The connection holds the session (and waits for its end without a deadline) only once its
    // key use started: a refused or failed one is over, recorded by its own record.
    std::unique_ptr<FileSession> file = svc_.file_session(Action::file_encrypt, r.name, r.keys);
    req::FileWrap::Response out;
    out.recipients = file->wrap(r.data_key.view(), r.context);
    out.keys = file->result.keys;
    c.file = std::move(file);
    return ok(out);
  }
  if (op == static_cast<std::uint16_t>(Op::file_unwrap)) {
    const auto r = parse<req::FileUnwrap>(in);
    if (open) throw Error(Code::usage, "a file session unwraps one data key");
    std::unique_ptr<FileSession> file = svc_.file_session(Action::file_decrypt, r.name);
    envelope::Header h;
    h.context = r.context;
    h.recipients = r.recipients;
    req::FileUnwrap::Response out;
    out.data_key = file->unwrap(h);
    out.keys = file->result.keys;
    c.file = std::move(file);
    return ok(out);
  }
  if (op == static_cast<std::uint16_t>(Op::file_rewrap)) {
    auto r = parse<req::FileRewrap>(in);
    if (open) throw Error(Code::usage, "a file session rewraps one data key");
    std::unique_ptr<FileSession> file = svc_.file_session(Action::file_rewrap, r.name);
    req::FileRewrap::Response out;
    out.header = file->rewrap(r.header, r.to_key);
    out.result = file->result;
    c.file = std::move(file);
    return ok(out);
  }
  if (op == static_cast<std::uint16_t>(Op::file_end)) {
    const auto r = parse<req::FileEnd>(in);
    if (!open || !c.file->running()) throw Error(Code::usage, "no file operation runs here");
    std::unique_ptr<FileSession> file = std::move(c.file);
    if (r.ok) {
      FileResult done = file->result;
      done.bytes = r.bytes;
      done.frames = r.frames;
      file->finish(done, {});
    } else if (r.signal != 0) {
      file->fail(signals::Interrupted(r.signal));
    } else {
      file->fail(Error(r.code, r.message));
    }
    return ok(Done{});
  }
  return std::nullopt;
}

bool Agent::refuse_request(Connection& c, std::uint16_t op, const std::string& rule,
                           const Error& e) {
  {
    std::lock_guard lock(svc_mutex_);
    svc_.serve_client(c.caller);
    try {
      svc_.runner().run(
          {Action::agent_request, resource(), {{"op", op}, {"rule", rule}, {"reason", e.what()}}},
          [&](audit::Event&) { throw e; });
    } catch (const Error&) {
    }
  }
  write_frame(c.fd.get(), error_frame(e));
  return false;
}

void Agent::refuse_message(Connection& c, const std::string& why, bool reply) {
  const Error e(Code::usage, fmt::format("the agent could not read the request: {}", why),
                "use a kmsctl of the agent's version (docs/FORMAT.md §13)");
  {
    std::lock_guard lock(svc_mutex_);
    svc_.serve_client(c.caller);
    try {
      svc_.runner().run({Action::agent_request, resource(), {{"reason", why}}},
                        [&](audit::Event&) { throw e; });
    } catch (const Error&) {
    }
  }
  if (reply) write_frame(c.fd.get(), error_frame(e));
}

nlohmann::json Agent::status_json() {
  if (mode_.service) {
    std::lock_guard lock(svc_mutex_);  // the policy is swapped under it
    return {{"pid", ::getpid()},   {"sockets", sockets_json()},    {"vault", shown_vault_},
            {"started", started_}, {"requests", requests_.load()}, {"policy", mode_.describe()}};
  }
  return {{"pid", ::getpid()},
          {"socket", endpoints_.front().listener->path().string()},
          {"vault", shown_vault_},
          {"started", started_},
          {"requests", requests_.load()},
          {"idle_timeout_s", mode_.limits.idle.count()},
          {"max_lifetime_s", mode_.limits.lifetime.count()}};
}

}  // namespace kms::agent
