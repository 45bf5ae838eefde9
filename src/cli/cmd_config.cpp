// kmsctl config list|get|set|unset: the profiles of the config file (profile.hpp, README
// "Profiles"). No vault is opened and nothing is audited: the file is the user's own settings.
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

#include "cli/app.hpp"
#include "cli/profile.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"

namespace kms::cli {
namespace config_cmd {
namespace fs = std::filesystem;
using profiles::ConfigFile;

std::string from_words(const std::string& from) {
  if (from == "flag") return "--profile";
  if (from == "env") return "KMSCTL_PROFILE";
  if (from == "default") return "default_profile";
  return "";
}

nlohmann::json or_null(const std::string& s) {
  return s.empty() ? nlohmann::json() : nlohmann::json(s);
}

nlohmann::json value_json(const std::string& key, const std::string& value) {
  if (key == "quiet") return value == "true";
  return value;
}

// The profile `config get|set|unset` works on: --profile, KMSCTL_PROFILE or default_profile.
// With none, `set` uses (and creates) the profile named default; the others refuse.
std::string target(const Globals& g, const ConfigFile& c, bool creating) {
  const profiles::Selection s = profiles::selection(g, c);
  if (s.name.empty()) {
    if (creating) return "default";
    throw Error(Code::usage, "no profile is selected",
                "pass --profile NAME, set KMSCTL_PROFILE, or set default_profile (`kmsctl config "
                "set default_profile NAME`)");
  }
  profiles::check_profile_name(s.name, from_words(s.from));
  if (!creating) (void)profiles::selected(s, c);
  return s.name;
}

void list(const Globals& g, bool json) {
  const ConfigFile c = profiles::load(profiles::config_path());
  const profiles::Selection s = profiles::selection(g, c);
  const bool active_exists = !s.name.empty() && c.find(s.name) != nullptr;
  if (json) {
    nlohmann::json ps = nlohmann::json::object();
    for (const profiles::Profile& p : c.profiles) {
      nlohmann::json values = nlohmann::json::object();
      for (const auto& [k, v] : p.values) values[k] = value_json(k, v);
      ps[p.name] = values;
    }
    print_json(
        {{"file", c.path.string()},
         {"exists", c.exists},
         {"default_profile", or_null(c.default_profile)},
         {"active",
          {{"profile", or_null(s.name)}, {"from", or_null(s.from)}, {"exists", active_exists}}},
         {"profiles", ps}});
    return;
  }
  fmt::print("config file      {}{}\n", escape_text(c.path.string()),
             c.exists ? "" : " (none yet: `kmsctl config set KEY VALUE` creates it)");
  if (s.name.empty()) {
    fmt::print("active profile   none (no --profile, KMSCTL_PROFILE or default_profile)\n");
  } else {
    fmt::print("active profile   {} (from {}){}\n", escape_text(s.name), from_words(s.from),
               active_exists ? "" : "; the file has no such profile");
  }
  if (!c.default_profile.empty()) {
    fmt::print("default profile  {}\n", escape_text(c.default_profile));
  }
  for (const profiles::Profile& p : c.profiles) {
    fmt::print("\nprofile {}{}\n", escape_text(p.name), p.name == s.name ? " (active)" : "");
    for (std::string_view k : profiles::kKeys) {
      const auto it = p.values.find(std::string(k));
      if (it != p.values.end()) fmt::print("  {:<13}{}\n", k, escape_text(it->second));
    }
  }
}

void get(const Globals& g, const std::string& key, bool json) {
  profiles::check_key(key, "", /*top_level=*/key == profiles::kDefaultProfile);
  const ConfigFile c = profiles::load(profiles::config_path());
  if (key == profiles::kDefaultProfile) {
    if (c.default_profile.empty()) {
      throw Error(Code::not_found, fmt::format("{} sets no default_profile", c.path.string()),
                  "set one with `kmsctl config set default_profile NAME`");
    }
    if (json) return print_json({{"key", key}, {"value", c.default_profile}});
    fmt::print("{}\n", escape_text(c.default_profile));
    return;
  }
  const std::string name = target(g, c, /*creating=*/false);
  const profiles::Profile& p = *c.find(name);
  const auto it = p.values.find(key);
  if (it == p.values.end()) {
    throw Error(Code::not_found, fmt::format("profile {} does not set {}", name, key),
                fmt::format("set it with `kmsctl config set {} VALUE --profile {}`", key, name));
  }
  if (json) {
    return print_json({{"profile", name}, {"key", key}, {"value", value_json(key, it->second)}});
  }
  fmt::print("{}\n", escape_text(it->second));
}

// `config set` and `unset` read the file, change it and write it back: one at a time (a lock on
// its directory, which then holds no lock file), so that two at once both land.
fs::path config_dir(const fs::path& path) {
  return path.has_parent_path() ? path.parent_path() : fs::path(".");
}

void set(const Globals& g, const std::string& key, const std::string& value) {
  profiles::check_key(key, "", /*top_level=*/key == profiles::kDefaultProfile);
  const std::string stored = profiles::value_from_command_line(key, value);
  const fs::path path = profiles::config_path();
  if (path.empty()) {
    throw Error(Code::usage, "no home directory to keep the config file in",
                "set HOME, or point KMSCTL_CONFIG at a file");
  }
  files::make_private_dir(config_dir(path));
  const files::ExclusiveLock lock(config_dir(path));
  ConfigFile c = profiles::load(path);
  if (key == profiles::kDefaultProfile) {
    if (!g.profile.empty()) {
      throw Error(Code::usage, "default_profile belongs to no profile",
                  "give it without --profile: `kmsctl config set default_profile NAME`");
    }
    if (c.find(stored) == nullptr) {
      throw Error(Code::usage,
                  fmt::format("default_profile must name a profile of {} (the value given is not "
                              "shown)",
                              c.path.string()),
                  c.profiles.empty() ? std::string("create one first: `kmsctl config set KEY "
                                                   "VALUE --profile NAME`")
                                     : fmt::format("its profiles: {}", fmt::join(c.names(), ", ")));
    }
    c.default_profile = stored;
    profiles::save(c);
    note(fmt::format("kmsctl: default_profile set in {}", escape_text(c.path.string())));
    return;
  }
  const std::string name = target(g, c, /*creating=*/true);
  c.get_or_add(name).values[key] = stored;
  bool now_default = false;
  if (c.default_profile.empty() && profiles::selection(g, c).name.empty()) {
    c.default_profile = name;  // the first profile set with no profile named: the default
    now_default = true;
  }
  profiles::save(c);
  note(fmt::format("kmsctl: {} set in profile {} of {}{}", key, name, escape_text(c.path.string()),
                   now_default ? ", now the default profile" : ""));
}

void unset(const Globals& g, const std::string& key) {
  profiles::check_key(key, "", /*top_level=*/key == profiles::kDefaultProfile);
  const fs::path path = profiles::config_path();
  std::optional<files::ExclusiveLock> lock;
  if (!path.empty() && fs::exists(path)) lock.emplace(config_dir(path));
  ConfigFile c = profiles::load(path);
  if (key == profiles::kDefaultProfile) {
    if (c.default_profile.empty()) return note("kmsctl: default_profile was not set");
    c.default_profile.clear();
    profiles::save(c);
    note(fmt::format("kmsctl: default_profile removed from {}", escape_text(c.path.string())));
    return;
  }
  const std::string name = target(g, c, /*creating=*/false);
  if (c.get_or_add(name).values.erase(key) == 0) {
    return note(fmt::format("kmsctl: profile {} did not set {}", name, key));
  }
  profiles::save(c);
  note(fmt::format("kmsctl: {} removed from profile {} of {}", key, name,
                   escape_text(c.path.string())));
}

constexpr std::string_view kKeyHelp =
    "vault, pin_file, server, agent_socket, output, quiet, or default_profile";

void add_list(CLI::App* group, Globals& g) {
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = group->add_subcommand(
      "list", "Show the config file's profiles and settings, and which profile is active and why");
  cmd->add_flag("--json", *json, "Print {file, exists, default_profile, active, profiles} as JSON");
  cmd->callback([&g, json] { list(g, *json); });
}

void add_get(CLI::App* group, Globals& g) {
  struct Args {
    std::string key;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd =
      group->add_subcommand("get", "Print a setting of the active profile (or of --profile NAME)");
  cmd->add_option("key", a->key, std::string(kKeyHelp))->required()->type_name("KEY");
  cmd->add_flag("--json", a->json, "Print {profile, key, value} as JSON");
  cmd->callback([&g, a] { get(g, a->key, a->json); });
}

void add_set(CLI::App* group, Globals& g) {
  struct Args {
    std::string key, value;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = group->add_subcommand(
      "set",
      "Set a setting of the active profile (or of --profile NAME, created if new); never a PIN: "
      "set pin_file to a file that holds it");
  cmd->add_option("key", a->key, std::string(kKeyHelp))->required()->type_name("KEY");
  cmd->add_option("value", a->value,
                  "A path (/..., ~/..., ./...), text|json, true|false, or a "
                  "profile name")
      ->required()
      ->type_name("VALUE");
  cmd->callback([&g, a] { set(g, a->key, a->value); });
}

void add_unset(CLI::App* group, Globals& g) {
  auto key = std::make_shared<std::string>();
  CLI::App* cmd = group->add_subcommand(
      "unset", "Remove a setting from the active profile (or from --profile NAME)");
  cmd->add_option("key", *key, std::string(kKeyHelp))->required()->type_name("KEY");
  cmd->callback([&g, key] { unset(g, *key); });
}

constexpr Verb kVerbs[] = {
    {"list", add_list}, {"get", add_get}, {"set", add_set}, {"unset", add_unset}};

}  // namespace config_cmd

void register_config(CLI::App& app, Globals& g) {
  CLI::App* group = app.add_subcommand(
      "config",
      "Show and change the profiles of the config file ($XDG_CONFIG_HOME/kmsctl/config.toml or "
      "KMSCTL_CONFIG); no vault needed");
  group->require_subcommand(1);
  add_verbs(group, g, config_cmd::kVerbs);
}

}  // namespace kms::cli
