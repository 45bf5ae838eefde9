#include "kms/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "base/faults.hpp"
#include "base/posix.hpp"
#include "kms/error.hpp"

namespace kms::files {
namespace fs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }

std::string random_suffix() {
  std::random_device rd;  // names only; not secret
  return fmt::format("{:08x}", rd());
}
}  // namespace

namespace {

constexpr std::string_view kTempMarker = ".tmp-";

// `.NAME.tmp-XXXXXXXX` beside the target.
fs::path temp_name(const fs::path& dir, const fs::path& target) {
  return dir / fmt::format(".{}{}{}", target.filename().string(), kTempMarker, random_suffix());
}

Error cannot_create(const fs::path& dir) {
  return Error(Code::failed,
               fmt::format("cannot create a file in {}: {}", dir.string(), errno_text()),
               "check that the directory exists and is writable");
}

// Removes `.NAME.tmp-*` files beside `target` whose writer is gone: a live writer holds its
// temporary file locked, so a lock that can be taken belongs to a killed process.
void sweep_named_temps(const fs::path& dir, const fs::path& target) {
  const std::string prefix = fmt::format(".{}{}", target.filename().string(), kTempMarker);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with(prefix) || !e.is_regular_file(ec)) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(e.path().c_str());
    ::close(fd);
  }
}

}  // namespace

AtomicFile::AtomicFile(fs::path target, bool overwrite, Temp temp)
    : target_(std::move(target)), overwrite_(overwrite) {
  std::error_code ec;
  const fs::file_type existing = fs::symlink_status(target_, ec).type();
  if (!overwrite_ && existing != fs::file_type::not_found && !ec) {
    throw Error(Code::refused, fmt::format("{} already exists", target_.string()),
                Remedy::overwrite_output);
  }
  // With --force, a device, pipe or directory would be replaced by a regular file (as root,
  // `-o /dev/null --force` would replace /dev/null for the whole system).
  if (overwrite_ && !ec && existing != fs::file_type::not_found &&
      existing != fs::file_type::regular) {
    throw Error(Code::usage, fmt::format("{} is not a regular file", target_.string()),
                Remedy::write_to_stream);
  }
  const fs::path dir = target_.has_parent_path() ? target_.parent_path() : fs::path(".");
  if (temp == Temp::unnamed) {
    fd_ = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    // EOPNOTSUPP / EISDIR / EINVAL: this file system has no unnamed files; use a named one.
    if (fd_ < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      throw cannot_create(dir);
  }
  if (fd_ < 0) {
    sweep_named_temps(dir, target_);
    for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
      temp_ = temp_name(dir, target_);
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd_ < 0 && errno != EEXIST) break;
    }
    if (fd_ < 0) throw cannot_create(dir);
    ::flock(fd_, LOCK_EX | LOCK_NB);  // ours alone: marks it as having a live writer
  }
  ::fchmod(fd_, 0600);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::write(std::string_view data) {
  if (!posix::write_all(fd_, as_bytes(data))) {
    throw Error(Code::failed, fmt::format("cannot write {}: {}", target_.string(), errno_text()),
                "check free space on that file system");
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) {
    throw Error(Code::failed, fmt::format("cannot write {}: {}", target_.string(), errno_text()),
                "check free space on that file system");
  }
  const fs::path dir = target_.has_parent_path() ? target_.parent_path() : fs::path(".");
  if (temp_.empty()) {
    // The unnamed file gets its name only now, complete. With overwrite, under a temporary
    // name first (link() never replaces), then renamed over the target.
    const std::string self = fmt::format("/proc/self/fd/{}", fd_);
    fs::path link_to = target_;
    if (overwrite_) {
      link_to = temp_name(dir, target_);
    }
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, link_to.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      if (errno == EEXIST && !overwrite_) {
        throw Error(Code::refused, fmt::format("{} already exists", target_.string()),
                    Remedy::overwrite_output);
      }
      throw Error(Code::failed,
                  fmt::format("cannot create {}: {}", target_.string(), errno_text()));
    }
    if (overwrite_) temp_ = link_to;  // renamed below; removed by the destructor if that fails
  }
  ::close(fd_);
  fd_ = -1;
  int rc = 0;
  if (!temp_.empty()) {
    if (overwrite_) {
      rc = ::rename(temp_.c_str(), target_.c_str());
    } else {
      // link() fails if the target appeared meanwhile: never overwrite without --force.
      rc = ::link(temp_.c_str(), target_.c_str());
      if (rc == 0) ::unlink(temp_.c_str());
    }
  }
  if (rc != 0) {
    if (errno == EEXIST) {
      throw Error(Code::refused, fmt::format("{} already exists", target_.string()),
                  Remedy::overwrite_output);
    }
    throw Error(Code::failed, fmt::format("cannot create {}: {}", target_.string(), errno_text()));
  }
  committed_ = true;
  try {
    fsync_dir(dir);
  } catch (const Error&) {
    // The new name may not survive a crash. A new file is taken back, so that a failure leaves
    // no output; a replaced one stays (the old content is gone), and the error says so.
    take_back();
    throw;
  }
}

void AtomicFile::take_back() noexcept {
  if (committed_ && !overwrite_) ::unlink(target_.c_str());
}

void make_private_dir(const fs::path& dir) {
  std::error_code ec;
  if (dir.has_parent_path() && !fs::exists(dir.parent_path(), ec)) {
    fs::create_directories(dir.parent_path(), ec);
  }
  // An existing directory keeps its mode: it may be shared (/tmp) and is the user's choice.
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(Code::failed,
                fmt::format("cannot create directory {}: {}", dir.string(), errno_text()));
  }
  if (!fs::is_directory(dir, ec)) {
    throw Error(Code::failed, fmt::format("{} exists and is not a directory", dir.string()),
                "choose another path");
  }
}

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // nothing was created there by this process
  int err = 0;
  if (faults::fail_now(faults::Op::dirsync)) {
    err = EIO;
  } else if (::fsync(fd) != 0) {
    err = errno;
  }
  ::close(fd);
  if (err != 0) {
    throw Error(
        Code::failed,
        fmt::format("cannot make the new name in {} durable: {}", dir.string(), std::strerror(err)),
        "check the file system (space, errors) and run the command again");
  }
}

std::optional<FileId> file_id(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

std::optional<std::int64_t> file_owner(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<std::int64_t>(st.st_uid);
}

ExclusiveLock::ExclusiveLock(const fs::path& lock_file) {
  std::error_code ec;
  fd_ = fs::is_directory(lock_file, ec)
            ? ::open(lock_file.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            : ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    throw Error(Code::unavailable,
                fmt::format("cannot open lock file {}: {}", lock_file.string(), errno_text()),
                "check the permissions of the vault directory");
  }
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      ::close(fd_);
      throw Error(Code::unavailable,
                  fmt::format("cannot lock {}: {}", lock_file.string(), errno_text()));
    }
  }
}

ExclusiveLock::~ExclusiveLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

std::string recorded_path(const std::string& path) {
  if (path.empty() || path == "-") return path;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  if (ec) return path;
  bool dotdot = false;
  for (const fs::path& part : abs) dotdot = dotdot || part == "..";
  fs::path name = abs.lexically_normal();
  if (dotdot) {
    fs::path trimmed = abs;
    while (!trimmed.has_filename() && trimmed.has_relative_path()) trimmed = trimmed.parent_path();
    const fs::path last = trimmed.filename();
    if (last.empty() || last == "." || last == "..") {
      name = fs::weakly_canonical(trimmed, ec);
    } else {
      name = fs::weakly_canonical(trimmed.parent_path(), ec) / last;
    }
    if (ec) name = abs.lexically_normal();
  }
  std::string text = name.string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

}  // namespace kms::files
