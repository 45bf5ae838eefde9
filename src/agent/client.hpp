// What a kmsctl command uses to reach a running agent: the socket it names (--socket,
// KMSCTL_AGENT_SOCK), one request and its reply, and the three uses of that: a whole command
// run in the agent, the values of `kmsctl exec` read there, and `agent status` and `agent stop`.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "agent/protocol.hpp"
#include "kms/secure.hpp"

namespace kms::agent {

// KMSCTL_AGENT_SOCK, if it is set and the directory that holds it is this user's alone (as the
// agent makes it): in a directory someone else can write, the socket could be theirs by the
// time a command connects. Null otherwise: the command runs in its own process.
const char* trusted_socket_in_env();

// `flag` (--socket) if given, else KMSCTL_AGENT_SOCK; Code::usage when neither names one.
std::string socket_from(const std::string& flag);

// The reply to `request`, sent with `fds`. Nothing when no agent listens at `path`; throws
// Code::unavailable when it closes the connection without a well-formed reply. `between` runs
// once the request is sent (exec reads its values there); false: the agent went away.
std::optional<Reply> call(const std::filesystem::path& path, const Bytes& request,
                          std::span<const int> fds = {}, pid_t* agent_pid = nullptr,
                          const std::function<bool()>& between = {});

// Runs the command line argv[1..] in the agent at `socket` with this process's standard input,
// output and error and working directory, on `vault` (absolute). Its exit code; nothing when
// the agent leaves it to this process (another vault, a command it does not serve, a request
// too long for one message). Throws the agent's refusal as an Error.
std::optional<int> forward(const char* socket, const std::filesystem::path& vault, int argc,
                           const char* const* argv);

// For exec: the values of the (secret, variable) bindings at `stage`, read by the agent at
// `socket` on `vault` (one audited read each, naming `command`). Nothing: read them in this
// process.
std::optional<std::vector<SecureBytes>> exec_values(
    const char* socket, const std::filesystem::path& vault,
    const std::vector<std::pair<std::string, std::string>>& bindings, const std::string& stage,
    const std::string& command);

// `kmsctl agent status`: the agent's status, a JSON document.
std::string status(const std::string& socket_flag);
// `kmsctl agent stop`: stops the agent and waits (up to 5 s) for its process to exit. Its
// socket is gone already: another agent can start at once.
void stop(const std::string& socket_flag);

}  // namespace kms::agent
