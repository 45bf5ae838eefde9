#include "vault/vault.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "vault/detail.hpp"
#include "vault/token_files.hpp"

namespace kms {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMasterMagic = "KMSK";
constexpr std::string_view kMasterKekLabel = "kmsctl-master-kek-v2";
constexpr std::string_view kRecordKeyInfo = "kmsctl/v1/record-seal";
constexpr std::string_view kAuditKeyInfo = "kmsctl/v1/audit-mac";
constexpr std::string_view kRowKeyInfo = "kmsctl/v1/row-mac";
constexpr std::string_view kStateKeyInfo = "kmsctl/v1/state-digest";
constexpr std::string_view kCommitKeyInfo = "kmsctl/v1/material-commit";
constexpr std::string_view kCommitMagic = "KMSI";

void put_u64(Bytes& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// AAD of the sealed master key: label || 0x00 || vault id || u64be(root key generation).
Bytes master_aad(std::string_view vault_id, std::int64_t gen) {
  Bytes aad(kMasterAadLabel.begin(), kMasterAadLabel.end());
  aad.push_back(0);
  aad.insert(aad.end(), vault_id.begin(), vault_id.end());
  put_u64(aad, static_cast<std::uint64_t>(gen));
  return aad;
}

}  // namespace

namespace detail {

Bytes root_key_id(std::int64_t gen) {
  Bytes id;
  put_u64(id, static_cast<std::uint64_t>(gen));
  return id;
}

MasterSeal choose_master_seal(hsm::Session& session) {
  if (session.has_mechanism(CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT)) return MasterSeal::token_gcm;
  if (session.has_mechanism(CKM_SHA256_HMAC, CKF_SIGN) &&
      session.has_mechanism(CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE)) {
    return MasterSeal::token_hmac;
  }
  throw Error(Code::unavailable,
              "the token offers neither CKM_AES_GCM nor CKM_SHA256_HMAC with "
              "CKM_GENERIC_SECRET_KEY_GEN, one of which seals the vault's master key",
              "use a token (or a PKCS#11 module for it) that offers one of them");
}

hsm::ObjectHandle generate_root_key(hsm::Session& session, MasterSeal seal, std::string_view label,
                                    std::int64_t gen) {
  return seal == MasterSeal::token_gcm ? session.generate_aes256(label, root_key_id(gen))
                                       : session.generate_hmac_key(label, root_key_id(gen));
}

namespace {

// The key that seals the master key under an HMAC root key: derived in the token, fresh for
// every sealing (the IV is part of the input).
std::optional<SecureBytes> derive_master_kek(hsm::Session& session, hsm::ObjectHandle root,
                                             std::string_view vault_id, std::int64_t gen,
                                             ByteView iv) {
  Bytes input(kMasterKekLabel.begin(), kMasterKekLabel.end());
  input.push_back(0);
  input.insert(input.end(), vault_id.begin(), vault_id.end());
  put_u64(input, static_cast<std::uint64_t>(gen));
  input.insert(input.end(), iv.begin(), iv.end());
  return session.hmac_sha256(root, input);
}

constexpr size_t kMasterHeader = kMasterMagic.size() + 1;
constexpr size_t kSealedMasterSize =
    kMasterHeader + crypto::kGcmNonceSize + 32 + crypto::kGcmTagSize;

}  // namespace

Bytes seal_master(hsm::Session& session, MasterSeal seal, hsm::ObjectHandle root,
                  std::string_view vault_id, std::int64_t gen, ByteView master) {
  const Bytes iv = crypto::random_bytes(crypto::kGcmNonceSize);
  const Bytes aad = master_aad(vault_id, gen);
  Bytes ct;
  if (seal == MasterSeal::token_gcm) {
    ct = session.gcm_encrypt(root, iv, aad, master);
  } else {
    const auto kek = derive_master_kek(session, root, vault_id, gen, iv);
    if (!kek) throw Error(Code::failed, "the new root key does not compute HMAC-SHA256");
    ct = crypto::aes_gcm_seal(kek->view(), iv, aad, master);
  }
  Bytes sealed(kMasterMagic.begin(), kMasterMagic.end());
  sealed.push_back(static_cast<std::uint8_t>(seal));
  sealed.insert(sealed.end(), iv.begin(), iv.end());
  sealed.insert(sealed.end(), ct.begin(), ct.end());
  return sealed;
}

MasterSeal seal_of(ByteView sealed) {
  const std::uint8_t version =
      sealed.size() > kMasterMagic.size() ? sealed[kMasterMagic.size()] : 0;
  if (sealed.size() != kSealedMasterSize ||
      !std::equal(kMasterMagic.begin(), kMasterMagic.end(), sealed.begin()) ||
      (version != static_cast<std::uint8_t>(MasterSeal::token_gcm) &&
       version != static_cast<std::uint8_t>(MasterSeal::token_hmac))) {
    throw Error(Code::integrity, "the vault header's sealed master key is malformed",
                "restore the vault from a backup");
  }
  return static_cast<MasterSeal>(version);
}

std::optional<SecureBytes> open_master(hsm::Session& session, hsm::ObjectHandle root,
                                       std::string_view vault_id, std::int64_t gen,
                                       ByteView sealed) {
  const MasterSeal seal = seal_of(sealed);
  const ByteView iv = sealed.subspan(kMasterHeader, crypto::kGcmNonceSize);
  const ByteView ct = sealed.subspan(kMasterHeader + crypto::kGcmNonceSize);
  const Bytes aad = master_aad(vault_id, gen);
  if (seal == MasterSeal::token_hmac) {
    const auto kek = derive_master_kek(session, root, vault_id, gen, iv);
    if (!kek) return std::nullopt;  // not an HMAC key
    return crypto::aes_gcm_open(kek->view(), iv, aad, ct);
  }
  try {
    return session.gcm_decrypt(root, iv, aad, ct);
  } catch (const Error&) {
    if (session.has_mechanism(CKM_AES_GCM, CKF_DECRYPT)) throw;
    // A root key that computes HMACs: the header's seal version was changed.
    if (session.hmac_sha256(root, as_bytes(kMasterKekLabel))) return std::nullopt;
    throw Error(Code::unavailable,
                "the token does not offer CKM_AES_GCM through this PKCS#11 module, and this "
                "vault's master key is sealed with AES-GCM in the token",
                "reach the token through a module that carries CKM_AES_GCM (the HSM's own "
                "library, or p11-kit 0.25 or later); a vault made through such a forwarder is "
                "sealed with HMAC-SHA256 instead");
  }
}

}  // namespace detail

using detail::root_key_id;

fs::path default_vault_path() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    return fs::path(xdg) / "kmsctl" / "vault.db";
  }
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : ".") / ".local" / "share" / "kmsctl" / "vault.db";
}

fs::path lock_path(const fs::path& vault) { return fs::path(vault.string() + ".lock"); }
fs::path private_token_dir(const fs::path& vault) { return fs::path(vault.string() + ".token"); }

std::optional<std::string> find_softhsm_module() {
  for (const char* p :
       {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so"}) {
    std::error_code ec;
    if (fs::exists(p, ec)) return std::string(p);
  }
  return std::nullopt;
}

Vault::~Vault() = default;

std::string Vault::root_label() const { return std::string(kRootKeyLabelPrefix) + meta_.vault_id; }

hsm::TokenInfo Vault::token_info() const { return token_; }

namespace {

// The private token's configuration: the one beside this vault file when there is one (the
// vault and its token directory moved together; its tokendir is corrected), else the stored path
// (a backup opened from elsewhere uses the live vault's token).
std::string private_conf(const fs::path& vault, const std::string& stored) {
  const fs::path dir = private_token_dir(vault);
  const fs::path conf = dir / "softhsm2.conf";
  std::error_code ec;
  if (!fs::exists(conf, ec)) return stored;
  std::ifstream in(conf);
  const std::string want = "directories.tokendir = " + (dir / "tokens").string();
  bool ok = false;
  for (std::string line; std::getline(in, line);) ok = ok || line == want;
  if (!ok) detail::write_softhsm_conf(dir);
  return conf.string();
}

}  // namespace

void Vault::load_module(std::optional<token_files::TokenFiles>& guard) {
  if (!meta_.softhsm_conf.empty()) {
    const std::string conf = private_conf(fs::absolute(final_path_), meta_.softhsm_conf);
    std::error_code ec;
    if (!fs::exists(conf, ec)) {
      throw Error(Code::unavailable,
                  fmt::format("the vault's private token configuration {} is missing", conf),
                  fmt::format("restore the directory {} that belongs with the vault",
                              private_token_dir(final_path_).string()));
    }
    ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);
    token_dir_ = fs::path(conf).parent_path();
    guard.emplace(token_dir_);
    for (const auto& m : guard->mended()) token_repairs_.push_back(m.token_object.string());
  }
  detail::check_module_trusted(meta_.pkcs11_module, "named in the vault header");
  module_ = hsm::Module::load(meta_.pkcs11_module);
}

void Vault::connect_token(const SecureBytes& pin) {
  // A private SoftHSM2 token's files are checked (and mended from their copy) before the module
  // reads them, and stay guarded until the login has rewritten token.object.
  std::optional<token_files::TokenFiles> guard;
  load_module(guard);
  // SoftHSM2 rewrites a token's file at every login; a process that loaded the token meanwhile
  // sees its user PIN as not initialised until the module is loaded again.
  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    token_ = module_->find_token(meta_.token_label, meta_.token_serial);
    session_ = std::make_unique<hsm::Session>(module_, token_.slot);
    if (session_->try_login_user(pin)) return;
    session_.reset();
    if (attempt == kAttempts) break;
    ::usleep(4000u << attempt);
    if (!module_->reload()) break;  // another vault of this process has sessions open
  }
  throw Error(Code::unavailable, "cannot log in to the token: CKR_USER_PIN_NOT_INITIALIZED",
              "check that the token is present and its user PIN is set");
}

std::string_view Vault::master_seal_name() const {
  return detail::seal_of(meta_.sealed_master) == detail::MasterSeal::token_hmac ? "hmac-sha256"
                                                                                : "aes-gcm";
}

void Vault::unseal() {
  detail::seal_of(meta_.sealed_master);  // a malformed header is refused before the token is used
  // Normally one key matches; an interrupted rekey can leave a stray of another generation, or
  // (before cleanup) of the same one: the right key is the one that opens the master key.
  bool found = false;
  std::optional<SecureBytes> master;
  for (hsm::ObjectHandle h : session_->find_keys(root_label(), root_key_id(meta_.root_key_gen))) {
    found = true;
    master =
        detail::open_master(*session_, h, meta_.vault_id, meta_.root_key_gen, meta_.sealed_master);
    if (master && master->size() == 32) {
      root_ = h;
      break;
    }
  }
  if (!found) {
    throw Error(Code::unavailable,
                fmt::format("the token \"{}\" holds no root key for vault {} (generation {})",
                            token_.label, meta_.vault_id, meta_.root_key_gen),
                "check that this is the token the vault was created with (a backup made before a "
                "`vault rekey` cannot be opened: its root key was destroyed)");
  }
  if (!master || master->size() != 32) {
    throw Error(Code::integrity,
                "the vault's master key does not open with the token's root key: the vault "
                "header was altered or belongs to another token",
                "restore the vault from a backup");
  }
  master_ = std::move(*master);
  const ByteView salt = as_bytes(meta_.vault_id);
  record_key_ = crypto::hkdf_sha256(master_.view(), salt, as_bytes(kRecordKeyInfo), 32);
  audit_key_ = crypto::hkdf_sha256(master_.view(), salt, as_bytes(kAuditKeyInfo), 32);
  row_key_ = crypto::hkdf_sha256(master_.view(), salt, as_bytes(kRowKeyInfo), 32);
  state_key_ = crypto::hkdf_sha256(master_.view(), salt, as_bytes(kStateKeyInfo), 32);
  commit_key_ = crypto::hkdf_sha256(master_.view(), salt, as_bytes(kCommitKeyInfo), 32);
  db_->set_row_keys(row_key_.view(), state_key_.view());
  // The token that opened the master key is the one the header names (module, label, serial):
  // unless the header's MAC says so, someone changed it without the token.
  store::Tx tx(*db_, store::Tx::Kind::read);
  header_unauthenticated_ = !store::check_meta(*db_, /*allow_missing=*/true);
}

void Vault::refresh_meta() {
  db_->revive();
  store::Tx tx(*db_, store::Tx::Kind::read);
  auto meta = store::read_meta(*db_);
  header_unauthenticated_ = !store::check_meta(*db_, /*allow_missing=*/header_unauthenticated_);
  if (!meta || meta->vault_id != meta_.vault_id) {
    throw Error(Code::integrity,
                fmt::format("the header of {} changed its vault id",
                            store::shown_location(final_path_.string())),
                "restore the vault from a backup");
  }
  meta_ = std::move(*meta);
}

void Vault::check_in_place() const {
  if (!file_id_ || files::file_id(final_path_) == file_id_) return;
  throw Error(Code::unavailable,
              fmt::format("the vault file {} was replaced or removed after this process opened it",
                          final_path_.string()),
              Remedy::reopen_vault, {}, "run the command again");
}

void Vault::read_header() {
  store::Tx tx(*db_, store::Tx::Kind::read);
  auto meta = store::read_meta(*db_);
  if (!meta && db_->dialect() == store::Dialect::postgresql) {
    throw Error(Code::unavailable,
                fmt::format("the database {} holds the vault schema but no vault header: its "
                            "`kmsctl init` did not finish",
                            store::shown_location(path_.string())),
                Remedy::create_vault);
  }
  if (!meta) {
    throw Error(Code::integrity, fmt::format("{} has no vault header", path_.string()),
                Remedy::restore_or_create_vault, {}, "restore the vault from a backup");
  }
  meta_ = std::move(*meta);
}

std::unique_ptr<Vault> Vault::open(const fs::path& path, const SecureBytes& pin) {
  std::unique_ptr<Vault> v(new Vault());
  v->db_ = std::make_unique<store::Db>(path, store::Db::Mode::open_existing);
  // A vault in PostgreSQL is named by its database without the password, wherever a message,
  // a log or `status` shows it; it has no file to watch.
  v->path_ = v->final_path_ = v->db_->display_name();
  if (v->db_->dialect() == store::Dialect::sqlite) v->file_id_ = files::file_id(path);
  // A concurrent rekey may replace the root key between reading the header and using it:
  // read the header again once if the key it names has gone.
  for (int attempt = 0;; ++attempt) {
    v->read_header();
    if (!v->session_) v->connect_token(pin);
    try {
      v->unseal();
      // The vault and its private token moved together: remember where (backups need it).
      if (!v->meta_.softhsm_conf.empty()) {
        const char* conf = std::getenv("SOFTHSM2_CONF");
        if (conf && v->meta_.softhsm_conf != conf && !v->is_backup()) {
          store::Tx tx(*v->db_, store::Tx::Kind::write);
          store::update_softhsm_conf(*v->db_, conf);
          tx.commit();
          v->meta_.softhsm_conf = conf;
        }
      }
      return v;
    } catch (const Error& e) {
      if (attempt > 0 || e.code() != Code::unavailable) throw;
    }
  }
}

void Vault::reset_user_pin(const fs::path& path, const SecureBytes& so_pin,
                           const SecureBytes& new_pin) {
  std::unique_ptr<Vault> v(new Vault());
  v->db_ = std::make_unique<store::Db>(path, store::Db::Mode::open_existing);
  v->path_ = v->final_path_ = v->db_->display_name();
  v->read_header();
  // C_Login as SO and C_InitPIN rewrite token.object: guarded as a login is.
  std::optional<token_files::TokenFiles> guard;
  v->load_module(guard);
  v->token_ = v->module_->find_token(v->meta_.token_label, v->meta_.token_serial);
  hsm::Session session(v->module_, v->token_.slot);
  try {
    session.login_so(so_pin);
  } catch (const Error& e) {
    throw Error(Code::refused,
                fmt::format("the security officer PIN was not accepted by the vault's token ({})",
                            e.what()),
                "pass the SO PIN that `kmsctl init` showed (--so-pin-file FILE)");
  }
  session.init_pin(new_pin);
  session.logout();
  if (guard) guard->save_copies();
}

Bytes Vault::material_commitment(std::string_view key_id, ByteView material) const {
  // "KMSI" || u8(1) || lp(key id) || material (docs/FORMAT.md §12.5).
  SecureBytes in(kCommitMagic.size() + 1 + 4 + key_id.size() + material.size());
  std::uint8_t* p = std::copy(kCommitMagic.begin(), kCommitMagic.end(), in.data());
  *p++ = 1;
  const auto n = static_cast<std::uint32_t>(key_id.size());
  for (int i = 3; i >= 0; --i) *p++ = static_cast<std::uint8_t>(n >> (8 * i));
  p = std::copy(key_id.begin(), key_id.end(), p);
  std::copy(material.begin(), material.end(), p);
  const crypto::Digest d = crypto::HmacSha256(commit_key_.view()).mac(in.view());
  return Bytes(d.begin(), d.end());
}

Bytes Vault::seal(const RecordRef& where, ByteView plaintext) const {
  return seal_record(record_key_.view(), meta_.vault_id, where, plaintext);
}

SecureBytes Vault::open_sealed(const RecordRef& where, ByteView sealed) const {
  auto pt = open_record(record_key_.view(), meta_.vault_id, where, sealed);
  if (!pt) {
    throw Error(Code::integrity,
                fmt::format("the sealed value of {} {} (version {}) does not open: it was altered "
                            "or moved from another row",
                            where.table, where.row_id, where.version),
                Remedy::restore_and_verify, {}, "restore the vault from a backup");
  }
  return std::move(*pt);
}

namespace {

std::string anchor_slot_label(ByteView value) {
  return std::string(kAnchorSlotLabelPrefix) + crypto::to_base64(value);
}

}  // namespace

std::vector<Vault::AnchorSlot> Vault::anchor_slots() {
  const std::string application = std::string(kAnchorApplicationPrefix) + meta_.vault_id;
  // A slot's values: its CKA_VALUE and the value its label carries.
  auto values_of = [](hsm::DataObject& d, bool legacy) {
    std::vector<Bytes> values;
    if (!d.value.empty()) values.push_back(std::move(d.value));
    if (!legacy && d.label.starts_with(kAnchorSlotLabelPrefix)) {
      if (auto b = crypto::from_base64(
              std::string_view(d.label).substr(kAnchorSlotLabelPrefix.size()))) {
        values.push_back(std::move(*b));
      }
    }
    return values;
  };
  if (slot_handles_.size() == 2) {
    std::vector<AnchorSlot> slots;
    try {
      for (hsm::ObjectHandle h : slot_handles_) {
        hsm::DataObject d = session_->read_data(h);
        if (d.application != application) break;
        slots.push_back({h, false, values_of(d, false)});
      }
    } catch (const Error&) {
      // destroyed, or torn: the search below tells which
    }
    if (slots.size() == 2) return slots;
    slot_handles_.clear();
  }
  std::vector<AnchorSlot> slots;
  // An object that cannot be read (a write to it was torn by a crash) holds no value; the
  // other slot still holds the previous head, and the next publish overwrites this one.
  auto read = [&](hsm::ObjectHandle h, bool legacy) {
    AnchorSlot slot{h, legacy, {}};
    try {
      hsm::DataObject d = session_->read_data(h);
      slot.values = values_of(d, legacy);
    } catch (const Error&) {
      slot.values.clear();
    }
    slots.push_back(std::move(slot));
  };
  for (hsm::ObjectHandle h : session_->find_data_by_application(application)) read(h, false);
  // A single-object anchor is only looked for until both slots exist: the conversion makes
  // them before it destroys the old object.
  if (slots.size() < 2) {
    for (hsm::ObjectHandle h :
         session_->find_data(std::string(kLegacyAnchorLabelPrefix) + meta_.vault_id)) {
      read(h, true);
    }
  } else if (slots.size() == 2 && !slots[0].values.empty() && !slots[1].values.empty()) {
    slot_handles_ = {slots[0].handle, slots[1].handle};
  }
  return slots;
}

std::vector<Bytes> Vault::load_anchor() {
  std::vector<AnchorSlot> slots = anchor_slots();
  std::vector<Bytes> values;
  for (const AnchorSlot& slot : slots)
    values.insert(values.end(), slot.values.begin(), slot.values.end());
  loaded_slots_ = std::move(slots);
  return values;
}

void Vault::store_anchor(ByteView value, const std::function<std::int64_t(ByteView)>& seq_of) {
  std::vector<AnchorSlot> slots = loaded_slots_ ? std::move(*loaded_slots_) : anchor_slots();
  loaded_slots_.reset();
  std::vector<AnchorSlot*> current;
  for (AnchorSlot& s : slots) {
    if (!s.legacy) current.push_back(&s);
  }
  if (current.size() < 2) {
    // At init, or converting a vault whose anchor is one object (replaced by create + destroy
    // before the slots): make both slots, each holding the new value, before anything else.
    for (size_t i = current.size(); i < 2; ++i) {
      session_->create_data(anchor_slot_label(value), value,
                            std::string(kAnchorApplicationPrefix) + meta_.vault_id);
    }
    for (AnchorSlot* s : current) write_anchor_slot(s->handle, value);
  } else {
    // A label newer than the CKA_VALUE beside it was written because the token refused the
    // value before: do not ask it again.
    for (const AnchorSlot* s : current) {
      if (s->values.size() == 2 && seq_of(s->values[1]) > seq_of(s->values[0])) {
        anchor_value_read_only_ = true;
      }
    }
    // Overwrite the slot whose newest value is the older one: a torn write loses only that
    // slot, and the other still holds the previous head (a log longer than its anchor is fine).
    auto newest = [&](const AnchorSlot& s) {
      std::int64_t seq = -1;
      for (const Bytes& v : s.values) seq = std::max(seq, seq_of(v));
      return seq;
    };
    AnchorSlot* target = current[0];
    for (AnchorSlot* s : current) {
      if (newest(*s) < newest(*target)) target = s;
    }
    write_anchor_slot(target->handle, value);
  }
  for (const AnchorSlot& s : slots) {
    if (s.legacy) session_->destroy(s.handle);
  }
}

void Vault::reset_anchor(ByteView value) {
  loaded_slots_.reset();
  std::vector<AnchorSlot> slots = anchor_slots();
  size_t current = 0;
  for (const AnchorSlot& s : slots) {
    if (s.legacy) continue;
    write_anchor_slot(s.handle, value);
    ++current;
  }
  for (; current < 2; ++current) {
    session_->create_data(anchor_slot_label(value), value,
                          std::string(kAnchorApplicationPrefix) + meta_.vault_id);
  }
  for (const AnchorSlot& s : slots) {
    if (s.legacy) session_->destroy(s.handle);
  }
}

void Vault::write_anchor_slot(hsm::ObjectHandle slot, ByteView value) {
  // Tokens that let CKA_VALUE change keep the value there; SoftHSM2 refuses it for data objects
  // (CKR_ATTRIBUTE_READ_ONLY) but lets the label change, so the label carries the value.
  if (!anchor_value_read_only_ && session_->try_set_value(slot, value)) return;
  anchor_value_read_only_ = true;
  session_->set_label(slot, anchor_slot_label(value));
}

std::int64_t Vault::prepare_rekey() {
  const std::int64_t gen = meta_.root_key_gen + 1;
  meta_before_rekey_ = meta_;
  for (hsm::ObjectHandle h : session_->find_keys(root_label())) {  // strays of an interrupted rekey
    if (session_->get_id(h) == root_key_id(gen)) session_->destroy(h);
  }
  const detail::MasterSeal seal = detail::choose_master_seal(*session_);
  new_root_ = detail::generate_root_key(*session_, seal, root_label(), gen);
  Bytes sealed =
      detail::seal_master(*session_, seal, *new_root_, meta_.vault_id, gen, master_.view());
  store::update_root_key(*db_, gen, sealed);
  meta_.root_key_gen = gen;
  meta_.sealed_master = std::move(sealed);
  return gen;
}

void Vault::finish_rekey() {
  const Bytes keep = root_key_id(meta_.root_key_gen);
  for (hsm::ObjectHandle h : session_->find_keys(root_label())) {
    if (session_->get_id(h) != keep) session_->destroy(h);
  }
  root_ = *new_root_;
  new_root_.reset();
  meta_before_rekey_.reset();
}

void Vault::abort_rekey() noexcept {
  if (!new_root_) return;
  try {
    session_->destroy(*new_root_);
  } catch (...) {
    // Left behind, it is an unused key object; the next rekey removes it.
  }
  new_root_.reset();
  if (meta_before_rekey_) meta_ = std::move(*meta_before_rekey_);
  meta_before_rekey_.reset();
}

void Vault::change_pin(const SecureBytes& old_pin, const SecureBytes& new_pin) {
  if (token_dir_.empty()) {
    session_->set_pin(old_pin, new_pin);
    return;
  }
  // C_SetPIN rewrites token.object: guarded like a login, and the copy then holds the new PIN.
  token_files::TokenFiles guard(token_dir_);
  session_->set_pin(old_pin, new_pin);
  guard.save_copies();
}

}  // namespace kms
