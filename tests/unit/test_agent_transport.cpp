// Unit tests of the agent's socket plumbing (src/agent/transport.hpp): one message and its
// descriptors per record, the limits, and the check of a socket's directory.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "support.hpp"
#include <doctest/doctest.h>

#include "agent/protocol.hpp"
#include "agent/transport.hpp"
#include "kms/error.hpp"

using namespace kms;
using namespace kms::agent;
using kms::posix::Fd;
namespace fs = std::filesystem;

namespace {

struct SocketPair {
  Fd a, b;
  SocketPair() {
    int s[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) == 0);
    a.reset(s[0]);
    b.reset(s[1]);
  }
};

}  // namespace

TEST_CASE("a message arrives whole with its descriptors, which the receiver then owns") {
  SocketPair sp;
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  Fd r(p[0]), w(p[1]);
  const int fds[] = {w.get()};
  REQUIRE(send_message(sp.a.get(), as_bytes("hello"), fds));
  w.reset();  // only the received copy keeps the pipe's write end open

  std::vector<Fd> got;
  const auto msg = receive_message(sp.b.get(), &got);
  REQUIRE(msg);
  CHECK(as_chars(*msg) == "hello");
  REQUIRE(got.size() == 1);
  CHECK((::fcntl(got[0].get(), F_GETFD) & FD_CLOEXEC) != 0);
  REQUIRE(::write(got[0].get(), "x", 1) == 1);
  char c = 0;
  CHECK(::read(r.get(), &c, 1) == 1);
  CHECK(c == 'x');
}

TEST_CASE("a message beyond kMaxMessage is cut off or refused; the end of the stream is nothing") {
  SocketPair sp;
  // One byte more reaches the parser, which refuses it; more than that is not received.
  REQUIRE(send_message(sp.a.get(), Bytes(kMaxMessage + 1, 'a')));
  const auto one_more = receive_message(sp.b.get());
  REQUIRE(one_more);
  CHECK(one_more->size() == kMaxMessage + 1);
  CHECK_FALSE(parse_request(*one_more));
  REQUIRE(send_message(sp.a.get(), Bytes(kMaxMessage + 100, 'a')));
  CHECK_FALSE(receive_message(sp.b.get()));
  sp.a.reset();
  CHECK_FALSE(receive_message(sp.b.get()));
}

TEST_CASE("the peer of a socket pair is this process") {
  SocketPair sp;
  const ucred c = peer_of(sp.b.get());
  CHECK(c.pid == ::getpid());
  CHECK(c.uid == ::geteuid());
}

TEST_CASE("a socket path longer than sockaddr_un holds is a usage error") {
  CHECK(address_of("/tmp/agent.sock").sun_family == AF_UNIX);
  try {
    address_of("/" + std::string(200, 'x'));
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == Code::usage);
  }
}

TEST_CASE("a socket's directory is trusted only when it is this user's and no one else writes it") {
  kms::test::TempDir tmp;
  const fs::path dir = tmp.path() / "d";
  CHECK(trust_of_dir(dir) == DirTrust::missing);
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  CHECK(trust_of_dir(dir) == DirTrust::owned_alone);
  REQUIRE(::chmod(dir.c_str(), 0770) == 0);
  CHECK(trust_of_dir(dir) == DirTrust::shared);
  REQUIRE(::chmod(dir.c_str(), 0702) == 0);
  CHECK(trust_of_dir(dir) == DirTrust::shared);
  REQUIRE(::chmod(dir.c_str(), 0755) == 0);
  CHECK(trust_of_dir(dir) == DirTrust::owned_alone);
  CHECK(trust_of_dir("/") == (::geteuid() == 0 ? DirTrust::owned_alone : DirTrust::shared));
  CHECK(trust_of_dir(tmp.path() / "d" / "none") == DirTrust::missing);
}
