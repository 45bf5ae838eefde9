// Key policies (docs/POLICY.md, "Key policies"): one authenticated row per key that has one.
#include <fmt/format.h>

#include "kms/error.hpp"
#include "store/rows.hpp"
#include "store/store.hpp"

namespace kms::store {

using rows::Table;

std::optional<KeyPolicyRow> key_policy_get(Db& db, std::string_view key_id) {
  Stmt s(db, fmt::format("SELECT {} FROM key_policies WHERE key_id = ?",
                         rows::columns(Table::key_policies))
                 .c_str());
  s.bind(1, key_id);
  if (!s.step()) return std::nullopt;
  rows::check(db, Table::key_policies, s);
  KeyPolicyRow r;
  r.key_id = s.col_text(0);
  r.text = s.col_text(1);
  r.sha256 = s.col_text(2);
  r.updated = s.col_text(3);
  r.updated_by_uid = s.col_int(4);
  return r;
}

void key_policy_put(Db& db, const KeyPolicyRow& row) {
  // An upsert keeps the row's previous MAC in place, so seal() takes it out of the state.
  Stmt s(db,
         "INSERT INTO key_policies (key_id, text, sha256, updated_at, updated_by_uid) "
         "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key_id) DO UPDATE SET text = excluded.text, "
         "sha256 = excluded.sha256, updated_at = excluded.updated_at, "
         "updated_by_uid = excluded.updated_by_uid");
  s.bind(1, row.key_id).bind(2, row.text).bind(3, row.sha256).bind(4, row.updated);
  s.bind(5, row.updated_by_uid);
  s.step();
  rows::seal(db, Table::key_policies, {std::string_view(row.key_id)});
}

bool key_policy_delete(Db& db, std::string_view key_id) {
  Stmt s(db, fmt::format("DELETE FROM key_policies WHERE key_id = ? RETURNING {}",
                         rows::columns(Table::key_policies))
                 .c_str());
  s.bind(1, key_id);
  if (!s.step()) return false;
  // The row is checked before its MAC leaves the state: a row edited with sqlite3 is refused,
  // not removed silently.
  rows::check(db, Table::key_policies, s);
  const ByteView m = s.col_blob(5);
  const Bytes mac(m.begin(), m.end());
  while (s.step()) {
  }
  rows::forget(db, mac);
  return true;
}

}  // namespace kms::store
