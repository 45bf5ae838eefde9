// kms::Error — the one error type of the project. Its code is the fixed vocabulary that the
// CLI maps, once, to exit codes (docs/ARCHITECTURE.md §6); its message names the object; its
// remedy names the next step and its hint gives advice in words any front end can show.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kms {

enum class Code {
  failed = 1,       // the operation failed (I/O, library, unexpected state)
  usage = 2,        // bad arguments or input from the user
  not_found = 3,    // a named object does not exist
  refused = 4,      // refused by state or policy
  integrity = 5,    // tampered data, wrong context, wrong key, broken chain
  unavailable = 6,  // vault or token unavailable: wrong PIN, missing module, locked
};

// Stable lower-case name of a code, as written into audit records and JSON output.
std::string_view code_name(Code c) noexcept;
inline int exit_code(Code c) noexcept { return static_cast<int>(c); }

// The next step an error calls for, as a value: a front end puts it in its own words (the CLI
// names its command, option or environment variable), so the library never does. Where the
// step concerns one object, Error::subject() names it as the caller did (a key id or alias, a
// secret's name, a vault's path); Error::hint(), when not empty, is the rest of the advice.
enum class Remedy : std::uint8_t {
  none = 0,
  // Output files.
  overwrite_output,  // the output exists: allow replacing it, or write elsewhere
  write_to_stream,   // the output is no regular file: write to a stream instead
  // The vault.
  create_vault,             // no vault at that path: create one, or open the one meant
  choose_vault,             // the file is no vault: open one that is
  restore_or_create_vault,  // hint: restore it; or create a new one
  create_vault_again,       // a vault appeared at the path during creation
  keep_existing_vault,      // a vault exists at the path: use it, choose another, or move it aside
  restore_to_other_path,    // the backup is another vault's
  reopen_vault,             // the vault file was replaced; hint: retry (a serving agent restarts)
  act_as_owner,             // only the vault's owner may do this
  retry_when_free,          // another process holds the vault
  upgrade,                  // a newer version wrote the vault
  // Backups and restore.
  restore_from_backup,           // the vault file is damaged
  force_restore,                 // a vault exists at the target: restoring replaces it
  keep_copy_then_force_restore,  // hint: what to keep before restoring over an altered vault
  back_up_then_force_restore,    // restoring drops what the vault has and the backup lacks
  verify_backup_or_restore_it,   // a backup opened for writing (subject: its path)
  // The audit log and tampering.
  verify_audit_log,             // verify the audit log
  verify_audit_log_or_upgrade,  // verify it; a newer version may have written the vault
  verify_and_restore_vault,     // verify the log, then restore the vault from a backup
  verify_and_restore_backup,    // hint: what happened; verify the log, restore a backup
  restore_and_verify,           // hint: restore the vault from a backup; then verify the log
  verify_then_restore_vault,    // hint: stop using the vault; verify the log, restore a backup
  verify_against_anchor,        // the log does not match the token's audit anchor: verify it (a
                                // vault restored on purpose goes through Service::restore)
  // The token.
  check_pin,        // hint: what the token does on wrong PINs
  unlock_pin,       // the user PIN is locked: set it again with the SO PIN (subject: the vault)
  check_token,      // hint: retry; then check the token itself
  install_module,   // the PKCS#11 module does not load: install it or name the right one
  choose_module,    // the file is no PKCS#11 module
  install_softhsm,  // no SoftHSM2 and no module named
  // Keys (subject, where there is one: the key as the caller named it).
  enable_key,                         // the key is disabled
  cancel_key_deletion,                // the key is pending deletion; hint: what then
  cancel_key_deletion_before_enable,  // enabling a key pending deletion
  cancel_existing_key_deletion,       // scheduling the deletion of a key already pending it
  list_keys,                          // no such key
  choose_page_limit,                  // a page of keys holds 1 to keys::kMaxListLimit
  continue_key_list,                  // the key a page should follow does not exist
  list_aliases,                       // no such alias
  choose_alias_name,                  // the alias exists (creating a key with it)
  move_alias,                         // subject: the alias, which exists
  create_alias,                       // subject: the alias, which does not exist
  list_key_tags,                      // the key has no such tag
  get_import_params,        // an import token that does not serve (another key's, expired, used)
  import_key_material,      // the key (origin external) has no material yet, or it expired
  use_key_for_operation,    // the key's spec or usage does not serve it; hint: what would
  choose_algorithm,         // the algorithm does not fit the key; hint: the ones that do
  use_software_protection,  // the token cannot hold this spec; hint: the missing mechanism
  encrypt_as_file,          // too large for encrypt: use envelope encryption
  pass_ciphertext,          // the input is no ciphertext blob
  pass_encryption_context,  // the ciphertext does not open: give the context used
  list_restores,            // hint: which vault copy has the key version; restores dropped it
  // Files.
  pass_encrypted_file,          // the input is no encrypted file
  pass_file_context,            // the context differs from the file's
  list_file_keys,               // hint: the cause's; the file's header names its keys
  list_restores_and_file_keys,  // list_restores, for a file
  pass_target_key,              // none of the file's keys is left to rewrap it to
  decrypt_with_newer,           // hint: treat it as tampered with; or a newer version knows it
  // Secrets (subject, where there is one: the secret's name).
  restore_secret,               // the secret is scheduled for deletion
  restore_or_purge_secret,      // the name is a secret scheduled for deletion
  restore_or_purge_secret_now,  // deleting a secret already scheduled for deletion
  put_secret_version,           // the secret exists: store a new version
  list_secrets,                 // no such secret
  list_secret_versions,         // no such version
  list_secret_stages,           // no version at that stage
  store_as_file,                // too large for a secret: encrypt it as a file
  give_secret_value,            // the value is empty
  name_file_key,                // a file encrypt names no key
  choose_charset,               // hint: exclude fewer characters
  choose_length,                // the length is out of range
  retry_rotation,               // hint: where the rotation resumes
  wait_for_rotation,            // another rotation of the secret runs
  // The service mode.
  ask_for_access,       // the service's policy refused: its administrator can allow it
  use_full_socket,      // the use-only socket serves cryptographic use of keys only
  act_as_service_user,  // only the service's own user (or root) may do this
};

class Error : public std::runtime_error {
 public:
  Error(Code code, std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), code_(code), hint_(std::move(hint)) {}
  Error(Code code, std::string message, Remedy remedy, std::string subject = {},
        std::string hint = {})
      : std::runtime_error(std::move(message)),
        code_(code),
        remedy_(remedy),
        subject_(std::move(subject)),
        hint_(std::move(hint)) {}
  Code code() const noexcept { return code_; }
  Remedy remedy() const noexcept { return remedy_; }
  const std::string& subject() const noexcept { return subject_; }
  // Advice that names no command, option or environment variable of a front end; empty when
  // there is none or the remedy says it all.
  const std::string& hint() const noexcept { return hint_; }

 private:
  Code code_;
  Remedy remedy_ = Remedy::none;
  std::string subject_;
  std::string hint_;
};

}  // namespace kms
