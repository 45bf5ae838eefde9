// Creating a vault: choose or make the token, generate the root key in it, seal a fresh master
// key, and write the vault header — at temporary paths, so an interrupted init leaves only
// markers that the next init recognises and clears.
#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "vault/detail.hpp"
#include "vault/token_files.hpp"
#include "vault/vault.hpp"

namespace kms {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kIncompleteMarker = "INIT-INCOMPLETE";

fs::path sibling(const fs::path& vault, std::string_view suffix) {
  return vault.parent_path() / fmt::format(".{}{}", vault.filename().string(), suffix);
}
fs::path temp_db_path(const fs::path& vault) { return sibling(vault, ".init-tmp"); }
fs::path pending_path(const fs::path& vault) { return sibling(vault, ".init-pending"); }
// A new private token directory is made here, marked, then renamed into place, so that a token
// directory beside the vault either belongs to a published vault or carries the marker.
fs::path staging_token_dir(const fs::path& vault) { return sibling(vault, ".init-token"); }

void remove_db_files(const fs::path& db) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(db.string() + suffix, ec);
}

void write_small_file(const fs::path& path, std::string_view text) {
  files::AtomicFile f(path, true);
  f.write(text);
  f.commit();
}

std::string read_small_file(const fs::path& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string now_compact() {
  std::string t = format_rfc3339(now());
  std::erase(t, ':');
  std::erase(t, '-');
  return t.substr(0, 15) + "Z";  // 20261128T093102Z
}

// Clears what an interrupted init left: the temporary vault, an unfinished private token
// directory, and the root key / anchor that it may have created in an external token.
void clean_interrupted(const InitOptions& opts, const SecureBytes& pin) {
  const fs::path pending = pending_path(opts.vault);
  std::error_code ec;
  const fs::path token_dir = private_token_dir(opts.vault);
  fs::remove_all(staging_token_dir(opts.vault), ec);
  if (fs::exists(opts.vault, ec)) {
    // The vault is published only once complete (Vault::publish): what its init left after
    // that is stale, and the token objects named in `pending` are the vault's own, or were
    // never made (init --force moves the old vault aside before it touches a token).
    fs::remove(token_dir / kIncompleteMarker, ec);
    fs::remove(pending, ec);
    remove_db_files(temp_db_path(opts.vault));
    return;
  }
  // An unfinished private token directory (marker present, no vault published) is ours to
  // clear; once the vault exists the directory holds its root key and is never touched.
  if (fs::exists(token_dir / kIncompleteMarker, ec)) fs::remove_all(token_dir, ec);
  if (fs::is_empty(token_dir, ec) && !ec) fs::remove(token_dir, ec);
  if (fs::exists(pending, ec)) {
    const std::string old_id = read_small_file(pending);
    if (opts.token.module && !old_id.empty()) {
      try {
        auto module = hsm::Module::load(*opts.token.module);
        const hsm::TokenInfo t = module->find_token(opts.token.label, opts.token.serial);
        hsm::Session s(module, t.slot);
        s.login_user(pin);
        for (auto h : s.find_keys(std::string(kRootKeyLabelPrefix) + old_id)) s.destroy(h);
        for (auto h : s.find_data_by_application(std::string(kAnchorApplicationPrefix) + old_id)) {
          s.destroy(h);
        }
        for (auto h : s.find_data(std::string(kLegacyAnchorLabelPrefix) + old_id)) s.destroy(h);
      } catch (const Error&) {
        // Unreachable token: the objects, if any, are labelled with a vault id nobody uses.
      }
    }
    fs::remove(pending, ec);
  }
  remove_db_files(temp_db_path(opts.vault));
}

// Printable SO PIN: 24 characters drawn uniformly from an unambiguous 56-letter alphabet
// (about 139 bits).
SecureBytes random_so_pin() {
  static constexpr std::string_view alphabet =
      "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
  SecureBytes pin(24);
  for (size_t i = 0; i < pin.size(); ++i) {
    pin.data()[i] = static_cast<std::uint8_t>(alphabet[randombytes_uniform(alphabet.size())]);
  }
  return pin;
}

}  // namespace

namespace detail {

void write_softhsm_conf(const fs::path& dir) {
  files::make_private_dir(dir / "tokens");
  write_small_file(dir / "softhsm2.conf",
                   fmt::format("# SoftHSM2 configuration of a private kmsctl token; keep this\n"
                               "# directory with the vault file it belongs to.\n"
                               "directories.tokendir = {}\n"
                               "objectstore.backend = file\n"
                               "log.level = ERROR\n"
                               "slots.removable = false\n",
                               (dir / "tokens").string()));
}

}  // namespace detail

std::unique_ptr<Vault> Vault::create(const InitOptions& opts, const SecureBytes& pin,
                                     InitReport& report) {
  if (store::is_postgres_location(opts.vault.string()))
    return create_in_postgres(opts, pin, report);
  const fs::path final_path = fs::absolute(opts.vault);
  if (opts.token.module)
    detail::check_module_trusted(*opts.token.module, "given with --pkcs11-module");
  files::make_private_dir(final_path.parent_path());
  InitOptions o = opts;
  o.vault = final_path;
  clean_interrupted(o, pin);

  std::error_code ec;
  const fs::path token_dir = private_token_dir(final_path);
  if (fs::exists(final_path, ec)) {
    if (!opts.force) {
      throw Error(Code::refused, fmt::format("a vault already exists at {}", final_path.string()),
                  Remedy::keep_existing_vault);
    }
  } else if (!opts.token.module && fs::exists(token_dir, ec)) {
    throw Error(Code::refused,
                fmt::format("a token directory {} exists without its vault", token_dir.string()),
                "move it away (it may hold the root key of a vault you still have) and retry");
  }

  std::unique_ptr<Vault> v(new Vault());
  v->final_path_ = final_path;
  v->path_ = temp_db_path(final_path);
  store::VaultMeta& m = v->meta_;
  m.vault_id = crypto::uuid_v4();
  m.created = format_rfc3339(now());
  m.root_key_gen = 1;
  write_small_file(pending_path(final_path), m.vault_id + "\n");

  if (opts.force && fs::exists(final_path, ec)) {
    // Moved aside only once the new vault is ready would be nicer, but its private token
    // directory must be free now; nothing is deleted.
    fs::path aside(final_path.string() + ".replaced-" + now_compact());
    for (int n = 2; fs::exists(aside, ec) || fs::exists(private_token_dir(aside), ec); ++n) {
      aside =
          fs::path(final_path.string() + ".replaced-" + now_compact() + "-" + std::to_string(n));
    }
    for (const char* suffix : {"-wal", "-shm", ".lock", ".ops"}) {
      fs::rename(final_path.string() + suffix, aside.string() + suffix, ec);
    }
    fs::rename(token_dir, private_token_dir(aside), ec);
    fs::rename(final_path, aside);
    report.moved_aside = aside;
  }

  if (opts.token.module) {
    m.pkcs11_module = *opts.token.module;
    v->module_ = hsm::Module::load(m.pkcs11_module);
    v->token_ = v->module_->find_token(opts.token.label, opts.token.serial);
  } else {
    const auto module = find_softhsm_module();
    if (!module) {
      throw Error(Code::unavailable, "SoftHSM2 is not installed (no libsofthsm2.so found)",
                  Remedy::install_softhsm);
    }
    m.pkcs11_module = *module;
    const fs::path staging = staging_token_dir(final_path);
    files::make_private_dir(staging);
    write_small_file(staging / kIncompleteMarker, m.vault_id + "\n");
    fs::rename(staging, token_dir);
    files::fsync_dir(final_path.parent_path());
    detail::write_softhsm_conf(token_dir);
    m.softhsm_conf = (token_dir / "softhsm2.conf").string();
    ::setenv("SOFTHSM2_CONF", m.softhsm_conf.c_str(), 1);
    v->module_ = hsm::Module::load(m.pkcs11_module);
    std::optional<hsm::SlotId> free_slot;
    for (const auto& t : v->module_->tokens()) {
      if (!t.initialized) free_slot = t.slot;
    }
    if (!free_slot) throw Error(Code::failed, "SoftHSM2 offers no free slot for a new token");
    SecureBytes so_pin = random_so_pin();
    v->token_ =
        v->module_->init_token(*free_slot, "kmsctl-" + m.vault_id.substr(0, 8), so_pin, pin);
    report.so_pin = std::move(so_pin);
  }
  v->seal_new(pin, report);
  return v;
}

std::unique_ptr<Vault> Vault::create_in_postgres(const InitOptions& opts, const SecureBytes& pin,
                                                 InitReport& report) {
  // No private token: every host that uses the vault reaches the token through its module.
  if (!opts.token.module) {
    throw Error(Code::usage, "a vault in PostgreSQL is made on a token named by its module",
                "pass --pkcs11-module MODULE and --token-label LABEL (p11-kit-client.so for a "
                "token that `p11-kit server` exports, or an HSM's own library)");
  }
  if (opts.force) {
    throw Error(Code::usage, "--force does not replace a vault in PostgreSQL",
                "use another database, or drop the vault's tables with PostgreSQL's tools");
  }
  detail::check_module_trusted(*opts.token.module, "given with --pkcs11-module");
  std::unique_ptr<Vault> v(new Vault());
  // The schema first: a database that holds a vault is refused before the token is touched.
  // A schema left without a header (the token refused below) is taken over by the next init;
  // a root key made before such a failure stays in the token under a vault id nothing uses.
  v->db_ = std::make_unique<store::Db>(opts.vault, store::Db::Mode::create_new);
  v->path_ = v->final_path_ = v->db_->display_name();
  store::VaultMeta& m = v->meta_;
  m.vault_id = crypto::uuid_v4();
  m.created = format_rfc3339(now());
  m.root_key_gen = 1;
  m.pkcs11_module = *opts.token.module;
  v->module_ = hsm::Module::load(m.pkcs11_module);
  v->token_ = v->module_->find_token(opts.token.label, opts.token.serial);
  v->seal_new(pin, report);
  return v;
}

void Vault::seal_new(const SecureBytes& pin, InitReport& report) {
  store::VaultMeta& m = meta_;
  m.token_label = token_.label;
  m.token_serial = token_.serial;
  // A private token's token.object gets its copy before anything depends on the token.
  std::optional<token_files::TokenFiles> guard;
  if (!m.softhsm_conf.empty()) guard.emplace(private_token_dir(final_path_));
  session_ = std::make_unique<hsm::Session>(module_, token_.slot);
  session_->login_user(pin);
  guard.reset();

  // Root key in the token, master key sealed by it.
  const detail::MasterSeal seal = detail::choose_master_seal(*session_);
  root_ = detail::generate_root_key(*session_, seal, root_label(), 1);
  m.sealed_master =
      detail::seal_master(*session_, seal, root_, m.vault_id, 1, crypto::random_secret(32).view());
  if (!db_) {  // a file: made now, at its temporary path
    remove_db_files(path_);
    db_ = std::make_unique<store::Db>(path_, store::Db::Mode::create_new);
  }
  unseal();  // proves the round trip through the token before anything depends on it
  {
    store::Tx tx(*db_, store::Tx::Kind::write);
    store::insert_meta(*db_, m);  // MACed with the subkeys unseal() derived
    tx.commit();
    db_->set_application_id(store::kLiveVaultId);
  }

  report.vault_id = m.vault_id;
  report.token = token_;
  report.module = m.pkcs11_module;
}

void Vault::publish() {
  if (path_ == final_path_) return;
  db_->checkpoint();  // the published file must hold everything: its WAL stays behind
  db_.reset();        // closing the last connection (after checkpoint()) removes the WAL
  if (::link(path_.c_str(), final_path_.c_str()) != 0) {
    throw Error(Code::refused,
                fmt::format("a vault appeared at {} during init", final_path_.string()),
                Remedy::create_vault_again);
  }
  ::unlink(path_.c_str());
  files::fsync_dir(final_path_.parent_path());
  std::error_code ec;
  fs::remove(private_token_dir(final_path_) / kIncompleteMarker, ec);
  fs::remove(pending_path(final_path_), ec);
  path_ = final_path_;
  db_ = std::make_unique<store::Db>(path_, store::Db::Mode::open_existing);
  db_->set_row_keys(row_key_.view(), state_key_.view());
}

}  // namespace kms
