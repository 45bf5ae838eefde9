// The CLI's words for the next step a library error names (kms::Remedy): the command, option or
// environment variable that takes it. The library's own hint, where a sentence has one, is part
// of the sentence as each case places it.
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/keys.hpp"

namespace kms::cli {

std::string hint_text(const Error& e) {
  const std::string& s = e.subject();
  const std::string& h = e.hint();
  switch (e.remedy()) {
    case Remedy::none:
      return h;
    // Output files.
    case Remedy::overwrite_output:
      return "pass --force to overwrite it, or choose another output path";
    case Remedy::write_to_stream:
      return "to write into a device or a pipe, pass -o - and redirect standard output";
    // The vault.
    case Remedy::create_vault:
      return "create one with `kmsctl init`, or point KMSCTL_VAULT / --vault at yours";
    case Remedy::choose_vault:
      return "point KMSCTL_VAULT / --vault at a vault made by `kmsctl init`";
    case Remedy::restore_or_create_vault:
      return fmt::format("{}, or create one with `kmsctl init`", h);
    case Remedy::create_vault_again:
      return "run `kmsctl init` again";
    case Remedy::keep_existing_vault:
      return "use it, choose another path with --vault, or pass --force to move it aside";
    case Remedy::restore_to_other_path:
      return "restore it to another path with --vault";
    case Remedy::reopen_vault:
      return fmt::format("{} (a `kmsctl agent` must be started again)", h);
    case Remedy::act_as_owner:
      return "run kmsctl as the vault's owner";
    case Remedy::ask_for_access:
      return "ask the service's administrator for access (`kmsctl policy check` shows which rule "
             "decides)";
    case Remedy::act_as_service_user:
      return "run it as the service's own user (or root) on the service's host";
    case Remedy::use_full_socket:
      return "send it to the service's full socket (KMSCTL_SERVER / --server)";
    case Remedy::retry_when_free:
      return "another kmsctl process holds it; try again";
    case Remedy::upgrade:
      return "upgrade kmsctl to the version that wrote this vault";
    // Backups and restore.
    case Remedy::restore_from_backup:
      return "restore it from a backup made with `kmsctl vault backup`";
    case Remedy::force_restore:
      return "pass --force to replace its content with the backup (the current content is lost; "
             "take a backup of it first)";
    case Remedy::keep_copy_then_force_restore:
      return fmt::format("{}, then pass --force to restore the backup", h);
    case Remedy::back_up_then_force_restore:
      return "take a backup of the live vault first (`kmsctl vault backup FILE`), then pass "
             "--force to restore anyway";
    case Remedy::verify_backup_or_restore_it:
      return fmt::format(
          "verify it with `KMSCTL_VAULT={} kmsctl audit verify`, or restore it with `kmsctl "
          "vault restore {}`",
          s, s);
    // The audit log and tampering.
    case Remedy::verify_audit_log:
      return "run `kmsctl audit verify`";
    case Remedy::verify_audit_log_or_upgrade:
      return "run `kmsctl audit verify`; a vault written by a newer kmsctl needs that kmsctl";
    case Remedy::verify_and_restore_vault:
      return "run `kmsctl audit verify`, and restore the vault from a backup";
    case Remedy::verify_and_restore_backup:
      return fmt::format("{}: run `kmsctl audit verify` and restore a backup", h);
    case Remedy::restore_and_verify:
      return fmt::format("{}; see `kmsctl audit verify`", h);
    case Remedy::verify_then_restore_vault:
      return fmt::format(
          "{}: run `kmsctl audit verify`, then restore the vault from a backup (`kmsctl vault "
          "restore`)",
          h);
    case Remedy::verify_against_anchor:
      return "run `kmsctl audit verify`; if you restored this file on purpose, use `kmsctl vault "
             "restore` so the token anchor is moved with an audited record";
    // The token.
    case Remedy::check_pin:
      return fmt::format("check the PIN (--pin-file, KMSCTL_PIN_FILE or KMSCTL_PIN); {}", h);
    case Remedy::unlock_pin:
      return "set a new user PIN with the token's security officer PIN, the one `kmsctl init` "
             "showed: `kmsctl vault reset-pin --so-pin-file FILE`";
    case Remedy::check_token:
      return fmt::format(
          "{}; if the token keeps refusing, check it with its own tools (pkcs11-tool "
          "--list-slots) and `kmsctl vault check-token`",
          h);
    case Remedy::install_module:
      return "install the module (for SoftHSM2: apt-get install softhsm2) or pass the right path "
             "with --pkcs11-module";
    case Remedy::choose_module:
      return "pass the path of a PKCS#11 module with --pkcs11-module";
    case Remedy::install_softhsm:
      return "install it (apt-get install softhsm2) or pass --pkcs11-module for your HSM";
    // Keys.
    case Remedy::enable_key:
      return fmt::format("enable it with `kmsctl key enable {}`", s);
    case Remedy::cancel_key_deletion:
      return fmt::format("cancel the deletion with `kmsctl key cancel-deletion {}`{}{}", s,
                         h.empty() ? "" : ", ", h);
    case Remedy::cancel_key_deletion_before_enable:
      return fmt::format("cancel the deletion first: `kmsctl key cancel-deletion {}`", s);
    case Remedy::cancel_existing_key_deletion:
      return fmt::format("cancel it with `kmsctl key cancel-deletion {}`", s);
    case Remedy::list_keys:
      return "list keys with `kmsctl key list` (a key id or alias/NAME)";
    case Remedy::choose_page_limit:
      return fmt::format("pass --limit between 1 and {}", keys::kMaxListLimit);
    case Remedy::continue_key_list:
      return "pass as --after the `next` value the previous page printed";
    case Remedy::list_aliases:
      return "list aliases with `kmsctl key alias list`";
    case Remedy::choose_alias_name:
      return "choose another name, or move it with `kmsctl key alias update`";
    case Remedy::move_alias:
      return fmt::format("move it with `kmsctl key alias update {} KEY`", s);
    case Remedy::create_alias:
      return fmt::format("create it with `kmsctl key alias create {} KEY`", s);
    case Remedy::list_key_tags:
      return fmt::format("see its tags with `kmsctl key describe {}`", s);
    case Remedy::get_import_params:
      return fmt::format(
          "run `kmsctl key import-params {}` again for a new wrapping key and "
          "token{}{}",
          s, h.empty() ? "" : "; ", h);
    case Remedy::import_key_material:
      return fmt::format(
          "import its material: `kmsctl key import-params {}`, then `kmsctl key "
          "import {} --material FILE --import-token FILE`{}{}",
          s, s, h.empty() ? "" : "; ", h);
    case Remedy::use_key_for_operation:
      return fmt::format("{}; `kmsctl key describe {}` shows the key's spec and usage", h, s);
    case Remedy::choose_algorithm:
      return fmt::format("pass --algorithm {}", h);
    case Remedy::use_software_protection:
      return fmt::format("create it with --protection software ({})", h);
    case Remedy::encrypt_as_file:
      return "encrypt larger data with `kmsctl file encrypt` (envelope encryption)";
    case Remedy::pass_ciphertext:
      return "pass the output of `kmsctl encrypt` (base64 text or --binary)";
    case Remedy::pass_encryption_context:
      return "pass exactly the --context pairs given to encrypt";
    case Remedy::list_restores:
      return fmt::format(
          "{} (`kmsctl audit list --action vault.restore` shows what a restore dropped)", h);
    // Files.
    case Remedy::pass_encrypted_file:
      return "pass a file written by `kmsctl file encrypt`";
    case Remedy::pass_file_context:
      return "pass exactly the --context pairs used to encrypt (`kmsctl file inspect` shows them)";
    case Remedy::list_file_keys:
      return fmt::format("{}; `kmsctl file inspect` lists the file's keys", h);
    case Remedy::list_restores_and_file_keys:
      return fmt::format(
          "{} (`kmsctl audit list --action vault.restore` shows what a restore dropped); "
          "`kmsctl file inspect` lists the file's keys",
          h);
    case Remedy::pass_target_key:
      return "pass --to-key KEY";
    case Remedy::decrypt_with_newer:
      return fmt::format("{}, or decrypt it with a kmsctl that knows its recipients", h);
    // Secrets.
    case Remedy::restore_secret:
      return fmt::format("restore it with `kmsctl secret restore {}`", s);
    case Remedy::restore_or_purge_secret:
      return fmt::format(
          "restore it with `kmsctl secret restore {}`, or purge it with `kmsctl secret delete {} "
          "--force`",
          s, s);
    case Remedy::restore_or_purge_secret_now:
      return fmt::format(
          "restore it with `kmsctl secret restore {}`, or purge it now with `kmsctl secret "
          "delete {} --force`",
          s, s);
    case Remedy::put_secret_version:
      return fmt::format("store a new version with `kmsctl secret put {}`", s);
    case Remedy::list_secrets:
      return "list secrets with `kmsctl secret list`";
    case Remedy::list_secret_versions:
      return fmt::format("list its versions with `kmsctl secret versions {}`", s);
    case Remedy::list_secret_stages:
      return fmt::format("see its stages with `kmsctl secret describe {}`", s);
    case Remedy::store_as_file:
      return "store large data with `kmsctl file encrypt` and keep its key here";
    case Remedy::name_file_key:
      return "name a key with --key KEY (repeat it to wrap the data key for several)";
    case Remedy::give_secret_value:
      return "give a value on stdin or in a file, or use --generate";
    case Remedy::choose_charset:
      return fmt::format("{}, or choose another --charset", h);
    case Remedy::choose_length:
      return "e.g. --length 32";
    case Remedy::retry_rotation:
      return fmt::format("fix the cause and run `kmsctl secret rotate {}` again ({})", s, h);
    case Remedy::wait_for_rotation:
      return "wait for it to finish, then run `kmsctl secret rotate` again if it failed";
  }
  return h;  // not reached: every remedy has its case above
}

}  // namespace kms::cli
