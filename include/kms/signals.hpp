// Holding back the signals that end a process by default (SIGINT, SIGTERM, SIGHUP, ...) while a
// step that must not be cut in half runs: a write to the token's files, a rename into place.
// SIGKILL cannot be held back; what it can interrupt must be repairable (docs/SECURITY.md §12).
#pragma once

#include <signal.h>

namespace kms::signals {

// Blocks the catchable terminating signals in the calling thread until destruction, which
// restores the previous mask: a signal that arrived meanwhile is then delivered, after the step.
// Nests: an inner Deferred restores the (still blocking) outer mask.
class Deferred {
 public:
  Deferred() noexcept;
  ~Deferred();
  Deferred(const Deferred&) = delete;
  Deferred& operator=(const Deferred&) = delete;

 private:
  sigset_t old_;
};

// The set Deferred blocks; threads that must never take these signals block it for good.
const sigset_t& terminating() noexcept;

}  // namespace kms::signals
