// The composition root every front end uses: opens (creates, restores) a vault and holds its
// runner (authorise → do → audit, in one SQLite transaction: src/runner/runner.hpp) and each
// domain's operations on it (keys(), secrets(), files(), vault_ops(), audit(), grants()), every one
// of them run by that runner. If an audit record cannot be written, the operation fails and nothing
// it produced is released.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kms/access.hpp"
#include "kms/actions.hpp"
#include "kms/caller.hpp"
#include "kms/file_session.hpp"
#include "kms/secure.hpp"
#include "kms/vault.hpp"

namespace kms {

// Internal (src/): the vault, the runner and each domain's operations.
class Vault;
class Runner;
class KeyOperations;
class GrantOperations;
class SecretOperations;
class FileOperations;
class VaultOperations;
class AuditOperations;

// What a restore drops: what the live vault has and the backup lacks (names and ids only).
struct RestoreLosses {
  struct KeyVersion {
    std::string key_id;
    std::int64_t version = 0;
    bool replaced = false;  // the backup has another version of this number (made after a restore)
  };
  struct Secret {
    std::string id;
    std::string name;
  };
  struct SecretVersion {
    std::string secret_id;
    std::string name;
    std::int64_t version = 0;
    bool replaced = false;
  };
  // Every version lost, those of the lost keys too; in key id, version order.
  std::vector<KeyVersion> key_versions;
  std::vector<std::string> keys;  // keys the backup does not have at all
  // The live aliases of every key in key_versions, to name it by.
  std::map<std::string, std::vector<std::string>> aliases;
  std::vector<SecretVersion> secret_versions;
  std::vector<Secret> secrets;  // secrets the backup does not have at all
  std::int64_t records = 0;     // the live log's records after the last one the backup shares
  std::int64_t first_record = 0, last_record = 0;  // their seq range, when records > 0
  // Set when the live vault has a row that fails its MAC: what a restore drops is not known.
  std::string live_altered;

  bool empty() const noexcept {
    return key_versions.empty() && keys.empty() && secret_versions.empty() && secrets.empty() &&
           records == 0;
  }
};

struct MaintainReport {
  bool dry_run = false;
  std::vector<std::pair<std::string, std::int64_t>> rotated;  // key id, new version
  std::vector<std::string> deleted;                           // key ids
  // Imported keys whose material's expiry passed: their material deleted (state PendingImport).
  std::vector<std::pair<std::string, std::string>> material_expired;  // key id, expiry
  std::int64_t import_params_purged = 0;  // expired or used import parameters deleted
  std::vector<std::pair<std::string, std::int64_t>> secrets_rotated;  // name, new current version
  std::vector<std::pair<std::string, std::string>> secrets_failed;    // name, what failed
  std::vector<std::string> secrets_purged;                            // names
};

class Service {
 public:
  // Opens an existing vault (logs in to its token and unseals the master key).
  // A backup (made by `vault backup`) is refused unless allow_backup: it only verifies.
  static std::unique_ptr<Service> open(const std::filesystem::path& vault, const SecureBytes& pin,
                                       bool allow_backup = false);
  // Creates a vault; its first audit record is vault.init.
  static std::unique_ptr<Service> init(const InitOptions& opts, const SecureBytes& pin,
                                       InitReport& report);
  // Replaces the vault at `target` with a verified backup of it and moves the token anchor to
  // the restored log, recording vault.restore (with the anchor it replaced and the counts of what
  // it dropped) as its next record. Before anything changes, and under the writer lock, the live
  // vault is compared with the backup (report.losses). An existing vault is replaced only with
  // `force`, or when it would lose something and `confirm` (asked with the losses) says yes;
  // otherwise Code::refused, naming what would be lost.
  struct RestoreReport {
    std::int64_t backup_records = 0;
    std::optional<std::int64_t> replaced_anchor_seq;
    RestoreLosses losses;
  };
  using ConfirmLosses = std::function<bool(const RestoreLosses&)>;
  // Sets a new user PIN with the token's security officer PIN (a forgotten or locked PIN), then
  // opens the vault with it and records vault.reset_pin. The token cannot join the log's
  // transaction and nothing can be recorded before (no user PIN): a reset whose record then
  // fails is reported as such (Code::failed), the new PIN in force.
  static std::unique_ptr<Service> reset_pin(const std::filesystem::path& vault,
                                            const SecureBytes& so_pin, const SecureBytes& new_pin);
  static std::unique_ptr<Service> restore(const std::filesystem::path& target,
                                          const std::filesystem::path& backup,
                                          const SecureBytes& pin, bool force, RestoreReport& report,
                                          const ConfirmLosses& confirm = {});
  // A vault in PostgreSQL that its administrator put back from an older copy (pg_restore, a
  // base backup): accepts the database as it is now, once its log verifies, and moves the token
  // anchor to it with a vault.restore record. The records it lacks are gone (report.losses
  // counts them; what they did is not known); without `force` that is refused (Code::refused).
  // A database that agrees with its anchor has nothing to restore (Code::usage).
  static std::unique_ptr<Service> restore_database(const std::string& location,
                                                   const SecureBytes& pin, bool force,
                                                   RestoreReport& report);
  ~Service();

  // The operations themselves are requests (kms/requests.hpp: kms::handle on this Service).

  // The session of one file encrypt (key_refs: the keys to wrap the data key for), decrypt or
  // rewrap (none), for kms::encrypt_file, decrypt_file and rewrap_file (kms/file_session.hpp) in
  // this process.
  std::unique_ptr<FileSession> file_session(Action action, std::string name,
                                            std::vector<std::string> key_refs = {});

  // Who asks for the operations that follow (by default this process: Caller::current()). A
  // front end that serves other processes (`kmsctl agent`) names each client here; the records
  // name the caller and its channel, and every operation is authorised for it.
  void serve_client(Caller who);
  const Caller& caller() const noexcept;
  // Decides every operation (by default: owner_only, the uid that owns the vault file).
  void set_authorizer(Authorizer authorizer);

  // Rotates the keys whose period has elapsed and deletes those whose deletion date has passed;
  // purges secrets past their recovery window and runs due secret rotations.
  MaintainReport maintain(bool dry_run);

  // ---- for the library's own front ends (src/): what these return is internal ----
  Vault& vault() noexcept { return *vault_; }

  // The runner every operation goes through (authorise, do, audit: src/runner/runner.hpp).
  Runner& runner() noexcept { return *runner_; }

  // Each domain's operations, every one of them run by runner().
  KeyOperations& keys() noexcept { return *keys_; }
  SecretOperations& secrets() noexcept { return *secrets_; }
  FileOperations& files() noexcept { return *files_; }
  VaultOperations& vault_ops() noexcept { return *vault_ops_; }
  AuditOperations& audit() noexcept { return *audit_; }
  GrantOperations& grants() noexcept { return *grants_; }

 private:
  explicit Service(std::unique_ptr<Vault> vault);

  std::unique_ptr<Vault> vault_;
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<KeyOperations> keys_;
  std::unique_ptr<SecretOperations> secrets_;
  std::unique_ptr<FileOperations> files_;
  std::unique_ptr<VaultOperations> vault_ops_;
  std::unique_ptr<AuditOperations> audit_;
  std::unique_ptr<GrantOperations> grants_;
};

}  // namespace kms
