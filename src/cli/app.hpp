// The command tree: one register_* function per command group, shared flags in Globals, and
// the helpers every command uses to reach the vault. No SQL and no crypto here.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "agent/client.hpp"
#include "audit/log.hpp"  // audit::to_json: a record as `--json` and the export show it
#include "base/json.hpp"  // json_or_null
#include "keys/blob.hpp"  // the key a ciphertext names, for messages
#include "kms/crypto.hpp"
#include "kms/requests.hpp"
#include "kms/secure.hpp"
#include "kms/service.hpp"
#include "kms/text.hpp"
#include "vault/vault.hpp"  // the vault opened here: its path and header, for status and init

namespace kms::cli {

struct Globals {
  std::string vault;     // --vault, KMSCTL_VAULT
  std::string pin_file;  // --pin-file, KMSCTL_PIN_FILE
  std::string server;    // --server, KMSCTL_SERVER: the socket of a `kmsctl serve`
  std::string profile;   // --profile (KMSCTL_PROFILE is read where it is used: profile.cpp)
  // The active profile's agent_socket: where `agent start` listens, and the agent that serves
  // this command when KMSCTL_AGENT_SOCK is not set. Set by profiles::apply, like the profile's
  // vault, pin_file, server, quiet and output where no flag and no environment variable gave one.
  std::string agent_socket;
  // -q/--quiet, KMSCTL_QUIET: kept in quiet() (output.cpp), which note() reads
  std::string verb;  // the word after the group's name on the command line (see add_verbs)
  // Where this command's requests go (send), decided at the first: the service named by
  // --server / KMSCTL_SERVER; else the agent named by a trusted KMSCTL_AGENT_SOCK while it
  // serves this vault; else the vault opened here, once.
  struct Route {
    bool decided = false;
    std::string agent;     // its socket (an agent's or a service's); empty: none
    bool service = false;  // `agent` is a service's: nothing runs here
    std::string vault;     // the vault's absolute path, as requests name it
    std::shared_ptr<Service> local;
    bool allow_backup = false;  // local opens a backup too (audit verify)
  } route;
};

// A group's subcommands, one function each. add_verbs registers only the one the command line
// names (g.verb), or all of them when it names none: building a CLI11 subcommand costs more
// than most commands' own work in the vault.
struct Verb {
  std::string_view name;
  void (*add)(CLI::App* group, Globals& g);
};
void add_verbs(CLI::App* group, Globals& g, std::span<const Verb> verbs);

std::filesystem::path vault_path(const Globals& g);
// vault_path(g), or Code::unavailable when there is no vault there. A PostgreSQL location
// (store::is_postgres_location) is returned as given: its server says whether a vault is there.
std::filesystem::path existing_vault(const Globals& g);
// The vault's location as an agent, a hook or another directory finds it again: a file's
// absolute path, a PostgreSQL connection string as given.
std::string absolute_vault(const Globals& g);
// The location as messages and logs show it: without a PostgreSQL connection's password.
std::string shown_vault(const Globals& g);
// Code::usage when the vault is in PostgreSQL: `who` (a service) serves only a vault file.
void refuse_postgres_vault(const Globals& g, std::string_view who);

// At start, before anything else reads the environment: moves KMSCTL_PIN and KMSCTL_NEW_PIN
// into guarded memory for read_pin and read_new_pin, zeroes their values in the environment
// block and unsets them, whether or not the command reads a PIN.
void take_pins_from_environment();
// The token user PIN: --pin-file, KMSCTL_PIN_FILE, KMSCTL_PIN, else a no-echo prompt on the
// terminal. `confirm` asks twice when prompting (a new PIN).
SecureBytes read_pin(const Globals& g, bool confirm = false);
// A new PIN for change-pin: --new-pin-file, KMSCTL_NEW_PIN_FILE, KMSCTL_NEW_PIN, else prompt twice.
SecureBytes read_new_pin(const std::string& new_pin_file);
// The security officer PIN from the first line of a file (mode 0600), as `init --so-pin-file`
// writes it.
SecureBytes read_so_pin(const std::string& so_pin_file);

// The agent or service that serves g's requests (its socket), or null: they run in this process.
const std::string* agent_for(Globals& g);
// A connection to it: to a service (Code::unavailable when none listens), or to the agent
// (nothing when none listens).
std::optional<agent::Connection> connect_route(Globals& g);
// Code::usage when g's requests go to a service (--server, KMSCTL_SERVER): for a command that
// runs only where the vault is (init, agent start, vault administration, rotation hooks).
void here_only(const Globals& g);
// The vault opened in this process for g's requests (once per command, with the PIN); a usage
// error when they go to a service (here_only).
Service& local_vault(Globals& g);
// Closes the vault local_vault opened, if any (before `exec` runs its command).
void close_local_vault(Globals& g);
// Sends a request where g's requests go and returns its response: to the agent (a new
// connection per request), or to the vault opened here. An agent that does not serve this
// vault sends it back: it then runs here, as do the rest of the command's requests.
template <class R>
typename R::Response send(Globals& g, const R& request) {
  if (agent_for(g) != nullptr) {
    if (std::optional<agent::Connection> c = connect_route(g)) {
      if (std::optional<typename R::Response> r = c->call(g.route.vault, request)) {
        return std::move(*r);
      }
    }
    g.route.agent.clear();
  }
  return handle(local_vault(g), request);
}
// A request that runs in this process whether or not an agent runs (it would run hooks with
// the agent's environment, or administers the vault and its token): on the vault opened here.
template <class R>
typename R::Response run_here(Globals& g, const R& request) {
  return handle(local_vault(g), request);
}
// The session of one file encrypt (keys) or decrypt: the agent wraps or unwraps its data key
// while this process streams the file, or the vault opened here does. The file is recorded by
// files::recorded_path(path) (absolute; "-" for standard input).
std::unique_ptr<FileSession> file_session(Globals& g, Action action, const std::string& path,
                                          const std::vector<std::string>& keys = {});
// Before running rotation hooks: KMSCTL_BIN, KMSCTL_VAULT and KMSCTL_PIN_FILE (when given) in
// the environment, so that a hook can call this kmsctl on this vault.
void export_for_hooks(const Globals& g);

// Output: data to stdout, messages to stderr. Text output passes every field that a user, a file
// name, a token or the vault file can set through escape_text (kms/text.hpp); JSON needs no more.
void print_json(const nlohmann::json& j);
// What every `list --json` prints: {"items": [...], "next": CURSOR|null}, `next` being what
// the list's paging option takes to continue (null: the listing is complete).
void print_list_json(nlohmann::json items, const std::optional<std::string>& next);
// j as JSON text (one line unless indent >= 0); bytes that are not UTF-8 become U+FFFD.
std::string json_text(const nlohmann::json& j, int indent = -1);
// Tags as a JSON object {"K": "V", ...}.
nlohmann::json tags_json(const std::vector<std::pair<std::string, std::string>>& tags);
// -q / --quiet / KMSCTL_QUIET: nothing but data (stdout) and errors. note() prints nothing then.
bool& quiet();
// A message on stderr: a confirmation, a note, progress or a warning that is not an error; not
// under -q.
void note(const std::string& message);
// A message on stderr that -q does not silence: what an error reported with ErrorReported lists
// after its hint, or something printed only once that the user must keep (a new SO PIN).
void say(const std::string& message);

void register_init(CLI::App& app, Globals& g);
void register_status(CLI::App& app, Globals& g);
void register_audit(CLI::App& app, Globals& g);
void register_vault(CLI::App& app, Globals& g);
void register_check_token(CLI::App* vault, Globals& g);  // vault check-token
void register_meta(CLI::App& app, Globals& g);           // version, completion, manpage
void register_key(CLI::App& app, Globals& g);
void register_encrypt(CLI::App& app, Globals& g);
void register_decrypt(CLI::App& app, Globals& g);
void register_reencrypt(CLI::App& app, Globals& g);
void register_data_key(CLI::App& app, Globals& g);
void register_random(CLI::App& app, Globals& g);
void register_sign(CLI::App& app, Globals& g);
void register_verify(CLI::App& app, Globals& g);
void register_mac(CLI::App& app, Globals& g);
void register_verify_mac(CLI::App& app, Globals& g);
void register_maintain(CLI::App& app, Globals& g);
void register_file(CLI::App& app, Globals& g);  // file encrypt, decrypt, rewrap, inspect
void register_secret(CLI::App& app, Globals& g);
void register_exec(CLI::App& app, Globals& g);
void register_agent(CLI::App& app, Globals& g);
void register_grant(CLI::App& app, Globals& g);   // grant create, list, revoke, retire
void register_policy(CLI::App& app, Globals& g);  // policy validate, check (no vault)
void register_serve(CLI::App& app, Globals& g);   // serve, serve reload, serve status
// __complete keys|aliases|secrets PREFIX (hidden): names for the shell completions, read from the
// vault file without a PIN, the token or the audit log.
void register_complete(CLI::App& app, Globals& g);
void register_config(CLI::App& app, Globals& g);  // config list, get, set, unset (no vault)

// The candidate closest to `word` when it is close enough to be a typo of it (did you mean);
// empty when none is.
std::string closest(std::string_view word, const std::vector<std::string>& candidates);

// K=V pairs of --context (and --tag): Code::usage on a missing '=', an empty key or a repeat.
Context parse_pairs(const std::vector<std::string>& pairs, const char* flag);
// The stage a --stage value names (CLI11 checked it against the names already; Code::usage if not).
SecretStage stage_option(std::string_view value);
// Input from a file or "-" (stdin), at most max_bytes (Code::usage beyond); `flag` is the option
// (or argument) that named the file, for the hint when it cannot be read.
SecureBytes read_input(const std::string& path, std::size_t max_bytes,
                       const std::string& too_big_hint, std::string_view flag = "--in");
// A public key file (PEM or DER SubjectPublicKeyInfo, as `kmsctl key public` writes) as DER;
// Code::usage naming `flag` when it is none.
Bytes read_public_key(const std::string& path, std::string_view flag);
// Output to a file (atomic, 0600, refuses an existing one unless force) or "-" (stdout).
void write_output(const std::string& path, std::string_view data, bool force);
// Code::usage when binary output (`what`) would go to standard output and that is a terminal:
// called before the command's request, which then never runs.
void refuse_binary_on_terminal(const std::string& path, std::string_view what);
// Code::usage when an output file named by -o is a directory (write_output checks it too).
// `also` ends the hint (", or ...").
void refuse_directory_output(const std::string& path, std::string_view also = "");
nlohmann::json key_json(const keys::KeyInfo& info);
// What `key|secret set-policy` confirms: "policy removed" (no text), or "policy set (N
// statements, sha256 H)".
std::string policy_change(const std::optional<std::string>& text,
                          const std::optional<std::string>& sha256);

// The examples of a command (examples.cpp): its path ("secret get") and command lines.
struct Examples {
  std::string_view path;
  std::vector<std::string_view> lines;
};
const std::vector<Examples>& examples();
const Examples* examples_of(std::string_view path);
// Sets an "Examples:" footer on app (at `path`, "" for the root) and on every subcommand below
// it that the table has examples for: before help is printed.
void add_example_footers(CLI::App& app, const std::string& path = "");

// Generated from the command tree (docgen.cpp).
std::string completion_script(const CLI::App& app, const std::string& shell);
std::string man_page(const CLI::App& app);

// The command tree for this command line: the group of the command it names, or the whole tree.
std::unique_ptr<CLI::App> build_app(Globals& g, int argc, const char* const* argv);
// The group and verb words argv names ("" where it names none), skipping the global options. It
// only chooses which part of the tree to build (the parse of that part decides what runs); it
// must not decide anything else: `secret --vault V rotate` names no verb here.
std::pair<std::string_view, std::string_view> command_words(int argc, const char* const* argv);
// The names of the subcommands the parse selected, from the group down: {"secret", "rotate"};
// empty if some level selected more than one.
std::vector<std::string> parsed_path(const CLI::App& app);
// Parses and runs one command line and returns its exit code; errors are reported on stderr.
int run_command(int argc, const char* const* argv);
// `kmsctl: error: WHAT` and the hint on stderr, each escaped to one line; returns the exit code.
int report_error(const Error& e);
// The hint line of an error: its remedy in the CLI's words (hints.cpp), with the library's hint.
std::string hint_text(const Error& e);
// Thrown by a command that reported its error itself (report_error, then details after the hint):
// run_command returns the exit code and prints nothing more.
struct ErrorReported {
  int exit_code;
};
}  // namespace kms::cli
