#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <sqlite3.h>

#include "base/faults.hpp"
#include "kms/error.hpp"
#include "store/pg.hpp"
#include "store/rows.hpp"
#include "store/store.hpp"

namespace kms::store {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what, const fs::path& path) {
  const std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const int primary = rc & 0xff;
  if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT) {
    throw Error(Code::integrity,
                fmt::format("the vault file {} is damaged or not a kmsctl vault ({})",
                            path.string(), detail),
                Remedy::restore_from_backup);
  }
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    throw Error(Code::unavailable, fmt::format("the vault {} is busy: {}", path.string(), detail),
                Remedy::retry_when_free);
  }
  if (primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_READONLY ||
      primary == SQLITE_CANTOPEN || primary == SQLITE_PERM) {
    throw Error(Code::failed, fmt::format("{} ({}): {}", what, path.string(), detail),
                "check free space and permissions where the vault lives");
  }
  throw Error(Code::failed, fmt::format("{} ({}): {}", what, path.string(), detail),
              "check free space and permissions where the vault lives, then retry");
}

constexpr int kBusyTimeoutMs = 30000;
constexpr int kWalRestartFrames = 64;
constexpr int kWalTruncateFrames = 128;

// Replaces SQLite's auto-checkpoint. With the WAL kept between commands (no checkpoint on close),
// every process is the first connection of its own: SQLite resets the WAL index (-shm) and
// rebuilds it by reading and checksumming every valid WAL frame, forgetting which frames an
// earlier process already copied back, so the next writer never starts the WAL over. With the
// default PASSIVE auto-checkpoint the WAL therefore grows without bound and every command
// re-reads and re-copies all of it. Instead, after a commit that leaves 64 frames or more, copy
// them back without waiting for readers and, once all of them are in the database file, make one
// write that changes nothing (user_version stored again): this connection still knows the WAL is
// copied back, so SQLite starts it over at its first byte, over blocks the file already has.
// Later commits then overwrite, rather than extend, the WAL file, and an fdatasync that
// changes no file size commits no ext4 journal transaction (0.10 against 0.21 ms here). A WAL
// longer than 128 frames (a large transaction, or one a reader kept from starting over) is
// truncated instead, so that the page images a cycle leaves behind stay within one cycle's
// length. If a reader holds frames that are not copied back yet, all of this is left to a later
// command.
void store_user_version_again(sqlite3* db, const char* schema) {
  sqlite3_stmt* s = nullptr;
  int version = -1;
  if (sqlite3_prepare_v2(db, fmt::format("PRAGMA \"{}\".user_version", schema).c_str(), -1, &s,
                         nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    version = sqlite3_column_int(s, 0);
  }
  sqlite3_finalize(s);
  if (version < 0) return;
  const std::string again = fmt::format("PRAGMA \"{}\".user_version={}", schema, version);
  (void)sqlite3_exec(db, again.c_str(), nullptr, nullptr, nullptr);
}

int restart_wal_when_long(void*, sqlite3* db, const char* name, int frames) {
  if (frames < kWalRestartFrames) return SQLITE_OK;
  sqlite3_busy_timeout(db, 0);
  int in_wal = 0;
  int copied = 0;
  if (frames > kWalTruncateFrames) {
    (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  } else if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &in_wal, &copied) ==
                 SQLITE_OK &&
             copied == in_wal) {
    store_user_version_again(db, name);
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  return SQLITE_OK;
}

// SQLite's unix VFS fsyncs the directory after the first sync of any WAL it opened with
// SQLITE_OPEN_CREATE, which it always passes, so every command paid a directory fsync to
// publish a WAL file that already existed. This VFS forwards everything to the default one and
// opens an existing WAL without the flag. When it does create the WAL, it syncs the directory
// at once (a connection that only reads would otherwise never do it), so a WAL file that exists
// is always durably in its directory.
sqlite3_vfs* real_vfs(sqlite3_vfs* v) { return static_cast<sqlite3_vfs*>(v->pAppData); }

// Fault injection (base/faults.hpp): with a fault armed, every file is opened through FaultFile,
// which counts writes and syncs and fails the chosen one with SQLite's I/O error for it. The
// real file's state follows the FaultFile in the same allocation (szOsFile covers both).
struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};
FaultFile* fault_file(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f); }
sqlite3_file* inner(sqlite3_file* f) { return fault_file(f)->real(); }

const sqlite3_io_methods* fault_methods() {
  static const sqlite3_io_methods m = [] {
    sqlite3_io_methods x{};
    x.iVersion = 3;
    x.xClose = [](sqlite3_file* f) { return inner(f)->pMethods->xClose(inner(f)); };
    x.xRead = [](sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
      return inner(f)->pMethods->xRead(inner(f), b, n, o);
    };
    x.xWrite = [](sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
      if (faults::fail_now(faults::Op::write)) return SQLITE_IOERR_WRITE;
      return inner(f)->pMethods->xWrite(inner(f), b, n, o);
    };
    x.xTruncate = [](sqlite3_file* f, sqlite3_int64 n) {
      return inner(f)->pMethods->xTruncate(inner(f), n);
    };
    x.xSync = [](sqlite3_file* f, int flags) {
      if (faults::fail_now(faults::Op::sync)) return SQLITE_IOERR_FSYNC;
      return inner(f)->pMethods->xSync(inner(f), flags);
    };
    x.xFileSize = [](sqlite3_file* f, sqlite3_int64* n) {
      return inner(f)->pMethods->xFileSize(inner(f), n);
    };
    x.xLock = [](sqlite3_file* f, int l) { return inner(f)->pMethods->xLock(inner(f), l); };
    x.xUnlock = [](sqlite3_file* f, int l) { return inner(f)->pMethods->xUnlock(inner(f), l); };
    x.xCheckReservedLock = [](sqlite3_file* f, int* r) {
      return inner(f)->pMethods->xCheckReservedLock(inner(f), r);
    };
    x.xFileControl = [](sqlite3_file* f, int op, void* a) {
      return inner(f)->pMethods->xFileControl(inner(f), op, a);
    };
    x.xSectorSize = [](sqlite3_file* f) { return inner(f)->pMethods->xSectorSize(inner(f)); };
    x.xDeviceCharacteristics = [](sqlite3_file* f) {
      return inner(f)->pMethods->xDeviceCharacteristics(inner(f));
    };
    x.xShmMap = [](sqlite3_file* f, int pg, int sz, int ext, void volatile** p) {
      return inner(f)->pMethods->xShmMap(inner(f), pg, sz, ext, p);
    };
    x.xShmLock = [](sqlite3_file* f, int off, int n, int flags) {
      return inner(f)->pMethods->xShmLock(inner(f), off, n, flags);
    };
    x.xShmBarrier = [](sqlite3_file* f) { inner(f)->pMethods->xShmBarrier(inner(f)); };
    x.xShmUnmap = [](sqlite3_file* f, int del) {
      return inner(f)->pMethods->xShmUnmap(inner(f), del);
    };
    x.xFetch = [](sqlite3_file* f, sqlite3_int64 o, int n, void** p) {
      return inner(f)->pMethods->xFetch(inner(f), o, n, p);
    };
    x.xUnfetch = [](sqlite3_file* f, sqlite3_int64 o, void* p) {
      return inner(f)->pMethods->xUnfetch(inner(f), o, p);
    };
    return x;
  }();
  return &m;
}

int open_existing_wal_quietly(sqlite3_vfs* v, const char* name, sqlite3_file* f, int flags,
                              int* out);

int open_with_faults(sqlite3_vfs* v, const char* name, sqlite3_file* f, int flags, int* out) {
  FaultFile* ff = fault_file(f);
  ff->base.pMethods = nullptr;
  const int rc = open_existing_wal_quietly(v, name, ff->real(), flags, out);
  if (ff->real()->pMethods != nullptr) ff->base.pMethods = fault_methods();
  return rc;
}

int open_existing_wal_quietly(sqlite3_vfs* v, const char* name, sqlite3_file* f, int flags,
                              int* out) {
  sqlite3_vfs* real = real_vfs(v);
  const bool wal =
      name != nullptr && (flags & SQLITE_OPEN_WAL) != 0 && (flags & SQLITE_OPEN_CREATE) != 0;
  if (wal) {
    // When the read-write open finds no file, the unix VFS tries again read-only. If another
    // process (any SQLite client of the vault file) creates the WAL between the two tries, that
    // second try succeeds, and every later write of this connection fails with "attempt to write
    // a readonly database". A read-only WAL is therefore closed and opened again, creating.
    int got = 0;
    const int quiet = faults::fail_now(faults::Op::walopen)
                          ? real->xOpen(real, name, f,
                                        (flags & ~(SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE)) |
                                            SQLITE_OPEN_READONLY,
                                        &got)
                          : real->xOpen(real, name, f, flags & ~SQLITE_OPEN_CREATE, &got);
    if (quiet == SQLITE_OK && (got & SQLITE_OPEN_READONLY) == 0) {
      if (out != nullptr) *out = got;
      return SQLITE_OK;
    }
    if (quiet == SQLITE_OK) f->pMethods->xClose(f);
    f->pMethods = nullptr;
  }
  const int rc = real->xOpen(real, name, f, flags, out);
  if (rc == SQLITE_OK && wal) {
    const int dir =
        ::open(fs::path(name).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool synced = dir >= 0 && !faults::fail_now(faults::Op::dirsync) && ::fsync(dir) == 0;
    if (dir >= 0) ::close(dir);
    if (!synced) {
      f->pMethods->xClose(f);
      return SQLITE_IOERR_DIR_FSYNC;
    }
  }
  return rc;
}

const char* vault_vfs() {
  static sqlite3_vfs vfs = [] {
    // Before SQLite starts (the VFS lookup below starts it): no bulk page-cache allocation. Each
    // connection would otherwise allocate, and touch, room for 20 pages up front, twice in a
    // command (the schema read and the first write); a command touches fewer new pages than that.
    // Ignored (SQLITE_MISUSE) when the process started SQLite already.
    (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, nullptr, 0, 0);
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    sqlite3_vfs v = *real;
    v.iVersion = 2;  // without the system-call overrides of version 3 (for SQLite's own tests)
    v.pNext = nullptr;
    v.zName = "kmsctl-unix";
    v.pAppData = real;
    v.xOpen = open_existing_wal_quietly;
    if (faults::armed()) {
      v.szOsFile = static_cast<int>(sizeof(FaultFile)) + real->szOsFile;
      v.xOpen = open_with_faults;
    }
    v.xDelete = [](sqlite3_vfs* s, const char* n, int d) {
      return real_vfs(s)->xDelete(real_vfs(s), n, d);
    };
    v.xAccess = [](sqlite3_vfs* s, const char* n, int f, int* r) {
      return real_vfs(s)->xAccess(real_vfs(s), n, f, r);
    };
    v.xFullPathname = [](sqlite3_vfs* s, const char* n, int len, char* out) {
      return real_vfs(s)->xFullPathname(real_vfs(s), n, len, out);
    };
    v.xDlOpen = [](sqlite3_vfs* s, const char* n) { return real_vfs(s)->xDlOpen(real_vfs(s), n); };
    v.xDlError = [](sqlite3_vfs* s, int n, char* m) { real_vfs(s)->xDlError(real_vfs(s), n, m); };
    v.xDlSym = [](sqlite3_vfs* s, void* h, const char* n) {
      return real_vfs(s)->xDlSym(real_vfs(s), h, n);
    };
    v.xDlClose = [](sqlite3_vfs* s, void* h) { real_vfs(s)->xDlClose(real_vfs(s), h); };
    v.xRandomness = [](sqlite3_vfs* s, int n, char* out) {
      return real_vfs(s)->xRandomness(real_vfs(s), n, out);
    };
    v.xSleep = [](sqlite3_vfs* s, int us) { return real_vfs(s)->xSleep(real_vfs(s), us); };
    v.xCurrentTime = [](sqlite3_vfs* s, double* t) {
      return real_vfs(s)->xCurrentTime(real_vfs(s), t);
    };
    v.xGetLastError = [](sqlite3_vfs* s, int n, char* m) {
      return real_vfs(s)->xGetLastError(real_vfs(s), n, m);
    };
    v.xCurrentTimeInt64 = [](sqlite3_vfs* s, sqlite3_int64* t) {
      return real_vfs(s)->xCurrentTimeInt64(real_vfs(s), t);
    };
    return v;
  }();
  static const bool registered = sqlite3_vfs_register(&vfs, 0) == SQLITE_OK;
  return registered ? vfs.zName : nullptr;  // nullptr: the default VFS
}

// The writer lock of a vault in PostgreSQL (pg_advisory_xact_lock's key): "kmsv" in ASCII. One
// vault per database; the lock is the database's, whatever schema the vault's tables are in.
constexpr const char* kPgWriteBegin = "BEGIN; SELECT pg_advisory_xact_lock(1802335094)";
constexpr const char* kPgLockWriter = "SELECT pg_advisory_lock(1802335094)";
constexpr const char* kPgUnlockWriter = "SELECT pg_advisory_unlock(1802335094)";

}  // namespace

bool is_postgres_location(std::string_view location) {
  if (location.starts_with("postgresql://") || location.starts_with("postgres://")) return true;
  // key=value: the first word is one of libpq's keywords, then '='.
  const std::size_t eq = location.find('=');
  if (eq == std::string_view::npos) return false;
  const std::string_view key = location.substr(0, location.find_first_of(" =\t"));
  for (std::string_view k : {"host", "hostaddr", "port", "dbname", "user", "service", "sslmode",
                             "passfile", "application_name", "options", "connect_timeout"}) {
    if (key == k) return true;
  }
  return false;
}

namespace {
bool is_password_key(std::string_view key) { return key.ends_with("password"); }

// key=value pairs, separated by spaces; a value may be quoted ('...') and holds \-escapes.
std::string keywords_without_passwords(std::string_view s) {
  auto space = [&](std::size_t i) { return std::isspace(static_cast<unsigned char>(s[i])) != 0; };
  std::string out;
  std::size_t i = 0;
  for (;;) {
    while (i < s.size() && space(i)) ++i;
    if (i == s.size()) return out;
    const std::size_t start = i;
    while (i < s.size() && s[i] != '=' && !space(i)) ++i;
    const std::string_view key = s.substr(start, i - start);
    while (i < s.size() && (space(i) || s[i] == '=')) ++i;
    const bool quoted = i < s.size() && s[i] == '\'';
    for (i += quoted ? 1 : 0; i < s.size() && (quoted ? s[i] != '\'' : !space(i)); ++i) {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;
    }
    if (quoted && i < s.size()) ++i;  // the closing quote
    if (is_password_key(key)) continue;
    if (!out.empty()) out += ' ';
    out.append(s.substr(start, i - start));
  }
}

// scheme://[user[:password]@]hosts[/dbname][?key=value&...]
std::string uri_without_passwords(std::string_view s) {
  const std::size_t authority = s.find("://") + 3;
  const std::size_t path = std::min(s.find_first_of("/?", authority), s.size());
  std::string out(s.substr(0, authority));
  const std::string_view hosts = s.substr(authority, path - authority);
  const std::size_t at = hosts.rfind('@');
  if (at != std::string_view::npos) {
    out.append(hosts.substr(0, std::min(hosts.find(':'), at)));
    out.append(hosts.substr(at));
  } else {
    out.append(hosts);
  }
  const std::size_t query = std::min(s.find('?', path), s.size());
  out.append(s.substr(path, query - path));
  char sep = '?';
  for (std::size_t i = query + 1; i < s.size();) {
    const std::size_t end = std::min(s.find('&', i), s.size());
    const std::string_view param = s.substr(i, end - i);
    if (!param.empty() && !is_password_key(param.substr(0, param.find('=')))) {
      out += sep;
      out.append(param);
      sep = '&';
    }
    i = end + 1;
  }
  return out;
}
}  // namespace

std::string location_without_passwords(std::string_view conninfo) {
  const bool uri = conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://");
  return uri ? uri_without_passwords(conninfo) : keywords_without_passwords(conninfo);
}

std::string shown_location(std::string_view location) {
  return is_postgres_location(location) ? pg::display_name(location) : std::string(location);
}

void Db::revive() {
  if (pg_) pg_->revive();
}

void Db::lock_writer() {
  if (pg_) pg_->exec(kPgLockWriter);
}

bool Db::try_lock_slot(std::int32_t space, std::int32_t slot) {
  Stmt s(*this,
         "SELECT CASE WHEN pg_try_advisory_lock(CAST(?1 AS integer), CAST(?2 AS integer)) THEN 1 "
         "ELSE 0 END");
  s.bind(1, static_cast<std::int64_t>(space));
  s.bind(2, static_cast<std::int64_t>(slot));
  return s.step() && s.col_int(0) == 1;
}

void Db::unlock_slot(std::int32_t space, std::int32_t slot) noexcept {
  try {
    Stmt s(*this, "SELECT pg_advisory_unlock(CAST(?1 AS integer), CAST(?2 AS integer))");
    s.bind(1, static_cast<std::int64_t>(space));
    s.bind(2, static_cast<std::int64_t>(slot));
    s.step();
  } catch (...) {
    // The connection is gone, and its locks with it.
  }
}

void Db::unlock_writer() noexcept {
  if (!pg_) return;
  try {
    pg_->exec(kPgUnlockWriter);
  } catch (...) {
    // The connection is gone, and its locks with it.
  }
}

Db::Db(const fs::path& path, Mode mode) : path_(path) {
  if (is_postgres_location(path.string())) {
    pg_ = std::make_unique<pg::Conn>(path.string());
    migrate_postgres(mode);
    return;
  }
  std::error_code ec;
  if (mode == Mode::open_existing && !fs::exists(path, ec)) {
    throw Error(Code::unavailable, fmt::format("no vault at {}", path.string()),
                Remedy::create_vault);
  }
  if (mode == Mode::create_new && fs::exists(path, ec)) {
    throw Error(Code::refused, fmt::format("{} already exists", path.string()),
                "choose another path");
  }
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (mode == Mode::create_new) flags |= SQLITE_OPEN_CREATE | SQLITE_OPEN_EXCLUSIVE;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vault_vfs());
  if (rc != SQLITE_OK) {
    const int code = rc;
    sqlite3* d = db_;
    db_ = nullptr;
    try {
      fail(d, code, "cannot open the vault", path);
    } catch (...) {
      sqlite3_close(d);
      throw;
    }
  }
  try {
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    sqlite3_extended_result_codes(db_, 1);
    // The WAL outlives the connection: a close that checkpoints costs two fdatasyncs and the
    // unlink of -wal/-shm, and the next command's first commit then re-creates and syncs a new
    // WAL header. The WAL hook below still folds the WAL back every 64 frames, amortised.
    sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    if (mode == Mode::create_new) ::chmod(path.c_str(), 0600);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA foreign_keys=ON");
    exec("PRAGMA secure_delete=ON");
    exec("PRAGMA trusted_schema=OFF");
    exec("PRAGMA journal_size_limit=4194304");  // a WAL left large by a big transaction shrinks
    sqlite3_wal_hook(db_, &restart_wal_when_long, nullptr);
    migrate(mode);
  } catch (...) {
    close();
    throw;
  }
}

Db::~Db() { close(); }

void Db::close() noexcept {
  for (auto& [sql, stmt] : idle_) sqlite3_finalize(stmt);
  idle_.clear();
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
  pg_.reset();
}

Db::Db(Db&& o) noexcept
    : path_(std::move(o.path_)),
      db_(o.db_),
      pg_(std::move(o.pg_)),
      rows_(std::move(o.rows_)),
      idle_(std::move(o.idle_)) {
  o.db_ = nullptr;
  o.idle_.clear();
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    db_ = o.db_;
    pg_ = std::move(o.pg_);
    rows_ = std::move(o.rows_);
    idle_ = std::move(o.idle_);
    o.db_ = nullptr;
    o.idle_.clear();
  }
  return *this;
}

sqlite3_stmt* Db::take_statement(const char* sql) {
  if (auto it = idle_.find(sql); it != idle_.end()) {
    sqlite3_stmt* s = it->second;
    idle_.erase(it);  // in use: a second Stmt of the same text meanwhile prepares its own
    return s;
  }
  sqlite3_stmt* s = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(s);
    fail(db_, rc, "vault database error", path_);
  }
  return s;
}

void Db::give_back(sqlite3_stmt* stmt) noexcept {
  // Reset, it holds no lock and no row; its bindings (values, some secret) are dropped.
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  // A bound on what is kept: audit queries build their text from the filters given.
  constexpr std::size_t kMaxIdle = 64;
  try {
    // Keyed by the statement's own copy of its text: the caller's may be gone.
    if (idle_.size() < kMaxIdle && idle_.emplace(sqlite3_sql(stmt), stmt).second) return;
  } catch (...) {
    // out of memory: not kept
  }
  sqlite3_finalize(stmt);
}

std::string Db::display_name() const { return pg_ ? pg_->name() : path_.string(); }

void Db::exec(const char* sql) {
  if (pg_) {
    pg_->exec(sql);
    return;
  }
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) fail(db_, rc, "vault database error", path_);
}

void Db::checkpoint() {
  if (pg_) return;
  sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
  exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

int Db::schema_version() {
  Stmt s(*this, pg_ ? "SELECT version FROM kmsctl_schema" : "PRAGMA user_version");
  return s.step() ? static_cast<int>(s.col_int(0)) : 0;  // PostgreSQL: no row before the schema
}

namespace {
[[noreturn]] void no_file_copy_in_postgres(const std::string& name, const char* what) {
  throw Error(Code::usage,
              fmt::format("the vault in {} is in PostgreSQL: kmsctl does not {} it", name, what),
              "back the database up with PostgreSQL's own tools (pg_dump, base backups); "
              "a database put back older than its audit anchor is refused until "
              "`kmsctl vault restore`");
}
}  // namespace

void Db::backup_to(const fs::path& dest) {
  if (pg_) no_file_copy_in_postgres(pg_->name(), "copy");
  sqlite3* out = nullptr;
  int rc = sqlite3_open_v2(dest.c_str(), &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_close(out);
    fail(nullptr, rc, "cannot create the backup file", dest);
  }
  ::chmod(dest.c_str(), 0600);
  sqlite3_backup* b = sqlite3_backup_init(out, "main", db_, "main");
  if (b == nullptr) {
    const std::string msg = sqlite3_errmsg(out);
    sqlite3_close(out);
    throw Error(Code::failed, fmt::format("cannot start the backup: {}", msg));
  }
  do {
    rc = sqlite3_backup_step(b, -1);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(5);
  } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
  sqlite3_backup_finish(b);
  // The copy is a self-contained file: no WAL left beside it.
  if (rc == SQLITE_DONE) {
    char* err = nullptr;
    rc = sqlite3_exec(out, "PRAGMA journal_mode=DELETE", nullptr, nullptr, &err);
    sqlite3_free(err);
    rc = rc == SQLITE_OK ? SQLITE_DONE : rc;
  }
  sqlite3_close(out);
  if (rc != SQLITE_DONE) fail(nullptr, rc, "the backup failed", dest);
}

void Db::restore_from(const fs::path& src) {
  if (pg_) no_file_copy_in_postgres(pg_->name(), "restore a file into");
  sqlite3* in = nullptr;
  int rc = sqlite3_open_v2(src.c_str(), &in, SQLITE_OPEN_READONLY, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_close(in);
    fail(nullptr, rc, "cannot open the backup", src);
  }
  sqlite3_backup* b = sqlite3_backup_init(db_, "main", in, "main");
  if (b == nullptr) {
    const std::string msg = sqlite3_errmsg(db_);
    sqlite3_close(in);
    throw Error(Code::failed, fmt::format("cannot start the restore: {}", msg));
  }
  do {
    rc = sqlite3_backup_step(b, -1);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(5);
  } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
  sqlite3_backup_finish(b);
  sqlite3_close(in);
  if (rc != SQLITE_DONE) fail(db_, rc, "the restore failed", path_);
}

std::uint32_t Db::application_id() {
  Stmt s(*this, pg_ ? "SELECT application_id FROM kmsctl_schema" : "PRAGMA application_id");
  return s.step() ? static_cast<std::uint32_t>(s.col_int(0)) : 0;
}

void Db::set_application_id(std::uint32_t id) {
  if (pg_) {
    exec(fmt::format("UPDATE kmsctl_schema SET application_id = {}", id).c_str());
    return;
  }
  exec(fmt::format("PRAGMA application_id={}", static_cast<std::int32_t>(id)).c_str());
}

Stmt::Stmt(Db& db, const char* sql) : db_(db) {
  if (db.pg_) {
    pq_ = std::make_unique<pg::Query>(*db.pg_, sql);
  } else {
    stmt_ = db.take_statement(sql);
  }
}

Stmt::~Stmt() {
  if (stmt_ != nullptr) db_.give_back(stmt_);
}

Stmt& Stmt::bind(int i, std::int64_t v) {
  if (pq_) {
    pq_->bind(i, v);
    return *this;
  }
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
Stmt& Stmt::bind(int i, std::string_view v) {
  if (pq_) {
    pq_->bind(i, v);
    return *this;
  }
  sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::bind(int i, ByteView v) {
  if (pq_) {
    pq_->bind(i, v);
    return *this;
  }
  sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  if (pq_) {
    pq_->bind_null(i);
    return *this;
  }
  sqlite3_bind_null(stmt_, i);
  return *this;
}

bool Stmt::step() {
  if (pq_) return pq_->step();
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(db_.raw(), rc, "vault database error", db_.path());
}

void Stmt::reset() {
  if (pq_) {
    pq_->reset();
    return;
  }
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t Stmt::col_int(int i) const {
  return pq_ ? pq_->col_int(i) : sqlite3_column_int64(stmt_, i);
}
std::string Stmt::col_text(int i) const { return std::string(col_text_view(i)); }
std::string_view Stmt::col_text_view(int i) const {
  if (pq_) return pq_->col_text(i);
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
  return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
           : std::string_view();
}
ByteView Stmt::col_blob(int i) const {
  if (pq_) return pq_->col_blob(i);
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, i));
  return p ? ByteView(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, i))) : ByteView();
}
bool Stmt::col_null(int i) const {
  return pq_ ? pq_->col_null(i) : sqlite3_column_type(stmt_, i) == SQLITE_NULL;
}
int Stmt::columns() const { return pq_ ? pq_->columns() : sqlite3_column_count(stmt_); }

std::string_view Stmt::col_name(int i) const {
  if (pq_) return pq_->col_name(i);
  const char* name = sqlite3_column_name(stmt_, i);
  return name != nullptr ? name : "";
}

Stmt::ColType Stmt::col_type(int i) const {
  if (pq_) return pq_->col_type(i);
  switch (sqlite3_column_type(stmt_, i)) {
    case SQLITE_INTEGER:
      return ColType::integer;
    case SQLITE_FLOAT:
      return ColType::real;
    case SQLITE_TEXT:
      return ColType::text;
    case SQLITE_BLOB:
      return ColType::blob;
    default:
      return ColType::null;
  }
}

Tx::Tx(Db& db, Kind kind) : db_(db), kind_(kind) {
  if (db_.dialect() == Dialect::postgresql) {
    db_.exec(kind == Kind::write ? kPgWriteBegin : "BEGIN ISOLATION LEVEL REPEATABLE READ");
  } else {
    db_.exec(kind == Kind::write ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
  }
  open_ = true;
}

Tx::~Tx() {
  if (!open_) return;
  if (db_.pg_) {
    db_.pg_->rollback();
  } else {
    sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  db_.discard_state_change();
}

void Tx::commit() {
  if (db_.state_change_pending()) {
    throw Error(Code::failed,
                "internal error: a change to the vault's keys or secrets has no audit record");
  }
  if (db_.pg_) {
    if (kind_ == Kind::write && faults::fail_first(faults::Op::conflict)) {
      // A write that lost to another writer, as the server itself reports it.
      db_.exec(
          "DO $$ BEGIN RAISE EXCEPTION 'test fault: conflict' USING ERRCODE = "
          "'serialization_failure'; END $$");
    }
    db_.pg_->commit();
  } else {
    db_.exec("COMMIT");
  }
  open_ = false;
}

}  // namespace kms::store
