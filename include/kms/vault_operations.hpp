// The operations on the vault itself (src/vault/operations.cpp, token_check.cpp): status,
// backup, rekey, the token check and the PIN change, each audited by the runner. Reached through
// Service::vault_ops(); opening, creating and restoring a vault are Service's own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kms/hsm.hpp"
#include "kms/secure.hpp"
#include "kms/store.hpp"
#include "kms/vault.hpp"

namespace kms {

class Runner;

struct Status {
  std::string vault_path;
  std::string vault_id;
  std::string created;
  int schema_version = 0;
  std::string module;
  hsm::TokenInfo token;
  bool private_token = false;
  std::int64_t root_key_generation = 0;
  std::int64_t audit_records = 0;
  store::VaultCounts counts;
  store::AuditHead audit_head;
};

class VaultOperations {
 public:
  explicit VaultOperations(Runner& runner);

  Status status();
  void backup(const std::filesystem::path& dest, bool overwrite);
  std::int64_t rekey();

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
  TokenCheck check_token(bool remove);
  void change_pin(const SecureBytes& old_pin, const SecureBytes& new_pin);

 private:
  Runner& runner_;
  Vault& vault_;
};

}  // namespace kms
