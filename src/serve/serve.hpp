// `kmsctl serve`: the vault opened once and served to several users over Unix sockets, each
// request decided by policy (docs/SERVICE.md). The sockets are the ones systemd passes (socket
// activation, LISTEN_FDS) or the ones named here; the policy file is loaded at start and on
// SIGHUP or `kmsctl serve reload`.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "kms/secure.hpp"

namespace kms::serve {

struct Options {
  std::string socket;            // the full socket; empty: systemd's, or $RUNTIME_DIRECTORY's
  std::string use_only_socket;   // empty: none (unless systemd passes one)
  std::filesystem::path policy;  // empty: a policy that allows nothing
};

// Serves `vault` (absolute) until SIGTERM or SIGINT; `started` runs once it serves, with its
// status (sockets, policy). Errors before it serves (a policy with problems, a socket in a
// directory others can write, the vault) are thrown.
void run(const std::filesystem::path& vault, SecureBytes pin, const Options& options,
         const std::function<void(const nlohmann::json& status)>& started);

}  // namespace kms::serve
