// Rotation hooks and the per-secret rotation lock.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <sys/wait.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/secrets.hpp"

extern char** environ;

namespace kms::secrets {
namespace {

// Values fit in a pipe's buffer once it is this large, so writing them never waits for the hook.
constexpr int kPipeSize = 1 << 20;
constexpr long kDefaultHookTimeout = 300;

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      throw Error(Code::failed, fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    }
    // Keep both ends above the descriptors the hook receives (0-3), so dup2 always copies.
    r = lift(fds[0]);
    w = lift(fds[1]);
    ::fcntl(w, F_SETPIPE_SZ, kPipeSize);
  }
  ~Pipe() {
    close_r();
    close_w();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_r() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_w() {
    if (w >= 0) ::close(w);
    w = -1;
  }
  static int lift(int fd) {
    if (fd > 3) return fd;
    const int hi = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
    ::close(fd);
    if (hi < 0)
      throw Error(Code::failed, fmt::format("cannot duplicate a pipe: {}", std::strerror(errno)));
    return hi;
  }
};

void write_all(int fd, ByteView data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // the hook closed its end (EPIPE): it does not want the value
    off += static_cast<std::size_t>(n);
  }
}

// SIGPIPE ignored while values are written to a hook that may exit without reading them.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ign, &old_);
  }
  ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

// KMSCTL_HOOK_TIMEOUT seconds (default 300): a hook that runs longer is killed and the step fails.
std::chrono::milliseconds hook_timeout() {
  const char* v = std::getenv("KMSCTL_HOOK_TIMEOUT");
  char* end = nullptr;
  const long s = v ? std::strtol(v, &end, 10) : 0;
  if (v == nullptr || end == v || *end != '\0' || s <= 0)
    return std::chrono::seconds(kDefaultHookTimeout);
  return std::chrono::seconds(s);
}

}  // namespace

HookResult run_hook(const std::string& command, const HookCall& call) {
  Pipe in, cur, out;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.r, 0);
  // Standard output is the new value at `create`; at other steps it goes to kmsctl's stderr so
  // that kmsctl's own stdout stays data only.
  posix_spawn_file_actions_adddup2(&fa, call.step == "create" ? out.w : 2, 1);
  posix_spawn_file_actions_adddup2(&fa, cur.r, 3);

  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    if (kv.starts_with("KMSCTL_ROTATION_STEP=") || kv.starts_with("KMSCTL_SECRET_NAME=") ||
        kv.starts_with("KMSCTL_SECRET_ID=") || kv.starts_with("KMSCTL_CURRENT_VERSION_ID=") ||
        kv.starts_with("KMSCTL_PENDING_VERSION_ID=") || kv.starts_with("KMSCTL_PIN=")) {
      continue;
    }
    env.emplace_back(kv);
  }
  env.push_back("KMSCTL_ROTATION_STEP=" + call.step);
  env.push_back("KMSCTL_SECRET_NAME=" + call.secret_name);
  env.push_back("KMSCTL_SECRET_ID=" + call.secret_id);
  env.push_back("KMSCTL_CURRENT_VERSION_ID=" + std::to_string(call.current_version));
  env.push_back("KMSCTL_PENDING_VERSION_ID=" + std::to_string(call.pending_version));
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};

  // Its own process group, so that a hook that times out is killed with its children.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    throw Error(Code::failed,
                fmt::format("cannot start the rotation command: {}", std::strerror(rc)));
  }
  in.close_r();
  cur.close_r();
  out.close_w();
  {
    IgnoreSigpipe guard;
    write_all(in.w, call.pending);
    in.close_w();
    write_all(cur.w, call.current);
    cur.close_w();
  }
  HookResult res;
  const auto deadline = std::chrono::steady_clock::now() + hook_timeout();
  auto left_ms = [&] {
    const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<std::int64_t>(0, d.count()));
  };
  bool timed_out = false;
  SecureBytes buf(kMaxValueSize + 1);
  std::size_t len = 0;
  for (;;) {
    pollfd pfd{out.r, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, left_ms());
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      timed_out = true;
      break;
    }
    std::uint8_t scratch[4096];
    const ssize_t n = ::read(out.r, scratch, sizeof scratch);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const std::size_t take = std::min(static_cast<std::size_t>(n), buf.size() - len);
    std::memcpy(buf.data() + len, scratch, take);
    len += take;
    std::memset(scratch, 0, sizeof scratch);
  }
  if (timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, timed_out ? 0 : WNOHANG);
    if (w < 0 && errno == EINTR) continue;
    if (w == pid) break;
    if (w < 0) {
      throw Error(Code::failed,
                  fmt::format("cannot wait for the rotation command: {}", std::strerror(errno)));
    }
    if (left_ms() == 0) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (timed_out) {
    ::kill(-pid, SIGKILL);  // what is left of its process group
    res.failure =
        fmt::format("ran longer than {} s and was killed (KMSCTL_HOOK_TIMEOUT)",
                    std::chrono::duration_cast<std::chrono::seconds>(hook_timeout()).count());
    return res;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    res.ok = true;
  } else if (WIFEXITED(status)) {
    res.failure = fmt::format("exited with status {}", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    res.failure = fmt::format("was killed by signal {}", WTERMSIG(status));
  } else {
    res.failure = "ended abnormally";
  }
  if (res.ok && len > kMaxValueSize) {
    res.ok = false;
    res.failure = fmt::format("printed more than {} bytes", kMaxValueSize);
  }
  // One trailing newline ends the value; it is not part of it.
  if (len > 0 && buf.data()[len - 1] == '\n') --len;
  buf.truncate(len);
  res.output = std::move(buf);
  return res;
}

RotationLock::RotationLock(const std::filesystem::path& vault, std::string_view secret_id,
                           std::string_view secret_name) {
  const std::string path = vault.string() + ".rotate.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    throw Error(Code::failed, fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  }
  // A byte per secret: the first 32 bits of its id.
  const auto id = crypto::from_hex(std::string(secret_id.substr(0, 8)));
  off_t offset = 0;
  if (id) {
    for (std::uint8_t b : *id) offset = (offset << 8) | b;
  }
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = offset;
  fl.l_len = 1;
  if (::fcntl(fd_, F_OFD_SETLK, &fl) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EAGAIN || err == EACCES) {
      throw Error(Code::refused,
                  fmt::format("a rotation of secret {} is already running", secret_name),
                  "wait for it to finish, then run `kmsctl secret rotate` again if it failed");
    }
    throw Error(Code::failed, fmt::format("cannot lock {}: {}", path, std::strerror(err)));
  }
}

RotationLock::~RotationLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace kms::secrets
