// The facade every front end uses: open the vault, then for each operation authorise → do →
// audit, in one SQLite transaction. If the audit record cannot be written, the operation fails
// and nothing it produced is released.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "kms/audit.hpp"
#include "kms/error.hpp"
#include "kms/vault.hpp"

namespace kms {

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
  store::AuditHead audit_head;
};

class Service {
 public:
  // Opens an existing vault (logs in to its token and unseals the master key).
  static std::unique_ptr<Service> open(const std::filesystem::path& vault, const SecureBytes& pin);
  // Creates a vault; its first audit record is vault.init.
  static std::unique_ptr<Service> init(const InitOptions& opts, const SecureBytes& pin,
                                       InitReport& report);
  // Replaces the vault at `target` with a verified backup of it and moves the token anchor to
  // the restored log, recording vault.restore (with the anchor it replaced) as its next record.
  struct RestoreReport {
    std::int64_t backup_records = 0;
    std::optional<std::int64_t> replaced_anchor_seq;
  };
  static std::unique_ptr<Service> restore(const std::filesystem::path& target,
                                          const std::filesystem::path& backup,
                                          const SecureBytes& pin, bool force,
                                          RestoreReport& report);
  ~Service();

  Vault& vault() noexcept { return *vault_; }

  struct Hooks {
    std::function<void()> committed;    // after the commit (e.g. destroy an old token key)
    std::function<void()> rolled_back;  // after a rollback (e.g. destroy a new token key)
  };
  // Runs op inside one write transaction together with its audit record. op may add request
  // parameters and resource ids to the event. On failure the transaction rolls back, a failure
  // record (outcome error, or denied for Code::refused) is written on its own, and the error
  // is rethrown.
  void run(audit::Event event, const std::function<void(audit::Event&)>& op,
           const Hooks& hooks = {});

  Status status();
  // Newest first (or oldest first), at most filter.limit rows.
  std::vector<store::AuditRow> audit_list(const store::AuditFilter& filter);
  // Walks the chain; records the verification (ok or failed) when the log can still be appended.
  audit::VerifyReport audit_verify();
  // JSON Lines of the whole log to `dest` (atomic, 0600). Returns the number of records.
  std::int64_t audit_export(const std::filesystem::path& dest, bool overwrite);
  void backup(const std::filesystem::path& dest, bool overwrite);
  std::int64_t rekey();
  void change_pin(const SecureBytes& old_pin, const SecureBytes& new_pin);

 private:
  explicit Service(std::unique_ptr<Vault> vault);
  void record_failure(const audit::Event& event, Code code) noexcept;

  std::unique_ptr<Vault> vault_;
  std::unique_ptr<audit::AnchorStore> anchor_;
  std::unique_ptr<audit::Log> log_;
  audit::Principal principal_;
};

}  // namespace kms
