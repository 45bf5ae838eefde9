// kmsctl vault backup | restore | rekey | change-pin
#include <fmt/format.h>

#include "cli/app.hpp"

namespace kms::cli {

void register_vault(CLI::App& app, Globals& g) {
  CLI::App* vault = app.add_subcommand("vault", "Back up and restore the vault, rekey it, change the token PIN");
  vault->require_subcommand(1);
  vault->fallthrough();

  struct BackupArgs {
    std::string file;
    bool force = false;
  };
  auto ba = std::make_shared<BackupArgs>();
  CLI::App* backup = vault->add_subcommand(
      "backup", "Consistent online copy of the vault (still sealed by the token)");
  backup->add_option("file", ba->file, "Backup file to write (atomically, mode 0600)")
      ->required()
      ->type_name("FILE");
  backup->add_flag("--force", ba->force, "Overwrite an existing file");
  backup->callback([&g, ba] {
    auto svc = open_service(g);
    svc->backup(ba->file, ba->force);
    note(escape_text(
        fmt::format("backed up vault {} to {}", svc->vault().final_path().string(), ba->file)));
  });

  CLI::App* rekey = vault->add_subcommand(
      "rekey", "Generate a new root key in the token and reseal the master key with it");
  rekey->callback([&g] {
    auto svc = open_service(g);
    const std::int64_t gen = svc->rekey();
    note(fmt::format("vault rekeyed: root key generation {} is in use; the old one is destroyed",
                     gen));
  });

  auto new_pin_file = std::make_shared<std::string>();
  CLI::App* pin = vault->add_subcommand(
      "change-pin", "Change the token's user PIN (old PIN as usual; new PIN from a file, "
                    "KMSCTL_NEW_PIN or a prompt)");
  pin->add_option("--new-pin-file", *new_pin_file,
                  "Read the new PIN from the first line of FILE (mode 0600)")
      ->type_name("FILE");
  pin->callback([&g, new_pin_file] {
    const SecureBytes old_pin = read_pin(g);
    const SecureBytes new_pin = read_new_pin(*new_pin_file);
    auto svc = Service::open(vault_path(g), old_pin);
    svc->change_pin(old_pin, new_pin);
    note("token user PIN changed");
  });

  struct RestoreArgs {
    std::string file;
    bool force = false;
  };
  auto ra = std::make_shared<RestoreArgs>();
  CLI::App* restore = vault->add_subcommand(
      "restore", "Replace the vault with a verified backup of it and re-anchor its audit log "
                 "in the token (recorded as vault.restore)");
  restore->add_option("backup", ra->file, "Backup file made by `kmsctl vault backup`")
      ->required()
      ->type_name("FILE");
  restore->add_flag("--force", ra->force, "Replace an existing vault's content");
  restore->callback([&g, ra] {
    const SecureBytes pin = read_pin(g);
    Service::RestoreReport rep;
    auto svc = Service::restore(vault_path(g), ra->file, pin, ra->force, rep);
    note(escape_text(fmt::format(
        "restored {} ({} audit records) into {}{}", ra->file, rep.backup_records,
        svc->vault().final_path().string(),
        rep.replaced_anchor_seq
            ? fmt::format("; the token anchor moved from seq {}", *rep.replaced_anchor_seq)
            : std::string())));
  });
}

}  // namespace kms::cli
