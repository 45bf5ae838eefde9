// Profiles (profile.hpp, README "Profiles"): reading, checking and writing the config file, and
// applying the active profile to a parsed command line.
#include "cli/profile.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "base/posix.hpp"
#include "cli/app.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "kms/text.hpp"
#include "store/pg.hpp"
#include "store/store.hpp"

namespace kms::cli::profiles {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxConfigBytes = 1 << 20;
constexpr std::size_t kMaxValue = 4096;
constexpr std::string_view kPathKeys[] = {"vault", "pin_file", "server", "agent_socket"};
// Commands whose standard output is the data itself (a secret's value, a file): `output = "json"`
// does not change them; their --json still does.
constexpr std::string_view kDataOnStdout[] = {"secret get", "file encrypt", "file decrypt"};
// Commands that do not read profiles: `config` reads and writes the file itself; the completion
// scripts and the manual page are the same for everyone.
constexpr std::string_view kNoProfile[] = {"config", "completion", "manpage", "help"};

constexpr std::string_view kNoSecrets =
    "put the PIN in a file of mode 0600 and set pin_file to its path (`kmsctl config set "
    "pin_file ~/.config/kmsctl/pin`)";

bool is_path_key(std::string_view key) {
  return std::find(std::begin(kPathKeys), std::end(kPathKeys), key) != std::end(kPathKeys);
}

bool is_known_key(std::string_view key) {
  return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
}

// A key that could hold a secret: a PIN, a password, a passphrase, a secret, a token's or a key's
// material, a credential. pin_file, the one key that names a PIN, holds its file's path.
bool names_a_secret(std::string_view key) {
  std::string k(key);
  for (char& c : k)
    c = static_cast<char>(c == '-' ? '_' : std::tolower(static_cast<unsigned char>(c)));
  if (k == "pin_file") return false;
  for (std::string_view word : {"pin", "pass", "secret", "token", "key", "cred", "auth"}) {
    if (k.find(word) != std::string::npos) return true;
  }
  return false;
}

// A key as a message may show it: a plain word, or nothing (a key could be anything).
std::string shown_key(std::string_view key) {
  const bool plain =
      !key.empty() && key.size() <= 64 && std::all_of(key.begin(), key.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
      });
  return plain ? std::string(key) : std::string("(a key that is not a plain word)");
}

bool has_control(std::string_view v) {
  return std::any_of(v.begin(), v.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// Written as a path: absolute, or starting with ~/, ./ or ../ (or ~ alone).
bool looks_like_path(std::string_view v) {
  return v.starts_with("/") || v.starts_with("~/") || v == "~" || v.starts_with("./") ||
         v.starts_with("../");
}

// Why `value` is not one `key` takes, without the value; empty when it is.
std::string value_problem(std::string_view key, std::string_view value) {
  if (key == "vault" && store::is_postgres_location(value)) {
    // A vault in PostgreSQL, named by its connection string; its password stays out of here.
    return store::pg::holds_password(value)
               ? "is a connection string with a password; the config file holds no secret: "
                 "put the password in ~/.pgpass (or PGPASSFILE) and leave it out of the string"
               : "";
  }
  if (is_path_key(key)) {
    if (value.empty()) return "is empty";
    if (value.size() > kMaxValue || has_control(value) || !looks_like_path(value)) {
      return "is not a path (a path starts with /, ~/, ./ or ../); the value is not shown: it "
             "could be a secret";
    }
    return {};
  }
  if (key == "output") {
    return value == "text" || value == "json"
               ? ""
               : "must be text or json (the value given is not shown)";
  }
  return {};
}

std::string home_dir() {
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return h;
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_dir != nullptr) {
    return pw->pw_dir;
  }
  return {};
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\u{:04X}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string read_config(const fs::path& path, bool& exists) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    // None; or one this user cannot even look for: in a directory it may not search (another
    // user's home, as when HOME is left as it was after a change of user).
    if (errno == ENOENT || errno == ENOTDIR ||
        (errno == EACCES && ::access(path.parent_path().c_str(), X_OK) != 0)) {
      exists = false;
      return {};
    }
    throw Error(
        Code::usage,
        fmt::format("cannot read the config file {}: {}", path.string(), std::strerror(errno)),
        "fix its permissions, or point KMSCTL_CONFIG at another file");
  }
  const posix::Fd owned(fd);
  exists = true;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    throw Error(Code::usage, fmt::format("the config file {} is not a regular file", path.string()),
                "point KMSCTL_CONFIG at a file");
  }
  // As ssh refuses its config file: settings another user can change would send this user's
  // PIN file and requests where that user chooses.
  if ((st.st_mode & 022) != 0) {
    throw Error(Code::usage,
                fmt::format("the config file {} is writable by other users (mode {:04o})",
                            path.string(), st.st_mode & 07777),
                fmt::format("chmod go-w {}", path.string()));
  }
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    throw Error(Code::usage,
                fmt::format("the config file {} belongs to another user (uid {})", path.string(),
                            st.st_uid),
                "use a config file of your own (KMSCTL_CONFIG)");
  }
  if (static_cast<std::size_t>(st.st_size) > kMaxConfigBytes) {
    throw Error(Code::usage, fmt::format("the config file {} is larger than 1 MiB", path.string()));
  }
  std::string text(static_cast<std::size_t>(st.st_size) + 1, '\0');
  const std::size_t n =
      posix::read_full(fd, std::span(reinterpret_cast<std::uint8_t*>(text.data()), text.size()));
  if (n > kMaxConfigBytes) {
    throw Error(Code::usage, fmt::format("the config file {} is larger than 1 MiB", path.string()));
  }
  text.resize(n);
  return text;
}

// A value of the file as its key takes it: Code::usage naming the file, the profile and the key.
std::string file_value(const toml::node& v, std::string_view key, const std::string& where) {
  if (key == "quiet") {
    if (const auto* b = v.as_boolean()) return b->get() ? "true" : "false";
    throw Error(Code::usage,
                fmt::format("{}quiet must be true or false (the value is not shown)", where),
                "write quiet = true or quiet = false");
  }
  const auto* s = v.as_string();
  if (s == nullptr) {
    throw Error(Code::usage,
                fmt::format("{}{} must be a string (the value is not shown: it could be a secret)",
                            where, key),
                is_path_key(key) ? "write the path in quotes: vault = \"~/vaults/work.db\""
                                 : "write output = \"text\" or output = \"json\"");
  }
  const std::string value = s->get();
  if (const std::string problem = value_problem(key, value); !problem.empty()) {
    throw Error(Code::usage, fmt::format("{}{} {}", where, key, problem),
                is_path_key(key) ? "write ./FILE for a file next to the config file" : "");
  }
  return value;
}

bool valid_profile_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

std::string profile_list(const ConfigFile& c) {
  const std::vector<std::string> names = c.names();
  return names.empty() ? std::string("it has no profiles")
                       : fmt::format("its profiles: {}", fmt::join(names, ", "));
}

}  // namespace

const Profile* ConfigFile::find(std::string_view name) const {
  for (const Profile& p : profiles) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Profile& ConfigFile::get_or_add(const std::string& name) {
  for (Profile& p : profiles) {
    if (p.name == name) return p;
  }
  profiles.push_back(Profile{name, {}});
  std::sort(profiles.begin(), profiles.end(),
            [](const Profile& a, const Profile& b) { return a.name < b.name; });
  for (Profile& p : profiles) {
    if (p.name == name) return p;
  }
  return profiles.back();  // not reached
}

std::vector<std::string> ConfigFile::names() const {
  std::vector<std::string> out;
  for (const Profile& p : profiles) out.push_back(p.name);
  return out;
}

fs::path config_path() {
  if (const char* c = std::getenv("KMSCTL_CONFIG"); c != nullptr && *c != '\0') return c;
  // As trusted-modules is found (src/vault/module_trust.cpp).
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x != nullptr && *x != '\0') {
    return fs::path(x) / "kmsctl" / "config.toml";
  }
  const std::string home = home_dir();
  if (home.empty()) return {};
  return fs::path(home) / ".config" / "kmsctl" / "config.toml";
}

void check_profile_name(const std::string& name, std::string_view from) {
  if (valid_profile_name(name)) return;
  throw Error(
      Code::usage,
      fmt::format("{}: the value given is not a profile name (the value is not shown)", from),
      "a profile name is 1 to 64 letters, digits, _ and -");
}

void check_key(std::string_view key, const std::string& where, bool top_level) {
  if (top_level ? (key == kDefaultProfile || key == "profiles") : is_known_key(key)) return;
  if (names_a_secret(key)) {
    throw Error(Code::usage,
                fmt::format("{}{}: the config file holds no secrets (the value is not shown)",
                            where, shown_key(key)),
                std::string(kNoSecrets));
  }
  std::vector<std::string> candidates;
  if (top_level) {
    candidates = {std::string(kDefaultProfile), "profiles"};
  } else {
    for (std::string_view k : kKeys) candidates.emplace_back(k);
  }
  const std::string best = closest(key, candidates);
  std::vector<std::string> all = candidates;
  throw Error(
      Code::usage, fmt::format("{}{}: unknown key", where, shown_key(key)),
      fmt::format("{}the keys are {}", best.empty() ? "" : fmt::format("did you mean {}? ", best),
                  fmt::join(all, ", ")));
}

ConfigFile load(const fs::path& path) {
  ConfigFile c;
  c.path = path;
  if (path.empty()) return c;
  const std::string text = read_config(path, c.exists);
  if (!c.exists) return c;
  const std::string file = path.string();
  toml::table doc;
  try {
    doc = toml::parse(text);
  } catch (const toml::parse_error& e) {
    // Only where: toml++'s description may quote the file's characters.
    throw Error(Code::usage,
                fmt::format("{}:{}:{}: the config file is not valid TOML", file,
                            e.source().begin.line, e.source().begin.column),
                "fix the file (README \"Profiles\" shows its layout)");
  }
  for (auto&& [k, v] : doc) {
    const std::string_view key = k.str();
    check_key(key, file + ": ", /*top_level=*/true);
    if (key == kDefaultProfile) {
      const auto* s = v.as_string();
      if (s == nullptr || !valid_profile_name(s->get())) {
        throw Error(
            Code::usage,
            fmt::format("{}: default_profile is not a profile name (the value is not shown)", file),
            "write default_profile = \"NAME\" with the name of one of its [profiles.NAME]");
      }
      c.default_profile = s->get();
      continue;
    }
    const toml::table* profiles = v.as_table();
    if (profiles == nullptr) {
      throw Error(Code::usage, fmt::format("{}: profiles is not a table", file),
                  "write each profile as [profiles.NAME]");
    }
    for (auto&& [name, body] : *profiles) {
      if (!valid_profile_name(name.str())) {
        throw Error(Code::usage,
                    fmt::format("{}: profiles.{}: not a profile name", file, shown_key(name.str())),
                    "a profile name is 1 to 64 letters, digits, _ and -");
      }
      const toml::table* t = body.as_table();
      if (t == nullptr) {
        throw Error(Code::usage, fmt::format("{}: profiles.{} is not a table", file, name.str()),
                    fmt::format("write it as [profiles.{}]", name.str()));
      }
      Profile p{std::string(name.str()), {}};
      const std::string where = fmt::format("{}: profiles.{}.", file, p.name);
      for (auto&& [pk, pv] : *t) {
        check_key(pk.str(), where);
        p.values[std::string(pk.str())] = file_value(pv, pk.str(), where);
      }
      c.profiles.push_back(std::move(p));
    }
  }
  std::sort(c.profiles.begin(), c.profiles.end(),
            [](const Profile& a, const Profile& b) { return a.name < b.name; });
  return c;
}

void save(const ConfigFile& c) {
  std::string text =
      "# kmsctl profiles (README \"Profiles\"). `kmsctl config set` and `kmsctl config unset`\n"
      "# rewrite this file. No secrets here: the PIN goes in a file of mode 0600 (pin_file).\n";
  if (!c.default_profile.empty()) {
    text += fmt::format("\n{} = {}\n", kDefaultProfile, toml_string(c.default_profile));
  }
  for (const Profile& p : c.profiles) {
    text += fmt::format("\n[profiles.{}]\n", p.name);
    for (std::string_view k : kKeys) {
      const auto it = p.values.find(std::string(k));
      if (it == p.values.end()) continue;
      text += fmt::format("{} = {}\n", k, k == "quiet" ? it->second : toml_string(it->second));
    }
  }
  // A config file that is a link (to a dotfiles repository) stays one: the file it names is
  // rewritten.
  std::error_code ec;
  fs::path target = c.path;
  if (fs::symlink_status(c.path, ec).type() == fs::file_type::symlink) {
    target = fs::weakly_canonical(c.path, ec);
    if (ec) {
      throw Error(Code::failed,
                  fmt::format("cannot resolve the link {}: {}", c.path.string(), ec.message()));
    }
  }
  if (target.has_parent_path()) files::make_private_dir(target.parent_path());
  files::AtomicFile out(target, /*overwrite=*/true);
  out.write(text);
  out.commit();
}

std::string value_from_command_line(std::string_view key, const std::string& value) {
  if (key == "quiet") {
    if (value == "true" || value == "yes" || value == "on" || value == "1") return "true";
    if (value == "false" || value == "no" || value == "off" || value == "0") return "false";
    throw Error(Code::usage, "quiet must be true or false (the value given is not shown)",
                "`kmsctl config set quiet true`");
  }
  if (key == kDefaultProfile) {
    check_profile_name(value, "default_profile");
    return value;
  }
  if (is_path_key(key) && !value.empty() && value.size() <= kMaxValue && !has_control(value)) {
    std::error_code ec;
    // A relative path given here is relative to the working directory, where the user is: the
    // file gets it absolute. A bare word is a path only when it names a file that exists.
    if (value.starts_with("./") || value.starts_with("../") ||
        (!looks_like_path(value) && fs::exists(value, ec))) {
      const fs::path abs = fs::absolute(value, ec);
      if (!ec) return abs.lexically_normal().string();
    }
  }
  if (const std::string problem = value_problem(key, value); !problem.empty()) {
    throw Error(
        Code::usage, fmt::format("{} {}", key, problem),
        key == "vault" ? "give the path of the vault file (e.g. ./FILE or ~/FILE), or a PostgreSQL "
                         "connection string without its password (that goes in ~/.pgpass)"
        : is_path_key(key) ? fmt::format("give the path of the {} (e.g. ./FILE or ~/FILE){}",
                                         key == "pin_file" ? "PIN file" : "socket",
                                         key == "pin_file" ? "; the config file holds no PIN: " +
                                                                 std::string(kNoSecrets)
                                                           : "")
                           : "`kmsctl config set output json`");
  }
  return value;
}

Selection selection(const Globals& g, const ConfigFile& c) {
  if (!g.profile.empty()) return {g.profile, "flag"};
  if (const char* e = std::getenv("KMSCTL_PROFILE"); e != nullptr && *e != '\0') return {e, "env"};
  if (!c.default_profile.empty()) return {c.default_profile, "default"};
  return {};
}

const Profile& selected(const Selection& s, const ConfigFile& c) {
  const std::string_view from = s.from == "flag"  ? "--profile"
                                : s.from == "env" ? "KMSCTL_PROFILE"
                                                  : "default_profile";
  check_profile_name(s.name, from);
  if (const Profile* p = c.find(s.name)) return *p;
  const std::string create =
      fmt::format("create it with `kmsctl config set KEY VALUE --profile {}`", s.name);
  if (!c.exists) {
    throw Error(Code::usage,
                fmt::format("{} names profile {}, but there is no config file {}", from, s.name,
                            c.path.empty() ? std::string("(no home directory)") : c.path.string()),
                create);
  }
  throw Error(
      Code::usage,
      fmt::format("{} names profile {}, which {} does not have", from, s.name, c.path.string()),
      fmt::format("{}; or {}", profile_list(c), create));
}

std::string resolve_path(const std::string& value, const fs::path& config_file) {
  if (value == "~" || value.starts_with("~/")) {
    const std::string home = home_dir();
    if (home.empty()) {
      throw Error(Code::usage, fmt::format("{} uses ~, but there is no home directory (HOME)",
                                           config_file.string()));
    }
    return value == "~" ? home : (fs::path(home) / value.substr(2)).string();
  }
  if (!value.empty() && value[0] != '/') {
    return (config_file.parent_path() / value).lexically_normal().string();
  }
  return value;
}

void apply(CLI::App& app, Globals& g) {
  CLI::App* leaf = &app;
  std::string path;
  for (auto subs = leaf->get_subcommands(); !subs.empty(); subs = leaf->get_subcommands()) {
    leaf = subs.front();
    path += (path.empty() ? "" : " ") + leaf->get_name();
  }
  const std::string_view group = std::string_view(path).substr(0, path.find(' '));
  if (std::find(std::begin(kNoProfile), std::end(kNoProfile), group) != std::end(kNoProfile)) {
    return;
  }
  const ConfigFile c = load(config_path());
  const Selection s = selection(g, c);
  if (s.name.empty()) return;
  const Profile& p = selected(s, c);
  // Command-line flags and environment variables (counted with them by CLI11) come first.
  const auto given = [&](const char* name) {
    const CLI::Option* o = app.get_option_no_throw(name);
    return o != nullptr && o->count() > 0;
  };
  for (const auto& [key, value] : p.values) {
    if (key == "vault" && !given("--vault")) {
      g.vault = store::is_postgres_location(value) ? value : resolve_path(value, c.path);
    }
    if (key == "pin_file" && !given("--pin-file")) g.pin_file = resolve_path(value, c.path);
    if (key == "server" && !given("--server")) g.server = resolve_path(value, c.path);
    // KMSCTL_AGENT_SOCK, where it is set, comes first (agent_for, cmd_agent.cpp).
    if (key == "agent_socket") g.agent_socket = resolve_path(value, c.path);
    if (key == "quiet" && !given("--quiet")) quiet() = value == "true";
    if (key == "output" && value == "json" &&
        std::find(std::begin(kDataOnStdout), std::end(kDataOnStdout), path) ==
            std::end(kDataOnStdout)) {
      // As if --json were given: the command's own flag takes it.
      if (CLI::Option* json = leaf->get_option_no_throw("--json");
          json != nullptr && json->count() == 0) {
        json->add_result("true");
        json->run_callback();
      }
    }
  }
}

}  // namespace kms::cli::profiles
