// Helpers shared by the unit tests: a private temporary directory, file I/O, byte literals.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "kms/error.hpp"
#include "kms/secure.hpp"
#include "store/store.hpp"

namespace kms::test {

// A Db used without a vault: gives it fixed row keys, as an unsealed vault would its own, so
// that the repositories can MAC and check rows.
inline void with_row_keys(store::Db& db) {
  const Bytes row_key(32, 0x52), state_key(32, 0x53);
  db.set_row_keys(row_key, state_key);
}

// Commits rows written without the audit log a vault would append to (tests of the store
// alone): the transaction's state change is dropped, not recorded.
inline void commit_unaudited(store::Db& db, store::Tx& tx) {
  db.discard_state_change();
  tx.commit();
}

// Makes a vault file of this kmsctl look like one of schema version 3 (before authenticated
// rows): the columns version 4 added, and the tables of later versions, are dropped.
inline void drop_schema_4(store::Db& db) {
  db.exec("DROP TABLE IF EXISTS grants;");             // migration 4 -> 5
  db.exec("DROP TABLE IF EXISTS key_policies;");       // migration 5 -> 6
  db.exec("DROP TABLE IF EXISTS secret_policies;");    // migration 6 -> 7
  db.exec("DROP TABLE IF EXISTS key_import_params;");  // migration 7 -> 8 (its keys columns stay)
  db.exec("ALTER TABLE audit_log DROP COLUMN state;");
  std::vector<std::string> tables;
  {
    store::Stmt s(db,
                  "SELECT name FROM pragma_table_list WHERE schema = 'main' AND name IN "
                  "('vault_meta', 'keys', 'key_versions', 'key_aliases', 'key_tags', "
                  "'secrets', 'secret_versions', 'secret_tags')");
    while (s.step()) tables.push_back(s.col_text(0));
  }
  for (const std::string& t : tables) {
    db.exec(("ALTER TABLE " + t + " DROP COLUMN mac").c_str());
    if (t == "keys") db.exec("ALTER TABLE keys DROP COLUMN highest_lost_version");
  }
}

// Runs f and returns the kms::Error it throws (FAILs when it throws nothing).
inline Error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("expected a kms::Error");
  return Error(Code::failed, "");
}

inline bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/kms-unit-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_file(const std::filesystem::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0xffffffffu;
  return st.st_mode & 07777u;
}

inline Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

// The user PIN of the tokens the vault tests create.
inline const std::string kPin = "unit-test-pin-1234";
inline SecureBytes pin_of(std::string_view s) { return SecureBytes(as_bytes(s)); }

// An open file descriptor (REQUIREs that it is one), closed on destruction.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) { REQUIRE(fd >= 0); }
  ~Fd() { ::close(fd); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Sets the process umask for a scope.
class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t m) : old_(::umask(m)) {}
  ~UmaskGuard() { ::umask(old_); }
  UmaskGuard(const UmaskGuard&) = delete;
  UmaskGuard& operator=(const UmaskGuard&) = delete;

 private:
  mode_t old_;
};

}  // namespace kms::test
