#include "agent/client.hpp"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "agent/transport.hpp"
#include "kms/error.hpp"
#include "kms/signals.hpp"

namespace kms::agent {
namespace fs = std::filesystem;
namespace {

// KMSCTL_AGENT_SOCK, or null when it is unset or empty (no agent).
const char* socket_in_env() {
  const char* env = std::getenv("KMSCTL_AGENT_SOCK");
  return env != nullptr && *env != '\0' ? env : nullptr;
}

Connection connect_or_fail(const std::string& socket_flag, pid_t* agent_pid = nullptr) {
  const std::string path = socket_from(socket_flag);
  std::optional<Connection> c = Connection::open(path, agent_pid);
  if (!c) {
    throw Error(Code::unavailable, fmt::format("no agent listens at {}", path),
                "start one: `eval \"$(kmsctl agent start)\"`");
  }
  return std::move(*c);
}

// Waits (up to 5 s) for process `pid` to exit.
void wait_for_exit(pid_t pid) {
  const posix::Fd p(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!p) return;  // gone already
  pollfd w{p.get(), POLLIN, 0};
  while (::poll(&w, 1, 5000) < 0 && errno == EINTR) {
  }
}

wire::Writer control(std::uint16_t op) {
  return request_frame(op, {}, [](wire::Writer&) {});
}

}  // namespace

bool trusted_socket(const std::string& socket) {
  std::error_code ec;
  const fs::path abs = fs::absolute(fs::path(socket), ec);
  return !ec && trust_of_dir(abs.parent_path()) == DirTrust::owned_alone;
}

const char* trusted_socket_in_env() {
  const char* sock = socket_in_env();
  if (sock == nullptr) return nullptr;
  return trusted_socket(sock) ? sock : nullptr;
}

std::string socket_from(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = socket_in_env()) return env;
  throw Error(
      Code::usage, "no agent socket named",
      "set KMSCTL_AGENT_SOCK (`eval \"$(kmsctl agent start)\"` does) or pass --socket PATH");
}

// ---- Connection ----

std::optional<Connection> Connection::open(const fs::path& path, pid_t* agent_pid) {
  std::optional<posix::Fd> fd = connect_to(path, agent_pid);
  if (!fd) return std::nullopt;
  return Connection(std::move(*fd), path);
}

Connection Connection::open_service(const fs::path& path) {
  std::optional<posix::Fd> fd = connect_to_service(path);
  if (!fd) {
    throw Error(Code::unavailable, fmt::format("no kmsctl service listens at {}", path.string()),
                "start it (`systemctl start kmsctl.socket`), or point KMSCTL_SERVER / --server at "
                "its socket");
  }
  return Connection(std::move(*fd), path);
}

Error Connection::lost() const {
  return Error(
      Code::unavailable,
      fmt::format("the agent at {} closed the connection without an answer", path_.string()),
      "see whether it still runs: `kmsctl agent status`");
}

SecureBytes Connection::exchange(const wire::Writer& frame) {
  // A peer that closed before reading the request may have answered first: a service refusing a
  // connection over its user's limit does. Its answer is read, not lost with the request.
  if (!write_frame(fd_.get(), frame) && errno != EPIPE && errno != ECONNRESET) throw lost();
  Frame f = read_frame(fd_.get(), kMaxReply);
  if (f.status != FrameStatus::ok) throw lost();
  return std::move(f.payload);
}

bool Connection::serves(const std::string& vault) {
  const SecureBytes reply = exchange(request_frame(kOpAgentHello, vault, [](wire::Writer&) {}));
  wire::Reader in(reply.view());
  return parse_reply_head(in) == Status::ok;
}

// ---- RemoteFile ----

RemoteFile::RemoteFile(Connection connection, std::string vault, Action action, std::string name,
                       std::vector<std::string> keys)
    : connection_(std::move(connection)),
      vault_(std::move(vault)),
      action_(action),
      name_(std::move(name)),
      keys_(std::move(keys)) {
  result.name = name_;
}

namespace {
template <class T>
T served(std::optional<T> r) {
  if (!r) {
    throw Error(Code::unavailable, "the agent no longer serves this vault",
                "run the command again, or without the agent (unset KMSCTL_AGENT_SOCK)");
  }
  return std::move(*r);
}
}  // namespace

std::vector<envelope::Recipient> RemoteFile::wrap(ByteView data_key, const Context& context) {
  attempted_ = true;
  req::FileWrap r;
  r.name = name_;
  r.keys = keys_;
  r.data_key = SecureBytes(data_key);
  r.context = context;
  req::FileWrap::Response out = served(connection_.call(vault_, r));
  started_ = true;
  result.keys = out.keys;
  return std::move(out.recipients);
}

SecureBytes RemoteFile::unwrap(const envelope::Header& header) {
  attempted_ = true;
  req::FileUnwrap r;
  r.name = name_;
  r.context = header.context;
  r.recipients = header.recipients;
  req::FileUnwrap::Response out = served(connection_.call(vault_, r));
  started_ = true;
  result.keys = out.keys;
  return std::move(out.data_key);
}

Bytes RemoteFile::rewrap(envelope::Header& header, const std::optional<std::string>& to_key) {
  attempted_ = true;
  req::FileRewrap r;
  r.name = name_;
  r.header = header;
  r.to_key = to_key;
  req::FileRewrap::Response out = served(connection_.call(vault_, r));
  started_ = true;
  result.keys = out.result.keys;
  return std::move(out.header);
}

void RemoteFile::finish(const FileResult& r, const FileOutput& output) {
  signals::check();
  if (output.publish) output.publish();
  req::FileEnd end;
  end.ok = true;
  end.bytes = r.bytes;
  end.frames = r.frames;
  try {
    served(connection_.call(vault_, end));
  } catch (...) {
    ended_ = true;
    if (output.take_back) output.take_back();
    throw;
  }
  ended_ = true;
  result.bytes = r.bytes;
  result.frames = r.frames;
}

void RemoteFile::fail(const Error& e) noexcept {
  if (!running()) return;
  ended_ = true;
  req::FileEnd end;
  end.code = e.code();
  end.message = e.what();
  if (const auto* s = dynamic_cast<const signals::Interrupted*>(&e)) end.signal = s->signal();
  try {
    connection_.call(vault_, end);
  } catch (...) {
    // The agent ends it as interrupted when this connection closes.
  }
}

void RemoteFile::fail_before_start(const Error& e) noexcept {
  if (attempted_) return;
  attempted_ = true;
  req::FileFailed f;
  f.action = action_;
  f.name = name_;
  f.code = e.code();
  if (const auto* s = dynamic_cast<const signals::Interrupted*>(&e)) f.signal = s->signal();
  try {
    connection_.call(vault_, f);
  } catch (...) {
  }
}

// ---- agent status, agent stop ----

std::string Connection::control_json(std::uint16_t op) {
  const SecureBytes reply = exchange(control(op));
  wire::Reader in(reply.view());
  parse_reply_head(in);
  const std::optional<ByteView> text = in.bytes();
  if (!text || !in.at_end()) {
    throw Error(Code::unavailable,
                fmt::format("the answer of {} could not be read", path_.string()));
  }
  return std::string(as_chars(*text));
}

std::string status(const std::string& socket_flag) {
  return connect_or_fail(socket_flag).control_json(kOpAgentStatus);
}

void stop(const std::string& socket_flag) {
  pid_t pid = 0;
  Connection c = connect_or_fail(socket_flag, &pid);
  const SecureBytes reply = c.exchange(control(kOpAgentStop));
  wire::Reader in(reply.view());
  parse_reply_head(in);
  wait_for_exit(pid);
}

}  // namespace kms::agent
