// The vault schema in PostgreSQL and its migrations, keyed by kmsctl_schema.version as the
// SQLite schema is by PRAGMA user_version (schema.cpp). The tables, columns and constraints are
// those of SQLite's schema at the version the PostgreSQL store started from (9), with
// PostgreSQL's types: INTEGER -> BIGINT, BLOB -> BYTEA, and TEXT with the "C" collation, so that
// names and times sort byte by byte as in SQLite, whatever the database's locale. A migration
// from version N to N+1 is appended to kPgMigrations (at index N - kPgFirstVersion) and never
// edited once released.
#include <algorithm>
#include <optional>
#include <span>

#include <fmt/format.h>

#include "kms/error.hpp"
#include "store/pg.hpp"
#include "store/store.hpp"

namespace kms::store {
namespace {

constexpr int kPgFirstVersion = 9;

// Version 9, whole. The due-rotation expressions of src/store/due.hpp are indexed through
// kmsctl_plus_days, which computes what SQLite's strftime('%Y-%m-%dT%H:%M:%fZ', t, '+N days')
// does; json_extract does for the audit log's parameters what SQLite's does for a `$.name` path.
const char* const kPgSchema = R"sql(
CREATE TABLE vault_meta (
  singleton      BIGINT PRIMARY KEY CHECK (singleton = 1),
  vault_id       TEXT COLLATE "C" NOT NULL,
  created        TEXT COLLATE "C" NOT NULL,
  pkcs11_module  TEXT COLLATE "C" NOT NULL,
  token_label    TEXT COLLATE "C" NOT NULL,
  token_serial   TEXT COLLATE "C" NOT NULL,
  softhsm_conf   TEXT COLLATE "C" NOT NULL,
  root_key_gen   BIGINT NOT NULL,
  sealed_master  BYTEA NOT NULL,
  mac            BYTEA
);
CREATE TABLE audit_log (
  seq         BIGINT PRIMARY KEY,
  time        TEXT COLLATE "C" NOT NULL,
  principal   TEXT COLLATE "C" NOT NULL,
  uid         BIGINT NOT NULL,
  action      TEXT COLLATE "C" NOT NULL,
  resource    TEXT COLLATE "C" NOT NULL,
  params      TEXT COLLATE "C" NOT NULL,
  outcome     TEXT COLLATE "C" NOT NULL CHECK (outcome IN ('ok', 'error', 'denied', 'started')),
  error_code  TEXT COLLATE "C" NOT NULL,
  prev_hash   BYTEA NOT NULL UNIQUE,
  hash        BYTEA NOT NULL UNIQUE,
  mac         BYTEA NOT NULL,
  state       BYTEA
);
CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_resource ON audit_log (resource, seq);
CREATE INDEX audit_log_principal ON audit_log (principal, seq);
CREATE INDEX audit_log_outcome ON audit_log (outcome, seq);
CREATE TABLE keys (
  id                    TEXT COLLATE "C" PRIMARY KEY,
  spec                  TEXT COLLATE "C" NOT NULL,
  usage                 TEXT COLLATE "C" NOT NULL,
  description           TEXT COLLATE "C" NOT NULL,
  state                 TEXT COLLATE "C" NOT NULL
                          CHECK (state IN ('Enabled', 'Disabled', 'PendingDeletion', 'PendingImport')),
  protection            TEXT COLLATE "C" NOT NULL CHECK (protection IN ('software', 'hsm')),
  created               TEXT COLLATE "C" NOT NULL,
  rotation_period_days  BIGINT,
  last_rotated          TEXT COLLATE "C" NOT NULL,
  deletion_date         TEXT COLLATE "C",
  primary_version       BIGINT NOT NULL,
  highest_lost_version  BIGINT NOT NULL DEFAULT 0,
  mac                   BYTEA,
  origin                TEXT COLLATE "C" NOT NULL DEFAULT 'kms' CHECK (origin IN ('kms', 'external')),
  material_expires      TEXT COLLATE "C",
  material_commitment   BYTEA
);
CREATE INDEX keys_created ON keys (created, id);
CREATE INDEX keys_state ON keys (state, created, id);
CREATE INDEX keys_deletion ON keys (deletion_date) WHERE deletion_date IS NOT NULL;
CREATE INDEX keys_rotation ON keys (rotation_period_days) WHERE rotation_period_days IS NOT NULL;
CREATE INDEX keys_material_expiry ON keys (material_expires) WHERE material_expires IS NOT NULL;
CREATE TABLE key_versions (
  key_id    TEXT COLLATE "C" NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  version   BIGINT NOT NULL CHECK (version >= 1),
  created   TEXT COLLATE "C" NOT NULL,
  material  BYTEA,
  mac       BYTEA,
  PRIMARY KEY (key_id, version)
);
CREATE TABLE key_aliases (
  alias    TEXT COLLATE "C" PRIMARY KEY,
  key_id   TEXT COLLATE "C" NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  created  TEXT COLLATE "C" NOT NULL,
  mac      BYTEA
);
CREATE INDEX key_aliases_key ON key_aliases (key_id);
CREATE TABLE key_tags (
  key_id  TEXT COLLATE "C" NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  name    TEXT COLLATE "C" NOT NULL,
  value   TEXT COLLATE "C" NOT NULL,
  mac     BYTEA,
  PRIMARY KEY (key_id, name)
);
CREATE TABLE secrets (
  id                    TEXT COLLATE "C" PRIMARY KEY,
  name                  TEXT COLLATE "C" NOT NULL UNIQUE,
  key_id                TEXT COLLATE "C" NOT NULL,
  description           TEXT COLLATE "C" NOT NULL,
  created               TEXT COLLATE "C" NOT NULL,
  updated               TEXT COLLATE "C" NOT NULL,
  next_version          BIGINT NOT NULL CHECK (next_version >= 1),
  gen_length            BIGINT NOT NULL,
  gen_charset           TEXT COLLATE "C" NOT NULL,
  gen_exclude           TEXT COLLATE "C" NOT NULL,
  rotation_period_days  BIGINT,
  rotation_command      TEXT COLLATE "C",
  last_rotated          TEXT COLLATE "C",
  rotation_status       TEXT COLLATE "C" NOT NULL,
  rotation_error        TEXT COLLATE "C",
  deletion_date         TEXT COLLATE "C",
  mac                   BYTEA
);
CREATE INDEX secrets_deletion ON secrets (deletion_date) WHERE deletion_date IS NOT NULL;
CREATE INDEX secrets_rotation ON secrets (rotation_period_days)
  WHERE rotation_period_days IS NOT NULL;
CREATE TABLE secret_versions (
  secret_id  TEXT COLLATE "C" NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
  version    BIGINT NOT NULL CHECK (version >= 1),
  created    TEXT COLLATE "C" NOT NULL,
  stage      TEXT COLLATE "C" CHECK (stage IN ('current', 'previous', 'pending')),
  value      BYTEA NOT NULL,
  mac        BYTEA,
  PRIMARY KEY (secret_id, version)
);
CREATE UNIQUE INDEX secret_versions_stage ON secret_versions (secret_id, stage)
  WHERE stage IS NOT NULL;
CREATE TABLE secret_tags (
  secret_id  TEXT COLLATE "C" NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
  name       TEXT COLLATE "C" NOT NULL,
  value      TEXT COLLATE "C" NOT NULL,
  mac        BYTEA,
  PRIMARY KEY (secret_id, name)
);
CREATE TABLE grants (
  id              TEXT COLLATE "C" PRIMARY KEY,
  key_id          TEXT COLLATE "C" NOT NULL,
  grantee_uid     BIGINT NOT NULL,
  grantee         TEXT COLLATE "C" NOT NULL,
  operations      TEXT COLLATE "C" NOT NULL,
  context_equals  BYTEA,
  context_subset  BYTEA NOT NULL,
  retiring_uid    BIGINT,
  retiring        TEXT COLLATE "C",
  name            TEXT COLLATE "C",
  created_at      TEXT COLLATE "C" NOT NULL,
  created_by_uid  BIGINT NOT NULL,
  expires_at      TEXT COLLATE "C",
  state           TEXT COLLATE "C" NOT NULL CHECK (state IN ('active', 'retired', 'revoked')),
  ended_at        TEXT COLLATE "C",
  mac             BYTEA
);
CREATE INDEX grants_key ON grants (key_id, created_at, id);
CREATE INDEX grants_grantee ON grants (grantee_uid, created_at, id);
CREATE INDEX grants_created ON grants (created_at, id);
CREATE UNIQUE INDEX grants_name ON grants (key_id, name)
  WHERE name IS NOT NULL AND state = 'active';
CREATE TABLE key_policies (
  key_id          TEXT COLLATE "C" PRIMARY KEY,
  text            TEXT COLLATE "C" NOT NULL,
  sha256          TEXT COLLATE "C" NOT NULL,
  updated_at      TEXT COLLATE "C" NOT NULL,
  updated_by_uid  BIGINT NOT NULL,
  mac             BYTEA
);
CREATE TABLE secret_policies (
  secret_id       TEXT COLLATE "C" PRIMARY KEY,
  text            TEXT COLLATE "C" NOT NULL,
  sha256          TEXT COLLATE "C" NOT NULL,
  updated_at      TEXT COLLATE "C" NOT NULL,
  updated_by_uid  BIGINT NOT NULL,
  mac             BYTEA
);
CREATE TABLE key_import_params (
  token_id            TEXT COLLATE "C" PRIMARY KEY,
  key_id              TEXT COLLATE "C" NOT NULL,
  wrapping_algorithm  TEXT COLLATE "C" NOT NULL,
  created             TEXT COLLATE "C" NOT NULL,
  expires             TEXT COLLATE "C" NOT NULL,
  used_at             TEXT COLLATE "C",
  private_key         BYTEA,
  mac                 BYTEA
);
CREATE INDEX key_import_params_key ON key_import_params (key_id);
CREATE TABLE row_counts (
  name  TEXT COLLATE "C" PRIMARY KEY CHECK (name IN ('keys', 'secrets')),
  n     BIGINT NOT NULL
);
INSERT INTO row_counts (name, n) VALUES ('keys', 0), ('secrets', 0);
CREATE FUNCTION kmsctl_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE row_counts SET n = n + CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END
    WHERE name = TG_TABLE_NAME;
  RETURN NULL;
END $$;
CREATE TRIGGER keys_counted AFTER INSERT OR DELETE ON keys
  FOR EACH ROW EXECUTE FUNCTION kmsctl_count_rows();
CREATE TRIGGER secrets_counted AFTER INSERT OR DELETE ON secrets
  FOR EACH ROW EXECUTE FUNCTION kmsctl_count_rows();
CREATE FUNCTION kmsctl_plus_days(t TEXT, n BIGINT) RETURNS TEXT
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT to_char(t::timestamp + make_interval(days => n::int),
                       'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') COLLATE "C" $$;
CREATE INDEX keys_rotation_due ON keys (kmsctl_plus_days(last_rotated, rotation_period_days))
  WHERE rotation_period_days IS NOT NULL AND state = 'Enabled';
CREATE INDEX secrets_rotation_due
  ON secrets (kmsctl_plus_days(coalesce(last_rotated, created), rotation_period_days))
  WHERE rotation_period_days IS NOT NULL AND deletion_date IS NULL;
CREATE FUNCTION json_extract(doc TEXT, path TEXT) RETURNS TEXT
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT (doc::jsonb) ->> substr(path, 3) $$;
)sql";

// kPgMigrations[i]: version kPgFirstVersion + i -> kPgFirstVersion + i + 1. None yet.
constexpr std::span<const char* const> kPgMigrations{};
static_assert(kPgFirstVersion + kPgMigrations.size() == kSchemaVersion);

}  // namespace

void Db::migrate_postgres(Mode mode) {
  if (mode == Mode::open_existing) {
    // Every command opens the vault: a schema that is current is read without the writer lock,
    // which would make every command wait for every writer. No version table: no vault there
    // (the locked path below says so).
    std::optional<int> current;
    try {
      current = schema_version();
    } catch (const Error&) {
      if (!pg_->alive()) throw;
    }
    if (current == kSchemaVersion) return;
  }
  // The version table first (every kmsctl makes it the same way), then the version in it, under
  // the writer lock: two processes creating or migrating at once do it once.
  Tx tx(*this, Tx::Kind::write);
  exec(
      "CREATE TABLE IF NOT EXISTS kmsctl_schema ("
      " singleton BIGINT PRIMARY KEY CHECK (singleton = 1),"
      " version BIGINT NOT NULL, application_id BIGINT NOT NULL)");
  const int v = schema_version();
  if (v > kSchemaVersion) {
    throw Error(Code::unavailable,
                fmt::format("the vault {} has schema version {}, newer than this kmsctl reads ({})",
                            display_name(), v, kSchemaVersion),
                Remedy::upgrade);
  }
  // A schema without a header is a vault whose init did not finish (the token refused, say):
  // create_new takes it over.
  const bool has_header = v != 0 && Stmt(*this, "SELECT 1 FROM vault_meta").step();
  if (mode == Mode::create_new && has_header) {
    throw Error(Code::refused,
                fmt::format("the database {} already holds a kmsctl vault", display_name()),
                "choose another database, or open the vault it holds");
  }
  if (mode == Mode::open_existing && v == 0) {
    throw Error(Code::unavailable, fmt::format("no vault in the database {}", display_name()),
                Remedy::create_vault);
  }
  if (v == kSchemaVersion) {
    tx.commit();
    return;
  }
  if (v != 0 && v < kPgFirstVersion) {
    throw Error(Code::integrity,
                fmt::format("the database {} says it holds a vault of schema version {}, which "
                            "no kmsctl wrote in PostgreSQL",
                            display_name(), v),
                Remedy::verify_then_restore_vault);
  }
  if (v == 0) {
    exec(kPgSchema);
    exec(fmt::format("INSERT INTO kmsctl_schema (singleton, version, application_id) "
                     "VALUES (1, {}, {})",
                     kPgFirstVersion, kLiveVaultId)
             .c_str());
  }
  for (int i = std::max(v, kPgFirstVersion); i < kSchemaVersion; ++i) {
    exec(kPgMigrations[static_cast<std::size_t>(i - kPgFirstVersion)]);
  }
  exec(fmt::format("UPDATE kmsctl_schema SET version = {}", kSchemaVersion).c_str());
  tx.commit();
}

}  // namespace kms::store
