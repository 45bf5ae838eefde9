// The vault schema and its migrations, keyed by PRAGMA user_version. A migration from version
// N to N+1 is appended to kMigrations and never edited once released.
#include <fmt/format.h>

#include "kms/error.hpp"
#include "store/store.hpp"

namespace kms::store {
namespace {

const char* const kMigrations[] = {
    // 0 -> 1: the vault header and the audit log.
    R"sql(
CREATE TABLE vault_meta (
  singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
  vault_id       TEXT NOT NULL,
  created        TEXT NOT NULL,
  pkcs11_module  TEXT NOT NULL,
  token_label    TEXT NOT NULL,
  token_serial   TEXT NOT NULL,
  softhsm_conf   TEXT NOT NULL,
  root_key_gen   INTEGER NOT NULL,
  sealed_master  BLOB NOT NULL
);
CREATE TABLE audit_log (
  seq         INTEGER PRIMARY KEY,
  time        TEXT NOT NULL,
  principal   TEXT NOT NULL,
  uid         INTEGER NOT NULL,
  action      TEXT NOT NULL,
  resource    TEXT NOT NULL,
  params      TEXT NOT NULL,
  outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'denied')),
  error_code  TEXT NOT NULL,
  prev_hash   BLOB NOT NULL UNIQUE,
  hash        BLOB NOT NULL UNIQUE,
  mac         BLOB NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_resource ON audit_log (resource, seq);
CREATE INDEX audit_log_principal ON audit_log (principal, seq);
CREATE INDEX audit_log_outcome ON audit_log (outcome, seq);
)sql",
    // 1 -> 2: keys, their versions, aliases and tags.
    R"sql(
CREATE TABLE keys (
  id                    TEXT PRIMARY KEY,
  spec                  TEXT NOT NULL,
  usage                 TEXT NOT NULL,
  description           TEXT NOT NULL,
  state                 TEXT NOT NULL CHECK (state IN ('Enabled', 'Disabled', 'PendingDeletion')),
  protection            TEXT NOT NULL CHECK (protection IN ('software', 'hsm')),
  created               TEXT NOT NULL,
  rotation_period_days  INTEGER,
  last_rotated          TEXT NOT NULL,
  deletion_date         TEXT,
  primary_version       INTEGER NOT NULL
);
CREATE INDEX keys_created ON keys (created, id);
CREATE INDEX keys_state ON keys (state, created, id);
CREATE INDEX keys_deletion ON keys (deletion_date) WHERE deletion_date IS NOT NULL;
CREATE INDEX keys_rotation ON keys (rotation_period_days) WHERE rotation_period_days IS NOT NULL;
CREATE TABLE key_versions (
  key_id    TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  version   INTEGER NOT NULL CHECK (version >= 1),
  created   TEXT NOT NULL,
  material  BLOB,
  PRIMARY KEY (key_id, version)
) WITHOUT ROWID;
CREATE TABLE key_aliases (
  alias    TEXT PRIMARY KEY,
  key_id   TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  created  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX key_aliases_key ON key_aliases (key_id);
CREATE TABLE key_tags (
  key_id  TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  name    TEXT NOT NULL,
  value   TEXT NOT NULL,
  PRIMARY KEY (key_id, name)
) WITHOUT ROWID;
)sql",
    // 2 -> 3: secrets, their versions (values sealed) and tags. Self-contained: it
    // references no other table, so it can be renumbered if another migration lands first.
    R"sql(
CREATE TABLE secrets (
  id                    TEXT PRIMARY KEY,
  name                  TEXT NOT NULL UNIQUE,
  key_id                TEXT NOT NULL,
  description           TEXT NOT NULL,
  created               TEXT NOT NULL,
  updated               TEXT NOT NULL,
  next_version          INTEGER NOT NULL CHECK (next_version >= 1),
  gen_length            INTEGER NOT NULL,
  gen_charset           TEXT NOT NULL,
  gen_exclude           TEXT NOT NULL,
  rotation_period_days  INTEGER,
  rotation_command      TEXT,
  last_rotated          TEXT,
  rotation_status       TEXT NOT NULL,
  rotation_error        TEXT,
  deletion_date         TEXT
);
CREATE INDEX secrets_deletion ON secrets (deletion_date) WHERE deletion_date IS NOT NULL;
CREATE INDEX secrets_rotation ON secrets (rotation_period_days) WHERE rotation_period_days IS NOT NULL;
CREATE TABLE secret_versions (
  secret_id  TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
  version    INTEGER NOT NULL CHECK (version >= 1),
  created    TEXT NOT NULL,
  stage      TEXT CHECK (stage IN ('current', 'previous', 'pending')),
  value      BLOB NOT NULL,
  PRIMARY KEY (secret_id, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX secret_versions_stage ON secret_versions (secret_id, stage)
  WHERE stage IS NOT NULL;
CREATE TABLE secret_tags (
  secret_id  TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
  name       TEXT NOT NULL,
  value      TEXT NOT NULL,
  PRIMARY KEY (secret_id, name)
) WITHOUT ROWID;
)sql",
    // 3 -> 4: the highest key version number a restore dropped (never made again), authenticated
    // rows (a MAC per row, docs/FORMAT.md §14), the state digest in the
    // audit records that change the state, and the `started` outcome of a file operation whose
    // end is recorded by a second record. The log is copied into a new table because SQLite
    // cannot change a CHECK constraint in place. Rows of an older vault keep a NULL MAC until
    // the first open by this kmsctl authenticates them (`vault.upgrade`).
    R"sql(
ALTER TABLE keys ADD COLUMN highest_lost_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vault_meta ADD COLUMN mac BLOB;
ALTER TABLE keys ADD COLUMN mac BLOB;
ALTER TABLE key_versions ADD COLUMN mac BLOB;
ALTER TABLE key_aliases ADD COLUMN mac BLOB;
ALTER TABLE key_tags ADD COLUMN mac BLOB;
ALTER TABLE secrets ADD COLUMN mac BLOB;
ALTER TABLE secret_versions ADD COLUMN mac BLOB;
ALTER TABLE secret_tags ADD COLUMN mac BLOB;
CREATE TABLE audit_log_v4 (
  seq         INTEGER PRIMARY KEY,
  time        TEXT NOT NULL,
  principal   TEXT NOT NULL,
  uid         INTEGER NOT NULL,
  action      TEXT NOT NULL,
  resource    TEXT NOT NULL,
  params      TEXT NOT NULL,
  outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'denied', 'started')),
  error_code  TEXT NOT NULL,
  prev_hash   BLOB NOT NULL UNIQUE,
  hash        BLOB NOT NULL UNIQUE,
  mac         BLOB NOT NULL,
  state       BLOB
);
INSERT INTO audit_log_v4 (seq, time, principal, uid, action, resource, params, outcome,
                          error_code, prev_hash, hash, mac)
  SELECT seq, time, principal, uid, action, resource, params, outcome, error_code, prev_hash,
         hash, mac FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_v4 RENAME TO audit_log;
CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_resource ON audit_log (resource, seq);
CREATE INDEX audit_log_principal ON audit_log (principal, seq);
CREATE INDEX audit_log_outcome ON audit_log (outcome, seq);
)sql",
    // 4 -> 5: grants (docs/POLICY.md §6), authenticated rows from the start. A context is its
    // canonical encoding (docs/FORMAT.md §11.2); operations are policy names joined by commas.
    // Self-contained: it references no other table (a key's grants are deleted with it by
    // key_delete, each leaving the state).
    R"sql(
CREATE TABLE grants (
  id              TEXT PRIMARY KEY,
  key_id          TEXT NOT NULL,
  grantee_uid     INTEGER NOT NULL,
  grantee         TEXT NOT NULL,
  operations      TEXT NOT NULL,
  context_equals  BLOB,
  context_subset  BLOB NOT NULL,
  retiring_uid    INTEGER,
  retiring        TEXT,
  name            TEXT,
  created_at      TEXT NOT NULL,
  created_by_uid  INTEGER NOT NULL,
  expires_at      TEXT,
  state           TEXT NOT NULL CHECK (state IN ('active', 'retired', 'revoked')),
  ended_at        TEXT,
  mac             BLOB
);
CREATE INDEX grants_key ON grants (key_id, created_at, id);
CREATE INDEX grants_grantee ON grants (grantee_uid, created_at, id);
CREATE INDEX grants_created ON grants (created_at, id);
CREATE UNIQUE INDEX grants_name ON grants (key_id, name)
  WHERE name IS NOT NULL AND state = 'active';
)sql",
    // 5 -> 6: key policies (docs/POLICY.md, "Key policies"), one per key, authenticated rows from
    // the start. `text` is the policy file's bytes as given (TOML or JSON), `sha256` the hex of its
    // SHA-256. Self-contained like grants: key_delete deletes a key's policy.
    R"sql(
CREATE TABLE key_policies (
  key_id          TEXT PRIMARY KEY,
  text            TEXT NOT NULL,
  sha256          TEXT NOT NULL,
  updated_at      TEXT NOT NULL,
  updated_by_uid  INTEGER NOT NULL,
  mac             BLOB
);
)sql",
    // 6 -> 7: secret policies (docs/POLICY.md, "Secret policies"), one per secret, keyed by the
    // secret's id, with the columns of key_policies. Self-contained: secret_delete (a purge)
    // deletes a secret's policy.
    R"sql(
CREATE TABLE secret_policies (
  secret_id       TEXT PRIMARY KEY,
  text            TEXT NOT NULL,
  sha256          TEXT NOT NULL,
  updated_at      TEXT NOT NULL,
  updated_by_uid  INTEGER NOT NULL,
  mac             BLOB
);
)sql",
    // 7 -> 8: keys whose material is imported (docs/KEYS.md, "Bring your own key"). The keys
    // table is rebuilt (SQLite cannot change a CHECK in place; migrate() turns foreign keys off
    // around it, so the rows that reference keys stay) to allow the state 'PendingImport' and to
    // add `origin`, `material_expires` and `material_commitment`; its rows keep their MACs
    // (FORMAT.md §14.1: the new columns are in a key's encoding only when it is not a plain
    // 'kms' key). key_import_params holds the wrapping key pairs of `key import-params`, an
    // authenticated row from the start; key_delete deletes a key's.
    R"sql(
CREATE TABLE keys_v8 (
  id                    TEXT PRIMARY KEY,
  spec                  TEXT NOT NULL,
  usage                 TEXT NOT NULL,
  description           TEXT NOT NULL,
  state                 TEXT NOT NULL
                          CHECK (state IN ('Enabled', 'Disabled', 'PendingDeletion', 'PendingImport')),
  protection            TEXT NOT NULL CHECK (protection IN ('software', 'hsm')),
  created               TEXT NOT NULL,
  rotation_period_days  INTEGER,
  last_rotated          TEXT NOT NULL,
  deletion_date         TEXT,
  primary_version       INTEGER NOT NULL,
  highest_lost_version  INTEGER NOT NULL DEFAULT 0,
  mac                   BLOB,
  origin                TEXT NOT NULL DEFAULT 'kms' CHECK (origin IN ('kms', 'external')),
  material_expires      TEXT,
  material_commitment   BLOB
);
INSERT INTO keys_v8 (id, spec, usage, description, state, protection, created,
                     rotation_period_days, last_rotated, deletion_date, primary_version,
                     highest_lost_version, mac)
  SELECT id, spec, usage, description, state, protection, created, rotation_period_days,
         last_rotated, deletion_date, primary_version, highest_lost_version, mac FROM keys;
DROP TABLE keys;
ALTER TABLE keys_v8 RENAME TO keys;
CREATE INDEX keys_created ON keys (created, id);
CREATE INDEX keys_state ON keys (state, created, id);
CREATE INDEX keys_deletion ON keys (deletion_date) WHERE deletion_date IS NOT NULL;
CREATE INDEX keys_rotation ON keys (rotation_period_days) WHERE rotation_period_days IS NOT NULL;
CREATE INDEX keys_material_expiry ON keys (material_expires) WHERE material_expires IS NOT NULL;
CREATE TABLE key_import_params (
  token_id            TEXT PRIMARY KEY,
  key_id              TEXT NOT NULL,
  wrapping_algorithm  TEXT NOT NULL,
  created             TEXT NOT NULL,
  expires             TEXT NOT NULL,
  used_at             TEXT,
  private_key         BLOB,
  mac                 BLOB
);
CREATE INDEX key_import_params_key ON key_import_params (key_id);
)sql",
    // 8 -> 9: what `kmsctl status` counts, without reading every key and secret: row_counts
    // holds the number of keys and of secrets, kept by triggers (checked against the rows by
    // `audit verify`); and the due rotations (store/due.hpp) get indexes on their expressions.
    // IF NOT EXISTS: a file made to look older may still hold them.
    R"sql(
CREATE TABLE IF NOT EXISTS row_counts (
  name  TEXT PRIMARY KEY CHECK (name IN ('keys', 'secrets')),
  n     INTEGER NOT NULL
);
INSERT OR REPLACE INTO row_counts (name, n) SELECT 'keys', count(*) FROM keys;
INSERT OR REPLACE INTO row_counts (name, n) SELECT 'secrets', count(*) FROM secrets;
CREATE TRIGGER IF NOT EXISTS keys_counted AFTER INSERT ON keys
  BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'keys'; END;
CREATE TRIGGER IF NOT EXISTS keys_uncounted AFTER DELETE ON keys
  BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'keys'; END;
CREATE TRIGGER IF NOT EXISTS secrets_counted AFTER INSERT ON secrets
  BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'secrets'; END;
CREATE TRIGGER IF NOT EXISTS secrets_uncounted AFTER DELETE ON secrets
  BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'secrets'; END;
CREATE INDEX IF NOT EXISTS keys_rotation_due
  ON keys (strftime('%Y-%m-%dT%H:%M:%fZ', last_rotated, '+' || rotation_period_days || ' days'))
  WHERE rotation_period_days IS NOT NULL AND state = 'Enabled';
CREATE INDEX IF NOT EXISTS secrets_rotation_due
  ON secrets (strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(last_rotated, created),
                       '+' || rotation_period_days || ' days'))
  WHERE rotation_period_days IS NOT NULL AND deletion_date IS NULL;
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

}  // namespace

void Db::migrate(Mode mode) {
  const int v = schema_version();
  if (v > kSchemaVersion) {
    throw Error(Code::unavailable,
                fmt::format("the vault {} has schema version {}, newer than this kmsctl reads ({})",
                            path_.string(), v, kSchemaVersion),
                Remedy::upgrade);
  }
  if (v == kSchemaVersion) return;
  if (v == 0 && mode != Mode::create_new) {
    throw Error(Code::integrity,
                fmt::format("{} is a SQLite file but not a kmsctl vault", path_.string()),
                Remedy::choose_vault);
  }
  // Migration 7 -> 8 rebuilds the keys table: with foreign keys on, dropping the old one would
  // delete the rows that reference it (ON DELETE CASCADE). The pragma is a no-op inside a
  // transaction, so it goes around it; foreign_key_check then proves the rebuild kept every
  // reference.
  const bool rebuilds_keys = v >= 2 && v < 8;
  if (rebuilds_keys) exec("PRAGMA foreign_keys=OFF");
  try {
    Tx tx(*this, Tx::Kind::write);
    if (schema_version() != v) {  // another process migrated meanwhile (tx rolls back)
      if (rebuilds_keys) exec("PRAGMA foreign_keys=ON");
      return;
    }
    for (int i = v; i < kSchemaVersion; ++i) exec(kMigrations[i]);
    if (rebuilds_keys) {
      Stmt check(*this, "PRAGMA foreign_key_check");
      if (check.step()) {
        throw Error(Code::integrity,
                    fmt::format("{}: a row refers to a key that is not there (table {})",
                                path_.string(), check.col_text(0)),
                    Remedy::verify_then_restore_vault);
      }
    }
    exec(fmt::format("PRAGMA user_version={}", kSchemaVersion).c_str());
    tx.commit();
  } catch (...) {
    if (rebuilds_keys) exec("PRAGMA foreign_keys=ON");
    throw;
  }
  if (rebuilds_keys) exec("PRAGMA foreign_keys=ON");
}

}  // namespace kms::store
