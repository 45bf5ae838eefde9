// What a kmsctl command uses to reach a running agent: the socket it names (--socket,
// KMSCTL_AGENT_SOCK), a connection that sends requests and reads their replies, a file session
// whose data key the agent wraps or unwraps while this process streams the file, and
// `agent status` and `agent stop`.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "agent/protocol.hpp"
#include "base/posix.hpp"
#include "core/fields.hpp"
#include "kms/requests.hpp"
#include "kms/service.hpp"

namespace kms::agent {

// KMSCTL_AGENT_SOCK, if it is set and the directory that holds it is this user's alone (as the
// agent makes it): in a directory someone else can write, the socket could be theirs by the
// time a command connects. Null otherwise: the command runs in its own process.
const char* trusted_socket_in_env();
// Whether the directory that holds `socket` is this user's alone (as trusted_socket_in_env asks
// of KMSCTL_AGENT_SOCK): for a socket named by a profile.
bool trusted_socket(const std::string& socket);

// `flag` (--socket) if given, else KMSCTL_AGENT_SOCK; Code::usage when neither names one.
std::string socket_from(const std::string& flag);

// One connection to an agent: requests one at a time, each answered before the next.
class Connection {
 public:
  // Nothing when no agent listens at `path`; Code::refused when a process of another uid does
  // (it would receive this process's requests). `agent_pid`: the pid of the process that
  // listens.
  static std::optional<Connection> open(const std::filesystem::path& path,
                                        pid_t* agent_pid = nullptr);
  // A connection to the `kmsctl serve` at `path` (of any user; connect_to_service checks its
  // directory): Code::unavailable when none listens there.
  static Connection open_service(const std::filesystem::path& path);

  // Sends one request for `vault` (absolute) and returns the response; nothing when the agent
  // does not serve that vault. An error reply is thrown as its Error; a connection lost before
  // the reply is Code::unavailable.
  template <class R>
  std::optional<typename R::Response> call(const std::string& vault, const R& request) {
    const wire::Writer frame = request_frame(static_cast<std::uint16_t>(R::op), vault,
                                             [&](wire::Writer& w) { wire::encode(w, request); });
    const SecureBytes reply = exchange(frame);
    wire::Reader in(reply.view());
    if (parse_reply_head(in) == Status::local) return std::nullopt;
    std::optional<typename R::Response> response = wire::decode<typename R::Response>(in);
    if (!response) throw lost();
    return response;
  }
  // Whether the agent serves `vault` (kOpAgentHello).
  bool serves(const std::string& vault);
  // One frame out, the reply's payload back.
  SecureBytes exchange(const wire::Writer& frame);
  // A control request (status, reload) without fields, whose reply is a JSON text.
  std::string control_json(std::uint16_t op);

 private:
  Connection(posix::Fd fd, std::filesystem::path path)
      : fd_(std::move(fd)), path_(std::move(path)) {}
  Error lost() const;
  posix::Fd fd_;
  std::filesystem::path path_;
};

// A file encrypt or decrypt whose data key an agent wraps or unwraps (and audits, as
// FileOperations::encrypt does) while this process streams the file: the agent never sees the
// file. One connection for the whole file; if this process dies, the agent ends the operation.
class RemoteFile final : public FileSession {
 public:
  // keys: the keys to wrap for (encrypt); none to decrypt.
  RemoteFile(Connection connection, std::string vault, Action action, std::string name,
             std::vector<std::string> keys = {});
  std::vector<envelope::Recipient> wrap(ByteView data_key, const Context& context) override;
  SecureBytes unwrap(const envelope::Header& header) override;
  Bytes rewrap(envelope::Header& header, const std::optional<std::string>& to_key) override;
  void finish(const FileResult& r, const FileOutput& output) override;
  void fail(const Error& e) noexcept override;
  void fail_before_start(const Error& e) noexcept override;

 private:
  Connection connection_;
  std::string vault_;
  Action action_;
  std::string name_;
  std::vector<std::string> keys_;
};

// `agent status`: the agent's JSON status object.
std::string status(const std::string& socket_flag);
// `agent stop`: asks the agent to stop and waits (up to 5 s) for its process to exit.
void stop(const std::string& socket_flag);

}  // namespace kms::agent
