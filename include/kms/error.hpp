// kms::Error — the one error type of the project. Its code is the fixed vocabulary that the
// CLI maps, once, to exit codes (docs/ARCHITECTURE.md §6); its message names the object and its
// hint the next step.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace kms {

enum class Code {
  failed = 1,       // the operation failed (I/O, library, unexpected state)
  usage = 2,        // bad arguments or input from the user
  not_found = 3,    // a named object does not exist
  refused = 4,      // refused by state or policy
  integrity = 5,    // tampered data, wrong context, wrong key, broken chain
  unavailable = 6,  // vault or token unavailable: wrong PIN, missing module, locked
};

// Stable lower-case name of a code, as written into audit records and JSON output.
std::string_view code_name(Code c) noexcept;
inline int exit_code(Code c) noexcept { return static_cast<int>(c); }

class Error : public std::runtime_error {
 public:
  Error(Code code, std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), code_(code), hint_(std::move(hint)) {}
  Code code() const noexcept { return code_; }
  const std::string& hint() const noexcept { return hint_; }

 private:
  Code code_;
  std::string hint_;
};

}  // namespace kms
