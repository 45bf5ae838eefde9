#include "agent/transport.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "agent/protocol.hpp"
#include "kms/error.hpp"

namespace kms::agent {
namespace fs = std::filesystem;

sockaddr_un address_of(const fs::path& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof a.sun_path) {
    throw Error(Code::usage, fmt::format("the socket path {} is too long", path.string()),
                fmt::format("a Unix socket path has at most {} bytes", sizeof a.sun_path - 1));
  }
  std::memcpy(a.sun_path, path.c_str(), path.native().size());
  return a;
}

ucred peer_of(int fd) {
  ucred c{};
  socklen_t len = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0) {
    throw Error(Code::failed,
                fmt::format("cannot read the peer of the agent socket: {}", std::strerror(errno)));
  }
  return c;
}

std::vector<gid_t> peer_groups(int fd) {
  std::vector<gid_t> groups(16);
  for (;;) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    // ERANGE: len now holds the size needed (the kernel allows at most NGROUPS_MAX groups).
    if (errno != ERANGE || len / sizeof(gid_t) <= groups.size()) {
      throw Error(Code::failed, fmt::format("cannot read the groups of the agent socket's peer: {}",
                                            std::strerror(errno)));
    }
    groups.resize(len / sizeof(gid_t));
  }
}

bool write_frame(int sock, const wire::Writer& frame) {
  const ByteView data = frame.view();
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::send(sock, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

Frame read_frame(int sock, std::size_t max, std::optional<Clock::time_point> deadline) {
  Frame f;
  std::uint8_t len[4];
  std::size_t want = sizeof len, got = 0;
  std::uint8_t* into = len;
  for (bool header = true;;) {
    while (got < want) {
      if (deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
        pollfd p{sock, POLLIN, 0};
        const int n = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          f.status = FrameStatus::timeout;
          return f;
        }
      }
      const ssize_t n = ::recv(sock, into + got, want - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        f.status = header && got == 0 ? FrameStatus::closed : FrameStatus::cut;
        return f;
      }
      got += static_cast<std::size_t>(n);
    }
    if (!header) return f;
    const std::size_t size =
        std::size_t{len[0]} << 24 | std::size_t{len[1]} << 16 | std::size_t{len[2]} << 8 | len[3];
    f.size = size;
    if (size > max) {
      f.status = FrameStatus::too_large;
      return f;
    }
    header = false;
    f.status = FrameStatus::ok;
    f.payload = SecureBytes(size);
    into = f.payload.data();
    want = size;
    got = 0;
  }
}

std::optional<posix::Fd> connect_to(const fs::path& path, pid_t* agent_pid) {
  const sockaddr_un a = address_of(path);
  posix::Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s)
    throw Error(Code::failed, fmt::format("cannot create a socket: {}", std::strerror(errno)));
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return std::nullopt;
  const ucred c = peer_of(s.get());
  if (c.uid != ::geteuid()) {
    throw Error(
        Code::refused,
        fmt::format("the agent socket {} belongs to a process of uid {}, not to you (uid {})",
                    path.string(), c.uid, ::geteuid()),
        "unset KMSCTL_AGENT_SOCK, or point it at your own agent");
  }
  if (agent_pid != nullptr) *agent_pid = c.pid;
  return s;
}

std::optional<posix::Fd> connect_to_service(const fs::path& path) {
  const sockaddr_un a = address_of(path);
  posix::Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s)
    throw Error(Code::failed, fmt::format("cannot create a socket: {}", std::strerror(errno)));
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return std::nullopt;
  const ucred c = peer_of(s.get());
  const fs::path dir = fs::absolute(path).parent_path();
  struct stat st {};
  const bool trusted = ::stat(dir.c_str(), &st) == 0 && (st.st_mode & 022) == 0 &&
                       (st.st_uid == 0 || st.st_uid == c.uid);
  if (!trusted) {
    throw Error(Code::refused,
                fmt::format("the service socket {} is in a directory that someone other than "
                            "root and the user of the process that listens (uid {}) can write: "
                            "the socket could be another user's",
                            path.string(), c.uid),
                "point KMSCTL_SERVER / --server at the socket in the service's own directory "
                "(e.g. /run/kmsctl)");
  }
  return s;
}

DirTrust trust_of_dir(const fs::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return DirTrust::missing;
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) return DirTrust::shared;
  return DirTrust::owned_alone;
}

}  // namespace kms::agent
