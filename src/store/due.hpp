// When keys and secrets are due for rotation or deletion: the rows (FROM, with the index that
// finds them) and the WHERE clause, shared by the queries that list the due rows (for `kmsctl
// maintain`) and the one that counts them (for `kmsctl status`). ?1 is the time now, RFC 3339 in
// one UTC form, compared as text.
//
// Schema 9 indexes the two rotation expressions exactly as written here (keys_rotation_due,
// secrets_rotation_due), so that `status` reads only the due rows, not every key: a change to
// either expression needs a migration that makes its index again (INDEXED BY then fails loudly
// rather than scanning).
#pragma once

namespace kms::store::due {

struct Due {
  const char* from;   // "keys INDEXED BY ..."
  const char* where;  // with ?1 = now
};

// An Enabled key whose last rotation is one period old.
inline constexpr Due kKeyRotation = {
    "keys INDEXED BY keys_rotation_due",
    "rotation_period_days IS NOT NULL AND state = 'Enabled' AND "
    "strftime('%Y-%m-%dT%H:%M:%fZ', last_rotated, '+' || rotation_period_days || ' days') <= ?1"};
inline constexpr Due kKeyDeletion = {
    "keys INDEXED BY keys_deletion",
    "deletion_date IS NOT NULL AND state = 'PendingDeletion' AND deletion_date <= ?1"};
// An imported key whose material's expiry passed and whose material is still there (its state
// is not PendingImport).
inline constexpr Due kKeyMaterialExpiry = {
    "keys INDEXED BY keys_material_expiry",
    "material_expires IS NOT NULL AND state != 'PendingImport' AND material_expires <= ?1"};
// A secret not scheduled for deletion, one period after its last rotation (or its creation).
inline constexpr Due kSecretRotation = {
    "secrets INDEXED BY secrets_rotation_due",
    "rotation_period_days IS NOT NULL AND deletion_date IS NULL AND "
    "strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(last_rotated, created), "
    "'+' || rotation_period_days || ' days') <= ?1"};
inline constexpr Due kSecretDeletion = {"secrets INDEXED BY secrets_deletion",
                                        "deletion_date IS NOT NULL AND deletion_date <= ?1"};

}  // namespace kms::store::due
