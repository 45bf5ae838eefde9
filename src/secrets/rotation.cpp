// Rotation hooks and the per-secret rotation lock.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/posix.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "secrets/secret_store.hpp"

extern char** environ;

namespace kms::secrets {
namespace {

// Values fit in a pipe's buffer once it is this large, so writing them never waits for the hook.
constexpr int kPipeSize = 1 << 20;
constexpr long kDefaultHookTimeout = 300;

struct Pipe {
  posix::Fd r, w;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      throw Error(Code::failed, fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    }
    posix::Fd read_end(fds[0]), write_end(fds[1]);
    // Keep both ends above the descriptors the hook receives (0-3), so dup2 always copies.
    r = lift(std::move(read_end));
    w = lift(std::move(write_end));
    ::fcntl(w.get(), F_SETPIPE_SZ, kPipeSize);
  }
  static posix::Fd lift(posix::Fd fd) {
    if (fd.get() > 3) return fd;
    posix::Fd hi(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10));
    if (!hi)
      throw Error(Code::failed, fmt::format("cannot duplicate a pipe: {}", std::strerror(errno)));
    return hi;
  }
};

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

// While a hook runs, kmsctl is a child subreaper: a process the hook leaves behind whose parent
// exits (a double fork, `setsid cmd &`) is re-parented to kmsctl rather than to init, so that it
// stays within reach. The previous setting comes back at the end.
class Subreaper {
 public:
  Subreaper() {
    int was = 0;
    if (::prctl(PR_GET_CHILD_SUBREAPER, &was, 0, 0, 0) == 0 && was == 0) {
      set_ = ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
    }
  }
  ~Subreaper() {
    if (set_) ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  }
  Subreaper(const Subreaper&) = delete;
  Subreaper& operator=(const Subreaper&) = delete;

 private:
  bool set_ = false;
};

// The children of this process, found in /proc (the fourth field of /proc/PID/stat).
std::vector<pid_t> children() {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  const pid_t self = ::getpid();
  while (const dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid <= 0) continue;
    const int fd =
        ::openat(::dirfd(proc), fmt::format("{}/stat", pid).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // gone meanwhile
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, the last ')' ends it.
    const char* after = std::strrchr(buf, ')');
    char state = 0;
    long ppid = 0;
    if (after != nullptr && std::sscanf(after + 1, " %c %ld", &state, &ppid) == 2 && ppid == self) {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(proc);
  return out;
}

// Kills and reaps every child of this process but `hook` (reaped by the caller) and those in
// `keep` (children it had before the hook started), round after round: when a process dies its
// own children are re-parented to this subreaper and found by the next round, so a round that
// finds none means no descendant of the hook is left. A child that cannot be signalled (EPERM:
// it runs a set-user-ID program) is left alone.
void kill_leftovers(pid_t hook, std::vector<pid_t> keep) {
  for (;;) {
    std::vector<pid_t> found;
    for (const pid_t c : children()) {
      if (c != hook && std::find(keep.begin(), keep.end(), c) == keep.end()) found.push_back(c);
    }
    if (found.empty()) return;
    for (const pid_t c : found) {
      if (::kill(c, SIGKILL) != 0) keep.push_back(c);
    }
    for (const pid_t c : found) {
      if (std::find(keep.begin(), keep.end(), c) != keep.end()) continue;
      while (::waitpid(c, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
}

// A descriptor that becomes readable when `pid` exits, or none (a kernel before 5.3).
posix::Fd exit_descriptor(pid_t pid) {
#ifdef SYS_pidfd_open
  return posix::Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#else
  (void)pid;
  return posix::Fd();
#endif
}

// True once `pid` has exited, leaving it unreaped (a zombie keeps its process group id, so that
// the group can still be signalled).
bool has_exited(pid_t pid, bool block) {
  for (;;) {
    siginfo_t info{};
    const int options = WEXITED | WNOWAIT | (block ? 0 : WNOHANG);
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, options) == 0) return info.si_pid == pid;
    if (errno != EINTR) {
      throw Error(Code::failed,
                  fmt::format("cannot wait for the rotation command: {}", std::strerror(errno)));
    }
  }
}

}  // namespace

HookResult run_hook(const std::string& command, const HookCall& call) {
  Pipe in, cur, out;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.r.get(), 0);
  // Standard output is the new value at `create`; at other steps it goes to kmsctl's stderr so
  // that kmsctl's own stdout stays data only.
  posix_spawn_file_actions_adddup2(&fa, call.step == "create" ? out.w.get() : 2, 1);
  posix_spawn_file_actions_adddup2(&fa, cur.r.get(), 3);

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
  Subreaper subreaper;
  const std::vector<pid_t> before = children();
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    throw Error(Code::failed,
                fmt::format("cannot start the rotation command: {}", std::strerror(rc)));
  }
  in.r.reset();
  cur.r.reset();
  out.w.reset();
  {
    IgnoreSigpipe guard;
    // A hook that closed its end (EPIPE) does not want the value.
    (void)posix::write_all(in.w.get(), call.pending);
    in.w.reset();
    (void)posix::write_all(cur.w.get(), call.current);
    cur.w.reset();
  }
  if (call.step != "create") out.r.reset();  // its stdout is kmsctl's stderr: nothing to read

  HookResult res;
  SecureBytes buf(kMaxValueSize + 1);
  std::size_t len = 0;
  // Reads what is in the pipe; false at its end (or an error).
  auto read_some = [&] {
    std::uint8_t scratch[4096];
    const ssize_t n = ::read(out.r.get(), scratch, sizeof scratch);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    const std::size_t take = std::min(static_cast<std::size_t>(n), buf.size() - len);
    std::memcpy(buf.data() + len, scratch, take);
    len += take;
    ::explicit_bzero(scratch, sizeof scratch);
    return true;
  };

  // Until the hook exits or its time is up; what it leaves behind holding its stdout does not
  // keep kmsctl waiting.
  const auto deadline = std::chrono::steady_clock::now() + hook_timeout();
  auto left_ms = [&] {
    const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<std::int64_t>(0, d.count()));
  };
  const posix::Fd exited = exit_descriptor(pid);
  const int exit_fd = exited.get();
  bool timed_out = false;
  while (!has_exited(pid, /*block=*/false)) {
    if (left_ms() == 0) {
      timed_out = true;
      break;
    }
    pollfd pfds[2];
    nfds_t count = 0;
    if (exit_fd >= 0) pfds[count++] = {exit_fd, POLLIN, 0};
    if (out.r) pfds[count++] = {out.r.get(), POLLIN, 0};
    // Without a pidfd, look again every 5 ms.
    const int ready = ::poll(pfds, count, exit_fd >= 0 ? left_ms() : std::min(left_ms(), 5));
    if (ready < 0 && errno != EINTR) {
      throw Error(Code::failed,
                  fmt::format("cannot wait for the rotation command: {}", std::strerror(errno)));
    }
    if (out.r && ready > 0 && pfds[count - 1].revents != 0 && !read_some()) out.r.reset();
  }
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    has_exited(pid, /*block=*/true);
  }
  // The hook has exited and is not reaped yet, so its process group id is still its own: what is
  // left of the group goes, then every other descendant (those that left the group with setsid
  // or setpgid, and their children).
  ::kill(-pid, SIGKILL);
  kill_leftovers(pid, before);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      throw Error(Code::failed,
                  fmt::format("cannot wait for the rotation command: {}", std::strerror(errno)));
    }
  }
  // What the hook and its descendants wrote before they ended; a writer that could not be
  // killed does not hold kmsctl.
  if (out.r) {
    ::fcntl(out.r.get(), F_SETFL, O_NONBLOCK);
    while (read_some()) {
    }
  }
  if (timed_out) {
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

namespace {

// The advisory lock space of rotations (the writer lock is the single key 1802335094).
constexpr std::int32_t kRotationLocks = 1802335095;

Error rotation_running(std::string_view secret_name) {
  return Error(Code::refused,
               fmt::format("a rotation of secret {} is already running", secret_name),
               Remedy::wait_for_rotation);
}

}  // namespace

RotationLock::RotationLock(store::Db& db, const std::filesystem::path& vault,
                           std::string_view secret_id, std::string_view secret_name) {
  // A slot per secret: the first 32 bits of its id.
  const auto id = crypto::from_hex(std::string(secret_id.substr(0, 8)));
  std::uint32_t slot = 0;
  if (id) {
    for (std::uint8_t b : *id) slot = (slot << 8) | b;
  }
  if (db.dialect() == store::Dialect::postgresql) {
    slot_ = static_cast<std::int32_t>(slot);
    if (!db.try_lock_slot(kRotationLocks, slot_)) throw rotation_running(secret_name);
    db_ = &db;
    return;
  }
  const std::string path = vault.string() + ".rotate.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    throw Error(Code::failed, fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  }
  const off_t offset = slot;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = offset;
  fl.l_len = 1;
  if (::fcntl(fd_, F_OFD_SETLK, &fl) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EAGAIN || err == EACCES) throw rotation_running(secret_name);
    throw Error(Code::failed, fmt::format("cannot lock {}: {}", path, std::strerror(err)));
  }
}

RotationLock::~RotationLock() {
  if (db_ != nullptr) db_->unlock_slot(kRotationLocks, slot_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace kms::secrets
