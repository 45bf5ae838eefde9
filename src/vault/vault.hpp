// The vault: a SQLite file whose master key is sealed by a root key that never leaves a PKCS#11
// token. Opening it logs in to the token and unseals the master key into guarded memory; purpose
// subkeys come from HKDF-SHA256. Sealed records (docs/FORMAT.md §Sealed record) are the one
// mechanism for storing key material and secret values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "hsm/hsm.hpp"
#include "kms/files.hpp"
#include "kms/secure.hpp"
#include "kms/vault.hpp"
#include "store/store.hpp"
#include "vault/sealed.hpp"

namespace kms {
namespace token_files {
class TokenFiles;
}

// Names as the spec names them.
inline constexpr std::string_view kMasterAadLabel = "kmsctl-master-key-v1";
inline constexpr std::string_view kRootKeyLabelPrefix = "kmsctl-root:";
// The audit anchor slots: CKA_APPLICATION = prefix + vault id; CKA_LABEL = prefix + base64(value).
inline constexpr std::string_view kAnchorApplicationPrefix = "kmsctl-audit-anchor:";
inline constexpr std::string_view kAnchorSlotLabelPrefix = "kmsctl-audit-anchor-value:";
// Vaults made before the slots kept one anchor object with CKA_LABEL = prefix + vault id.
inline constexpr std::string_view kLegacyAnchorLabelPrefix = "kmsctl-audit-anchor:";

class Vault {
 public:
  // Creates a vault at a temporary path beside opts.vault; publish() moves it into place. A
  // PostgreSQL location is created in place, on the token opts names (no private token).
  static std::unique_ptr<Vault> create(const InitOptions& opts, const SecureBytes& pin,
                                       InitReport& report);
  static std::unique_ptr<Vault> open(const std::filesystem::path& path, const SecureBytes& pin);
  // Sets the user PIN of the vault's token with its security officer PIN (C_InitPIN), for a
  // forgotten or locked user PIN. Reads the vault's header to find the token; unseals nothing
  // (without the user PIN nothing can be). Code::refused for a wrong SO PIN.
  static void reset_user_pin(const std::filesystem::path& path, const SecureBytes& so_pin,
                             const SecureBytes& new_pin);
  // A file made by `vault backup`: read-only for everything but verification and restore.
  bool is_backup() { return db_->application_id() == store::kBackupVaultId; }
  ~Vault();

  void publish();  // after create(): rename into place, drop the init markers, reopen

  store::Db& db() noexcept { return *db_; }
  const store::VaultMeta& meta() const noexcept { return meta_; }
  // How the root key seals the master key: "aes-gcm" or "hmac-sha256" (docs/FORMAT.md §5).
  std::string_view master_seal_name() const;
  // Reads the header again, for a process that keeps the vault open (`kmsctl agent`) while
  // others may rekey it (and, for a vault in PostgreSQL, reconnects when the server closed
  // the connection meanwhile). The master key it unsealed stays valid: a rekey reseals the same
  // one.
  void refresh_meta();
  // Code::unavailable when the file at path() is no longer the one open() opened (it was moved
  // aside and `vault restore` renamed a new one into place): a write to the old one would move
  // the token anchor away from the live log. Called under the writer lock, which restore holds.
  void check_in_place() const;
  const std::filesystem::path& path() const noexcept { return path_; }
  const std::filesystem::path& final_path() const noexcept { return final_path_; }
  hsm::TokenInfo token_info() const;
  hsm::Session& token() noexcept { return *session_; }
  // The audit anchor (docs/FORMAT.md §Audit anchor): two private data objects in the token, slots
  // found by CKA_APPLICATION. Each publish overwrites the slot holding the older value (its
  // CKA_VALUE when the token allows it, else its CKA_LABEL), so a torn write leaves the other
  // slot intact. load_anchor() returns every value found: both slots' (each can also still hold
  // its creation value), and those of a single-object anchor left by an older kmsctl, which the
  // next store_anchor() converts into the two slots. seq_of orders values (higher is newer,
  // -1 when it cannot tell). store_anchor() uses the slots the last load_anchor() found instead
  // of searching the token again: callers hold the writer lock from load to store. Once both
  // slots are found, their handles are kept: an agent reads them for every request without
  // searching the token (a search is a tenth of a served request in SoftHSM2); a handle that no
  // longer reads as a slot of this vault (another process destroyed it) makes it search again.
  struct AnchorSlot {
    hsm::ObjectHandle handle = 0;
    bool legacy = false;  // a single anchor object made by create + destroy
    std::vector<Bytes> values;
  };
  std::vector<AnchorSlot> anchor_slots();
  std::vector<Bytes> load_anchor();
  void store_anchor(ByteView value, const std::function<std::int64_t(ByteView)>& seq_of);
  // Writes `value` into every slot, so that the anchor can move back (`vault restore`).
  void reset_anchor(ByteView value);
  ByteView audit_key() const noexcept { return audit_key_.view(); }
  // Gives another connection to this vault's file or to a copy of it (a backup) the row keys,
  // so that its rows are checked as this vault's are.
  // The header had no MAC when the vault was opened: allowed only in a vault of an older kmsctl
  // (its audit log holds no state), which the service checks.
  bool header_unauthenticated() const noexcept { return header_unauthenticated_; }
  void authenticate(store::Db& other) const {
    other.set_row_keys(row_key_.view(), state_key_.view());
  }

  Bytes seal(const RecordRef& where, ByteView plaintext) const;
  // An imported key's commitment to its material: HMAC-SHA256 under K_commit of the key id and
  // the material (docs/FORMAT.md §12.5). Tells whether material imported again is the same,
  // without keeping it.
  Bytes material_commitment(std::string_view key_id, ByteView material) const;
  // Code::integrity when the blob was altered or belongs elsewhere.
  [[nodiscard]] SecureBytes open_sealed(const RecordRef& where, ByteView sealed) const;

  // Rekey: a new root key in the token reseals the master key. prepare_rekey() writes the new
  // header inside the caller's write transaction; finish_rekey() (after the commit) destroys the
  // old root keys; abort_rekey() (the transaction failed) destroys the new one.
  std::int64_t prepare_rekey();
  void finish_rekey();
  void abort_rekey() noexcept;

  void change_pin(const SecureBytes& old_pin, const SecureBytes& new_pin);

  // Token files that open() restored from kmsctl's copy (an earlier process was killed while
  // the token rewrote them); the service records each.
  const std::vector<std::string>& token_repairs() const noexcept { return token_repairs_; }

 private:
  Vault() = default;
  // create() for a PostgreSQL location (store::is_postgres_location).
  static std::unique_ptr<Vault> create_in_postgres(const InitOptions& opts, const SecureBytes& pin,
                                                   InitReport& report);
  // The end of create(): logs in, makes the root key, seals a new master key and writes the
  // header (into the database made here for a file, or already open).
  void seal_new(const SecureBytes& pin, InitReport& report);
  // Sets SOFTHSM2_CONF to the vault's private token (its files checked and guarded by `guard`
  // until the caller's login has rewritten them) and loads the header's module, if trusted.
  void load_module(std::optional<token_files::TokenFiles>& guard);
  // Reads the header into meta_ (Code::integrity when the file has none).
  void read_header();
  void connect_token(const SecureBytes& pin);
  void unseal();
  std::string root_label() const;
  void write_anchor_slot(hsm::ObjectHandle slot, ByteView value);

  std::filesystem::path path_;
  std::filesystem::path final_path_;  // differs from path_ until publish()
  std::unique_ptr<store::Db> db_;
  std::optional<files::FileId> file_id_;  // of the file open() opened
  store::VaultMeta meta_;
  std::shared_ptr<hsm::Module> module_;
  hsm::TokenInfo token_;
  std::unique_ptr<hsm::Session> session_;
  hsm::ObjectHandle root_ = 0;
  std::optional<hsm::ObjectHandle> new_root_;
  std::optional<store::VaultMeta> meta_before_rekey_;
  std::optional<std::vector<AnchorSlot>> loaded_slots_;  // by load_anchor(), for store_anchor()
  std::vector<hsm::ObjectHandle> slot_handles_;          // both slots, once found
  std::filesystem::path token_dir_;  // a private SoftHSM2 token's directory (VAULT.token)
  std::vector<std::string> token_repairs_;
  bool anchor_value_read_only_ = false;  // the token refused CKA_VALUE once: use the label
  SecureBytes master_;
  SecureBytes record_key_;
  SecureBytes audit_key_;
  bool header_unauthenticated_ = false;
  SecureBytes row_key_;     // K_row: row MACs (FORMAT.md §14)
  SecureBytes state_key_;   // K_state: the state digest
  SecureBytes commit_key_;  // K_commit: commitments to imported key material
};

}  // namespace kms
