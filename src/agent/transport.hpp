// The agent's Unix socket plumbing, for both ends: addresses, the peer's credentials, one
// length-prefixed frame on a stream socket (docs/FORMAT.md §13.1), and the check that the
// directory holding a socket is this user's alone.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <span>
#include <vector>

#include "base/posix.hpp"
#include "core/wire.hpp"
#include "kms/secure.hpp"

namespace kms::agent {

// Code::usage when the path does not fit a sockaddr_un.
sockaddr_un address_of(const std::filesystem::path& path);

// The credentials of the process at the other end of a connected socket (SO_PEERCRED).
ucred peer_of(int fd);
// Its supplementary groups, as the kernel recorded them when it connected (SO_PEERGROUPS): what
// the process holds, not what the group database says its user may have.
std::vector<gid_t> peer_groups(int fd);

// Writes one frame (its length prefix included). False when the peer is gone.
bool write_frame(int sock, const wire::Writer& frame);

using Clock = std::chrono::steady_clock;
enum class FrameStatus { ok, closed, timeout, too_large, cut };
struct Frame {
  FrameStatus status = FrameStatus::closed;
  std::size_t size = 0;  // the length the prefix announced (too_large: beyond max)
  SecureBytes payload;   // ok: the payload, in memory wiped when freed
};
// Reads one frame of at most `max` payload bytes, all of it before `deadline` if one is given:
// closed when the peer closed before a first byte, cut when it closed in the middle.
Frame read_frame(int sock, std::size_t max, std::optional<Clock::time_point> deadline = {});

// Connects to the agent at `path` and checks that it runs as this user (Code::refused
// otherwise): a socket of someone else's would receive this process's input and output.
// Nothing when no agent listens there. `agent_pid`: the pid of the process that listens.
std::optional<posix::Fd> connect_to(const std::filesystem::path& path, pid_t* agent_pid = nullptr);

// Connects to a `kmsctl serve` at `path`, which runs as any user, once the directory that holds
// the socket is one only that user or root can write (Code::refused otherwise: the socket could
// be someone else's). Nothing when no service listens there.
std::optional<posix::Fd> connect_to_service(const std::filesystem::path& path);

// Whether `dir` can hold a socket only this user can replace: a directory this user owns that
// no one else can write (owned_alone), or not (shared), or no directory at all (missing).
enum class DirTrust { missing, shared, owned_alone };
DirTrust trust_of_dir(const std::filesystem::path& dir);

}  // namespace kms::agent
