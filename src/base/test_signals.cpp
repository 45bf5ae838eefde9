// Unit tests of kms::signals::Catch: while one lives, SIGINT, SIGTERM and SIGHUP are noted
// instead of ending the process, check() and await() turn them into Interrupted, and the
// previous handlers come back when it ends.
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "kms/signals.hpp"

using namespace kms;

namespace {

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { REQUIRE(::pipe(fd) == 0); }
  ~Pipe() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
};

std::optional<int> interrupted_by(const std::function<void()>& f) {
  try {
    f();
  } catch (const signals::Interrupted& e) {
    return e.signal();
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("without a Catch nothing is caught and await returns at once") {
  CHECK(signals::caught() == 0);
  CHECK_NOTHROW(signals::check());
  Pipe p;  // empty: a poll on it would wait for ever
  CHECK_NOTHROW(signals::await(p.fd[0], POLLIN));
}

TEST_CASE("a signal caught is noted, not fatal, and check() throws Interrupted naming it") {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    CAPTURE(sig);
    signals::Catch catching;
    CHECK(signals::caught() == 0);
    REQUIRE(::raise(sig) == 0);
    CHECK(signals::caught() == sig);
    CHECK(interrupted_by([] { signals::check(); }) == sig);
    try {
      signals::check();
    } catch (const signals::Interrupted& e) {
      CHECK(e.code() == Code::failed);
      CHECK(std::string(e.what()) == "interrupted by " + signals::name(sig));
      CHECK(!e.hint().empty());
    }
  }
  CHECK(signals::caught() == 0);  // a new Catch starts afresh; none lives now
}

TEST_CASE("the first signal caught is the one reported") {
  signals::Catch catching;
  ::raise(SIGTERM);
  ::raise(SIGINT);
  CHECK(signals::caught() == SIGTERM);
}

TEST_CASE("await ends a wait on an empty pipe when another thread's signal is caught") {
  signals::Catch catching;
  Pipe p;
  std::thread later([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(::getpid(), SIGTERM);
  });
  const auto t0 = std::chrono::steady_clock::now();
  const std::optional<int> sig = interrupted_by([&] { signals::await(p.fd[0], POLLIN); });
  later.join();
  CHECK(sig == SIGTERM);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

TEST_CASE("await returns when the descriptor is ready and nothing was caught") {
  signals::Catch catching;
  Pipe p;
  REQUIRE(::write(p.fd[1], "x", 1) == 1);
  CHECK_NOTHROW(signals::await(p.fd[0], POLLIN));
  CHECK_NOTHROW(signals::await(p.fd[1], POLLOUT));
}

TEST_CASE("the previous handlers come back when the Catch ends") {
  struct sigaction before {};
  REQUIRE(::sigaction(SIGHUP, nullptr, &before) == 0);
  {
    signals::Catch catching;
    struct sigaction during {};
    REQUIRE(::sigaction(SIGHUP, nullptr, &during) == 0);
    CHECK((during.sa_handler != before.sa_handler));
    CHECK((during.sa_flags & SA_RESTART) != 0);
  }
  struct sigaction after {};
  REQUIRE(::sigaction(SIGHUP, nullptr, &after) == 0);
  CHECK((after.sa_handler == before.sa_handler));
}
