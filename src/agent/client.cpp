#include "agent/client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "agent/transport.hpp"
#include "base/posix.hpp"
#include "kms/error.hpp"
#include "kms/secrets.hpp"

namespace kms::agent {
namespace fs = std::filesystem;
namespace {

// KMSCTL_AGENT_SOCK, or null when it is unset or empty (no agent).
const char* socket_in_env() {
  const char* env = std::getenv("KMSCTL_AGENT_SOCK");
  return env != nullptr && *env != '\0' ? env : nullptr;
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

// Waits (up to 5 s) for process `pid` to exit.
void wait_for_exit(pid_t pid) {
  const posix::Fd p(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!p) return;  // gone already
  pollfd w{p.get(), POLLIN, 0};
  while (::poll(&w, 1, 5000) < 0 && errno == EINTR) {
  }
}

}  // namespace

const char* trusted_socket_in_env() {
  const char* sock = socket_in_env();
  if (sock == nullptr) return nullptr;
  if (trust_of_dir(fs::absolute(fs::path(sock)).parent_path()) != DirTrust::owned_alone) {
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

std::optional<Reply> call(const fs::path& path, const Bytes& request, std::span<const int> fds,
                          pid_t* agent_pid, const std::function<bool()>& between) {
  std::optional<posix::Fd> s = connect_to(path, agent_pid);
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

std::optional<int> forward(const char* socket, const fs::path& vault, int argc,
                           const char* const* argv) {
  Request req{Kind::run, {vault.string()}};
  for (int i = 1; i < argc; ++i) req.args.emplace_back(argv[i]);
  const std::optional<Bytes> msg = encode(req);
  if (!msg) return std::nullopt;  // too long for one message
  posix::Fd cwd(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cwd) return std::nullopt;
  for (int i = 0; i < 3; ++i) {
    if (::fcntl(i, F_GETFD) < 0) return std::nullopt;  // a closed standard descriptor
  }
  const int fds[] = {0, 1, 2, cwd.get()};
  const std::optional<Reply> r = call(socket, *msg, fds);
  if (!r || r->answer == Answer::local) return std::nullopt;
  if (r->answer == Answer::done) return r->code;
  if (r->answer == Answer::refused) throw Error(static_cast<Code>(r->code), r->text, r->hint);
  throw Error(Code::failed, "the agent gave an answer this kmsctl does not know");
}

std::optional<std::vector<SecureBytes>> exec_values(
    const char* socket, const fs::path& vault,
    const std::vector<std::pair<std::string, std::string>>& bindings, const std::string& stage,
    const std::string& command) {
  Request req{Kind::exec, {vault.string(), stage, command}};
  for (const auto& [name, env] : bindings) {
    req.args.push_back(name);
    req.args.push_back(env);
  }
  const std::optional<Bytes> msg = encode(req);
  if (!msg) return std::nullopt;  // too many secrets for one message: in this process
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return std::nullopt;
  posix::Fd in(p[0]), out(p[1]);
  const int fds[] = {out.get()};
  // The agent writes every value before it answers; a 64 KiB one does not fit the pipe, so they
  // are read as it writes them.
  std::vector<SecureBytes> values;
  auto read_values = [&] {
    out.reset();
    for (size_t i = 0; i < bindings.size(); ++i) {
      std::uint8_t len[4];
      if (posix::read_full(in.get(), len) != 4) return true;  // it failed: the answer says why
      const size_t n = size_t{len[0]} << 24 | size_t{len[1]} << 16 | size_t{len[2]} << 8 | len[3];
      if (n > secrets::kMaxValueSize) return false;
      SecureBytes v(n);
      if (posix::read_full(in.get(), v.span()) != n) return false;
      values.push_back(std::move(v));
    }
    return true;
  };
  const std::optional<Reply> r = call(socket, *msg, fds, nullptr, read_values);
  if (!r || r->answer == Answer::local) return std::nullopt;
  if (r->answer == Answer::refused) throw Error(static_cast<Code>(r->code), r->text, r->hint);
  if (r->answer != Answer::done || values.size() != bindings.size()) {
    throw Error(Code::unavailable, "the agent answered without every value",
                "run the command without the agent (unset KMSCTL_AGENT_SOCK)");
  }
  return values;
}

std::string status(const std::string& socket_flag) {
  return call_agent(socket_flag, Kind::status).text;
}

void stop(const std::string& socket_flag) {
  pid_t pid = 0;
  call_agent(socket_flag, Kind::stop, &pid);
  wait_for_exit(pid);
}

}  // namespace kms::agent
