// A resource's own policy (docs/POLICY.md, "Key policies" and "Secret policies"): one
// authenticated row per key or secret that has one, in key_policies or secret_policies. Both
// tables have the same columns: the owner's id (the primary key), the text, its SHA-256, when
// and by whom it was set.
#include <fmt/format.h>

#include "kms/error.hpp"
#include "store/rows.hpp"
#include "store/store.hpp"

namespace kms::store {
namespace {

using rows::Table;

struct PolicyTable {
  Table table;
  const char* name;
  const char* id_column;
};
constexpr PolicyTable kKeyPolicies{Table::key_policies, "key_policies", "key_id"};
constexpr PolicyTable kSecretPolicies{Table::secret_policies, "secret_policies", "secret_id"};

// The row's fields but the owner's id: (text, sha256, updated, updated_by_uid).
struct PolicyFields {
  std::string text, sha256, updated;
  std::int64_t updated_by_uid = 0;
};

std::optional<PolicyFields> policy_get(Db& db, const PolicyTable& t, std::string_view id) {
  Stmt s(db,
         fmt::format("SELECT {} FROM {} WHERE {} = ?", rows::columns(t.table), t.name, t.id_column)
             .c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  rows::check(db, t.table, s);
  return PolicyFields{s.col_text(1), s.col_text(2), s.col_text(3), s.col_int(4)};
}

void policy_put(Db& db, const PolicyTable& t, std::string_view id, const PolicyFields& f) {
  // An upsert keeps the row's previous MAC in place, so seal() takes it out of the state.
  Stmt s(db, fmt::format("INSERT INTO {0} ({1}, text, sha256, updated_at, updated_by_uid) "
                         "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT ({1}) DO UPDATE SET "
                         "text = excluded.text, sha256 = excluded.sha256, "
                         "updated_at = excluded.updated_at, "
                         "updated_by_uid = excluded.updated_by_uid",
                         t.name, t.id_column)
                 .c_str());
  s.bind(1, id).bind(2, f.text).bind(3, f.sha256).bind(4, f.updated);
  s.bind(5, f.updated_by_uid);
  s.step();
  rows::seal(db, t.table, {id});
}

bool policy_delete(Db& db, const PolicyTable& t, std::string_view id) {
  Stmt s(db, fmt::format("DELETE FROM {} WHERE {} = ? RETURNING {}", t.name, t.id_column,
                         rows::columns(t.table))
                 .c_str());
  s.bind(1, id);
  if (!s.step()) return false;
  // The row is checked before its MAC leaves the state: a row edited with sqlite3 is refused,
  // not removed silently.
  rows::check(db, t.table, s);
  const ByteView m = s.col_blob(5);
  const Bytes mac(m.begin(), m.end());
  while (s.step()) {
  }
  rows::forget(db, mac);
  return true;
}

}  // namespace

std::optional<KeyPolicyRow> key_policy_get(Db& db, std::string_view key_id) {
  auto f = policy_get(db, kKeyPolicies, key_id);
  if (!f) return std::nullopt;
  return KeyPolicyRow{std::string(key_id), std::move(f->text), std::move(f->sha256),
                      std::move(f->updated), f->updated_by_uid};
}

void key_policy_put(Db& db, const KeyPolicyRow& row) {
  policy_put(db, kKeyPolicies, row.key_id, {row.text, row.sha256, row.updated, row.updated_by_uid});
}

bool key_policy_delete(Db& db, std::string_view key_id) {
  return policy_delete(db, kKeyPolicies, key_id);
}

std::optional<SecretPolicyRow> secret_policy_get(Db& db, std::string_view secret_id) {
  auto f = policy_get(db, kSecretPolicies, secret_id);
  if (!f) return std::nullopt;
  return SecretPolicyRow{std::string(secret_id), std::move(f->text), std::move(f->sha256),
                         std::move(f->updated), f->updated_by_uid};
}

void secret_policy_put(Db& db, const SecretPolicyRow& row) {
  policy_put(db, kSecretPolicies, row.secret_id,
             {row.text, row.sha256, row.updated, row.updated_by_uid});
}

bool secret_policy_delete(Db& db, std::string_view secret_id) {
  return policy_delete(db, kSecretPolicies, secret_id);
}

}  // namespace kms::store
