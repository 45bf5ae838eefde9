// Secrets, their versions and tags. Values are stored only as sealed records.
#include <fmt/format.h>

#include "store/due.hpp"
#include "store/rows.hpp"
#include "store/store.hpp"

namespace kms::store {
namespace {

using rows::Table;

constexpr const char* kSecretColumns =
    "id, name, key_id, description, created, updated, next_version, gen_length, gen_charset, "
    "gen_exclude, rotation_period_days, rotation_command, last_rotated, rotation_status, "
    "rotation_error, deletion_date";

std::optional<std::string> opt_text(const Stmt& s, int i) {
  if (s.col_null(i)) return std::nullopt;
  return s.col_text(i);
}

const char* secret_select() { return rows::columns(Table::secrets); }

SecretRow read_secret(Db& db, const Stmt& s) {
  rows::check(db, Table::secrets, s);
  SecretRow r;
  r.id = s.col_text(0);
  r.name = s.col_text(1);
  r.key_id = s.col_text(2);
  r.description = s.col_text(3);
  r.created = s.col_text(4);
  r.updated = s.col_text(5);
  r.next_version = s.col_int(6);
  r.gen_length = s.col_int(7);
  r.gen_charset = s.col_text(8);
  r.gen_exclude = s.col_text(9);
  if (!s.col_null(10)) r.rotation_period_days = s.col_int(10);
  r.rotation_command = opt_text(s, 11);
  r.last_rotated = opt_text(s, 12);
  r.rotation_status = rows::name_column(Table::secrets, s, 13, parse_rotation_status);
  r.rotation_error = opt_text(s, 14);
  r.deletion_date = opt_text(s, 15);
  return r;
}

void bind_opt(Stmt& s, int i, const std::optional<std::string>& v) {
  if (v)
    s.bind(i, std::string_view(*v));
  else
    s.bind_null(i);
}

void bind_secret(Stmt& s, const SecretRow& r) {
  s.bind(1, r.id).bind(2, r.name).bind(3, r.key_id).bind(4, r.description).bind(5, r.created);
  s.bind(6, r.updated).bind(7, r.next_version).bind(8, r.gen_length).bind(9, r.gen_charset);
  s.bind(10, r.gen_exclude);
  if (r.rotation_period_days)
    s.bind(11, *r.rotation_period_days);
  else
    s.bind_null(11);
  bind_opt(s, 12, r.rotation_command);
  bind_opt(s, 13, r.last_rotated);
  s.bind(14, rotation_status_name(r.rotation_status));
  bind_opt(s, 15, r.rotation_error);
  bind_opt(s, 16, r.deletion_date);
}

std::vector<SecretRow> read_secrets(Db& db, Stmt& s) {
  std::vector<SecretRow> out;
  while (s.step()) out.push_back(read_secret(db, s));
  return out;
}

// Columns: secret_id, version, created, stage, value, mac.
SecretVersionRow read_version(Db& db, const Stmt& s, bool with_value) {
  rows::check(db, Table::secret_versions, s);
  SecretVersionRow v{{s.col_text(0), s.col_int(1), s.col_text(2), std::nullopt}, {}};
  if (!s.col_null(3)) v.stage = rows::name_column(Table::secret_versions, s, 3, parse_secret_stage);
  if (with_value) {
    const ByteView b = s.col_blob(4);
    v.value.assign(b.begin(), b.end());
  }
  return v;
}

std::string version_select(const char* where) {
  return fmt::format("SELECT {} FROM secret_versions {}", rows::columns(Table::secret_versions),
                     where);
}

// Runs a DELETE ... RETURNING mac: each deleted row leaves the state. Returns how many.
std::int64_t delete_rows(Stmt& s) {
  std::vector<Bytes> macs;
  while (s.step()) {
    const ByteView m = s.col_blob(0);
    macs.emplace_back(m.begin(), m.end());
  }
  for (const Bytes& m : macs) rows::forget(s.db(), m);
  return static_cast<std::int64_t>(macs.size());
}

}  // namespace

void secret_insert(Db& db, const SecretRow& r) {
  Stmt s(db, fmt::format("INSERT INTO secrets ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                         "?, ?, ?)",
                         kSecretColumns)
                 .c_str());
  bind_secret(s, r);
  s.step();
  rows::seal(db, Table::secrets, {r.id});
}

void secret_update(Db& db, const SecretRow& r) {
  Stmt s(db,
         "UPDATE secrets SET name = ?2, key_id = ?3, description = ?4, created = ?5, updated = ?6, "
         "next_version = ?7, gen_length = ?8, gen_charset = ?9, gen_exclude = ?10, "
         "rotation_period_days = ?11, rotation_command = ?12, last_rotated = ?13, "
         "rotation_status = ?14, rotation_error = ?15, deletion_date = ?16 WHERE id = ?1");
  bind_secret(s, r);
  s.step();
  rows::seal(db, Table::secrets, {r.id});
}

void secret_delete(Db& db, std::string_view id) {
  // The rows ON DELETE CASCADE would remove go first, each leaving the state.
  for (const char* sql : {"DELETE FROM secret_versions WHERE secret_id = ? RETURNING mac",
                          "DELETE FROM secret_tags WHERE secret_id = ? RETURNING mac",
                          "DELETE FROM secret_policies WHERE secret_id = ? RETURNING mac",
                          "DELETE FROM secrets WHERE id = ? RETURNING mac"}) {
    Stmt s(db, sql);
    s.bind(1, id);
    delete_rows(s);
  }
}

std::optional<SecretRow> secret_by_name(Db& db, std::string_view name) {
  Stmt s(db, fmt::format("SELECT {} FROM secrets WHERE name = ?", secret_select()).c_str());
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return read_secret(db, s);
}

std::vector<SecretRow> secret_list(Db& db) {
  Stmt s(db, fmt::format("SELECT {} FROM secrets ORDER BY name", secret_select()).c_str());
  return read_secrets(db, s);
}

namespace {
std::vector<SecretRow> secrets_due(Db& db, const due::Due& due, std::string_view now) {
  Stmt s(db, fmt::format("SELECT {} FROM {} WHERE {} ORDER BY name", secret_select(),
                         due::from(db, due), due::where(db, due))
                 .c_str());
  s.bind(1, now);
  return read_secrets(db, s);
}
}  // namespace

std::vector<SecretRow> secrets_due_rotation(Db& db, std::string_view now) {
  return secrets_due(db, due::kSecretRotation, now);
}

std::vector<SecretRow> secrets_due_deletion(Db& db, std::string_view now) {
  return secrets_due(db, due::kSecretDeletion, now);
}

void secret_version_insert(Db& db, const SecretVersionRow& v) {
  Stmt s(db,
         "INSERT INTO secret_versions (secret_id, version, created, stage, value) "
         "VALUES (?, ?, ?, ?, ?)");
  s.bind(1, v.secret_id).bind(2, v.version).bind(3, v.created);
  if (v.stage)
    s.bind(4, secret_stage_name(*v.stage));
  else
    s.bind_null(4);
  s.bind(5, ByteView(v.value));
  s.step();
  rows::seal(db, Table::secret_versions, {v.secret_id, v.version});
}

std::optional<SecretVersionRow> secret_version_get(Db& db, std::string_view secret_id,
                                                   std::int64_t version) {
  Stmt s(db, version_select("WHERE secret_id = ? AND version = ?").c_str());
  s.bind(1, secret_id).bind(2, version);
  if (!s.step()) return std::nullopt;
  return read_version(db, s, true);
}

std::optional<SecretVersionRow> secret_version_at_stage(Db& db, std::string_view secret_id,
                                                        SecretStage stage) {
  Stmt s(db, version_select("WHERE secret_id = ? AND stage = ?").c_str());
  s.bind(1, secret_id).bind(2, secret_stage_name(stage));
  if (!s.step()) return std::nullopt;
  return read_version(db, s, true);
}

std::vector<SecretVersionRow> secret_versions(Db& db, std::string_view secret_id) {
  Stmt s(db, version_select("WHERE secret_id = ? ORDER BY version").c_str());
  s.bind(1, secret_id);
  std::vector<SecretVersionRow> out;
  while (s.step()) out.push_back(read_version(db, s, false));
  return out;
}

std::vector<SecretVersionRow> secret_versions_all(Db& db) {
  Stmt s(db, version_select("ORDER BY secret_id, version").c_str());
  std::vector<SecretVersionRow> out;
  while (s.step()) out.push_back(read_version(db, s, false));
  return out;
}

void secret_stage_clear(Db& db, std::string_view secret_id, SecretStage stage) {
  // Read (and so checked) before the change: a row is MACed again only as kmsctl read it.
  if (const auto v = secret_version_at_stage(db, secret_id, stage)) {
    Stmt s(db, "UPDATE secret_versions SET stage = NULL WHERE secret_id = ? AND version = ?");
    s.bind(1, secret_id).bind(2, v->version);
    s.step();
    rows::seal(db, Table::secret_versions, {secret_id, v->version});
  }
}

void secret_stage_set(Db& db, std::string_view secret_id, std::int64_t version, SecretStage stage) {
  if (!secret_version_get(db, secret_id, version)) return;
  Stmt s(db, "UPDATE secret_versions SET stage = ? WHERE secret_id = ? AND version = ?");
  s.bind(1, secret_stage_name(stage)).bind(2, secret_id).bind(3, version);
  s.step();
  rows::seal(db, Table::secret_versions, {secret_id, version});
}

std::int64_t secret_versions_purge(Db& db, std::string_view secret_id, std::int64_t keep) {
  // Decided on the checked rows, never on columns SQL reads unchecked.
  const std::vector<SecretVersionRow> all = secret_versions(db, secret_id);
  std::int64_t excess = static_cast<std::int64_t>(all.size()) - keep;
  std::int64_t n = 0;
  for (const SecretVersionRow& v : all) {
    if (excess <= 0) break;
    if (v.stage) continue;
    Stmt s(db, "DELETE FROM secret_versions WHERE secret_id = ? AND version = ? RETURNING mac");
    s.bind(1, secret_id).bind(2, v.version);
    n += delete_rows(s);
    --excess;
  }
  return n;
}

void secret_tag_set(Db& db, std::string_view secret_id, std::string_view name,
                    std::string_view value) {
  Stmt s(db,
         "INSERT INTO secret_tags (secret_id, name, value) VALUES (?, ?, ?) "
         "ON CONFLICT (secret_id, name) DO UPDATE SET value = excluded.value");
  s.bind(1, secret_id).bind(2, name).bind(3, value);
  s.step();
  rows::seal(db, Table::secret_tags, {secret_id, name});
}

std::vector<std::pair<std::string, std::string>> secret_tags_of(Db& db,
                                                                std::string_view secret_id) {
  Stmt s(db, fmt::format("SELECT {} FROM secret_tags WHERE secret_id = ? ORDER BY name",
                         rows::columns(Table::secret_tags))
                 .c_str());
  s.bind(1, secret_id);
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) {
    rows::check(db, Table::secret_tags, s);
    out.emplace_back(s.col_text(1), s.col_text(2));
  }
  return out;
}

}  // namespace kms::store
