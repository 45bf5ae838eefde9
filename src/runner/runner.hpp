// The runner: every operation on an open vault, for its caller, as authorise → do → audit in
// one SQLite transaction. If the audit record cannot be written, the operation fails and nothing
// it produced is released. Each domain's operations (keys, secrets, files, vault, audit) are
// written as calls to run(); the runner knows none of them.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "audit/log.hpp"
#include "kms/access.hpp"
#include "kms/caller.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "vault/vault.hpp"

namespace kms {

// The vault's writer lock, held from the open check until the record's anchor is stored, so that
// commits and anchor updates happen in one order across processes (FORMAT.md §8.4): an flock on
// VAULT.lock beside a file; a session-level advisory lock in PostgreSQL, which the processes of
// every host share through the database.
class WriterLock {
 public:
  explicit WriterLock(Vault& vault);
  ~WriterLock();
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  store::Db& db_;
  std::optional<files::ExclusiveLock> file_;
};

class Runner {
 public:
  // The log and its token anchor on `vault`; the caller is this process (Caller::current()) and
  // the authoriser owner_only for the uid that owns the vault file.
  explicit Runner(Vault& vault);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  Vault& vault() noexcept { return vault_; }
  audit::Log& log() noexcept { return *log_; }
  // The log holds a reference to the vault's database: opened again after Vault::publish
  // reopened it.
  void reopen_log();

  // Who asks for the operations that follow (by default this process: Caller::current()). A
  // front end that serves other processes (`kmsctl agent`) names each client here; the records
  // name the caller and its channel, and every operation is authorised for it.
  void serve_client(Caller who);
  const Caller& caller() const noexcept { return caller_; }
  // Decides every operation (by default: owner_only, the uid that owns the vault file).
  void set_authorizer(Authorizer authorizer);

  struct Hooks {
    std::function<void()> committed;    // after the commit (e.g. destroy an old token key)
    std::function<void()> rolled_back;  // after a rollback (e.g. destroy a new token key)
    // Inside the transaction, once the record is appended and before the commit (a file
    // operation locks a file named by the record's seq: both exist, or neither).
    std::function<void(const store::AuditRow&)> appended = nullptr;
    // After a rollback, before the failure record is written: may change what it says.
    std::function<void(audit::Event&)> failing = nullptr;
  };
  // Authorises the event for the caller (a refusal is Code::refused, recorded as `denied` with
  // the deciding rule), then runs op inside one write transaction together with its audit
  // record, whose outcome is `outcome` (`ok`; `started` for the key use of a file operation,
  // ended by a second record; `error` with error_code for a failure recorded on purpose). op may
  // add request parameters and resource ids to the event. On failure the transaction rolls back,
  // a failure record (outcome error, or denied for Code::refused) is written on its own, and the
  // error is rethrown. Returns the record appended. A transaction that lost to another writer
  // (store::Conflict: PostgreSQL) is rolled back (hooks.rolled_back) and the request run again
  // from the event as given, up to kConflictAttempts times in all.
  store::AuditRow run(audit::Event event, const std::function<void(audit::Event&)>& op,
                      const Hooks& hooks, std::string_view outcome = "ok",
                      std::string_view error_code = {});
  store::AuditRow run(audit::Event event, const std::function<void(audit::Event&)>& op);
  // Like run, but the record's outcome is the failure `code` while op's changes still commit
  // (a failed rotation step is recorded in the secret for `describe`).
  void run_failed(audit::Event event, Code code, const std::function<void(audit::Event&)>& op);

  // Appends a failure record in a transaction of its own (the caller holds the writer lock);
  // a failure to write it is dropped. error_code: the code's name, or `interrupted`.
  void record_failure(const audit::Event& event, Code code, std::string_view error_code) noexcept;
  void record_failure(const audit::Event& event, Code code) noexcept;
  // The error_code an error is recorded with: its code's name, or `interrupted` for a caught
  // signal (signals::Interrupted).
  static std::string_view failure_code(const Error& e) noexcept;
  // Code::refused unless the authorizer allows the caller `event`'s action on its resource, as
  // the event names them now; event.params gets the deciding `rule` (but for the owner's own
  // vault) and, when a grant allowed it, its `grant_id`. run() asks
  // before op; an op that resolves its resource (an alias) asks again once it has.
  void authorize(audit::Event& event);
  // Appends the operation's record with the caller's principal and, unless the caller opened
  // the vault itself, its channel.
  store::AuditRow append(const audit::Event& event, std::string_view outcome,
                         std::string_view error_code);
  // Under the writer lock, before a record is appended: the vault file is still the one opened
  // (Vault::check_in_place) and its log agrees with the token anchor.
  void check_writable();
  // Code::integrity unless every authenticated row matches its MAC and together they are the
  // state the log last recorded; `before` names what is refused. Inside the caller's
  // transaction, before it changes anything.
  void require_recorded_state(std::string_view before);
  // Code::integrity when the header had no MAC (Vault::header_unauthenticated) and the log's
  // newest record holds a state: only a vault of an older kmsctl may lack it.
  void check_header_authenticated();
  // `audit verify` of another database holding this vault's rows (a copy `vault migrate`
  // made), against this vault's token anchor and keys.
  audit::VerifyReport verify_copy(store::Db& copy);
  // VAULT.ops/: a lock file per running file operation, named by its started record's seq.
  std::filesystem::path ops_dir() const;

 private:
  // The first write to a vault whose rows have no MAC yet (made by an older kmsctl): MACs them
  // all in one audited transaction (`vault.upgrade`) whose record holds the first state. Under
  // the writer lock, after the log was found to agree with the token anchor.
  void authenticate_rows();
  // Under the writer lock, before a record is appended: ends the `started` record of each file
  // operation whose process died (its lock file can be locked) with an error record,
  // `interrupted`, and removes the lock file. Looks only when VAULT.ops/ has files.
  void close_dead_file_operations();
  // Between two tries of a request that lost to another writer.
  static void conflict_pause(int attempt);
  static constexpr int kConflictAttempts = 5;

  Vault& vault_;
  std::unique_ptr<audit::AnchorStore> anchor_;
  std::unique_ptr<audit::Log> log_;
  Caller caller_;
  Authorizer authorizer_;
};

}  // namespace kms
