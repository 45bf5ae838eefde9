// kmsctl __complete keys|aliases|secrets [PREFIX]: the names the shell completions offer, read
// from the vault file with SQLite alone (docs/ARCHITECTURE.md, "Shell completion"). Hidden: not in
// help, the manual page or the completion scripts' command lists.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <iostream>

#include <fmt/format.h>
#include <sqlite3.h>

#include "cli/app.hpp"

namespace kms::cli {
namespace {

// What a secret name, an alias or a key id may hold (secrets::check_name, check_alias_name, a
// UUID): a row with anything else was not written by kmsctl and is not offered to a shell.
bool completable_name(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("/_+=.@-").find(c) != std::string_view::npos;
  });
}

// A path as the file: URI SQLite reads (every byte but unreserved ones and '/' percent-encoded).
std::string file_uri(const std::string& path) {
  std::string out = "file:";
  for (const char ch : path) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

bool lexists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// The rows of `sql` (one text column) in the vault file at `path`, opened read-only without
// writing anything: no file is created (SQLite would create an empty -wal for a read-only
// connection when there is none), the WAL index (-shm) is mapped read-only, and the WAL is never
// checkpointed. Empty on any problem: no vault, not a vault, busy, damaged.
std::vector<std::string> read_column(const std::string& path, const std::vector<const char*>& sql) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  const bool wal = lexists(path + "-wal"), shm = lexists(path + "-shm");
  if (wal && !shm) return {};  // left by a process that died: the next kmsctl command recovers it
  // No WAL: nothing is newer than the file itself, which can be read as it is (no locks, no WAL).
  const std::string uri = file_uri(path) + (wal ? "?mode=ro&readonly_shm=1" : "?immutable=1");
  sqlite3* db = nullptr;
  std::vector<std::string> out;
  if (sqlite3_open_v2(uri.c_str(), &db,
                      SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                      nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 100);  // a shell waits for this: never long
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
    for (const char* q : sql) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v2(db, q, -1, &s, nullptr) != SQLITE_OK) {
        out.clear();
        break;
      }
      int rc = SQLITE_ROW;
      while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_type(s, 0) != SQLITE_TEXT) continue;
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        out.emplace_back(text, static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
      }
      sqlite3_finalize(s);
      if (rc != SQLITE_DONE) {
        out.clear();
        break;
      }
    }
  }
  sqlite3_close_v2(db);
  return out;
}

std::vector<std::string> vault_names(const Globals& g, const std::string& what) {
  // A service's vault is not read here: reading it there would be an audited request.
  if (!g.server.empty()) return {};
  std::string path;
  try {
    path = vault_path(g).string();
  } catch (...) {
    return {};
  }
  // user_version first: 0 is a SQLite file that is not a vault.
  static const char* const kVersion =
      "SELECT 'v' WHERE (SELECT user_version FROM pragma_user_version) > 0";
  std::vector<const char*> sql{kVersion};
  if (what == "keys" || what == "aliases")
    sql.push_back("SELECT alias FROM key_aliases ORDER BY alias");
  if (what == "keys") sql.push_back("SELECT id FROM keys ORDER BY created, id");
  if (what == "secrets") sql.push_back("SELECT name FROM secrets ORDER BY name");
  std::vector<std::string> rows = read_column(path, sql);
  if (rows.empty() || rows.front() != "v") return {};
  rows.erase(rows.begin());
  return rows;
}

}  // namespace

void register_complete(CLI::App& app, Globals& g) {
  auto what = std::make_shared<std::string>();
  auto prefix = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "__complete",
      "Print the key ids and aliases, the aliases or the secret names that begin with "
      "PREFIX, for the shell completions");
  cmd->group("");  // hidden: not in help, the manual page or the completion scripts
  cmd->add_option("what", *what, "keys, aliases or secrets")
      ->required()
      ->check(CLI::IsMember({"keys", "aliases", "secrets"}));
  cmd->add_option("prefix", *prefix, "Print only the names that begin with PREFIX")
      ->type_name("PREFIX");
  cmd->callback([&g, what, prefix] {
    std::string out;
    for (const std::string& name : vault_names(g, *what)) {
      if (name.starts_with(*prefix) && completable_name(name)) out += name + '\n';
    }
    std::cout << out;
  });
}

}  // namespace kms::cli
