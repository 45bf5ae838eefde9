// The vault: a SQLite file whose master key is sealed by a root key that never leaves a PKCS#11
// token. Opening it logs in to the token and unseals the master key into guarded memory; purpose
// subkeys come from HKDF-SHA256. Sealed records (docs/FORMAT.md §Sealed record) are the one
// mechanism for storing key material and secret values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "kms/hsm.hpp"
#include "kms/sealed.hpp"
#include "kms/secure.hpp"
#include "kms/store.hpp"

namespace kms {

// Names as the spec names them.
inline constexpr std::string_view kMasterAadLabel = "kmsctl-master-key-v1";
inline constexpr std::string_view kRootKeyLabelPrefix = "kmsctl-root:";
inline constexpr std::string_view kAnchorLabelPrefix = "kmsctl-audit-anchor:";

struct TokenChoice {
  std::optional<std::string> module;  // none: a private SoftHSM2 token beside the vault
  std::optional<std::string> label;
  std::optional<std::string> serial;
};

struct InitOptions {
  std::filesystem::path vault;
  TokenChoice token;
  bool force = false;  // move an existing vault aside instead of refusing
};

struct InitReport {
  std::string vault_id;
  hsm::TokenInfo token;
  std::string module;
  std::optional<SecureBytes> so_pin;           // set when kmsctl initialised a private token
  std::optional<std::filesystem::path> moved_aside;  // the previous vault, with --force
};

// Paths that belong to a vault file.
std::filesystem::path default_vault_path();
std::filesystem::path lock_path(const std::filesystem::path& vault);
std::filesystem::path private_token_dir(const std::filesystem::path& vault);
std::optional<std::string> find_softhsm_module();

class Vault {
 public:
  // Creates a vault at a temporary path beside opts.vault; publish() moves it into place.
  static std::unique_ptr<Vault> create(const InitOptions& opts, const SecureBytes& pin,
                                       InitReport& report);
  static std::unique_ptr<Vault> open(const std::filesystem::path& path, const SecureBytes& pin);
  // A file made by `vault backup`: read-only for everything but verification and restore.
  bool is_backup() { return db_->application_id() == store::kBackupVaultId; }
  ~Vault();

  void publish();  // after create(): rename into place, drop the init markers, reopen

  store::Db& db() noexcept { return *db_; }
  const store::VaultMeta& meta() const noexcept { return meta_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  const std::filesystem::path& final_path() const noexcept { return final_path_; }
  hsm::TokenInfo token_info() const;
  hsm::Session& token() noexcept { return *session_; }
  // The audit anchor: a private data object in the token, labelled with the vault id. Tokens
  // may refuse to modify CKA_VALUE, so a new object replaces the old one (created first, so
  // a crash leaves two, never none): load_anchor() returns every value found.
  std::vector<Bytes> load_anchor();
  void store_anchor(ByteView value);
  ByteView audit_key() const noexcept { return audit_key_.view(); }

  Bytes seal(const RecordRef& where, ByteView plaintext) const;
  // Code::integrity when the blob was altered or belongs elsewhere.
  [[nodiscard]] SecureBytes open_sealed(const RecordRef& where, ByteView sealed) const;

  // Rekey: a new root key in the token reseals the master key. prepare_rekey() writes the new
  // header inside the caller's write transaction; finish_rekey() (after the commit) destroys the
  // old root keys; abort_rekey() (the transaction failed) destroys the new one.
  std::int64_t prepare_rekey();
  void finish_rekey();
  void abort_rekey() noexcept;

  void change_pin(const SecureBytes& old_pin, const SecureBytes& new_pin);

 private:
  Vault() = default;
  void connect_token(const SecureBytes& pin);
  void unseal();
  std::string root_label() const;

  std::filesystem::path path_;
  std::filesystem::path final_path_;  // differs from path_ until publish()
  std::unique_ptr<store::Db> db_;
  store::VaultMeta meta_;
  std::shared_ptr<hsm::Module> module_;
  hsm::TokenInfo token_;
  std::unique_ptr<hsm::Session> session_;
  hsm::ObjectHandle root_ = 0;
  std::optional<hsm::ObjectHandle> new_root_;
  std::optional<store::VaultMeta> meta_before_rekey_;
  SecureBytes master_;
  SecureBytes record_key_;
  SecureBytes audit_key_;
};

}  // namespace kms
