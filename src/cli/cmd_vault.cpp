// kmsctl vault backup | restore | rekey | change-pin | check-token
#include <unistd.h>

#include <iostream>

#include <fmt/format.h>

#include "cli/app.hpp"

namespace kms::cli {

namespace {

struct CheckTokenArgs {
  bool remove = false;
  bool yes = false;
  bool json = false;
};

void print_token_check(const Service::TokenCheck& c, bool json) {
  if (json) {
    nlohmann::json objects = nlohmann::json::array();
    for (const auto& o : c.objects) {
      objects.push_back({{"kind", o.kind},
                         {"label", o.label},
                         {"detail", o.detail},
                         {"status", o.status},
                         {"private", o.is_private},
                         {"removed", o.removed}});
    }
    print_json({{"objects", objects},
                {"foreign", c.foreign},
                {"strays", c.strays},
                {"duplicates", c.duplicates},
                {"removed", c.removed}});
    return;
  }
  std::cout << fmt::format("{:<14} {:<12} {:<8} {}\n", "KIND", "STATUS", "PRIVATE", "LABEL / DETAIL");
  for (const auto& o : c.objects) {
    std::cout << fmt::format("{:<14} {:<12} {:<8} {}{}\n", o.kind,
                             o.removed ? "removed" : o.status, o.is_private ? "yes" : "no",
                             escape_text(o.label),
                             o.detail.empty() ? "" : " (" + escape_text(o.detail) + ")");
  }
}

// "yes" typed on the terminal; false without one (the caller refuses: pass --yes).
bool confirmed(const std::string& question) {
  if (!::isatty(STDIN_FILENO) || !::isatty(STDERR_FILENO)) return false;
  std::cerr << question << " Type yes to continue: " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "yes";
}

}  // namespace

void register_check_token(CLI::App* vault, Globals& g) {
  auto a = std::make_shared<CheckTokenArgs>();
  CLI::App* check = vault->add_subcommand(
      "check-token", "List the objects in the vault's token and flag those it did not make "
                     "(recorded as vault.check_token)");
  check->add_flag("--remove", a->remove,
                  "Destroy the foreign and stray objects found (asks first; see --yes)");
  check->add_flag("--yes", a->yes, "With --remove: do not ask");
  check->add_flag("--json", a->json, "Print the result as JSON");
  check->callback([&g, a] {
    auto svc = open_service(g);
    Service::TokenCheck c = svc->check_token(false);
    const int flagged = c.foreign + c.strays;
    if (a->remove && flagged > 0) {
      if (!a->yes && !confirmed(fmt::format("{} object(s) will be destroyed in the token.", flagged))) {
        print_token_check(c, a->json);
        throw Error(Code::refused, "nothing was removed: the removal was not confirmed",
                    "run it on a terminal and type yes, or pass --yes");
      }
      c = svc->check_token(true);
    }
    print_token_check(c, a->json);
    const int left = (c.removed > 0 ? 0 : c.foreign) + c.duplicates;  // removal takes all foreign
    if (left > 0) {
      throw Error(Code::integrity,
                  fmt::format("the token holds {} object(s) this vault did not make{}", left,
                              c.duplicates > 0 ? ", including copies of objects in use" : ""),
                  c.duplicates > 0
                      ? "restore VAULT.token/ from a backup (which copy is genuine cannot be told)"
                      : "review them above; `kmsctl vault check-token --remove` destroys them");
    }
    if (c.removed > 0) note(fmt::format("removed {} object(s) from the token", c.removed));
  });
}

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

  register_check_token(vault, g);
}

}  // namespace kms::cli
