// Unit tests of kms::files: atomic private output files, private directories, the writer lock.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "support.hpp"
#include <doctest/doctest.h>

#include "kms/error.hpp"
#include "kms/files.hpp"

using namespace kms;
using kms::test::mode_of;
using kms::test::read_file;
using kms::test::TempDir;
using kms::test::UmaskGuard;
using kms::test::write_file;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

// Forks a child that tries flock(LOCK_SH | LOCK_NB) on `file` through its own open file
// description; only an exclusive lock held elsewhere refuses a shared one. Returns true when the
// child found it locked.
bool locked_by_someone_else(const fs::path& file) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) ::_exit(3);
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0) ::_exit(0);  // acquired: no exclusive holder
    ::_exit(errno == EWOULDBLOCK ? 1 : 2);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) <= 1);
  return WEXITSTATUS(status) == 1;
}

Code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("expected a kms::Error");
  return Code::failed;
}

}  // namespace

TEST_CASE("AtomicFile commit creates a 0600 file with the content even under umask 022") {
  TempDir dir;
  UmaskGuard umask(022);
  const fs::path target = dir / "out.bin";
  {
    files::AtomicFile f(target, false, files::AtomicFile::Temp::named);
    CHECK(f.fd() >= 0);
    f.write("hello ");
    f.write(std::string(100000, 'x'));
    // Nothing appears at the target before the commit; the temporary file is private.
    CHECK_FALSE(fs::exists(target));
    CHECK(f.temp_path().parent_path() == target.parent_path());
    CHECK(mode_of(f.temp_path()) == 0600);
    f.commit();
  }
  CHECK(read_file(target) == "hello " + std::string(100000, 'x'));
  CHECK(mode_of(target) == 0600);
  CHECK(entries(dir.path()) == std::vector<std::string>{"out.bin"});
}

TEST_CASE("AtomicFile commit gives 0600 even under umask 0") {
  TempDir dir;
  UmaskGuard umask(0);
  files::AtomicFile f(dir / "out", false);
  f.write("x");
  f.commit();
  CHECK(mode_of(dir / "out") == 0600);
}

TEST_CASE("AtomicFile destroyed without commit leaves no file and no temporary file") {
  TempDir dir;
  fs::path temp;
  {
    files::AtomicFile f(dir / "out", false, files::AtomicFile::Temp::named);
    temp = f.temp_path();
    f.write("partial output");
    CHECK(fs::exists(temp));
  }
  CHECK_FALSE(fs::exists(dir / "out"));
  CHECK_FALSE(fs::exists(temp));
  CHECK(entries(dir.path()).empty());
}

TEST_CASE("AtomicFile refuses an existing target without overwrite and keeps the old content") {
  TempDir dir;
  const fs::path target = dir / "out";
  write_file(target, "old content");
  try {
    files::AtomicFile f(target, false);
    FAIL("AtomicFile accepted an existing target without overwrite");
  } catch (const Error& e) {
    CHECK(e.code() == Code::refused);
    CHECK(std::string(e.what()).find(target.string()) != std::string::npos);
    CHECK(e.remedy() == Remedy::overwrite_output);
  }
  CHECK(read_file(target) == "old content");
  CHECK(entries(dir.path()) == std::vector<std::string>{"out"});
}

TEST_CASE("AtomicFile refuses a symlink target, even a dangling one, without overwrite") {
  TempDir dir;
  fs::create_symlink(dir / "nowhere", dir / "link");
  CHECK(code_of([&] { files::AtomicFile f(dir / "link", false); }) == Code::refused);
  CHECK_FALSE(fs::exists(dir / "nowhere"));
}

TEST_CASE("AtomicFile commit refuses a target that appeared after it was opened") {
  TempDir dir;
  const fs::path target = dir / "out";
  {
    files::AtomicFile f(target, false);
    f.write("new content");
    write_file(target, "someone else's file");
    CHECK(code_of([&] { f.commit(); }) == Code::refused);
  }
  CHECK(read_file(target) == "someone else's file");
  CHECK(entries(dir.path()) == std::vector<std::string>{"out"});
}

TEST_CASE("AtomicFile with overwrite replaces the old file, content and mode") {
  TempDir dir;
  const fs::path target = dir / "out";
  write_file(target, "old content that is longer than the new one");
  fs::permissions(target, fs::perms(0644));
  {
    files::AtomicFile f(target, true);
    f.write("new");
    CHECK(read_file(target) == "old content that is longer than the new one");
    f.commit();
  }
  CHECK(read_file(target) == "new");
  CHECK(mode_of(target) == 0600);
  CHECK(entries(dir.path()) == std::vector<std::string>{"out"});
}

TEST_CASE("AtomicFile fails with Code::failed when the directory does not exist") {
  TempDir dir;
  CHECK(code_of([&] { files::AtomicFile f(dir / "missing" / "out", false); }) == Code::failed);
}

TEST_CASE("make_private_dir creates missing parents and gives the leaf mode 0700") {
  TempDir dir;
  UmaskGuard umask(022);
  const fs::path leaf = dir / "a" / "b" / "c";
  files::make_private_dir(leaf);
  CHECK(fs::is_directory(leaf));
  CHECK(mode_of(leaf) == 0700);
  files::make_private_dir(leaf);  // idempotent
  CHECK(mode_of(leaf) == 0700);
}

TEST_CASE("make_private_dir keeps the mode of an existing directory (it may be shared)") {
  TempDir dir;
  const fs::path d = dir / "shared";
  fs::create_directory(d);
  fs::permissions(d, fs::perms(0755));
  files::make_private_dir(d);
  CHECK(mode_of(d) == 0755);
  files::make_private_dir(d / "mine");
  CHECK(mode_of(d / "mine") == 0700);
}

TEST_CASE("make_private_dir refuses a path that exists and is not a directory") {
  TempDir dir;
  const fs::path file = dir / "file";
  write_file(file, "data");
  fs::permissions(file, fs::perms(0644));
  CHECK_THROWS_AS(files::make_private_dir(file), kms::Error);
  // And it leaves that file alone.
  CHECK(mode_of(file) == 0644);
}

TEST_CASE("ExclusiveLock creates a private lock file and blocks a second locker until released") {
  TempDir dir;
  UmaskGuard umask(022);
  const fs::path lock = dir / "vault.db.lock";
  {
    files::ExclusiveLock held(lock);
    CHECK(fs::exists(lock));
    CHECK(mode_of(lock) == 0600);
    CHECK(locked_by_someone_else(lock));
  }
  CHECK_FALSE(locked_by_someone_else(lock));
  // Taking it again works once released.
  files::ExclusiveLock again(lock);
  CHECK(locked_by_someone_else(lock));
}

TEST_CASE("ExclusiveLock waits for the holder instead of failing") {
  TempDir dir;
  const fs::path lock = dir / "lock";
  int ready[2], go[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child holds the lock until the parent says go.
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) ::_exit(2);
    char c = 'r';
    if (::write(ready[1], &c, 1) != 1) ::_exit(2);
    if (::read(go[0], &c, 1) != 1) ::_exit(2);
    ::usleep(200 * 1000);  // the parent is blocked in ExclusiveLock meanwhile
    ::_exit(0);            // exiting releases the lock
  }
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  REQUIRE(::write(go[1], &c, 1) == 1);
  const auto start = std::chrono::steady_clock::now();
  {
    files::ExclusiveLock lock_taken(lock);
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= std::chrono::milliseconds(100));
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

TEST_CASE("ExclusiveLock fails with Code::unavailable when the lock file cannot be opened") {
  TempDir dir;
  CHECK(code_of([&] { files::ExclusiveLock l(dir / "missing" / "lock"); }) == Code::unavailable);
}

TEST_CASE(
    "file_id names the file at a path: the same after a write, another after a rename over it") {
  TempDir dir;
  const auto path = dir / "vault.db";
  CHECK_FALSE(files::file_id(path));
  kms::test::write_file(path, "one");
  const auto first = files::file_id(path);
  REQUIRE(first);
  kms::test::write_file(path, "one, rewritten in place");
  CHECK(files::file_id(path) == first);
  kms::test::write_file(dir / "other", "two");
  std::filesystem::rename(dir / "other", path);
  CHECK(files::file_id(path) != first);
}

TEST_CASE("AtomicFile's temporary file has no name: nothing is in the directory before commit") {
  TempDir dir;
  files::AtomicFile f(dir / "plain.txt", false);
  CHECK(f.temp_path().empty());
  f.write("plaintext");
  CHECK(entries(dir.path()).empty());
  f.commit();
  CHECK(entries(dir.path()) == std::vector<std::string>{"plain.txt"});
  CHECK(read_file(dir / "plain.txt") == "plaintext");
  CHECK(mode_of(dir / "plain.txt") == 0600);
}

TEST_CASE("AtomicFile with overwrite replaces the target and leaves no other name behind") {
  TempDir dir;
  write_file(dir / "out", "old");
  files::AtomicFile f(dir / "out", true);
  f.write("new");
  f.commit();
  CHECK(read_file(dir / "out") == "new");
  CHECK(entries(dir.path()) == std::vector<std::string>{"out"});
}

TEST_CASE("AtomicFile refuses at commit a target that appeared meanwhile, without --force") {
  TempDir dir;
  files::AtomicFile f(dir / "out", false);
  f.write("mine");
  write_file(dir / "out", "theirs");
  CHECK(code_of([&] { f.commit(); }) == Code::refused);
  CHECK(read_file(dir / "out") == "theirs");
}

TEST_CASE("a writer killed before commit leaves nothing in the directory") {
  TempDir dir;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    files::AtomicFile f(dir / "plain.txt", false);
    f.write(std::string(1 << 20, 'p'));
    ::kill(::getpid(), SIGKILL);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK(entries(dir.path()).empty());
}

TEST_CASE(
    "a named temporary file whose writer is gone is swept by the next writer, a live one is not") {
  TempDir dir;
  write_file(dir / ".out.tmp-deadbeef", "left by a killed writer");
  fs::path live;
  {
    files::AtomicFile other(dir / "out", false, files::AtomicFile::Temp::named);  // alive
    live = other.temp_path();
    files::AtomicFile f(dir / "out", false, files::AtomicFile::Temp::named);
    CHECK_FALSE(fs::exists(dir / ".out.tmp-deadbeef"));
    CHECK(fs::exists(live));
    f.write("x");
    f.commit();
  }
  CHECK(entries(dir.path()) == std::vector<std::string>{"out"});
}

TEST_CASE("AtomicFile with overwrite refuses to replace a device, a pipe or a directory") {
  TempDir dir;
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  fs::create_directory(dir / "sub");
  for (const fs::path& p : {dir / "fifo", dir / "sub", fs::path("/dev/null")}) {
    CAPTURE(p.string());
    CHECK(code_of([&] { files::AtomicFile f(p, true); }) == Code::usage);
  }
  CHECK(fs::is_fifo(dir / "fifo"));
  CHECK(fs::is_character_file("/dev/null"));
}

TEST_CASE("recorded_path: absolute, without . or repeated slashes; .. through the real directory") {
  TempDir t;
  const fs::path real = fs::canonical(t.path());
  fs::create_directories(real / "sub" / "dir");
  write_file(real / "sub" / "dir" / "a.txt", "x");
  fs::create_directory_symlink(real / "sub" / "dir", real / "link");
  fs::create_symlink("dir/a.txt", real / "sub" / "alias.txt");
  const fs::path before = fs::current_path();
  fs::current_path(real / "sub");
  const std::string a = (real / "sub" / "dir" / "a.txt").string();
  CHECK(files::recorded_path("-") == "-");
  CHECK(files::recorded_path("dir/a.txt") == a);
  CHECK(files::recorded_path("./dir//./a.txt") == a);
  CHECK(files::recorded_path("dir/") == (real / "sub" / "dir").string());
  CHECK(files::recorded_path(a) == a);
  // link/.. is sub, not the directory the link is in.
  CHECK(files::recorded_path("../link/../dir/a.txt") == a);
  CHECK(files::recorded_path("dir/../dir/a.txt") == a);
  // A symlinked file keeps its own name; a directory reached without ".." is not resolved.
  CHECK(files::recorded_path("alias.txt") == (real / "sub" / "alias.txt").string());
  CHECK(files::recorded_path((real / "link" / "a.txt").string()) ==
        (real / "link" / "a.txt").string());
  // With a "..", the whole directory is resolved, the link included.
  CHECK(files::recorded_path("../link/a.txt") == a);
  CHECK(files::recorded_path("dir/..") == (real / "sub").string());
  CHECK(files::recorded_path("missing/../new.txt") == (real / "sub" / "new.txt").string());
  fs::current_path(before);
}
