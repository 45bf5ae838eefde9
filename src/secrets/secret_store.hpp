// The secret store (every function runs inside the caller's write transaction: the runner's),
// the rotation hooks and the lock that keeps one rotation of a secret at a time. README
// "Secrets" describes the rotation protocol.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "keys/key_store.hpp"
#include "kms/clock.hpp"
#include "kms/secrets.hpp"
#include "store/store.hpp"
#include "vault/vault.hpp"

namespace kms::secrets {

class SecretStore {
 public:
  SecretStore(Vault& vault, keys::KeyStore& keys) : vault_(vault), keys_(keys) {}

  // Creates the secret with version 1 as `current`. Sets key_created when it made the default key.
  store::SecretRow create(const CreateSpec& spec, ByteView value, TimePoint now, bool& key_created);
  // Code::not_found when there is no secret of that name.
  store::SecretRow resolve(std::string_view name);
  // Code::refused while the secret is scheduled for deletion.
  static void require_active(const store::SecretRow& s);

  // A new version at `stage` (current or pending). A new current moves current → previous.
  // Purges the oldest unstaged versions beyond kMaxVersions. Returns the version number.
  std::int64_t add_version(store::SecretRow& s, ByteView value, SecretStage stage, TimePoint now);
  // The version at a stage, or a version number; Code::refused when its key is not enabled.
  Value read(const store::SecretRow& s, std::optional<SecretStage> stage,
             std::optional<std::int64_t> version);
  std::optional<store::SecretVersionRow> at_stage(const store::SecretRow& s, SecretStage stage);
  // Rotation's finish: current → previous, pending → current.
  void promote_pending(store::SecretRow& s, TimePoint now);

  SecretInfo describe(const store::SecretRow& s);
  std::optional<std::string> next_rotation(const store::SecretRow& s) const;
  std::string schedule_deletion(store::SecretRow& s, std::int64_t days, TimePoint now);
  void restore(store::SecretRow& s);
  // Code::refused while the secret is scheduled for deletion.
  void set_rotation(store::SecretRow& s, const RotationChange& change, TimePoint now);
  void erase(const store::SecretRow& s);

 private:
  store::KeyRow key_for_create(const CreateSpec& spec, TimePoint now, bool& key_created);
  Bytes seal_value(const store::SecretRow& s, std::int64_t version, ByteView value);

  Vault& vault_;
  keys::KeyStore& keys_;
};

// ---- rotation hooks (rotation.cpp) ----
struct HookCall {
  std::string step;  // create | set | test | finish
  std::string secret_name;
  std::string secret_id;
  std::int64_t current_version = 0;
  std::int64_t pending_version = 0;
  ByteView current;  // on file descriptor 3
  ByteView pending;  // on standard input (empty at create)
};
struct HookResult {
  bool ok = false;
  std::string failure;  // "exited with status 3", "killed by signal 9", ...
  SecureBytes output;   // standard output of the create step (other steps: passed to stderr)
};
// Runs `/bin/sh -c command` with the step, name and version ids in KMSCTL_ROTATION_STEP,
// KMSCTL_SECRET_NAME, KMSCTL_SECRET_ID, KMSCTL_CURRENT_VERSION_ID, KMSCTL_PENDING_VERSION_ID,
// in its own process group; killed with it after KMSCTL_HOOK_TIMEOUT seconds (default 300).
// When it has exited or been killed, every process it left (in its group or not: this process
// is a child subreaper meanwhile) is killed and reaped before run_hook returns.
HookResult run_hook(const std::string& command, const HookCall& call);

// One rotation of a secret at a time: an open-file-description lock on a byte of
// VAULT.rotate.lock chosen by the secret id; in PostgreSQL, a session advisory lock on the
// same slot, which holds for every host. Code::refused when another process holds it.
class RotationLock {
 public:
  RotationLock(store::Db& db, const std::filesystem::path& vault, std::string_view secret_id,
               std::string_view secret_name);
  ~RotationLock();
  RotationLock(const RotationLock&) = delete;
  RotationLock& operator=(const RotationLock&) = delete;

 private:
  int fd_ = -1;
  store::Db* db_ = nullptr;  // PostgreSQL: the connection holding slot_
  std::int32_t slot_ = 0;
};

}  // namespace kms::secrets
