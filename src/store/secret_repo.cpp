// Secrets, their versions and tags (issue 5). Values are stored only as sealed records.
#include <fmt/format.h>

#include "kms/store.hpp"
#include "store/due.hpp"

namespace kms::store {
namespace {

constexpr const char* kSecretColumns =
    "id, name, key_id, description, created, updated, next_version, gen_length, gen_charset, "
    "gen_exclude, rotation_period_days, rotation_command, last_rotated, rotation_status, "
    "rotation_error, deletion_date";

std::optional<std::string> opt_text(const Stmt& s, int i) {
  if (s.col_null(i)) return std::nullopt;
  return s.col_text(i);
}

SecretRow read_secret(const Stmt& s) {
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
  r.rotation_status = s.col_text(13);
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
  s.bind(14, r.rotation_status);
  bind_opt(s, 15, r.rotation_error);
  bind_opt(s, 16, r.deletion_date);
}

std::vector<SecretRow> read_secrets(Stmt& s) {
  std::vector<SecretRow> out;
  while (s.step()) out.push_back(read_secret(s));
  return out;
}

SecretVersionRow read_version(const Stmt& s, std::string_view secret_id, bool with_value) {
  SecretVersionRow v{std::string(secret_id), s.col_int(0), s.col_text(1), opt_text(s, 2), {}};
  if (with_value) {
    const ByteView b = s.col_blob(3);
    v.value.assign(b.begin(), b.end());
  }
  return v;
}

}  // namespace

void secret_insert(Db& db, const SecretRow& r) {
  Stmt s(db, fmt::format("INSERT INTO secrets ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                         "?, ?, ?)",
                         kSecretColumns)
                 .c_str());
  bind_secret(s, r);
  s.step();
}

void secret_update(Db& db, const SecretRow& r) {
  Stmt s(db,
         "UPDATE secrets SET name = ?2, key_id = ?3, description = ?4, created = ?5, updated = ?6, "
         "next_version = ?7, gen_length = ?8, gen_charset = ?9, gen_exclude = ?10, "
         "rotation_period_days = ?11, rotation_command = ?12, last_rotated = ?13, "
         "rotation_status = ?14, rotation_error = ?15, deletion_date = ?16 WHERE id = ?1");
  bind_secret(s, r);
  s.step();
}

void secret_delete(Db& db, std::string_view id) {
  Stmt s(db, "DELETE FROM secrets WHERE id = ?");
  s.bind(1, id);
  s.step();
}

std::optional<SecretRow> secret_by_name(Db& db, std::string_view name) {
  Stmt s(db, fmt::format("SELECT {} FROM secrets WHERE name = ?", kSecretColumns).c_str());
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return read_secret(s);
}

std::vector<SecretRow> secret_list(Db& db) {
  Stmt s(db, fmt::format("SELECT {} FROM secrets ORDER BY name", kSecretColumns).c_str());
  return read_secrets(s);
}

namespace {
std::vector<SecretRow> secrets_due(Db& db, const char* predicate, std::string_view now) {
  Stmt s(db, fmt::format("SELECT {} FROM secrets WHERE {} ORDER BY name", kSecretColumns,
                         predicate)
                 .c_str());
  s.bind(1, now);
  return read_secrets(s);
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
  bind_opt(s, 4, v.stage);
  s.bind(5, ByteView(v.value));
  s.step();
}

std::optional<SecretVersionRow> secret_version_get(Db& db, std::string_view secret_id,
                                                   std::int64_t version) {
  Stmt s(db,
         "SELECT version, created, stage, value FROM secret_versions "
         "WHERE secret_id = ? AND version = ?");
  s.bind(1, secret_id).bind(2, version);
  if (!s.step()) return std::nullopt;
  return read_version(s, secret_id, true);
}

std::optional<SecretVersionRow> secret_version_at_stage(Db& db, std::string_view secret_id,
                                                        std::string_view stage) {
  Stmt s(db,
         "SELECT version, created, stage, value FROM secret_versions "
         "WHERE secret_id = ? AND stage = ?");
  s.bind(1, secret_id).bind(2, stage);
  if (!s.step()) return std::nullopt;
  return read_version(s, secret_id, true);
}

std::vector<SecretVersionRow> secret_versions(Db& db, std::string_view secret_id) {
  Stmt s(db,
         "SELECT version, created, stage FROM secret_versions WHERE secret_id = ? "
         "ORDER BY version");
  s.bind(1, secret_id);
  std::vector<SecretVersionRow> out;
  while (s.step()) out.push_back(read_version(s, secret_id, false));
  return out;
}

std::vector<SecretVersionRow> secret_versions_all(Db& db) {
  Stmt s(db,
         "SELECT version, created, stage, secret_id FROM secret_versions "
         "ORDER BY secret_id, version");
  std::vector<SecretVersionRow> out;
  while (s.step()) out.push_back(read_version(s, s.col_text_view(3), false));
  return out;
}

void secret_stage_clear(Db& db, std::string_view secret_id, std::string_view stage) {
  Stmt s(db, "UPDATE secret_versions SET stage = NULL WHERE secret_id = ? AND stage = ?");
  s.bind(1, secret_id).bind(2, stage);
  s.step();
}

void secret_stage_set(Db& db, std::string_view secret_id, std::int64_t version,
                      std::string_view stage) {
  Stmt s(db, "UPDATE secret_versions SET stage = ? WHERE secret_id = ? AND version = ?");
  s.bind(1, stage).bind(2, secret_id).bind(3, version);
  s.step();
}

std::int64_t secret_versions_purge(Db& db, std::string_view secret_id, std::int64_t keep) {
  Stmt s(db,
         "DELETE FROM secret_versions WHERE secret_id = ?1 AND version IN ("
         "SELECT version FROM secret_versions WHERE secret_id = ?1 AND stage IS NULL "
         "ORDER BY version LIMIT max(0, (SELECT count(*) FROM secret_versions "
         "WHERE secret_id = ?1) - ?2)) RETURNING version");
  s.bind(1, secret_id).bind(2, keep);
  std::int64_t n = 0;
  while (s.step()) ++n;
  return n;
}

void secret_tag_set(Db& db, std::string_view secret_id, std::string_view name,
                    std::string_view value) {
  Stmt s(db,
         "INSERT INTO secret_tags (secret_id, name, value) VALUES (?, ?, ?) "
         "ON CONFLICT (secret_id, name) DO UPDATE SET value = excluded.value");
  s.bind(1, secret_id).bind(2, name).bind(3, value);
  s.step();
}

std::vector<std::pair<std::string, std::string>> secret_tags_of(Db& db,
                                                                std::string_view secret_id) {
  Stmt s(db, "SELECT name, value FROM secret_tags WHERE secret_id = ? ORDER BY name");
  s.bind(1, secret_id);
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) out.emplace_back(s.col_text(0), s.col_text(1));
  return out;
}

}  // namespace kms::store
