// Where a vault lives and how one is created: the token to use, what `init` reports. The vault
// itself (its file, the unsealed master key, the token session and anchor) is internal
// (src/vault/vault.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kms/records.hpp"
#include "kms/secure.hpp"

namespace kms {

struct TokenChoice {
  std::optional<std::string> module;  // none: a private SoftHSM2 token beside the vault
  std::optional<std::string> label;
  std::optional<std::string> serial;
};

struct InitOptions {
  std::filesystem::path vault;
  TokenChoice token;
  bool force = false;  // move an existing vault aside instead of refusing
};

struct InitReport {
  std::string vault_id;
  TokenInfo token;
  std::string module;
  std::optional<SecureBytes> so_pin;                 // set when kmsctl initialised a private token
  std::optional<std::filesystem::path> moved_aside;  // the previous vault, with --force
};

// Paths that belong to a vault file.
std::filesystem::path default_vault_path();
std::filesystem::path lock_path(const std::filesystem::path& vault);
std::filesystem::path private_token_dir(const std::filesystem::path& vault);
std::optional<std::string> find_softhsm_module();

// What `kmsctl status` shows.
struct Status {
  std::string vault_path;
  std::string vault_id;
  std::string created;
  int schema_version = 0;
  std::string module;
  TokenInfo token;
  bool private_token = false;
  std::int64_t root_key_generation = 0;
  // How the root key seals the master key (docs/FORMAT.md §5): "aes-gcm" (in the token) or
  // "hmac-sha256" (a sealing key derived in the token).
  std::string root_key_seal;
  std::int64_t audit_records = 0;
  VaultCounts counts;
  AuditHead audit_head;
};

// `vault check-token`: every object in the token, and what it is to this vault. Foreign
// objects carry this vault's names without kmsctl's attributes (public, extractable: planted
// without the PIN), or sit in a private token that only this vault uses; strays are kmsctl's
// own objects that no row refers to (left by an interrupted rekey or rotation, or a failed
// delete); duplicates are second copies of an object in use. With `remove`, foreign objects
// and strays are destroyed (duplicates are only reported: which copy is genuine is not
// decided here). Audited as vault.check_token with the counts.
struct TokenObject {
  std::string kind;  // root key, hsm key, anchor slot, legacy anchor, other
  std::string label;
  std::string detail;  // "generation 1", "key ID version 2", why it is flagged
  std::string status;  // in use, stray, foreign, duplicate, other vault
  bool is_private = false;
  bool removed = false;
};
struct TokenCheck {
  std::vector<TokenObject> objects;
  int foreign = 0, strays = 0, duplicates = 0, removed = 0;
};

// `vault migrate`: the vault file copied into a PostgreSQL database, each table's rows as they
// were (their MACs hold there), and the copy verified against the token.
struct MigrateReport {
  std::string to;                 // the database, without its password
  std::int64_t rows = 0;          // rows copied, the audit log's included
  std::int64_t records = 0;       // audit records in the copy, the vault.migrate record last
  std::int64_t rows_checked = 0;  // rows whose MACs and sum the copy's verification checked
};
}  // namespace kms
