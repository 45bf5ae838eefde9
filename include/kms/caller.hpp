// Who asks for an operation, as the kernel tells it (never as the caller claims), and how the
// request arrived. Every audit record names its caller (user name and uid) and its channel.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kms {

enum class Channel : std::uint8_t {
  direct,   // the caller's own kmsctl process opened the vault
  agent,    // a `kmsctl agent` served it over its socket
  service,  // `kmsctl serve` served it, for one of several users, by policy
};
std::string_view channel_name(Channel c) noexcept;

struct Caller {
  std::int64_t uid = 0;
  std::string user;                  // the uid's name, or "uid-N" when it has none
  std::vector<std::int64_t> groups;  // primary gid first, then the supplementary groups
  std::int64_t pid = 0;
  Channel channel = Channel::direct;
  // The machine the caller is on (gethostname; "" when unknown). A request over a Unix socket
  // comes from the same machine. Every record names it, as several hosts may share one vault.
  std::string host;

  // This process (real uid, its groups).
  static Caller current();
  // A process at the other end of a socket, from its kernel-given credentials: uid, gid and pid
  // (SO_PEERCRED) and supplementary groups (SO_PEERGROUPS). Only the user name is looked up.
  static Caller peer(std::int64_t uid, std::int64_t gid, std::int64_t pid,
                     const std::vector<std::int64_t>& supplementary, Channel channel);
  // `groups` as peer() makes it: the primary gid first, then each supplementary group once.
  static std::vector<std::int64_t> group_list(std::int64_t gid,
                                              const std::vector<std::int64_t>& supplementary);
};

}  // namespace kms
