// The operations on the vault itself (src/vault/operations.cpp, token_check.cpp): status,
// backup, rekey, the token check and the PIN change, each audited by the runner. Reached through
// Service::vault_ops(); opening, creating and restoring a vault are Service's own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kms/secure.hpp"
#include "vault/vault.hpp"

namespace kms {

class Runner;
class Vault;

class VaultOperations {
 public:
  explicit VaultOperations(Runner& runner);

  Status status();
  void backup(const std::filesystem::path& dest, bool overwrite);
  std::int64_t rekey();

  // `vault check-token` (kms/vault.hpp): every object in the token, and what it is to this
  // vault; with `remove`, foreign objects and strays are destroyed. Audited as
  // vault.check_token with the counts.
  TokenCheck check_token(bool remove);
  void change_pin(const SecureBytes& old_pin, const SecureBytes& new_pin);

 private:
  Runner& runner_;
  Vault& vault_;
};

}  // namespace kms
