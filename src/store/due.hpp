// When keys and secrets are due for rotation or deletion: the rows (FROM, with the index that
// finds them) and the WHERE clause, shared by the queries that list the due rows (for `kmsctl
// maintain`) and the one that counts them (for `kmsctl status`). ?1 is the time now, RFC 3339 in
// one UTC form, compared as text.
//
// Schema 9 indexes the two rotation expressions exactly as written here (keys_rotation_due,
// secrets_rotation_due), so that `status` reads only the due rows, not every key: a change to
// either expression needs a migration that makes its index again (INDEXED BY then fails loudly
// rather than scanning). PostgreSQL has no INDEXED BY and no strftime: its schema indexes the same
// expressions through kmsctl_plus_days (pg_schema.cpp), which its planner picks by itself.
#pragma once

#include "store/store.hpp"

namespace kms::store::due {

struct Due {
  const char* from;      // "keys INDEXED BY ..."
  const char* where;     // with ?1 = now
  const char* pg_from;   // the same for PostgreSQL
  const char* pg_where;  // nullptr: `where`
};
inline const char* from(const Db& db, const Due& d) {
  return db.dialect() == Dialect::postgresql ? d.pg_from : d.from;
}
inline const char* where(const Db& db, const Due& d) {
  return db.dialect() == Dialect::postgresql && d.pg_where != nullptr ? d.pg_where : d.where;
}

// An Enabled key whose last rotation is one period old.
inline constexpr Due kKeyRotation = {
    "keys INDEXED BY keys_rotation_due",
    "rotation_period_days IS NOT NULL AND state = 'Enabled' AND "
    "strftime('%Y-%m-%dT%H:%M:%fZ', last_rotated, '+' || rotation_period_days || ' days') <= ?1",
    "keys",
    "rotation_period_days IS NOT NULL AND state = 'Enabled' AND "
    "kmsctl_plus_days(last_rotated, rotation_period_days) <= ?1"};
inline constexpr Due kKeyDeletion = {
    "keys INDEXED BY keys_deletion",
    "deletion_date IS NOT NULL AND state = 'PendingDeletion' AND deletion_date <= ?1", "keys",
    nullptr};
// An imported key whose material's expiry passed and whose material is still there (its state
// is not PendingImport).
inline constexpr Due kKeyMaterialExpiry = {
    "keys INDEXED BY keys_material_expiry",
    "material_expires IS NOT NULL AND state != 'PendingImport' AND material_expires <= ?1", "keys",
    nullptr};
// A secret not scheduled for deletion, one period after its last rotation (or its creation).
inline constexpr Due kSecretRotation = {
    "secrets INDEXED BY secrets_rotation_due",
    "rotation_period_days IS NOT NULL AND deletion_date IS NULL AND "
    "strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(last_rotated, created), "
    "'+' || rotation_period_days || ' days') <= ?1",
    "secrets",
    "rotation_period_days IS NOT NULL AND deletion_date IS NULL AND "
    "kmsctl_plus_days(coalesce(last_rotated, created), rotation_period_days) <= ?1"};
inline constexpr Due kSecretDeletion = {"secrets INDEXED BY secrets_deletion",
                                        "deletion_date IS NOT NULL AND deletion_date <= ?1",
                                        "secrets", nullptr};

}  // namespace kms::store::due
