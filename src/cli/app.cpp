#include "cli/app.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <fmt/format.h>

#include "base/posix.hpp"
#include "cli/profile.hpp"
#include "kms/error.hpp"
#include "kms/signals.hpp"

namespace kms::cli {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxPin = 255;

// Whether `path` is a credential systemd passed to this service ($CREDENTIALS_DIRECTORY, a
// directory of this service's alone, LoadCredential=): systemd gives the service user read
// access with an ACL, which stat shows as group bits (mode 0440) on file systems with ACLs.
bool in_credentials_directory(const std::string& path) {
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') return false;
  std::error_code ec;
  const fs::path d = fs::canonical(dir, ec);
  if (ec) return false;
  const fs::path f = fs::canonical(path, ec);
  if (ec || f.parent_path() != d) return false;
  struct stat st {};
  return ::stat(d.c_str(), &st) == 0 && (st.st_mode & 022) == 0 &&
         (st.st_uid == 0 || st.st_uid == ::geteuid());
}

// `what` names the file in messages: "PIN file", or "new PIN file" for change-pin.
SecureBytes pin_from_file(const std::string& path, std::string_view what, std::string_view flags) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(Code::usage,
                fmt::format("cannot read the {} {}: {}", what, path, std::strerror(errno)),
                fmt::format("check the path given to {}", flags));
  }
  // As ssh refuses a private key that others can read: a PIN that other users can read, or
  // replace, is not the token holder's alone. Checked on the open file (a FIFO or a pipe too).
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(Code::failed,
                fmt::format("cannot read the {} {}: {}", what, path, std::strerror(err)));
  }
  if ((st.st_mode & 066) != 0 && !in_credentials_directory(path)) {
    const mode_t mode = st.st_mode & 07777;
    ::close(fd);
    throw Error(Code::unavailable,
                fmt::format("the {} {} is {} by other users (mode {:04o})", what, path,
                            (mode & 044) != 0 ? "readable" : "writable", mode),
                fmt::format("chmod 600 {}", path));
  }
  SecureBytes buf(kMaxPin + 2);
  const size_t len = posix::read_full(fd, buf.span());
  ::close(fd);
  // The PIN is the first line; a trailing newline (and CR) is not part of it.
  size_t end = 0;
  while (end < len && buf.data()[end] != '\n' && buf.data()[end] != '\r') ++end;
  if (end > kMaxPin) throw Error(Code::usage, fmt::format("the PIN in {} is too long", path));
  buf.truncate(end);
  return buf;
}

// KMSCTL_PIN and KMSCTL_NEW_PIN as take_pins_from_environment found them, until read.
std::optional<SecureBytes>& env_pin(bool new_pin) {
  static std::optional<SecureBytes> pin, new_one;
  return new_pin ? new_one : pin;
}

std::optional<SecureBytes> take_from_env(const char* name) {
  char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  SecureBytes value(as_bytes(v));
  // unsetenv only unlinks the entry: its bytes stay where /proc/PID/environ reads them (the
  // block the kernel wrote at exec) until they are overwritten here.
  ::explicit_bzero(v, std::strlen(v));
  ::unsetenv(name);  // nor is it inherited by anything kmsctl starts
  return value;
}

SecureBytes pin_from_env(bool new_pin) {
  SecureBytes pin = std::move(*env_pin(new_pin));
  env_pin(new_pin).reset();
  return pin;
}

SecureBytes prompt_once(int tty, const char* prompt) {
  ::write(tty, prompt, std::strlen(prompt));
  termios old{};
  const bool is_term = ::tcgetattr(tty, &old) == 0;
  if (is_term) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(tty, TCSAFLUSH, &quiet);
  }
  SecureBytes buf(kMaxPin + 1);
  size_t len = 0;
  char c;
  while (::read(tty, &c, 1) == 1 && c != '\n' && c != '\r') {
    if (len < buf.size()) buf.data()[len++] = static_cast<std::uint8_t>(c);
  }
  if (is_term) ::tcsetattr(tty, TCSAFLUSH, &old);
  ::write(tty, "\n", 1);
  buf.truncate(std::min(len, kMaxPin));
  return buf;
}

SecureBytes prompt(const char* what, bool confirm, const char* hint) {
  const int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (tty < 0 || !::isatty(tty)) {
    if (tty >= 0) ::close(tty);
    throw Error(Code::unavailable, fmt::format("no {} given and no terminal to ask for it", what),
                hint);
  }
  SecureBytes pin = prompt_once(tty, fmt::format("{}: ", what).c_str());
  if (confirm) {
    SecureBytes again = prompt_once(tty, fmt::format("{} (again): ", what).c_str());
    if (pin.chars() != again.chars()) {
      ::close(tty);
      throw Error(Code::usage, "the two PINs differ", "run the command again");
    }
  }
  ::close(tty);
  return pin;
}

SecureBytes checked(SecureBytes pin, const char* source) {
  if (pin.size() < 4) {
    throw Error(Code::usage, fmt::format("the PIN from {} is shorter than 4 characters", source),
                "tokens require a PIN of at least 4 characters");
  }
  return pin;
}

}  // namespace

void take_pins_from_environment() {
  env_pin(false) = take_from_env("KMSCTL_PIN");
  env_pin(true) = take_from_env("KMSCTL_NEW_PIN");
}

fs::path vault_path(const Globals& g) {
  return g.vault.empty() ? default_vault_path() : fs::path(g.vault);
}

SecureBytes read_pin(const Globals& g, bool confirm) {
  if (!g.pin_file.empty()) {
    return checked(pin_from_file(g.pin_file, "PIN file", "--pin-file / KMSCTL_PIN_FILE"),
                   "the PIN file");
  }
  if (env_pin(false)) return checked(pin_from_env(false), "KMSCTL_PIN");
  return checked(prompt("token user PIN", confirm,
                        "set KMSCTL_PIN or KMSCTL_PIN_FILE, or pass --pin-file FILE"),
                 "the prompt");
}

SecureBytes read_new_pin(const std::string& new_pin_file) {
  std::string file = new_pin_file;
  if (file.empty()) {
    if (const char* f = std::getenv("KMSCTL_NEW_PIN_FILE")) file = f;
  }
  if (!file.empty()) {
    return checked(pin_from_file(file, "new PIN file", "--new-pin-file / KMSCTL_NEW_PIN_FILE"),
                   "the new PIN file");
  }
  if (env_pin(true)) {
    return checked(pin_from_env(true), "KMSCTL_NEW_PIN");
  }
  return checked(prompt("new token user PIN", true,
                        "set KMSCTL_NEW_PIN or KMSCTL_NEW_PIN_FILE, or pass --new-pin-file FILE"),
                 "the prompt");
}

SecureBytes read_so_pin(const std::string& so_pin_file) {
  return checked(pin_from_file(so_pin_file, "SO PIN file", "--so-pin-file"), "the SO PIN file");
}

fs::path existing_vault(const Globals& g) {
  const fs::path path = vault_path(g);
  if (store::is_postgres_location(path.string())) return path;  // the server says
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw Error(Code::unavailable, fmt::format("no vault at {}", path.string()),
                "create one with `kmsctl init`, or point KMSCTL_VAULT / --vault at yours");
  }
  return path;
}

std::string absolute_vault(const Globals& g) {
  const fs::path p = vault_path(g);
  if (store::is_postgres_location(p.string())) return p.string();
  std::error_code ec;
  const fs::path abs = fs::absolute(p, ec);
  return (ec ? p : abs).string();
}

std::string shown_vault(const Globals& g) { return store::shown_location(absolute_vault(g)); }

void refuse_postgres_vault(const Globals& g, std::string_view who) {
  if (!store::is_postgres_location(vault_path(g).string())) return;
  throw Error(
      Code::usage,
      fmt::format("{} serves a vault file; the vault {} is in PostgreSQL", who, shown_vault(g)),
      "run the commands without it (each opens the vault in the database itself), or through "
      "an agent of your own: `eval \"$(kmsctl agent start)\"`");
}

namespace {

bool is_refused_pin(const Error& e) {
  return e.remedy() == Remedy::check_pin || e.remedy() == Remedy::unlock_pin;
}

// One line in the system log (LOG_AUTHPRIV, where sshd and sudo log failed logins): who, which
// process, which vault, and the token's answer; never the PIN. KMSCTL_TEST_SYSLOG (tests only)
// names a file that gets the line instead.
void log_refused_pin(const Globals& g, const Error& e) {
  const std::string line =
      fmt::format("refused token login: uid {} pid {} vault {}: {}", ::getuid(), ::getpid(),
                  escape_text(shown_vault(g)), escape_text(e.what()));
  if (const char* test = std::getenv("KMSCTL_TEST_SYSLOG"); test != nullptr && *test != '\0') {
    const int fd = ::open(test, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      const std::string text = line + "\n";
      (void)posix::write_all(fd, as_bytes(text));
      ::close(fd);
    }
    return;
  }
  ::openlog("kmsctl", LOG_PID, LOG_AUTHPRIV);
  ::syslog(LOG_AUTHPRIV | LOG_WARNING, "%s", line.c_str());
  ::closelog();
}

constexpr int kPromptTries = 3;

std::shared_ptr<Service> open_service(const Globals& g, bool allow_backup) {
  const fs::path path = existing_vault(g);  // before asking for a PIN that cannot help
  // OpenSSL starts here, when the vault is opened in this process: a command an agent serves
  // does not pay for it.
  crypto::skip_cleanup_at_exit();
  // A PIN typed at the prompt may be mistyped: three tries, as sudo gives. A PIN from a file or
  // the environment is the same the next time: one.
  const bool prompted = g.pin_file.empty() && !env_pin(false);
  for (int attempt = 1;; ++attempt) {
    try {
      return Service::open(path, read_pin(g), allow_backup);
    } catch (const Error& e) {
      if (!prompted || attempt == kPromptTries || e.remedy() != Remedy::check_pin) throw;
      log_refused_pin(g, e);  // the last refusal is logged where run_command reports it
      say(fmt::format("{}; try again", escape_text(e.what())));
    }
  }
}
}  // namespace

const std::string* agent_for(Globals& g) {
  Globals::Route& r = g.route;
  if (!r.decided) {
    r.decided = true;
    // A vault in PostgreSQL is named by its connection string without the passwords it may
    // hold: the agent serving it compares that with its own.
    const std::string location = vault_path(g).string();
    r.vault = store::is_postgres_location(location) ? store::location_without_passwords(location)
                                                    : absolute_vault(g);
    if (!g.server.empty()) {
      r.agent = g.server;
      r.service = true;
    } else if (const char* socket = agent::trusted_socket_in_env()) {
      r.agent = socket;
    } else if (const char* env = std::getenv("KMSCTL_AGENT_SOCK");
               (env == nullptr || *env == '\0') && !g.agent_socket.empty() &&
               agent::trusted_socket(g.agent_socket)) {
      r.agent = g.agent_socket;  // the profile's
    }
  }
  return r.agent.empty() ? nullptr : &r.agent;
}

std::optional<agent::Connection> connect_route(Globals& g) {
  const std::string* socket = agent_for(g);
  if (socket == nullptr) return std::nullopt;
  if (g.route.service) return agent::Connection::open_service(*socket);
  return agent::Connection::open(*socket);
}

void here_only(const Globals& g) {
  if (g.server.empty()) return;
  throw Error(
      Code::usage,
      fmt::format("this command is not served by a kmsctl service ({} names one)", g.server),
      "run it where the vault is, as the service's user, without --server / KMSCTL_SERVER");
}

Service& local_vault(Globals& g) {
  here_only(g);
  if (!g.route.local) g.route.local = open_service(g, g.route.allow_backup);
  return *g.route.local;
}

void close_local_vault(Globals& g) { g.route.local.reset(); }

std::unique_ptr<FileSession> file_session(Globals& g, Action action, const std::string& path,
                                          const std::vector<std::string>& keys) {
  // Recorded by the file's absolute path, made here: the agent's directory is not the caller's.
  const std::string name = files::recorded_path(path);
  if (agent_for(g) != nullptr) {
    std::optional<agent::Connection> c = connect_route(g);
    if (c && c->serves(g.route.vault)) {
      return std::make_unique<agent::RemoteFile>(std::move(*c), g.route.vault, action, name, keys);
    }
    g.route.agent.clear();
  }
  return local_vault(g).file_session(action, name, keys);
}

// A hook may call kmsctl itself (e.g. for an admin secret): point it at this binary
// (KMSCTL_BIN), this vault and this PIN file.
void export_for_hooks(const Globals& g) {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) ::setenv("KMSCTL_BIN", self.c_str(), 1);
  ::setenv("KMSCTL_VAULT", absolute_vault(g).c_str(), 1);
  if (!g.pin_file.empty()) {
    const auto pin_abs = std::filesystem::absolute(g.pin_file, ec);
    ::setenv("KMSCTL_PIN_FILE", (ec ? std::filesystem::path(g.pin_file) : pin_abs).c_str(), 1);
  }
}

namespace {

using Register = void (*)(CLI::App&, Globals&);

// The command groups, in the order help lists them.
constexpr std::pair<std::string_view, Register> kGroups[] = {
    {"init", register_init},
    {"status", register_status},
    {"audit", register_audit},
    {"key", register_key},
    {"encrypt", register_encrypt},
    {"decrypt", register_decrypt},
    {"re-encrypt", register_reencrypt},
    {"data-key", register_data_key},
    {"random", register_random},
    {"sign", register_sign},
    {"verify", register_verify},
    {"mac", register_mac},
    {"verify-mac", register_verify_mac},
    {"file", register_file},
    {"secret", register_secret},
    {"exec", register_exec},
    {"maintain", register_maintain},
    {"vault", register_vault},
    {"agent", register_agent},
    {"grant", register_grant},
    {"policy", register_policy},
    {"serve", register_serve},
    {"config", register_config},
    {"help", register_meta},
    {"version", register_meta},
    {"completion", register_meta},
    {"manpage", register_meta},
    {"__complete", register_complete},  // hidden
};

// The index in argv of the first word that is not a global option, or argc; -1 for an option
// (--help, --help-all, or an unknown one).
int first_word(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--vault" || a == "--store" || a == "--pin-file" || a == "--server" ||
        a == "--profile") {
      ++i;
      continue;
    }
    if (a.starts_with("--vault=") || a.starts_with("--store=") || a.starts_with("--pin-file=") ||
        a.starts_with("--server=") || a.starts_with("--profile=") || a == "-q" || a == "--quiet")
      continue;
    return a.starts_with("-") ? -1 : i;
  }
  return argc;
}

// The group of the command argv names, when only it needs building: not for help, completion
// or the manual page (they describe the whole tree), nor for anything CLI11 must reject. The
// word after it, when it is one, goes to g.verb.
Register group_of(int argc, const char* const* argv, Globals& g) {
  const auto [group, verb] = command_words(argc, argv);
  for (const auto& [name, reg] : kGroups) {
    if (group != name) continue;
    if (reg == register_meta) return nullptr;
    g.verb = verb;
    return reg;
  }
  return nullptr;
}

// The command the parse reached: "kmsctl", "kmsctl secret create", and that (sub)command.
std::pair<std::string, const CLI::App*> parsed_command(const CLI::App& app) {
  std::string path = "kmsctl";
  const CLI::App* at = &app;
  for (auto subs = at->get_subcommands(); !subs.empty(); subs = at->get_subcommands()) {
    at = subs.front();
    path += " " + at->get_name();
  }
  return {path, at};
}

// An option as the user spelled it, without what may follow it in the same word: `--pin` of
// `--pin=1234`, `-p` of `-p1234`.
std::string option_name(std::string_view word) {
  if (word.starts_with("--")) return std::string(word.substr(0, word.find('=')));
  return std::string(word.substr(0, 2));
}

bool is_option(std::string_view word) { return word.size() > 1 && word.starts_with("-"); }

// The Damerau-Levenshtein distance (optimal string alignment) of a and b: insertions,
// deletions, substitutions and swaps of two neighbours.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

// The candidate closest to `word`, when it is close enough to be a typo of it: at most 2 edits,
// and fewer than half its letters (`-p` is not a typo of `-q`); or a candidate `word` begins
// (`--cont` for `--context`) when it is the only one. Empty when none is.
std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  const std::string_view bare = word.substr(word.find_first_not_of('-') == std::string_view::npos
                                                ? word.size()
                                                : word.find_first_not_of('-'));
  std::string best;
  std::size_t best_d = std::min<std::size_t>(3, (bare.size() + 1) / 2);
  for (const std::string& c : candidates) {
    if (c == word) continue;
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  if (!best.empty() || bare.size() < 3) return best;
  std::vector<std::string> prefixed;
  for (const std::string& c : candidates) {
    if (c.starts_with(word)) prefixed.push_back(c);
  }
  return prefixed.size() == 1 ? prefixed.front() : std::string();
}

namespace {

// The names of a command's subcommands, or of the options it and its parents take.
std::vector<std::string> command_names(const CLI::App& at) {
  std::vector<std::string> out;
  for (const CLI::App* sub : at.get_subcommands([](const CLI::App*) { return true; })) {
    if (!sub->get_group().empty()) out.push_back(sub->get_name());  // not a hidden one
  }
  return out;
}

const CLI::App* subcommand_named(const CLI::App& at, std::string_view name) {
  for (const CLI::App* sub : at.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name() == name) return sub;
  }
  return nullptr;
}

std::vector<std::string> option_names(const CLI::App& at) {
  std::vector<std::string> out;
  for (const CLI::App* a = &at; a != nullptr; a = a->get_parent()) {
    for (const CLI::Option* opt : a->get_options()) {
      for (const std::string& n : opt->get_lnames()) out.push_back("--" + n);
      for (const std::string& n : opt->get_snames()) out.push_back("-" + n);
    }
  }
  return out;
}

// `did you mean `kmsctl secret get`? ` for a command word that is a typo of one, with the word
// after it when that is one of the suggestion's commands; empty when none is close.
std::string suggest_command(const CLI::App& at, const std::string& path,
                            const std::vector<std::string>& rest) {
  const std::string best = closest(rest.front(), command_names(at));
  if (best.empty()) return {};
  std::string cmd = path + " " + best;
  if (rest.size() > 1) {
    if (const CLI::App* sub = subcommand_named(at, best)) {
      for (const std::string& verb : command_names(*sub)) {
        if (verb == rest[1]) cmd += " " + verb;
      }
    }
  }
  return fmt::format("did you mean `{}`? ", cmd);
}

constexpr std::string_view kNotUtf8 = "not UTF-8 text";
constexpr std::string_view kExecDashes =
    "put `--` before the command, so that its options are not taken as kmsctl's: `kmsctl exec "
    "--secret NAME -- COMMAND [ARGS...]`";

// Every value a command takes is stored, audited or printed as JSON, which hold only UTF-8:
// one that is not is a usage error (the vault is not opened), except a path (FILE, DIR, PATH),
// which may be any bytes, and exec's command line, which is handed on as it is.
void require_utf8(CLI::App& app) {
  static const CLI::Validator utf8(
      [](std::string& v) -> std::string {
        const std::size_t at = utf8_error(v);
        if (at == std::string::npos) return {};
        return fmt::format("{} (byte 0x{:02x} at offset {})", kNotUtf8,
                           static_cast<unsigned char>(v[at]), at);
      },
      "", "utf8");
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_items_expected_max() == 0) continue;  // a flag
    const std::string type = opt->get_type_name();
    const std::string_view base = std::string_view(type).substr(0, type.find(':'));
    if (base == "FILE" || base == "DIR" || base == "PATH" || base == "COMMAND") continue;
    opt->check(utf8);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) require_utf8(*sub);
}

// The message and hint of a usage error that CLI11 found. CLI11's own messages repeat the words
// it could not place (`The following arguments were not expected: hunter2 --value`) and the
// values it refused: a secret or a PIN typed where it does not belong would land in a terminal
// log or a CI log. These name the options and the command, never a value; only a word in the
// place of a command is repeated (`unknown command or argument: stauts`).
std::pair<std::string, std::string> usage_report(const CLI::ParseError& e, const CLI::App& app) {
  const auto [path, at] = parsed_command(app);
  const std::string help = fmt::format("run `{} --help`", path);
  const std::string values_hint = fmt::format(
      "values and PINs are never arguments: a secret's value comes from --value-stdin, "
      "--value-file FILE or --generate; the PIN from --pin-file FILE, KMSCTL_PIN_FILE, KMSCTL_PIN "
      "or the prompt; {}",
      help);
  const std::vector<std::string> rest = app.remaining(true);
  const bool extras = dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr;
  const bool required = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr;
  if (required && !rest.empty() && !is_option(rest.front()) &&
      !at->get_subcommands([](const CLI::App*) { return true; }).empty()) {
    return {fmt::format("unknown command or argument: {}", rest.front()),
            suggest_command(*at, path, rest) + help};
  }
  if (extras || (required && !rest.empty())) {
    // Unknown options, and options of the command given before its name (`kmsctl --json status`).
    std::vector<std::string> unknown, misplaced;
    std::size_t others = 0;
    for (const std::string& w : rest) {
      if (!is_option(w)) {
        ++others;
        continue;
      }
      const std::string name = option_name(w);
      auto& list = at->get_option_no_throw(name) != nullptr ? misplaced : unknown;
      if (std::find(list.begin(), list.end(), name) == list.end()) list.push_back(name);
    }
    if (!unknown.empty()) {
      const std::string what = fmt::format("`{}` has no option{} {}", path,
                                           unknown.size() > 1 ? "s" : "", fmt::join(unknown, ", "));
      if (at->get_name() == "exec" && at->get_parent() != nullptr &&
          at->get_parent()->get_parent() == nullptr) {
        return {what, std::string(kExecDashes)};
      }
      std::string mean;
      if (unknown.size() == 1) {
        const std::string best = closest(unknown.front(), option_names(*at));
        if (!best.empty()) mean = fmt::format("did you mean `{}`? ", best);
      }
      return {what, mean + values_hint};
    }
    if (!misplaced.empty()) {
      return {fmt::format("{} must follow `{}`", fmt::join(misplaced, ", "), path), help};
    }
    return {fmt::format("`{}` was given {} argument{} too many (not repeated here: it could be "
                        "a secret)",
                        path, others, others > 1 ? "s" : ""),
            values_hint};
  }
  // A value refused by an option's check or conversion: name the option and what it accepts.
  std::string what = e.what();
  if (what.find(kNotUtf8) != std::string::npos) {  // require_utf8's message: it shows no value
    return {what, "give text as UTF-8 (only file names may be other bytes)"};
  }
  std::string name;
  if (dynamic_cast<const CLI::ValidationError*>(&e) != nullptr) {
    name = what.substr(0, what.find(':'));
  } else if (dynamic_cast<const CLI::ConversionError*>(&e) != nullptr) {
    constexpr std::string_view kCould = "Could not convert: ",
                               kFor = " is not an allowed value for ";
    if (what.starts_with(kCould)) {
      name = what.substr(kCould.size(), what.find(" = ") - kCould.size());
    } else if (const auto at_for = what.rfind(kFor); at_for != std::string::npos) {
      name = what.substr(at_for + kFor.size());
    } else {
      name = what.substr(0, what.find(':'));
    }
  } else {
    return {what, help};  // no value in these: missing, excluded or required options
  }
  const CLI::Option* opt = nullptr;
  for (const CLI::App* a = at; a != nullptr && opt == nullptr; a = a->get_parent()) {
    opt = a->get_option_no_throw(name);
  }
  if (opt != nullptr && opt->get_items_expected_max() == 0) {  // a flag
    return {fmt::format("{} is a flag: give it without a value", name), help};
  }
  std::string accepted = opt != nullptr ? opt->get_type_name() : "";
  if (const auto colon = accepted.find(':'); colon != std::string::npos) {
    accepted = accepted.substr(colon + 1);
  }
  return {accepted.empty()
              ? fmt::format("{}: the value given is not valid", name)
              : fmt::format("{}: the value given is not valid (expected {})", name, accepted),
          help};
}

}  // namespace

int report_error(const Error& e) {
  // Messages name what the user gave (a key, a file, an unknown option): one line each, always.
  std::cerr << "kmsctl: error: " << escape_text(e.what()) << '\n';
  const std::string hint = hint_text(e);
  if (!hint.empty()) std::cerr << "hint: " << escape_text(hint) << '\n';
  return exit_code(e.code());
}

std::pair<std::string_view, std::string_view> command_words(int argc, const char* const* argv) {
  const int i = first_word(argc, argv);
  if (i < 0 || i >= argc) return {};
  const std::string_view verb = i + 1 < argc && argv[i + 1][0] != '-' ? argv[i + 1] : "";
  return {argv[i], verb};
}

std::vector<std::string> parsed_path(const CLI::App& app) {
  std::vector<std::string> path;
  for (auto subs = app.get_subcommands(); !subs.empty(); subs = subs.front()->get_subcommands()) {
    // Every level takes exactly one (require_subcommand(1)); were it ever more, no one path
    // would say what runs: none, which an agent serves nothing of.
    if (subs.size() != 1) return {};
    path.push_back(subs.front()->get_name());
  }
  return path;
}

namespace {

// `kmsctl exec --secret a sh -c x`: the words after COMMAND that look like options would be
// parsed as kmsctl's, or refused as unknown ones. True when an option follows the command's
// first word and no `--` came before it.
bool exec_options_without_dashes(int argc, const char* const* argv) {
  int i = first_word(argc, argv);
  if (i < 0 || i >= argc || std::string_view(argv[i]) != "exec") return false;
  bool in_command = false;
  for (++i; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (in_command) {
      if (is_option(a)) return true;
    } else if (a == "--") {
      return false;
    } else if (a == "--secret" || a == "--stage" || a == "--vault" || a == "--store" ||
               a == "--pin-file" || a == "--server" || a == "--profile") {
      ++i;
    } else if (!is_option(a)) {
      in_command = true;
    }
  }
  return false;
}

// `kmsctl help secret get`: the command `secret get`, when the tree has it; else the usage
// error that names the first word it lacks (with a suggestion).
void check_help_words(const CLI::App& app, const std::vector<std::string>& words) {
  const CLI::App* at = &app;
  std::string path = "kmsctl";
  for (std::size_t i = 0; i < words.size(); ++i) {
    const CLI::App* sub = subcommand_named(*at, words[i]);
    if (sub == nullptr) {
      const std::vector<std::string> rest(words.begin() + static_cast<std::ptrdiff_t>(i),
                                          words.end());
      throw Error(Code::usage, fmt::format("unknown command: {}", words[i]),
                  suggest_command(*at, path, rest) + fmt::format("run `{} --help`", path));
    }
    at = sub;
    path += " " + words[i];
  }
}

}  // namespace

namespace {

// KMSCTL_STORE is another name for KMSCTL_VAULT, as --store is for --vault (a vault in a
// database is as often called a store). The values are never shown: a connection string may
// hold a password.
void take_store_from_environment() {
  const char* store = std::getenv("KMSCTL_STORE");
  if (store == nullptr || *store == '\0') return;
  const char* vault = std::getenv("KMSCTL_VAULT");
  if (vault == nullptr || *vault == '\0') {
    ::setenv("KMSCTL_VAULT", store, 1);
  } else if (std::string_view(vault) != store) {
    throw Error(Code::usage, "KMSCTL_VAULT and KMSCTL_STORE name different vaults",
                "set only one of them (they are two names for the same setting)");
  }
}

}  // namespace

int run_command(int argc, const char* const* argv) {
  Globals globals;
  std::unique_ptr<CLI::App> app;
  // `kmsctl help [COMMAND...]` is `kmsctl COMMAND... --help`.
  std::vector<const char*> args(argv, argv + argc);
  std::vector<std::string> help_words;
  bool help_command = false;
  if (const int i = first_word(argc, argv);
      i > 0 && i < argc && std::string_view(argv[i]) == "help" &&
      std::none_of(argv + i + 1, argv + argc, [](std::string_view a) {
        return a == "--help" || a == "-h" || a == "--help-all";  // help's own help
      })) {
    help_command = true;
    args.erase(args.begin() + i);
    for (int j = i + 1; j < argc && !is_option(argv[j]); ++j) help_words.emplace_back(argv[j]);
    args.push_back("--help");
    argc = static_cast<int>(args.size());
    argv = args.data();
  }
  try {
    take_store_from_environment();
    app = build_app(globals, argc, argv);
    if (help_command) check_help_words(*app, help_words);
    if (exec_options_without_dashes(argc, argv)) {
      throw Error(Code::usage,
                  "`kmsctl exec` was given options after the command it runs, which it would "
                  "take as its own",
                  std::string(kExecDashes));
    }
    app->parse(argc, argv);
    return 0;
  } catch (const CLI::CallForHelp&) {
    add_example_footers(*app);
    std::cout << app->help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    add_example_footers(*app);
    std::cout << app->help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::CallForVersion& v) {
    std::cout << v.what() << '\n';
    return 0;
  } catch (const CLI::ParseError& e) {
    // `kmsctl` or `kmsctl secret` alone: the usage error, then that level's help, on stderr.
    const auto [path, at] = parsed_command(*app);
    if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && app->remaining(true).empty() &&
        !at->get_subcommands([](const CLI::App*) { return true; }).empty() &&
        at->get_subcommands().empty()) {
      const int code =
          report_error(Error(Code::usage, fmt::format("`{}` needs a command", path),
                             fmt::format("choose one of the commands below: `{} COMMAND`", path)));
      add_example_footers(*app);
      std::cerr << '\n' << at->help();
      return code;
    }
    const auto [what, hint] = usage_report(e, *app);
    return report_error(Error(Code::usage, what, hint));
  } catch (const signals::Interrupted& e) {
    report_error(e);
    return 128 + e.signal();  // as a shell reports a command a signal ended
  } catch (const Error& e) {
    if (!is_refused_pin(e)) return report_error(e);
    log_refused_pin(globals, e);
    if (e.remedy() != Remedy::unlock_pin || !e.subject().empty()) return report_error(e);
    return report_error(Error(e.code(), e.what(), e.remedy(), shown_vault(globals), e.hint()));
  } catch (const ErrorReported& r) {
    return r.exit_code;
  } catch (const std::exception& e) {
    return report_error(Error(Code::failed, e.what()));
  }
}

void add_verbs(CLI::App* group, Globals& g, std::span<const Verb> verbs) {
  for (const Verb& v : verbs) {
    if (v.name == g.verb) return v.add(group, g);
  }
  for (const Verb& v : verbs) v.add(group, g);
}

std::unique_ptr<CLI::App> build_app(Globals& g, int argc, const char* const* argv) {
  auto app = std::make_unique<CLI::App>(
      "kmsctl — a key management service in one binary: a vault sealed by a PKCS#11 token, "
      "with a tamper-evident audit log",
      "kmsctl");
  app->require_subcommand(1);
  app->fallthrough();
  app->set_help_all_flag("--help-all", "Show help for every command");
  app->add_option("--vault,--store", g.vault,
                  "Vault file, or a PostgreSQL database as a libpq connection string (also "
                  "KMSCTL_STORE; default: ~/.local/share/kmsctl/vault.db)")
      ->envname("KMSCTL_VAULT")
      ->type_name("FILE");
  app->add_option("--pin-file", g.pin_file,
                  "Read the token user PIN from the first line of FILE (mode 0600)")
      ->envname("KMSCTL_PIN_FILE")
      ->type_name("FILE");
  app->add_flag("-q,--quiet", quiet(),
                "Print only data and errors: no confirmations, notes, progress or warnings")
      ->envname("KMSCTL_QUIET");
  app->set_version_flag("--version", fmt::format("kmsctl {}", KMSCTL_VERSION),
                        "Print the kmsctl version (as `kmsctl version`)");
  app->add_option("--server", g.server,
                  "Send every request to the kmsctl service listening at PATH (`kmsctl serve`); "
                  "nothing runs here and no PIN is read")
      ->envname("KMSCTL_SERVER")
      ->type_name("PATH");
  app->add_option("--profile", g.profile,
                  "Use profile NAME of the config file (also KMSCTL_PROFILE; default: its "
                  "default_profile); flags and environment variables override its settings")
      ->type_name("NAME");
  // Building all of the tree costs more than a command's own work takes in the vault: a command
  // gets only its group.
  if (const Register only = group_of(argc, argv, g)) {
    only(*app, g);
  } else {
    Register last = nullptr;
    for (const auto& [name, reg] : kGroups) {
      if (reg != last) reg(*app, g);
      last = reg;
    }
  }
  require_utf8(*app);
  // After the parse, before the command runs: the profile fills in what no flag and no
  // environment variable set.
  app->parse_complete_callback([&g, a = app.get()] { profiles::apply(*a, g); });
  return app;
}

}  // namespace kms::cli
