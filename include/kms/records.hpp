// What the vault answers with: a key and a secret with their versions (metadata only: never
// key material or secret values), an audit record and the filter that selects records, the
// token, and the vault's counts. These are the library's values; how the vault stores them
// (sealed material, row MACs, SQL) is internal to src/store/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kms/key_specs.hpp"
#include "kms/secure.hpp"
#include "kms/vocab.hpp"

namespace kms {

// The PKCS#11 token holding the vault's root key, as the token describes itself.
struct TokenInfo {
  std::uint64_t slot = 0;
  std::string label;
  std::string serial;
  std::string manufacturer;
  std::string model;
  bool initialized = false;
  bool user_pin_initialized = false;
  bool user_pin_locked = false;
  bool user_pin_final_try = false;
  std::uint64_t min_pin_len = 0;
  std::uint64_t max_pin_len = 0;
};

struct KeyMetadata {
  std::string id;
  KeySpec spec = KeySpec::aes_256;
  KeyUsage usage = KeyUsage::encrypt;
  std::string description;
  KeyState state = KeyState::enabled;
  Protection protection = Protection::software;
  std::string created;
  std::optional<std::int64_t> rotation_period_days;
  std::string last_rotated;
  std::optional<std::string> deletion_date;
  std::int64_t primary_version = 1;
  Origin origin = Origin::kms;
  // An imported key's material expires then (`key import --expires`); none: never.
  std::optional<std::string> material_expires;
};

struct KeyVersionMetadata {
  std::string key_id;
  std::int64_t version = 0;
  std::string created;
};

struct SecretMetadata {
  std::string id;
  std::string name;
  std::string key_id;
  std::string description;
  std::string created;
  std::string updated;
  std::int64_t next_version = 1;
  std::int64_t gen_length = 32;
  std::string gen_charset = "alnum";
  std::string gen_exclude;
  std::optional<std::int64_t> rotation_period_days;
  std::optional<std::string> rotation_command;
  std::optional<std::string> last_rotated;
  RotationStatus rotation_status = RotationStatus::never;
  std::optional<std::string> rotation_error;
  std::optional<std::string> deletion_date;
};

struct SecretVersionMetadata {
  std::string secret_id;
  std::int64_t version = 0;
  std::string created;
  std::optional<SecretStage> stage;
};

// One audit record (docs/FORMAT.md §8).
struct AuditRecord {
  std::int64_t seq = 0;
  std::string time;
  std::string principal;
  std::int64_t uid = 0;
  std::string action;
  std::string resource;
  std::string params;  // canonical JSON object
  std::string outcome;
  std::string error_code;
  Bytes prev_hash;
  Bytes hash;
  Bytes mac;
  Bytes state;  // the masked state digest after this record's change; empty when it made none
};

// Which records `audit list` returns.
struct AuditFilter {
  std::optional<std::string> since, until;  // RFC 3339, compared as text (all UTC, same form)
  std::optional<std::string> action, resource, principal, outcome;
  std::optional<std::int64_t> after_seq;  // only records with a greater seq
  std::int64_t limit = 100;
  bool newest_first = true;
  std::optional<std::int64_t> before_seq;  // only records with a smaller seq
  // Only records about this grant or allowed by it (params grant_id or parent_grant_id).
  std::optional<std::string> grant;
};

// The newest record: its seq and hash.
struct AuditHead {
  std::int64_t seq = 0;
  Bytes hash;
};

// How many keys and secrets there are, and how many of them are due.
struct VaultCounts {
  std::int64_t keys = 0, keys_due_rotation = 0, keys_due_deletion = 0;
  std::int64_t secrets = 0, secrets_due_rotation = 0, secrets_due_deletion = 0;
};

}  // namespace kms
