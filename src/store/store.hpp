// The vault's database: RAII handles (Db, Stmt, Tx), the schema and its migrations, and one
// repository function per question the domain asks. A vault lives in a SQLite file or in a
// PostgreSQL database (pg.hpp); the repositories' SQL is the same for both but where
// Db::dialect() chooses. All SQL of the project lives in src/store/. This header exposes neither
// sqlite3.h nor libpq-fe.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/grants.hpp"
#include "kms/records.hpp"
#include "kms/secure.hpp"
#include "kms/vocab.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace kms::store {

struct RowAuth;  // rows.cpp
namespace pg {
class Conn;   // pg.hpp
class Query;  // pg.hpp
}  // namespace pg

enum class Dialect { sqlite, postgresql };
// Whether a vault location names a PostgreSQL database rather than a file: a libpq URI
// (`postgresql://...`, `postgres://...`) or a key=value connection string (`host=... dbname=...`).
bool is_postgres_location(std::string_view location);
// How messages, logs and `status` name a location: a file's path as given, a PostgreSQL
// database without its password or other options (`postgresql://kms@db.example:5432/kms`).
std::string shown_location(std::string_view location);
// How a client names a PostgreSQL database to the agent serving it (which compares its own):
// the connection string as written, without its passwords (`password`, `sslpassword`, a URI's
// `user:password@`). Read without libpq, which a command an agent serves does not load.
std::string location_without_passwords(std::string_view conninfo);

// The schema version this build writes and understands (PRAGMA user_version).
inline constexpr int kSchemaVersion = 9;
// PRAGMA application_id of a live vault ("KMSV") and of a backup ("KMSB"); 0 (older files) is live.
inline constexpr std::uint32_t kLiveVaultId = 0x4B4D5356;
inline constexpr std::uint32_t kBackupVaultId = 0x4B4D5342;

class Db {
 public:
  enum class Mode { open_existing, create_new };
  // A PostgreSQL location (is_postgres_location) connects to that database and creates or
  // migrates the schema there (pg_schema.cpp): Code::unavailable when the server cannot be
  // reached or holds no vault (open_existing), Code::refused when it holds one (create_new).
  // Otherwise: opens (or creates) the vault file, applies pragmas (WAL, synchronous=FULL, foreign
  // keys, busy timeout, secure_delete) and runs migrations. Closing does not checkpoint: the WAL
  // (vault.db-wal, -shm) stays beside the file between commands (see checkpoint()). Errors:
  // Code::unavailable when the file is missing, Code::integrity when it is not a SQLite database or
  // damaged, Code::unavailable when it was written by a newer kmsctl.
  Db(const std::filesystem::path& path, Mode mode);
  ~Db();
  Db(Db&&) noexcept;
  Db& operator=(Db&&) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  Dialect dialect() const noexcept { return pg_ ? Dialect::postgresql : Dialect::sqlite; }
  // How messages name the database: the file's path, or the PostgreSQL database without its
  // password or other options.
  std::string display_name() const;
  // PostgreSQL: the vault's writer lock for this connection, held until unlock_writer() even
  // across the transactions in between (pg_advisory_lock, the key write transactions take):
  // a writer holds it from its open check until its record's anchor is stored, as a file's
  // writers hold VAULT.lock. SQLite: nothing (the file lock is the vault's to take).
  void lock_writer();
  // PostgreSQL: a connection that the server closed while it sat idle (a restart, an
  // administrator's pg_terminate_backend) is opened again, for a process that keeps the vault
  // open (`kmsctl agent`); Code::unavailable while the server is down. A vault file: nothing.
  void revive();
  void unlock_writer() noexcept;
  // PostgreSQL: a session advisory lock on (`space`, `slot`) of this connection, held until
  // unlock_slot() or the connection ends, whatever the transactions in between do; false at
  // once when another session holds it. (One rotation of a secret at a time, on every host.)
  bool try_lock_slot(std::int32_t space, std::int32_t slot);
  void unlock_slot(std::int32_t space, std::int32_t slot) noexcept;
  int schema_version();
  // PRAGMA application_id: which kind of file this is (live vault or backup).
  std::uint32_t application_id();
  void set_application_id(std::uint32_t id);
  void exec(const char* sql);
  // SQLite: copies the WAL into the database file and truncates it, and lets this connection's
  // close remove the WAL (PostgreSQL: nothing to do). Normally the WAL outlives the connection
  // (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE: a close does no checkpoint and the next command does not
  // re-create the WAL); call this before the file is moved or copied on its own.
  void checkpoint();
  // Consistent online copy through the SQLite backup API into `dest` (new or empty file).
  // PostgreSQL: Code::usage (its own tools back it up).
  void backup_to(const std::filesystem::path& dest);
  // Replaces this database's content with that of `src` through the backup API (safe while
  // the database is in WAL mode and other connections exist). PostgreSQL: Code::usage.
  void restore_from(const std::filesystem::path& src);
  sqlite3* raw() const noexcept { return db_; }  // nullptr for PostgreSQL
  // Prepared statements kept between uses, by SQL text (Stmt takes one and gives it back): an
  // agent serves the same few statements all its life, and preparing them was a tenth of its
  // time per request (docs/PERFORMANCE.md). Like the connection, for one thread at a time.
  sqlite3_stmt* take_statement(const char* sql);
  void give_back(sqlite3_stmt* stmt) noexcept;

  // Authenticated rows (docs/FORMAT.md §14), once the vault is unsealed: every row a repository
  // reads is checked against its MAC under `row_key`, and every row it writes is MACed and
  // counted in the transaction's state change (elements and masks under `state_key`). Until then
  // reading or writing such a row is an internal error.
  void set_row_keys(ByteView row_key, ByteView state_key);
  // Whether rows without a MAC are accepted: never, unless the caller found (in the verified
  // audit log) that this is a vault of an older kmsctl whose rows were not MACed yet.
  bool legacy_rows() const noexcept;
  void set_legacy_rows(bool legacy);
  RowAuth& row_auth();
  // The open transaction's state change: dropped at rollback; a commit with one pending that
  // no audit record took (next_state_field) is refused as an internal error.
  void discard_state_change() noexcept;
  bool state_change_pending() const noexcept;

 private:
  friend class Stmt;
  friend class Tx;
  void migrate(Mode mode);
  void migrate_postgres(Mode mode);  // pg_schema.cpp
  void close() noexcept;
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<pg::Conn> pg_;
  std::unique_ptr<RowAuth> rows_;
  std::unordered_map<std::string, sqlite3_stmt*> idle_;  // prepared, reset, no bindings
};

class Stmt {
 public:
  // A statement of `db`'s cache (Db::take_statement), or a new one when it holds none idle.
  Stmt(Db& db, const char* sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind(int i, ByteView v);
  Stmt& bind_null(int i);
  enum class ColType { integer, real, text, blob, null };
  // true while a row is available; false when done. Throws on error.
  bool step();
  void reset();
  std::int64_t col_int(int i) const;
  std::string col_text(int i) const;
  std::string_view col_text_view(int i) const;  // valid until the next step()
  ByteView col_blob(int i) const;               // valid until the next step()
  bool col_null(int i) const;
  ColType col_type(int i) const;
  // The result's columns: how many, and each one's name.
  int columns() const;
  std::string_view col_name(int i) const;
  Db& db() const noexcept { return db_; }

 private:
  Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::unique_ptr<pg::Query> pq_;  // instead of stmt_, in a PostgreSQL vault
};

// A write transaction that lost to another writer and was rolled back: PostgreSQL's serialization
// failure (40001) or deadlock (40P01), or a unique violation on the audit chain (two writers
// that took the same place in it). Nothing of it was done; the same request may succeed when it
// runs again (Runner::run does, a bounded number of times). Code::unavailable.
class Conflict : public Error {
 public:
  using Error::Error;
};

// A transaction that rolls back unless committed. A write transaction takes the vault's writer
// lock at BEGIN (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-level advisory lock), so
// writers commit one at a time, in the order they began; a read transaction sees one snapshot.
class Tx {
 public:
  enum class Kind { read, write };
  Tx(Db& db, Kind kind);
  ~Tx();
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;
  void commit();

 private:
  Db& db_;
  Kind kind_;
  bool open_ = false;
};

// Copies every row of the vault in `from` into the empty vault `to` (just created), each as it
// is: the same columns, values and MACs, the audit log included; row_counts follows by its
// triggers. The caller holds a read transaction on `from` and a write transaction on `to`.
// Returns how many rows it copied. (`vault migrate`: a file into PostgreSQL.)
std::int64_t copy_rows(Db& from, Db& to);

// ---- vault metadata (the vault header) ----
struct VaultMeta {
  std::string vault_id;
  std::string created;
  std::string pkcs11_module;
  std::string token_label;
  std::string token_serial;
  std::string softhsm_conf;  // empty when the token is not a private SoftHSM2 token
  std::int64_t root_key_gen = 1;
  Bytes sealed_master;
};
// Read before the vault is unsealed, so unchecked: check_meta() checks the header's MAC after
// (Code::integrity naming it). With `allow_missing`, a header without a MAC (a vault of an older
// kmsctl, which the caller must then make sure of) is let through: returns false.
std::optional<VaultMeta> read_meta(Db& db);
bool check_meta(Db& db, bool allow_missing = false);
void insert_meta(Db& db, const VaultMeta& meta);
void update_root_key(Db& db, std::int64_t gen, ByteView sealed_master);
void update_softhsm_conf(Db& db, std::string_view path);

// ---- the state digest (rows.cpp; docs/FORMAT.md §14.3) ----
// The keyed sum of every authenticated row, recorded (masked with the record's seq) in every
// audit record, so that a row replaced by an older genuine copy of itself, deleted or added is
// seen by comparing the rows with the state the newest record holds. Which record that is, and
// that it is genuine, is the audit log's to say (audit::Log::head_state).
// Makes the next record carry a state even if no row changed (the first record of a vault).
void note_state_change(Db& db);
// The state a record's field holds.
crypto::Digest unmask_state(Db& db, ByteView field, std::int64_t seq);
// For the record `seq` being appended in this transaction: its state field, the `current`
// state plus this transaction's change, masked. Empty when there is no current state (a vault
// of an older kmsctl) and the transaction changed nothing. Takes the change.
Bytes next_state_field(Db& db, const std::optional<crypto::Digest>& current, std::int64_t seq);
struct StateReport {
  bool ok = true;
  std::string problem;           // the first row that fails its MAC, or the state mismatch
  std::int64_t rows = 0;         // rows checked
  std::int64_t recorded_at = 0;  // the record holding the state compared with
};
// Checks every row's MAC and compares their sum with `recorded`, the state of record
// `recorded_at`.
StateReport check_state(Db& db, const crypto::Digest& recorded, std::int64_t recorded_at);
// MACs every row that has none (a vault of an older kmsctl) and notes a state change, so that
// the audit record the caller appends in the same transaction carries the first state. Returns
// how many rows it MACed.
std::int64_t authenticate_rows(Db& db);

// ---- audit log rows ----
// The same row as views into SQLite's column buffers: valid only during the visit (hot loops).
struct AuditRowView {
  std::int64_t seq = 0;
  std::string_view time, principal;
  std::int64_t uid = 0;
  std::string_view action, resource, params, outcome, error_code;
  ByteView prev_hash, hash, mac;
  ByteView state;  // empty: the record did not change the state (docs/FORMAT.md §8.1)
};
// The record, the filter and the head are the library's values (kms/records.hpp).
using AuditRow = AuditRecord;
using AuditFilter = kms::AuditFilter;
using AuditHead = kms::AuditHead;
// Views into a row, valid while it lives unchanged.
inline AuditRowView view(const AuditRow& r) {
  return {r.seq,     r.time,       r.principal, r.uid,  r.action, r.resource, r.params,
          r.outcome, r.error_code, r.prev_hash, r.hash, r.mac,    r.state};
}
std::optional<AuditHead> audit_last(Db& db);
std::optional<Bytes> audit_hash_at(Db& db, std::int64_t seq);
// The number of records, read as the head's seq: O(1), where count(*) reads the whole log. A log
// that verifies has seqs 1..N without gaps (`audit verify` checks that).
std::int64_t audit_count(Db& db);
void audit_insert(Db& db, const AuditRow& row);
// Streams rows in sequence order; the row reference is reused between calls.
void audit_scan(Db& db, const std::function<void(const AuditRow&)>& visit);
// The same without copying: each view is valid only until the visitor returns.
void audit_scan_views(Db& db, const std::function<void(const AuditRowView&)>& visit);
void audit_query(Db& db, const AuditFilter& filter,
                 const std::function<void(const AuditRow&)>& visit);

// ---- keys ----
// A key's row: its metadata (kms/records.hpp) and what only the vault needs.
struct KeyRow : KeyMetadata {
  // The highest version number a `vault restore` dropped: the next version is made above it, so
  // that a ciphertext naming a lost version never meets another version of that number.
  std::int64_t highest_lost_version = 0;
  // An imported key's commitment to its material (HMAC under K_commit, FORMAT.md §12.5): set by
  // the first import, kept when the material expires, so that only the same material comes back.
  std::optional<Bytes> material_commitment;
};
struct KeyVersionRow : KeyVersionMetadata {
  std::optional<Bytes> material;  // sealed; none for hsm keys
};
void key_insert(Db& db, const KeyRow& key);
void key_update(Db& db, const KeyRow& key);
void key_delete(Db& db, std::string_view id);  // versions, aliases and tags go with it
std::optional<KeyRow> key_get(Db& db, std::string_view id);
// Ordered by (created, id); starts after the key `after` when given.
std::vector<KeyRow> key_list(Db& db, std::optional<KeyState> state,
                             const std::optional<std::string>& after, std::int64_t limit);
// Keys whose rotation period has elapsed at `now` (RFC 3339) and are Enabled.
std::vector<KeyRow> keys_due_rotation(Db& db, std::string_view now);
std::vector<KeyRow> keys_due_deletion(Db& db, std::string_view now);
// Imported keys whose material expired at `now` and is still there (for `kmsctl maintain`).
std::vector<KeyRow> keys_due_material_expiry(Db& db, std::string_view now);
// Deletes a key's version rows (an imported key's expired material); returns how many.
std::int64_t key_versions_delete(Db& db, std::string_view key_id);
// How many keys and secrets there are, and how many of them are due at `now` (one query).
using VaultCounts = kms::VaultCounts;
VaultCounts vault_counts(Db& db, std::string_view now);

void key_version_insert(Db& db, const KeyVersionRow& v);
std::optional<KeyVersionRow> key_version_get(Db& db, std::string_view key_id, std::int64_t version);
std::vector<KeyVersionRow> key_versions(Db& db, std::string_view key_id);  // metadata, ascending
std::int64_t key_version_max(Db& db, std::string_view key_id);
// Every version of every key, metadata only, ordered by key id then version (what a restore
// compares).
std::vector<KeyVersionRow> key_versions_all(Db& db);

std::optional<std::string> alias_target(Db& db, std::string_view alias);
void alias_insert(Db& db, std::string_view alias, std::string_view key_id, std::string_view now);
void alias_update(Db& db, std::string_view alias, std::string_view key_id);
void alias_delete(Db& db, std::string_view alias);
std::vector<std::string> aliases_of(Db& db, std::string_view key_id);
std::vector<std::pair<std::string, std::string>> alias_list(Db& db);  // (alias, key id)

void tag_set(Db& db, std::string_view key_id, std::string_view name, std::string_view value);
bool tag_remove(Db& db, std::string_view key_id, std::string_view name);
std::vector<std::pair<std::string, std::string>> tags_of(Db& db, std::string_view key_id);

// ---- secrets (secret_repo.cpp) ----
using SecretRow = SecretMetadata;
struct SecretVersionRow : SecretVersionMetadata {
  Bytes value;  // sealed; empty when read as metadata only
};
void secret_insert(Db& db, const SecretRow& s);
void secret_update(Db& db, const SecretRow& s);
void secret_delete(Db& db, std::string_view id);  // versions, tags and its policy go with it
std::optional<SecretRow> secret_by_name(Db& db, std::string_view name);
std::vector<SecretRow> secret_list(Db& db);  // ordered by name
// Secrets whose rotation period has elapsed at `now`, not scheduled for deletion.
std::vector<SecretRow> secrets_due_rotation(Db& db, std::string_view now);
std::vector<SecretRow> secrets_due_deletion(Db& db, std::string_view now);

void secret_version_insert(Db& db, const SecretVersionRow& v);
std::optional<SecretVersionRow> secret_version_get(Db& db, std::string_view secret_id,
                                                   std::int64_t version);
std::optional<SecretVersionRow> secret_version_at_stage(Db& db, std::string_view secret_id,
                                                        SecretStage stage);
std::vector<SecretVersionRow> secret_versions(Db& db,
                                              std::string_view secret_id);  // metadata, ascending
// Every version of every secret, metadata only, ordered by secret id then version.
std::vector<SecretVersionRow> secret_versions_all(Db& db);
// A stage names at most one version of a secret: clear it, then set it on another version.
void secret_stage_clear(Db& db, std::string_view secret_id, SecretStage stage);
void secret_stage_set(Db& db, std::string_view secret_id, std::int64_t version, SecretStage stage);
// Deletes the oldest versions without a stage until at most `keep` remain; returns how many.
std::int64_t secret_versions_purge(Db& db, std::string_view secret_id, std::int64_t keep);

void secret_tag_set(Db& db, std::string_view secret_id, std::string_view name,
                    std::string_view value);
std::vector<std::pair<std::string, std::string>> secret_tags_of(Db& db, std::string_view secret_id);

// ---- grants (grant_repo.cpp) ----
using GrantRow = GrantInfo;
struct GrantQuery {
  std::optional<std::string> key_id;
  std::optional<std::int64_t> grantee_uid;
  std::optional<std::string> live_at;  // RFC 3339: only active grants not expired then
  std::optional<std::string> after;    // a grant id: rows after it in (created, id) order
  std::int64_t limit = 100;
};
void grant_insert(Db& db, const GrantRow& g);
// Sets a grant's state and the time it ended.
void grant_end(Db& db, std::string_view id, GrantState state, std::string_view ended_at);
std::optional<GrantRow> grant_get(Db& db, std::string_view id);
// Ordered by (created, id).
std::vector<GrantRow> grant_list(Db& db, const GrantQuery& q);
// Every grant of a key, whatever its state (the key_id index): what the authorizer reads.
std::vector<GrantRow> grants_of_key(Db& db, std::string_view key_id);
std::optional<GrantRow> grant_active_by_name(Db& db, std::string_view key_id,
                                             std::string_view name);

// ---- import parameters of keys of origin external (key_repo.cpp; FORMAT.md §12.5) ----
struct ImportParamsRow {
  std::string token_id;  // lower-case hex of SHA-256 of the token's secret
  std::string key_id;
  WrappingAlgorithm wrapping_algorithm = WrappingAlgorithm::rsaes_oaep_sha_256;
  std::string created;
  std::string expires;
  std::optional<std::string> used_at;
  std::optional<Bytes> private_key;  // sealed PKCS #8 of the wrapping key; none once used
};
void import_params_insert(Db& db, const ImportParamsRow& row);
std::optional<ImportParamsRow> import_params_get(Db& db, std::string_view token_id);
// Marks the parameters used and drops their private key.
void import_params_use(Db& db, std::string_view token_id, std::string_view at);
// Deletes parameters that expired before `now` or were used; returns how many.
std::int64_t import_params_purge(Db& db, std::string_view now);

// ---- key policies and secret policies (policy_repo.cpp) ----
struct KeyPolicyRow {
  std::string key_id;
  std::string text;    // the policy file's bytes as given (TOML or JSON)
  std::string sha256;  // lower-case hex of SHA-256(text)
  std::string updated;
  std::int64_t updated_by_uid = 0;
};
std::optional<KeyPolicyRow> key_policy_get(Db& db, std::string_view key_id);
// Inserts or replaces the key's policy, and seals the row.
void key_policy_put(Db& db, const KeyPolicyRow& row);
// True when the key had a policy.
bool key_policy_delete(Db& db, std::string_view key_id);

struct SecretPolicyRow {
  std::string secret_id;
  std::string text;    // the policy file's bytes as given (TOML or JSON)
  std::string sha256;  // lower-case hex of SHA-256(text)
  std::string updated;
  std::int64_t updated_by_uid = 0;
};
std::optional<SecretPolicyRow> secret_policy_get(Db& db, std::string_view secret_id);
// Inserts or replaces the secret's policy, and seals the row.
void secret_policy_put(Db& db, const SecretPolicyRow& row);
// True when the secret had a policy. secret_delete deletes it too.
bool secret_policy_delete(Db& db, std::string_view secret_id);

}  // namespace kms::store
