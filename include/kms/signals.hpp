// Holding back the signals that end a process by default (SIGINT, SIGTERM, SIGHUP, ...) while a
// step that must not be cut in half runs: a write to the token's files, a rename into place.
// SIGKILL cannot be held back; what it can interrupt must be repairable (docs/SECURITY.md §12).
//
// And catching SIGINT, SIGTERM and SIGHUP while a long step runs that must stop cleanly rather
// than die in the middle (a file streamed by `kmsctl file encrypt`): see Catch.
#pragma once

#include <signal.h>

#include <string>

#include "kms/error.hpp"

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

// While a Catch lives, SIGINT, SIGTERM and SIGHUP no longer end the process: their handler
// only notes the first one caught (caught()) and wakes await(). A long step checks between two
// units of work (check(), await()) and stops by throwing Interrupted, so that its destructors,
// its failure record and its exit code run as for any other error. The handler is installed with
// SA_RESTART: other system calls go on as if no signal had come. Destruction restores the
// previous handlers. One Catch at a time, made and destroyed by the main thread.
class Catch {
 public:
  Catch();
  ~Catch();
  Catch(const Catch&) = delete;
  Catch& operator=(const Catch&) = delete;

 private:
  struct sigaction old_[3];
};

// The signal caught since the current Catch began; 0 when none was, or no Catch lives.
int caught() noexcept;
// Throws Interrupted when a signal was caught.
void check();
// Waits until `fd` is ready for `events` (POLLIN or POLLOUT): returns at once when no Catch
// lives (the caller's read or write then waits), throws Interrupted once a signal is caught.
void await(int fd, short events);

// A step stopped by a caught signal. Code::failed for code that knows only kms::Error; the
// audit log names it `interrupted`, and kmsctl exits with 128 + the signal's number.
class Interrupted : public Error {
 public:
  explicit Interrupted(int signo);
  int signal() const noexcept { return signo_; }

 private:
  int signo_;
};

// "SIGINT", "SIGTERM", "SIGHUP", else "signal N".
std::string name(int signo);

}  // namespace kms::signals
