#include <fmt/format.h>

#include "store/due.hpp"
#include "store/rows.hpp"
#include "store/store.hpp"

namespace kms::store {
namespace {

using rows::Table;

constexpr const char* kKeyColumns =
    "id, spec, usage, description, state, protection, created, rotation_period_days, "
    "last_rotated, deletion_date, primary_version, highest_lost_version, origin, "
    "material_expires, material_commitment";

const char* key_select() { return rows::columns(Table::keys); }

KeyRow read_key(Db& db, const Stmt& s) {
  rows::check(db, Table::keys, s);
  KeyRow k;
  k.id = s.col_text(0);
  k.spec = rows::name_column(Table::keys, s, 1, parse_key_spec);
  k.usage = rows::name_column(Table::keys, s, 2, parse_key_usage);
  k.description = s.col_text(3);
  k.state = rows::name_column(Table::keys, s, 4, parse_key_state);
  k.protection = rows::name_column(Table::keys, s, 5, parse_protection);
  k.created = s.col_text(6);
  if (!s.col_null(7)) k.rotation_period_days = s.col_int(7);
  k.last_rotated = s.col_text(8);
  if (!s.col_null(9)) k.deletion_date = s.col_text(9);
  k.primary_version = s.col_int(10);
  k.highest_lost_version = s.col_int(11);
  k.origin = rows::name_column(Table::keys, s, 12, parse_origin);
  if (!s.col_null(13)) k.material_expires = s.col_text(13);
  if (!s.col_null(14)) {
    const ByteView c = s.col_blob(14);
    k.material_commitment = Bytes(c.begin(), c.end());
  }
  return k;
}

void bind_key(Stmt& s, const KeyRow& k) {
  s.bind(1, k.id).bind(2, key_spec_name(k.spec)).bind(3, key_usage_name(k.usage));
  s.bind(4, k.description);
  s.bind(5, key_state_name(k.state)).bind(6, protection_name(k.protection)).bind(7, k.created);
  if (k.rotation_period_days)
    s.bind(8, *k.rotation_period_days);
  else
    s.bind_null(8);
  s.bind(9, k.last_rotated);
  if (k.deletion_date)
    s.bind(10, std::string_view(*k.deletion_date));
  else
    s.bind_null(10);
  s.bind(11, k.primary_version).bind(12, k.highest_lost_version);
  s.bind(13, origin_name(k.origin));
  if (k.material_expires)
    s.bind(14, std::string_view(*k.material_expires));
  else
    s.bind_null(14);
  if (k.material_commitment)
    s.bind(15, ByteView(*k.material_commitment));
  else
    s.bind_null(15);
}

std::vector<KeyRow> read_keys(Db& db, Stmt& s) {
  std::vector<KeyRow> out;
  while (s.step()) out.push_back(read_key(db, s));
  return out;
}

KeyVersionRow read_version(Db& db, const Stmt& s, bool with_material) {
  rows::check(db, Table::key_versions, s);
  KeyVersionRow v{{s.col_text(0), s.col_int(1), s.col_text(2)}, std::nullopt};
  if (with_material && !s.col_null(3)) {
    const ByteView m = s.col_blob(3);
    v.material = Bytes(m.begin(), m.end());
  }
  return v;
}

// Runs a DELETE ... RETURNING mac: each deleted row leaves the state.
void delete_rows(Db& db, const char* sql, std::string_view key) {
  Stmt s(db, sql);
  s.bind(1, key);
  std::vector<Bytes> macs;
  while (s.step()) {
    const ByteView m = s.col_blob(0);
    macs.emplace_back(m.begin(), m.end());
  }
  for (const Bytes& m : macs) rows::forget(db, m);
}

}  // namespace

void key_insert(Db& db, const KeyRow& k) {
  Stmt s(db,
         fmt::format("INSERT INTO keys ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     kKeyColumns)
             .c_str());
  bind_key(s, k);
  s.step();
  rows::seal(db, Table::keys, {k.id});
}

void key_update(Db& db, const KeyRow& k) {
  Stmt s(db,
         "UPDATE keys SET spec = ?2, usage = ?3, description = ?4, state = ?5, protection = ?6, "
         "created = ?7, rotation_period_days = ?8, last_rotated = ?9, deletion_date = ?10, "
         "primary_version = ?11, highest_lost_version = ?12, origin = ?13, "
         "material_expires = ?14, material_commitment = ?15 WHERE id = ?1");
  bind_key(s, k);
  s.step();
  rows::seal(db, Table::keys, {k.id});
}

void key_delete(Db& db, std::string_view id) {
  // The rows ON DELETE CASCADE would remove go first, each leaving the state.
  delete_rows(db, "DELETE FROM key_versions WHERE key_id = ? RETURNING mac", id);
  delete_rows(db, "DELETE FROM key_aliases WHERE key_id = ? RETURNING mac", id);
  delete_rows(db, "DELETE FROM key_tags WHERE key_id = ? RETURNING mac", id);
  delete_rows(db, "DELETE FROM grants WHERE key_id = ? RETURNING mac", id);
  delete_rows(db, "DELETE FROM key_policies WHERE key_id = ? RETURNING mac", id);
  delete_rows(db, "DELETE FROM key_import_params WHERE key_id = ? RETURNING mac", id);
  delete_rows(db, "DELETE FROM keys WHERE id = ? RETURNING mac", id);
}

std::optional<KeyRow> key_get(Db& db, std::string_view id) {
  Stmt s(db, fmt::format("SELECT {} FROM keys WHERE id = ?", key_select()).c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_key(db, s);
}

std::vector<KeyRow> key_list(Db& db, std::optional<KeyState> state,
                             const std::optional<std::string>& after, std::int64_t limit) {
  std::string sql = fmt::format("SELECT {} FROM keys WHERE TRUE", key_select());
  if (state) sql += " AND state = ?1";
  if (after) {
    sql += " AND (created, id) > (SELECT created, id FROM keys WHERE id = ?2)";
  }
  sql += " ORDER BY created, id LIMIT ?3";
  Stmt s(db, sql.c_str());
  if (state) s.bind(1, key_state_name(*state));
  if (after) s.bind(2, std::string_view(*after));
  s.bind(3, limit);
  return read_keys(db, s);
}

namespace {
std::vector<KeyRow> keys_due(Db& db, const due::Due& due, std::string_view now) {
  Stmt s(db, fmt::format("SELECT {} FROM {} WHERE {} ORDER BY created, id", key_select(),
                         due::from(db, due), due::where(db, due))
                 .c_str());
  s.bind(1, now);
  return read_keys(db, s);
}
}  // namespace

std::vector<KeyRow> keys_due_rotation(Db& db, std::string_view now) {
  return keys_due(db, due::kKeyRotation, now);
}

std::vector<KeyRow> keys_due_deletion(Db& db, std::string_view now) {
  return keys_due(db, due::kKeyDeletion, now);
}

std::vector<KeyRow> keys_due_material_expiry(Db& db, std::string_view now) {
  return keys_due(db, due::kKeyMaterialExpiry, now);
}

std::int64_t key_versions_delete(Db& db, std::string_view key_id) {
  // Each row is read (and so checked) before its MAC leaves the state.
  const std::int64_t n = static_cast<std::int64_t>(key_versions(db, key_id).size());
  delete_rows(db, "DELETE FROM key_versions WHERE key_id = ? RETURNING mac", key_id);
  return n;
}

namespace {
ImportParamsRow read_params(Db& db, const Stmt& s) {
  rows::check(db, Table::key_import_params, s);
  ImportParamsRow r;
  r.token_id = s.col_text(0);
  r.key_id = s.col_text(1);
  r.wrapping_algorithm =
      rows::name_column(Table::key_import_params, s, 2, parse_wrapping_algorithm);
  r.created = s.col_text(3);
  r.expires = s.col_text(4);
  if (!s.col_null(5)) r.used_at = s.col_text(5);
  if (!s.col_null(6)) {
    const ByteView b = s.col_blob(6);
    r.private_key = Bytes(b.begin(), b.end());
  }
  return r;
}
}  // namespace

void import_params_insert(Db& db, const ImportParamsRow& r) {
  Stmt s(db,
         "INSERT INTO key_import_params (token_id, key_id, wrapping_algorithm, created, expires, "
         "used_at, private_key) VALUES (?, ?, ?, ?, ?, ?, ?)");
  s.bind(1, r.token_id).bind(2, r.key_id).bind(3, wrapping_algorithm_name(r.wrapping_algorithm));
  s.bind(4, r.created).bind(5, r.expires);
  if (r.used_at)
    s.bind(6, std::string_view(*r.used_at));
  else
    s.bind_null(6);
  if (r.private_key)
    s.bind(7, ByteView(*r.private_key));
  else
    s.bind_null(7);
  s.step();
  rows::seal(db, Table::key_import_params, {r.token_id});
}

std::optional<ImportParamsRow> import_params_get(Db& db, std::string_view token_id) {
  Stmt s(db, fmt::format("SELECT {} FROM key_import_params WHERE token_id = ?",
                         rows::columns(Table::key_import_params))
                 .c_str());
  s.bind(1, token_id);
  if (!s.step()) return std::nullopt;
  return read_params(db, s);
}

void import_params_use(Db& db, std::string_view token_id, std::string_view at) {
  if (!import_params_get(db, token_id)) return;  // read (and so checked) before it is MACed
  Stmt s(db, "UPDATE key_import_params SET used_at = ?2, private_key = NULL WHERE token_id = ?1");
  s.bind(1, token_id).bind(2, at);
  s.step();
  rows::seal(db, Table::key_import_params, {token_id});
}

std::int64_t import_params_purge(Db& db, std::string_view now) {
  std::vector<std::string> ids;
  {
    Stmt s(db, fmt::format("SELECT {} FROM key_import_params ORDER BY token_id",
                           rows::columns(Table::key_import_params))
                   .c_str());
    while (s.step()) {
      const ImportParamsRow r = read_params(db, s);
      if (r.used_at || r.expires <= now) ids.push_back(r.token_id);
    }
  }
  for (const std::string& id : ids) {
    delete_rows(db, "DELETE FROM key_import_params WHERE token_id = ? RETURNING mac", id);
  }
  return static_cast<std::int64_t>(ids.size());
}

void key_version_insert(Db& db, const KeyVersionRow& v) {
  Stmt s(db, "INSERT INTO key_versions (key_id, version, created, material) VALUES (?, ?, ?, ?)");
  s.bind(1, v.key_id).bind(2, v.version).bind(3, v.created);
  if (v.material)
    s.bind(4, ByteView(*v.material));
  else
    s.bind_null(4);
  s.step();
  rows::seal(db, Table::key_versions, {v.key_id, v.version});
}

std::optional<KeyVersionRow> key_version_get(Db& db, std::string_view key_id,
                                             std::int64_t version) {
  Stmt s(db, fmt::format("SELECT {} FROM key_versions WHERE key_id = ? AND version = ?",
                         rows::columns(Table::key_versions))
                 .c_str());
  s.bind(1, key_id).bind(2, version);
  if (!s.step()) return std::nullopt;
  return read_version(db, s, true);
}

std::vector<KeyVersionRow> key_versions(Db& db, std::string_view key_id) {
  Stmt s(db, fmt::format("SELECT {} FROM key_versions WHERE key_id = ? ORDER BY version",
                         rows::columns(Table::key_versions))
                 .c_str());
  s.bind(1, key_id);
  std::vector<KeyVersionRow> out;
  while (s.step()) out.push_back(read_version(db, s, false));
  return out;
}

std::vector<KeyVersionRow> key_versions_all(Db& db) {
  Stmt s(db, fmt::format("SELECT {} FROM key_versions ORDER BY key_id, version",
                         rows::columns(Table::key_versions))
                 .c_str());
  std::vector<KeyVersionRow> out;
  while (s.step()) out.push_back(read_version(db, s, false));
  return out;
}

std::int64_t key_version_max(Db& db, std::string_view key_id) {
  std::int64_t max = 0;
  for (const KeyVersionRow& v : key_versions(db, key_id)) max = std::max(max, v.version);
  return max;
}

namespace {
std::vector<std::pair<std::string, std::string>> read_aliases(Db& db, Stmt& s) {
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) {
    rows::check(db, Table::key_aliases, s);
    out.emplace_back(s.col_text(0), s.col_text(1));
  }
  return out;
}
}  // namespace

std::optional<std::string> alias_target(Db& db, std::string_view alias) {
  Stmt s(db, fmt::format("SELECT {} FROM key_aliases WHERE alias = ?",
                         rows::columns(Table::key_aliases))
                 .c_str());
  s.bind(1, alias);
  auto found = read_aliases(db, s);
  if (found.empty()) return std::nullopt;
  return found.front().second;
}

void alias_insert(Db& db, std::string_view alias, std::string_view key_id, std::string_view now) {
  Stmt s(db, "INSERT INTO key_aliases (alias, key_id, created) VALUES (?, ?, ?)");
  s.bind(1, alias).bind(2, key_id).bind(3, now);
  s.step();
  rows::seal(db, Table::key_aliases, {alias});
}

void alias_update(Db& db, std::string_view alias, std::string_view key_id) {
  if (!alias_target(db, alias)) return;  // read (and so checked) before it is MACed again
  Stmt s(db, "UPDATE key_aliases SET key_id = ? WHERE alias = ?");
  s.bind(1, key_id).bind(2, alias);
  s.step();
  rows::seal(db, Table::key_aliases, {alias});
}

void alias_delete(Db& db, std::string_view alias) {
  delete_rows(db, "DELETE FROM key_aliases WHERE alias = ? RETURNING mac", alias);
}

std::vector<std::string> aliases_of(Db& db, std::string_view key_id) {
  Stmt s(db, fmt::format("SELECT {} FROM key_aliases WHERE key_id = ? ORDER BY alias",
                         rows::columns(Table::key_aliases))
                 .c_str());
  s.bind(1, key_id);
  std::vector<std::string> out;
  for (auto& [alias, key] : read_aliases(db, s)) out.push_back(std::move(alias));
  return out;
}

std::vector<std::pair<std::string, std::string>> alias_list(Db& db) {
  Stmt s(db,
         fmt::format("SELECT {} FROM key_aliases ORDER BY alias", rows::columns(Table::key_aliases))
             .c_str());
  return read_aliases(db, s);
}

void tag_set(Db& db, std::string_view key_id, std::string_view name, std::string_view value) {
  Stmt s(db,
         "INSERT INTO key_tags (key_id, name, value) VALUES (?, ?, ?) "
         "ON CONFLICT (key_id, name) DO UPDATE SET value = excluded.value");
  s.bind(1, key_id).bind(2, name).bind(3, value);
  s.step();
  rows::seal(db, Table::key_tags, {key_id, name});
}

bool tag_remove(Db& db, std::string_view key_id, std::string_view name) {
  Stmt s(db, "DELETE FROM key_tags WHERE key_id = ? AND name = ? RETURNING mac");
  s.bind(1, key_id).bind(2, name);
  if (!s.step()) return false;
  const ByteView m = s.col_blob(0);
  const Bytes mac(m.begin(), m.end());
  while (s.step()) {
  }
  rows::forget(db, mac);
  return true;
}

std::vector<std::pair<std::string, std::string>> tags_of(Db& db, std::string_view key_id) {
  Stmt s(db, fmt::format("SELECT {} FROM key_tags WHERE key_id = ? ORDER BY name",
                         rows::columns(Table::key_tags))
                 .c_str());
  s.bind(1, key_id);
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) {
    rows::check(db, Table::key_tags, s);
    out.emplace_back(s.col_text(1), s.col_text(2));
  }
  return out;
}

}  // namespace kms::store
