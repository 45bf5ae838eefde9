// kmsctl vault backup | restore | migrate | rekey | change-pin | check-token
#include <unistd.h>

#include <iostream>
#include <string>

#include <fmt/format.h>

#include "cli/app.hpp"

namespace kms::cli {
namespace {

std::string versions_text(const std::vector<std::string>& versions) {
  std::string out = versions.size() == 1 ? "version " : "versions ";
  for (std::size_t i = 0; i < versions.size(); ++i) out += (i ? ", " : "") + versions[i];
  return out;
}

std::string version_text(std::int64_t version, bool replaced) {
  return replaced ? fmt::format("{} (the backup has another version {})", version, version)
                  : std::to_string(version);
}

// One line per key, secret and the records: names and ids, never a value.
std::vector<std::string> loss_lines(const RestoreLosses& l) {
  std::vector<std::string> out;
  auto whole_key = [&](const std::string& id) {
    return std::find(l.keys.begin(), l.keys.end(), id) != l.keys.end();
  };
  for (std::size_t i = 0; i < l.key_versions.size();) {
    const std::string& id = l.key_versions[i].key_id;
    std::vector<std::string> versions;
    for (; i < l.key_versions.size() && l.key_versions[i].key_id == id; ++i) {
      versions.push_back(version_text(l.key_versions[i].version, l.key_versions[i].replaced));
    }
    std::string name = "key " + id;
    if (const auto a = l.aliases.find(id); a != l.aliases.end()) {
      name += " (";
      for (std::size_t j = 0; j < a->second.size(); ++j) name += (j ? ", " : "") + a->second[j];
      name += ")";
    }
    out.push_back(fmt::format("{}: {}{}", name, whole_key(id) ? "the whole key, " : "",
                              versions_text(versions)));
  }
  auto whole_secret = [&](const std::string& id) {
    return std::any_of(l.secrets.begin(), l.secrets.end(),
                       [&](const RestoreLosses::Secret& s) { return s.id == id; });
  };
  for (std::size_t i = 0; i < l.secret_versions.size();) {
    const RestoreLosses::SecretVersion& first = l.secret_versions[i];
    std::vector<std::string> versions;
    for (; i < l.secret_versions.size() && l.secret_versions[i].secret_id == first.secret_id; ++i) {
      versions.push_back(version_text(l.secret_versions[i].version, l.secret_versions[i].replaced));
    }
    out.push_back(fmt::format("secret {} ({}): {}{}", first.name, first.secret_id,
                              whole_secret(first.secret_id) ? "the whole secret, " : "",
                              versions_text(versions)));
  }
  for (const RestoreLosses::Secret& s : l.secrets) {
    const bool listed = std::any_of(l.secret_versions.begin(), l.secret_versions.end(),
                                    [&](const auto& v) { return v.secret_id == s.id; });
    if (!listed) out.push_back(fmt::format("secret {} ({}): the whole secret", s.name, s.id));
  }
  if (l.records > 0) {
    out.push_back(
        fmt::format("audit records: {}, seq {} to {}", l.records, l.first_record, l.last_record));
  }
  return out;
}

// After an error (`say`: -q keeps it), or as a warning (`note`).
void print_losses(const std::string& heading, const RestoreLosses& l,
                  void (*print)(const std::string&) = say) {
  print(escape_text(heading));
  for (const std::string& line : loss_lines(l)) print("  " + escape_text(line));
}

nlohmann::json losses_json(const RestoreLosses& l) {
  auto aliases = [&](const std::string& id) {
    const auto a = l.aliases.find(id);
    return a == l.aliases.end() ? std::vector<std::string>() : a->second;
  };
  nlohmann::json key_versions = nlohmann::json::array(), keys = nlohmann::json::array();
  for (const auto& v : l.key_versions) {
    key_versions.push_back({{"key_id", v.key_id},
                            {"aliases", aliases(v.key_id)},
                            {"version", v.version},
                            {"replaced", v.replaced}});
  }
  for (const std::string& id : l.keys) keys.push_back({{"key_id", id}, {"aliases", aliases(id)}});
  nlohmann::json secret_versions = nlohmann::json::array(), secrets = nlohmann::json::array();
  for (const auto& v : l.secret_versions) {
    secret_versions.push_back({{"secret_id", v.secret_id},
                               {"name", v.name},
                               {"version", v.version},
                               {"replaced", v.replaced}});
  }
  for (const auto& s : l.secrets) secrets.push_back({{"secret_id", s.id}, {"name", s.name}});
  nlohmann::json records = {{"count", l.records}, {"first_seq", nullptr}, {"last_seq", nullptr}};
  if (l.records > 0) {
    records["first_seq"] = l.first_record;
    records["last_seq"] = l.last_record;
  }
  return {{"key_versions", key_versions},
          {"keys", keys},
          {"secret_versions", secret_versions},
          {"secrets", secrets},
          {"records", records}};
}

const char* const kWouldDrop = "restoring would drop what the vault has and the backup lacks:";

// "yes" typed on a terminal (stdin and stderr); false without one (the caller refuses).
bool confirmed(const std::string& question) {
  if (!::isatty(STDIN_FILENO) || !::isatty(STDERR_FILENO)) return false;
  std::cerr << question << " Type yes to continue: " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "yes";
}

// Without --force, on a terminal: the losses, then the question.
bool confirm_losses(const RestoreLosses& l) {
  print_losses(kWouldDrop, l);
  return confirmed(l.key_versions.empty()
                       ? std::string("Restore anyway?")
                       : "Ciphertexts and files made under these key versions will no longer "
                         "decrypt. Restore anyway?");
}

struct CheckTokenArgs {
  bool remove = false;
  bool yes = false;
  bool json = false;
};

void print_token_check(const TokenCheck& c, bool json) {
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
  std::cout << fmt::format("{:<14} {:<12} {:<8} {}\n", "KIND", "STATUS", "PRIVATE",
                           "LABEL / DETAIL");
  for (const auto& o : c.objects) {
    std::cout << fmt::format("{:<14} {:<12} {:<8} {}{}\n", o.kind, o.removed ? "removed" : o.status,
                             o.is_private ? "yes" : "no", escape_text(o.label),
                             o.detail.empty() ? "" : " (" + escape_text(o.detail) + ")");
  }
}

// `kmsctl vault restore` of a vault in PostgreSQL: the database put back is accepted as it is.
void restore_database(Globals& g, bool force, bool json) {
  const SecureBytes pin = read_pin(g);
  Service::RestoreReport rep;
  g.route.local = Service::restore_database(vault_path(g).string(), pin, force, rep);
  const std::string shown = g.route.local->vault().final_path().string();
  if (json) {
    print_json(
        {{"database", shown},
         {"audit_records", rep.backup_records},
         {"replaced_anchor_seq",
          rep.replaced_anchor_seq ? nlohmann::json(*rep.replaced_anchor_seq) : nlohmann::json()},
         {"dropped", losses_json(rep.losses)}});
  }
  note(escape_text(fmt::format(
      "accepted the database {} as it is ({} audit records){}", shown, rep.backup_records,
      rep.replaced_anchor_seq
          ? fmt::format("; the token anchor moved from seq {}", *rep.replaced_anchor_seq)
          : std::string())));
}

}  // namespace

void register_check_token(CLI::App* vault, Globals& g) {
  auto a = std::make_shared<CheckTokenArgs>();
  CLI::App* check =
      vault->add_subcommand("check-token",
                            "List the objects in the vault's token and flag those it did not make "
                            "(recorded as vault.check_token)");
  check->add_flag("--remove", a->remove,
                  "Destroy the foreign and stray objects found (asks first; see --yes)");
  check->add_flag("--yes", a->yes, "With --remove: do not ask");
  check->add_flag("--json", a->json, "Print the result as JSON");
  check->callback([&g, a] {
    TokenCheck c = run_here(g, req::VaultCheckToken{false});
    const int flagged = c.foreign + c.strays;
    if (a->remove && flagged > 0) {
      if (!a->yes &&
          !confirmed(fmt::format("{} object(s) will be destroyed in the token.", flagged))) {
        print_token_check(c, a->json);
        throw Error(Code::refused, "nothing was removed: the removal was not confirmed",
                    "run it on a terminal and type yes, or pass --yes");
      }
      c = run_here(g, req::VaultCheckToken{true});
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
  CLI::App* vault =
      app.add_subcommand("vault", "Back up and restore the vault, rekey it, change the token PIN");
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
    run_here(g, req::VaultBackup{ba->file, ba->force});
    note(escape_text(fmt::format("backed up vault {} to {}",
                                 local_vault(g).vault().final_path().string(), ba->file)));
  });

  struct MigrateArgs {
    std::string to, from;
    bool json = false;
  };
  auto ma = std::make_shared<MigrateArgs>();
  CLI::App* migrate = vault->add_subcommand(
      "migrate",
      "Copy the vault file into a new PostgreSQL database, verified (recorded as vault.migrate)");
  migrate
      ->add_option("--to", ma->to,
                   "The database: a libpq connection string (its password in PGPASSFILE or a "
                   "service file, not here)")
      ->required()
      ->type_name("CONNINFO");
  migrate->add_option("--from", ma->from, "The vault file (default: --vault)")->type_name("FILE");
  migrate->add_flag("--json", ma->json, "Print the report as JSON");
  migrate->callback([&g, ma] {
    if (!ma->from.empty()) g.vault = ma->from;
    const std::string from = shown_vault(g);
    const MigrateReport r = run_here(g, req::VaultMigrate{ma->to});
    if (ma->json) {
      print_json({{"from", from},
                  {"to", r.to},
                  {"rows", r.rows},
                  {"audit_records", r.records},
                  {"rows_checked", r.rows_checked}});
      return;
    }
    note(escape_text(fmt::format(
        "migrated vault {} to {}: {} rows copied; its {} audit records and {} rows verify "
        "against the token",
        from, r.to, r.rows, r.records, r.rows_checked)));
    note(
        "next: point KMSCTL_VAULT (or --vault) at the database on every host; the file is "
        "refused as rolled back once the database records anything");
  });

  CLI::App* rekey = vault->add_subcommand(
      "rekey", "Generate a new root key in the token and reseal the master key with it");
  rekey->callback([&g] {
    const std::int64_t gen = run_here(g, req::VaultRekey{});
    note(fmt::format("vault rekeyed: root key generation {} is in use; the old one is destroyed",
                     gen));
  });

  auto new_pin_file = std::make_shared<std::string>();
  CLI::App* pin =
      vault->add_subcommand("change-pin",
                            "Change the token's user PIN (old PIN as usual; new PIN from a file, "
                            "KMSCTL_NEW_PIN or a prompt)");
  pin->add_option("--new-pin-file", *new_pin_file,
                  "Read the new PIN from the first line of FILE (mode 0600)")
      ->type_name("FILE");
  pin->callback([&g, new_pin_file] {
    req::VaultChangePin change{read_pin(g), read_new_pin(*new_pin_file)};
    g.route.local = Service::open(existing_vault(g), change.old_pin);
    run_here(g, change);
    note("token user PIN changed");
  });

  auto so_pin_file = std::make_shared<std::string>();
  auto reset_new_pin_file = std::make_shared<std::string>();
  CLI::App* reset = vault->add_subcommand(
      "reset-pin",
      "Set a new user PIN with the security officer PIN, for a forgotten or locked PIN "
      "(recorded as vault.reset_pin)");
  reset
      ->add_option("--so-pin-file", *so_pin_file,
                   "Read the SO PIN that `kmsctl init` showed from the first line of FILE "
                   "(mode 0600)")
      ->required()
      ->type_name("FILE");
  reset
      ->add_option("--new-pin-file", *reset_new_pin_file,
                   "Read the new PIN from the first line of FILE (mode 0600)")
      ->type_name("FILE");
  reset->callback([&g, so_pin_file, reset_new_pin_file] {
    const SecureBytes so_pin = read_so_pin(*so_pin_file);
    const SecureBytes new_pin = read_new_pin(*reset_new_pin_file);
    g.route.local = Service::reset_pin(existing_vault(g), so_pin, new_pin);
    note("token user PIN reset with the security officer PIN; use the new PIN from now on");
  });

  struct RestoreArgs {
    std::string file;
    bool force = false;
    bool json = false;
  };
  auto ra = std::make_shared<RestoreArgs>();
  CLI::App* restore = vault->add_subcommand(
      "restore",
      "Replace the vault with a verified backup of it and re-anchor its audit log in the token "
      "(recorded as vault.restore); for a vault in PostgreSQL, without FILE: accept the database "
      "as it was put back");
  restore
      ->add_option("backup", ra->file,
                   "Backup file made by `kmsctl vault backup` (a vault file; none for a vault "
                   "in PostgreSQL)")
      ->type_name("FILE");
  restore->add_flag("--force", ra->force,
                    "Replace an existing vault's content, even if that drops data the backup lacks "
                    "(listed on stderr)");
  restore->add_flag("--json", ra->json, "Print the report, with what was dropped, as JSON");
  restore->callback([&g, ra] {
    if (store::is_postgres_location(vault_path(g).string()) && ra->file.empty()) {
      restore_database(g, ra->force, ra->json);
      return;
    }
    if (ra->file.empty()) {
      throw Error(Code::usage, "`kmsctl vault restore` needs the backup file to restore",
                  "`kmsctl vault restore BACKUP` (a file made by `kmsctl vault backup`)");
    }
    const SecureBytes pin = read_pin(g);
    Service::RestoreReport rep;
    const bool terminal = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDERR_FILENO) == 1;
    std::unique_ptr<Service> svc;
    try {
      svc = Service::restore(vault_path(g), ra->file, pin, ra->force, rep,
                             [&](const RestoreLosses& l) { return terminal && confirm_losses(l); });
    } catch (const Error& e) {
      // Elsewhere than on a terminal the refusal is reported first, then what it would drop.
      if (e.code() != Code::refused || ra->force || rep.losses.empty() || terminal) throw;
      const int code = report_error(e);
      print_losses(kWouldDrop, rep.losses);
      throw ErrorReported{code};
    }
    if (ra->force && !rep.losses.empty()) {
      print_losses("warning: the restore dropped what the vault had and the backup lacked:",
                   rep.losses, note);
    }
    if (ra->json) {
      print_json(
          {{"backup", ra->file},
           {"vault", svc->vault().final_path().string()},
           {"backup_records", rep.backup_records},
           {"replaced_anchor_seq",
            rep.replaced_anchor_seq ? nlohmann::json(*rep.replaced_anchor_seq) : nlohmann::json()},
           {"dropped", losses_json(rep.losses)}});
    }
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
