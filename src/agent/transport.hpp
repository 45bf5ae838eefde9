// The agent's Unix socket plumbing, for both ends: addresses, the peer's credentials, one
// SOCK_SEQPACKET message with its descriptors (SCM_RIGHTS), and the check that the directory
// holding a socket is this user's alone.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <filesystem>
#include <optional>
#include <span>
#include <vector>

#include "base/posix.hpp"
#include "kms/secure.hpp"

namespace kms::agent {

// At most this many descriptors travel with one message.
inline constexpr std::size_t kMaxFds = 4;

// Code::usage when the path does not fit a sockaddr_un.
sockaddr_un address_of(const std::filesystem::path& path);

// The credentials of the process at the other end of a connected socket (SO_PEERCRED).
ucred peer_of(int fd);

// One message, with `fds` (at most kMaxFds) as SCM_RIGHTS. False when the peer is gone.
bool send_message(int sock, ByteView msg, std::span<const int> fds = {});

// One message and the descriptors that came with it (at most kMaxFds; closed unless `fds`
// takes them). Nothing at the end of the stream, on a timeout, or for a message longer than
// kMaxMessage + 1 bytes (that one byte more tells the parser the message is too long).
std::optional<Bytes> receive_message(int sock, std::vector<posix::Fd>* fds = nullptr);

// Connects to the agent at `path` and checks that it runs as this user (Code::refused
// otherwise): a socket of someone else's would receive this process's input and output.
// Nothing when no agent listens there. `agent_pid`: the pid of the process that listens.
std::optional<posix::Fd> connect_to(const std::filesystem::path& path, pid_t* agent_pid = nullptr);

// Whether `dir` can hold a socket only this user can replace: a directory this user owns that
// no one else can write (owned_alone), or not (shared), or no directory at all (missing).
enum class DirTrust { missing, shared, owned_alone };
DirTrust trust_of_dir(const std::filesystem::path& dir);

}  // namespace kms::agent
