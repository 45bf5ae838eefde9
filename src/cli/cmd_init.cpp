// kmsctl init: a new vault, on a private SoftHSM2 token or on an existing token.
#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"

namespace kms::cli {
namespace {

struct InitArgs {
  std::string module, label, serial, so_pin_file;
  bool force = false;
  bool json = false;
};

void run_init(const Globals& g, const InitArgs& a) {
  InitOptions opts;
  here_only(g);
  opts.vault = vault_path(g);
  opts.force = a.force;
  if (!a.module.empty()) {
    if (a.label.empty() && a.serial.empty()) {
      throw Error(Code::usage, "--pkcs11-module needs --token-label or --token-serial",
                  "list the module's tokens with `pkcs11-tool --module MODULE --list-slots`");
    }
    opts.token.module = a.module;
    if (!a.label.empty()) opts.token.label = a.label;
    if (!a.serial.empty()) opts.token.serial = a.serial;
  } else if (!a.label.empty() || !a.serial.empty()) {
    throw Error(Code::usage, "--token-label and --token-serial choose a token of --pkcs11-module",
                "pass --pkcs11-module too, or neither to get a private SoftHSM2 token");
  }
  if (opts.token.module && !a.so_pin_file.empty()) {
    throw Error(Code::usage, "--so-pin-file applies only to a new private token",
                "drop it: an existing token keeps its SO PIN");
  }
  std::optional<files::AtomicFile> so_file;
  if (!a.so_pin_file.empty()) so_file.emplace(a.so_pin_file, false);  // refuse early if it exists

  const bool new_token = !opts.token.module;
  const SecureBytes pin = read_pin(g, /*confirm=*/new_token);
  InitReport rep;
  auto svc = Service::init(opts, pin, rep);

  if (rep.moved_aside)
    note(escape_text(
        fmt::format("moved the previous vault aside to {}", rep.moved_aside->string())));
  if (rep.so_pin) {
    if (so_file) {
      so_file->write(rep.so_pin->chars());
      so_file->write("\n");
      so_file->commit();
      note(escape_text(
          fmt::format("the new token's security officer (SO) PIN is in {} (mode 0600); move it "
                      "somewhere safe",
                      a.so_pin_file)));
    } else {
      say(fmt::format(
          "the new token's security officer (SO) PIN, shown only this once:\n\n    {}\n\n"
          "store it safely (a password manager or a sealed envelope): it resets the user PIN if "
          "that gets locked. Next time, --so-pin-file FILE writes it to a file instead.",
          rep.so_pin->chars()));
    }
  }
  const Vault& v = svc->vault();
  if (a.json) {
    print_json({{"vault", v.final_path().string()},
                {"vault_id", rep.vault_id},
                {"token",
                 {{"module", rep.module},
                  {"label", rep.token.label},
                  {"serial", rep.token.serial},
                  {"private", rep.so_pin.has_value()}}}});
  } else {
    note(escape_text(fmt::format("created vault {} (id {}; token \"{}\", serial {}, via {})",
                                 v.final_path().string(), rep.vault_id, rep.token.label,
                                 rep.token.serial, rep.module)));
  }
}

}  // namespace

void register_init(CLI::App& app, Globals& g) {
  auto a = std::make_shared<InitArgs>();
  CLI::App* cmd = app.add_subcommand(
      "init",
      "Create a vault whose root key lives in a PKCS#11 token (default: a new private "
      "SoftHSM2 token beside the vault)");
  cmd->add_option("--pkcs11-module", a->module, "Use a token of this PKCS#11 module")
      ->type_name("FILE");
  cmd->add_option("--token-label", a->label, "Choose the module's token by label");
  cmd->add_option("--token-serial", a->serial, "Choose the module's token by serial number");
  cmd->add_option("--so-pin-file", a->so_pin_file,
                  "Write a new private token's SO PIN to FILE (0600) instead of printing it")
      ->type_name("FILE");
  cmd->add_flag("--force", a->force, "Move an existing vault aside (renamed, not deleted)");
  cmd->add_flag("--json", a->json, "Print the result as JSON");
  cmd->callback([&g, a] { run_init(g, *a); });
}

}  // namespace kms::cli
