// Unit tests of the agent's socket plumbing (src/agent/transport.hpp): one length-prefixed frame
// on a stream socket and how reading one ends, the peer's credentials, and the check of a
// socket's directory.
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
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
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) == 0);
    a.reset(s[0]);
    b.reset(s[1]);
  }
};

// A frame of `n` payload bytes: its length prefix and n bytes of a pattern.
wire::Writer frame_of(std::size_t n) {
  wire::Writer w;
  w.u32(static_cast<std::uint32_t>(n));
  for (std::size_t i = 0; i < n; ++i) w.u8(static_cast<std::uint8_t>(i * 7));
  return w;
}

void send_raw(int fd, const Bytes& b) {
  REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size()));
}

}  // namespace

TEST_CASE("a frame arrives whole: its payload, without the length prefix") {
  SocketPair sp;
  const wire::Writer f = request_frame(kOpAgentStatus, "/v", [](wire::Writer&) {});
  REQUIRE(write_frame(sp.a.get(), f));
  Frame got = read_frame(sp.b.get(), kMaxRequest);
  REQUIRE(got.status == FrameStatus::ok);
  CHECK(got.size == f.size() - 4);
  CHECK(std::ranges::equal(got.payload.view(), f.view().subspan(4)));
}

TEST_CASE("frames follow each other on one connection; an empty payload is a frame") {
  SocketPair sp;
  REQUIRE(write_frame(sp.a.get(), frame_of(0)));
  REQUIRE(write_frame(sp.a.get(), frame_of(3)));
  Frame first = read_frame(sp.b.get(), 16);
  CHECK(first.status == FrameStatus::ok);
  CHECK(first.payload.size() == 0);
  Frame second = read_frame(sp.b.get(), 16);
  CHECK(second.status == FrameStatus::ok);
  CHECK(std::ranges::equal(second.payload.view(), Bytes{0, 7, 14}));
}

TEST_CASE("a frame larger than the socket's buffer arrives whole, up to the limit exactly") {
  SocketPair sp;
  const wire::Writer f = frame_of(kMaxRequest);
  bool sent = false;
  std::thread writer([&] { sent = write_frame(sp.a.get(), f); });
  Frame got = read_frame(sp.b.get(), kMaxRequest);
  writer.join();
  CHECK(sent);
  REQUIRE(got.status == FrameStatus::ok);
  CHECK(got.payload.size() == kMaxRequest);
  CHECK(std::ranges::equal(got.payload.view(), f.view().subspan(4)));
}

TEST_CASE("a frame announcing more than the limit is too_large, read no further") {
  SocketPair sp;
  send_raw(sp.a.get(), Bytes{0x00, 0x10, 0x00, 0x01});  // kMaxRequest + 1
  Frame got = read_frame(sp.b.get(), kMaxRequest);
  CHECK(got.status == FrameStatus::too_large);
  CHECK(got.size == kMaxRequest + 1);
  CHECK(got.payload.size() == 0);
  send_raw(sp.a.get(), Bytes{0xff, 0xff, 0xff, 0xff});
  got = read_frame(sp.b.get(), kMaxReply);
  CHECK(got.status == FrameStatus::too_large);
  CHECK(got.size == 0xffffffffu);
}

TEST_CASE("the peer closing before a frame is closed; in the middle of one, cut") {
  {
    SocketPair sp;
    sp.a.reset();
    CHECK(read_frame(sp.b.get(), kMaxRequest).status == FrameStatus::closed);
  }
  {
    SocketPair sp;  // in the length prefix
    send_raw(sp.a.get(), Bytes{0, 0});
    sp.a.reset();
    CHECK(read_frame(sp.b.get(), kMaxRequest).status == FrameStatus::cut);
  }
  {
    SocketPair sp;  // in the payload
    send_raw(sp.a.get(), Bytes{0, 0, 0, 5, 'a', 'b'});
    sp.a.reset();
    CHECK(read_frame(sp.b.get(), kMaxRequest).status == FrameStatus::cut);
  }
  {
    SocketPair sp;  // after a whole frame
    REQUIRE(write_frame(sp.a.get(), frame_of(2)));
    sp.a.reset();
    CHECK(read_frame(sp.b.get(), kMaxRequest).status == FrameStatus::ok);
    CHECK(read_frame(sp.b.get(), kMaxRequest).status == FrameStatus::closed);
  }
}

TEST_CASE("a frame not whole by the deadline is a timeout; without one, reading waits") {
  using namespace std::chrono_literals;
  {
    SocketPair sp;  // nothing sent
    const auto start = Clock::now();
    CHECK(read_frame(sp.b.get(), kMaxRequest, start + 100ms).status == FrameStatus::timeout);
    CHECK(Clock::now() - start >= 100ms);
  }
  {
    SocketPair sp;  // a part of the frame, and the rest never
    send_raw(sp.a.get(), Bytes{0, 0, 0, 5, 'a'});
    CHECK(read_frame(sp.b.get(), kMaxRequest, Clock::now() + 100ms).status == FrameStatus::timeout);
  }
  {
    SocketPair sp;  // a deadline already past
    CHECK(read_frame(sp.b.get(), kMaxRequest, Clock::now() - 1s).status == FrameStatus::timeout);
  }
  {
    SocketPair sp;  // the rest arrives in time
    send_raw(sp.a.get(), Bytes{0, 0, 0, 2, 'a'});
    ssize_t sent = 0;
    std::thread late([&] {
      std::this_thread::sleep_for(50ms);
      sent = ::send(sp.a.get(), "b", 1, MSG_NOSIGNAL);
    });
    Frame got = read_frame(sp.b.get(), kMaxRequest, Clock::now() + 5s);
    late.join();
    CHECK(sent == 1);
    CHECK(got.status == FrameStatus::ok);
    CHECK(got.payload.chars() == "ab");
  }
}

TEST_CASE("writing to a peer that is gone fails, without SIGPIPE") {
  SocketPair sp;
  sp.b.reset();
  CHECK_FALSE(write_frame(sp.a.get(), frame_of(10)));
}

TEST_CASE("the peer of a socket pair is this process") {
  SocketPair sp;
  const ucred c = peer_of(sp.b.get());
  CHECK(c.pid == ::getpid());
  CHECK(c.uid == ::geteuid());
}

std::vector<gid_t> sorted(std::vector<gid_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_CASE("the groups of a peer are those its process holds, as the kernel recorded them") {
  SocketPair sp;
  std::vector<gid_t> mine(static_cast<std::size_t>(::getgroups(0, nullptr)));
  mine.resize(static_cast<std::size_t>(::getgroups(static_cast<int>(mine.size()), mine.data())));
  CHECK(sorted(peer_groups(sp.b.get())) == sorted(mine));
  if (::geteuid() != 0) return;  // changing a process's groups needs root
  // A process that dropped to other groups connects with those, whatever /etc/group says.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const gid_t groups[] = {4243, 4242, 70000};
    if (::setgroups(3, groups) != 0) ::_exit(2);
    SocketPair other;
    ::_exit(sorted(peer_groups(other.b.get())) == std::vector<gid_t>{4242, 4243, 70000} ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
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
