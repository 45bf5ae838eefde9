// When keys and secrets are due for rotation or deletion: the WHERE clauses shared by the
// queries that list the due rows (for `kmsctl maintain`) and the one that counts them (for
// `kmsctl status`). ?1 is the time now, RFC 3339 in one UTC form, compared as text.
#pragma once

namespace kms::store::due {

// An Enabled key whose last rotation is one period old.
inline constexpr const char* kKeyRotation =
    "rotation_period_days IS NOT NULL AND state = 'Enabled' AND "
    "strftime('%Y-%m-%dT%H:%M:%fZ', last_rotated, '+' || rotation_period_days || ' days') <= ?1";
inline constexpr const char* kKeyDeletion =
    "deletion_date IS NOT NULL AND state = 'PendingDeletion' AND deletion_date <= ?1";
// An imported key whose material's expiry passed and whose material is still there (its state
// is not PendingImport).
inline constexpr const char* kKeyMaterialExpiry =
    "material_expires IS NOT NULL AND state != 'PendingImport' AND material_expires <= ?1";
// A secret not scheduled for deletion, one period after its last rotation (or its creation).
inline constexpr const char* kSecretRotation =
    "rotation_period_days IS NOT NULL AND deletion_date IS NULL AND "
    "strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(last_rotated, created), "
    "'+' || rotation_period_days || ' days') <= ?1";
inline constexpr const char* kSecretDeletion = "deletion_date IS NOT NULL AND deletion_date <= ?1";

}  // namespace kms::store::due
