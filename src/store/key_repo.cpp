#include <fmt/format.h>

#include "kms/store.hpp"
#include "store/due.hpp"

namespace kms::store {
namespace {

constexpr const char* kKeyColumns =
    "id, spec, usage, description, state, protection, created, rotation_period_days, "
    "last_rotated, deletion_date, primary_version";

KeyRow read_key(const Stmt& s) {
  KeyRow k;
  k.id = s.col_text(0);
  k.spec = s.col_text(1);
  k.usage = s.col_text(2);
  k.description = s.col_text(3);
  k.state = s.col_text(4);
  k.protection = s.col_text(5);
  k.created = s.col_text(6);
  if (!s.col_null(7)) k.rotation_period_days = s.col_int(7);
  k.last_rotated = s.col_text(8);
  if (!s.col_null(9)) k.deletion_date = s.col_text(9);
  k.primary_version = s.col_int(10);
  return k;
}

void bind_key(Stmt& s, const KeyRow& k) {
  s.bind(1, k.id).bind(2, k.spec).bind(3, k.usage).bind(4, k.description).bind(5, k.state);
  s.bind(6, k.protection).bind(7, k.created);
  if (k.rotation_period_days) s.bind(8, *k.rotation_period_days); else s.bind_null(8);
  s.bind(9, k.last_rotated);
  if (k.deletion_date) s.bind(10, std::string_view(*k.deletion_date)); else s.bind_null(10);
  s.bind(11, k.primary_version);
}

std::vector<KeyRow> read_keys(Stmt& s) {
  std::vector<KeyRow> out;
  while (s.step()) out.push_back(read_key(s));
  return out;
}

std::vector<std::pair<std::string, std::string>> read_pairs(Stmt& s) {
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) out.emplace_back(s.col_text(0), s.col_text(1));
  return out;
}

}  // namespace

void key_insert(Db& db, const KeyRow& k) {
  Stmt s(db, fmt::format("INSERT INTO keys ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kKeyColumns)
                 .c_str());
  bind_key(s, k);
  s.step();
}

void key_update(Db& db, const KeyRow& k) {
  Stmt s(db,
         "UPDATE keys SET spec = ?2, usage = ?3, description = ?4, state = ?5, protection = ?6, "
         "created = ?7, rotation_period_days = ?8, last_rotated = ?9, deletion_date = ?10, "
         "primary_version = ?11 WHERE id = ?1");
  bind_key(s, k);
  s.step();
}

void key_delete(Db& db, std::string_view id) {
  Stmt s(db, "DELETE FROM keys WHERE id = ?");
  s.bind(1, id);
  s.step();
}

std::optional<KeyRow> key_get(Db& db, std::string_view id) {
  Stmt s(db, fmt::format("SELECT {} FROM keys WHERE id = ?", kKeyColumns).c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_key(s);
}

std::vector<KeyRow> key_list(Db& db, const std::optional<std::string>& state,
                             const std::optional<std::string>& after, std::int64_t limit) {
  std::string sql = fmt::format("SELECT {} FROM keys WHERE 1", kKeyColumns);
  if (state) sql += " AND state = ?1";
  if (after) {
    sql += " AND (created, id) > (SELECT created, id FROM keys WHERE id = ?2)";
  }
  sql += " ORDER BY created, id LIMIT ?3";
  Stmt s(db, sql.c_str());
  if (state) s.bind(1, std::string_view(*state));
  if (after) s.bind(2, std::string_view(*after));
  s.bind(3, limit);
  return read_keys(s);
}

namespace {
std::vector<KeyRow> keys_due(Db& db, const char* predicate, std::string_view now) {
  Stmt s(db, fmt::format("SELECT {} FROM keys WHERE {} ORDER BY created, id", kKeyColumns,
                         predicate)
                 .c_str());
  s.bind(1, now);
  return read_keys(s);
}
}  // namespace

std::vector<KeyRow> keys_due_rotation(Db& db, std::string_view now) {
  return keys_due(db, due::kKeyRotation, now);
}

std::vector<KeyRow> keys_due_deletion(Db& db, std::string_view now) {
  return keys_due(db, due::kKeyDeletion, now);
}

void key_version_insert(Db& db, const KeyVersionRow& v) {
  Stmt s(db, "INSERT INTO key_versions (key_id, version, created, material) VALUES (?, ?, ?, ?)");
  s.bind(1, v.key_id).bind(2, v.version).bind(3, v.created);
  if (v.material) s.bind(4, ByteView(*v.material)); else s.bind_null(4);
  s.step();
}

std::optional<KeyVersionRow> key_version_get(Db& db, std::string_view key_id, std::int64_t version) {
  Stmt s(db, "SELECT created, material FROM key_versions WHERE key_id = ? AND version = ?");
  s.bind(1, key_id).bind(2, version);
  if (!s.step()) return std::nullopt;
  KeyVersionRow v{std::string(key_id), version, s.col_text(0), std::nullopt};
  if (!s.col_null(1)) {
    const ByteView m = s.col_blob(1);
    v.material = Bytes(m.begin(), m.end());
  }
  return v;
}

std::vector<KeyVersionRow> key_versions(Db& db, std::string_view key_id) {
  Stmt s(db, "SELECT version, created FROM key_versions WHERE key_id = ? ORDER BY version");
  s.bind(1, key_id);
  std::vector<KeyVersionRow> out;
  while (s.step()) out.push_back({std::string(key_id), s.col_int(0), s.col_text(1), std::nullopt});
  return out;
}

std::vector<KeyVersionRow> key_versions_all(Db& db) {
  Stmt s(db, "SELECT key_id, version, created FROM key_versions ORDER BY key_id, version");
  std::vector<KeyVersionRow> out;
  while (s.step()) out.push_back({s.col_text(0), s.col_int(1), s.col_text(2), std::nullopt});
  return out;
}

std::int64_t key_version_max(Db& db, std::string_view key_id) {
  Stmt s(db, "SELECT coalesce(max(version), 0) FROM key_versions WHERE key_id = ?");
  s.bind(1, key_id);
  s.step();
  return s.col_int(0);
}

std::optional<std::string> alias_target(Db& db, std::string_view alias) {
  Stmt s(db, "SELECT key_id FROM key_aliases WHERE alias = ?");
  s.bind(1, alias);
  if (!s.step()) return std::nullopt;
  return s.col_text(0);
}

void alias_insert(Db& db, std::string_view alias, std::string_view key_id, std::string_view now) {
  Stmt s(db, "INSERT INTO key_aliases (alias, key_id, created) VALUES (?, ?, ?)");
  s.bind(1, alias).bind(2, key_id).bind(3, now);
  s.step();
}

void alias_update(Db& db, std::string_view alias, std::string_view key_id) {
  Stmt s(db, "UPDATE key_aliases SET key_id = ? WHERE alias = ?");
  s.bind(1, key_id).bind(2, alias);
  s.step();
}

void alias_delete(Db& db, std::string_view alias) {
  Stmt s(db, "DELETE FROM key_aliases WHERE alias = ?");
  s.bind(1, alias);
  s.step();
}

std::vector<std::string> aliases_of(Db& db, std::string_view key_id) {
  Stmt s(db, "SELECT alias FROM key_aliases WHERE key_id = ? ORDER BY alias");
  s.bind(1, key_id);
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.col_text(0));
  return out;
}

std::vector<std::pair<std::string, std::string>> alias_list(Db& db) {
  Stmt s(db, "SELECT alias, key_id FROM key_aliases ORDER BY alias");
  return read_pairs(s);
}

void tag_set(Db& db, std::string_view key_id, std::string_view name, std::string_view value) {
  Stmt s(db,
         "INSERT INTO key_tags (key_id, name, value) VALUES (?, ?, ?) "
         "ON CONFLICT (key_id, name) DO UPDATE SET value = excluded.value");
  s.bind(1, key_id).bind(2, name).bind(3, value);
  s.step();
}

bool tag_remove(Db& db, std::string_view key_id, std::string_view name) {
  Stmt s(db, "DELETE FROM key_tags WHERE key_id = ? AND name = ? RETURNING name");
  s.bind(1, key_id).bind(2, name);
  const bool removed = s.step();
  while (s.step()) {
  }
  return removed;
}

std::vector<std::pair<std::string, std::string>> tags_of(Db& db, std::string_view key_id) {
  Stmt s(db, "SELECT name, value FROM key_tags WHERE key_id = ? ORDER BY name");
  s.bind(1, key_id);
  return read_pairs(s);
}

}  // namespace kms::store
