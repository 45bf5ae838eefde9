// Profiles: the config file ($XDG_CONFIG_HOME/kmsctl/config.toml, or KMSCTL_CONFIG) and its
// named sets of global settings (README "Profiles"). It holds where things are (a vault, a PIN
// file, a socket) and how to print, never a secret: a key or a value that could be one is
// refused, on reading as on writing, and never repeated in a message.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

namespace kms::cli {
struct Globals;

namespace profiles {

// The keys a profile may set, in the order the file and `config list` show them.
inline constexpr std::string_view kKeys[] = {"vault",        "pin_file", "server",
                                             "agent_socket", "output",   "quiet"};
// The one key outside the profiles: the profile used when none is asked for.
inline constexpr std::string_view kDefaultProfile = "default_profile";

struct Profile {
  std::string name;
  // Key to value as written in the file: paths and `output` as strings, `quiet` as "true" or
  // "false". Only keys of kKeys, with values check_value accepted.
  std::map<std::string, std::string> values;
};

struct ConfigFile {
  std::filesystem::path path;
  bool exists = false;
  std::string default_profile;    // empty: none
  std::vector<Profile> profiles;  // by name

  const Profile* find(std::string_view name) const;
  Profile& get_or_add(const std::string& name);
  std::vector<std::string> names() const;
};

// KMSCTL_CONFIG when set, else $XDG_CONFIG_HOME/kmsctl/config.toml, else
// ~/.config/kmsctl/config.toml.
std::filesystem::path config_path();
// The file at `path` (exists false when there is none), checked: Code::usage, naming the file
// and the key but never a value, for a file other users may write, TOML that does not parse, an
// unknown key, a key that names a secret, or a value that is not what its key takes.
ConfigFile load(const std::filesystem::path& path);
// Writes `c` to c.path atomically (a temporary file, fsync, rename), mode 0600, creating its
// directories (mode 0700).
void save(const ConfigFile& c);

// Code::usage when `key` is not one a profile (or, with top_level, the file) may set: a key that
// could name a secret gets the advice to use pin_file; another a did-you-mean when one is close.
// `where` prefixes the message ("" on the command line; "FILE: profiles.NAME." in a file).
void check_key(std::string_view key, const std::string& where, bool top_level = false);
// The value given for `key` on the command line, as the file stores it (a relative path made
// absolute against the working directory); Code::usage, without the value, when it is not one
// the key takes.
std::string value_from_command_line(std::string_view key, const std::string& value);
// Code::usage when `name` is not a profile name: 1 to 64 of A-Z a-z 0-9 _ -.
void check_profile_name(const std::string& name, std::string_view from);

// The profile asked for and where from: --profile, KMSCTL_PROFILE, default_profile; empty name
// when none is.
struct Selection {
  std::string name;
  std::string from;  // "flag", "env", "default" or ""
};
Selection selection(const Globals& g, const ConfigFile& c);
// The selected profile of c; Code::usage naming the file and its profiles when it has none by
// that name.
const Profile& selected(const Selection& s, const ConfigFile& c);

// A path from the file: ~ and ~/ expand to the home directory, a relative path is relative to
// the file's directory.
std::string resolve_path(const std::string& value, const std::filesystem::path& config_file);

// Called when the command line is parsed, before the command runs: the active profile's
// settings go where no command-line flag nor environment variable gave one. Not for `config`,
// `completion` and `manpage`, which do not read profiles.
void apply(CLI::App& app, Globals& g);

}  // namespace profiles
}  // namespace kms::cli
