#include "agent/transport.hpp"

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

bool send_message(int sock, ByteView msg, std::span<const int> fds) {
  iovec iov{const_cast<std::uint8_t*>(msg.data()), msg.size()};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))] = {};
  if (!fds.empty()) {
    h.msg_control = control;
    h.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &h, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n) == msg.size();
    if (errno != EINTR) return false;
  }
}

std::optional<Bytes> receive_message(int sock, std::vector<posix::Fd>* fds) {
  Bytes buf(kMaxMessage + 1);
  iovec iov{buf.data(), buf.size()};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))] = {};
  h.msg_control = control;
  h.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &h, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::nullopt;
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      posix::Fd owned(fd);  // closed unless the caller takes it
      if (fds != nullptr) fds->push_back(std::move(owned));
    }
  }
  if (n == 0 || (h.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return buf;
}

std::optional<posix::Fd> connect_to(const fs::path& path, pid_t* agent_pid) {
  const sockaddr_un a = address_of(path);
  posix::Fd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
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

DirTrust trust_of_dir(const fs::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return DirTrust::missing;
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) return DirTrust::shared;
  return DirTrust::owned_alone;
}

}  // namespace kms::agent
