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
  // `vault migrate` (kms/vault.hpp MigrateReport): records vault.migrate in this vault file,
  // then, under the writer lock, copies it into the PostgreSQL database `to` (new, or holding
  // no vault) and verifies the copy's chain and rows against the token. The copy carries on
  // from that record, with this vault's id and anchor: once it records anything, this file is
  // behind the anchor and refused as a rolled-back one.
  MigrateReport migrate(const std::string& to);

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
