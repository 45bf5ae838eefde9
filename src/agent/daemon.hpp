// Starting an agent: in this process (--foreground) or in a detached child that holds nothing of
// its parent's, which tells the starting process when it serves or why it could not.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include "agent/server.hpp"
#include "kms/secure.hpp"

namespace kms::agent {

// "90s", "15m", "2h", "1d" (a bare number is seconds), 1 s … 30 days; Code::usage naming
// `flag` otherwise.
std::chrono::seconds parse_duration(const std::string& text, const char* flag);

struct StartOptions {
  std::string socket;  // --socket: empty for a new private directory
  Limits limits;
  bool foreground = false;
};

// Opens `vault` (absolute) with `pin` and serves it until stopped, idle or out of lifetime.
// `started` runs once the agent serves, with its socket and pid: in this process with
// --foreground (start returns when the agent stops), else in the starting process, which
// returns then, while the agent runs on in its child (where start returns when it stops). The
// agent's errors until it serves are thrown in the starting process.
void start(const std::filesystem::path& vault, SecureBytes pin, const StartOptions& options,
           const std::function<void(const std::filesystem::path& socket, pid_t pid)>& started);

}  // namespace kms::agent
