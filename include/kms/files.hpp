// File-system habits every module shares: output written atomically and privately, private
// directories, and an advisory lock that orders writers across processes.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kms::files {

// A file that appears at `target` only when commit() succeeds: written to a temporary file in
// the same directory (mode 0600), fsynced, linked or renamed into place, and the directory
// fsynced. Destroyed without commit, the temporary file is removed, so a failure never leaves a
// half-written output.
//
// The temporary file has no name (O_TMPFILE) unless the caller needs one (Temp::named: SQLite
// writes a copy by path): a process killed before the commit then leaves nothing at all behind,
// no half-written plaintext included. Where the file system has no O_TMPFILE, and for
// Temp::named, it is `.NAME.tmp-XXXXXXXX`, locked (flock) while its writer lives; a later
// AtomicFile for the same target removes those whose writer is gone.
class AtomicFile {
 public:
  enum class Temp { unnamed, named };
  // Refuses (Code::refused) when target exists and overwrite is false.
  AtomicFile(std::filesystem::path target, bool overwrite, Temp temp = Temp::unnamed);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const noexcept { return fd_; }
  // The temporary file's path: empty when it has none (see Temp).
  const std::filesystem::path& temp_path() const noexcept { return temp_; }
  void write(std::string_view data);
  void commit();
  // After commit(): removes the new file again, for a step after the publication that failed.
  // Only without overwrite: a file that may have replaced another stays (the old content is
  // gone either way).
  void take_back() noexcept;

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  bool overwrite_;
  bool committed_ = false;
};

// mkdir -p; a leaf it creates gets mode 0700 (an existing directory keeps its mode).
void make_private_dir(const std::filesystem::path& dir);
void fsync_dir(const std::filesystem::path& dir);

// Which file is at `path` now (device and inode); nothing when there is none.
using FileId = std::pair<dev_t, ino_t>;
std::optional<FileId> file_id(const std::filesystem::path& path);
// The uid that owns the file at `path`; nothing when there is none.
std::optional<std::int64_t> file_owner(const std::filesystem::path& path);

// The name a file operation records for the file at `path` (its audit resource `file/NAME`,
// docs/FORMAT.md §8.1), computed where the path was typed so that an agent or a service records
// the caller's file: "-" (standard input) as it is; else the path made absolute against the
// current directory, with "." components and repeated or trailing slashes removed. Symlinks are
// not resolved, except for a path with a ".." component: its directory is then resolved (the
// ".." after a symlinked directory is not its lexical parent), its last component kept. A path
// that cannot be made absolute (no current directory) is returned as it is.
std::string recorded_path(const std::string& path);

// flock(LOCK_EX) on a lock file (created if missing) or on a directory, released on destruction.
class ExclusiveLock {
 public:
  explicit ExclusiveLock(const std::filesystem::path& lock_file);
  ~ExclusiveLock();
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace kms::files
