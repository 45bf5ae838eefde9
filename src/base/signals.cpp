#include "kms/signals.hpp"

#include <pthread.h>

#include <initializer_list>

namespace kms::signals {
namespace {

sigset_t make_terminating() noexcept {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM, SIGUSR1, SIGUSR2, SIGXCPU, SIGXFSZ,
                  SIGVTALRM, SIGPROF}) {
    sigaddset(&s, sig);
  }
  return s;
}

}  // namespace

const sigset_t& terminating() noexcept {
  static const sigset_t set = make_terminating();
  return set;
}

Deferred::Deferred() noexcept { ::pthread_sigmask(SIG_BLOCK, &terminating(), &old_); }

Deferred::~Deferred() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

}  // namespace kms::signals
