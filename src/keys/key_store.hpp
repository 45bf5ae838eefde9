// The key store: keys, versions, states, aliases, tags and rotation, and the direct operations
// on them (encrypt, decrypt, data keys). Software keys keep each version's material as a sealed
// record; hsm keys keep it in the token (a non-extractable AES key, or an RSA, EC or Ed25519 key
// pair) and encrypt, sign and decrypt there. Every
// function runs inside the caller's write transaction (the runner's).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keys/blob.hpp"
#include "kms/clock.hpp"
#include "kms/keys.hpp"
#include "store/store.hpp"
#include "vault/vault.hpp"

namespace kms::keys {

inline constexpr std::string_view kTokenKeyLabelPrefix = "kmsctl-key:";

// What an import did: whether the key had material imported before (the same: its commitment
// matched), and whether the material came back (it was not there: first import, or expired).
struct ImportOutcome {
  bool reimport = false;
  bool restored = false;
  WrappingAlgorithm wrapping_algorithm = WrappingAlgorithm::rsaes_oaep_sha_256;
};

class KeyStore {
 public:
  explicit KeyStore(Vault& vault) : vault_(vault) {}

  store::KeyRow create(const CreateSpec& spec, TimePoint now);
  // A key by id or alias/NAME; Code::not_found when there is none.
  store::KeyRow resolve(std::string_view ref);
  KeyInfo describe(const store::KeyRow& key);
  std::optional<std::string> next_rotation(const store::KeyRow& key) const;

  void enable(store::KeyRow& key);
  void disable(store::KeyRow& key);
  std::int64_t rotate(store::KeyRow& key, TimePoint now);  // the new primary version
  void set_rotation(store::KeyRow& key, std::optional<std::int64_t> days);
  std::string schedule_deletion(store::KeyRow& key, std::int64_t days, TimePoint now);
  void cancel_deletion(store::KeyRow& key);
  // Removes the key and its versions, aliases and tags; returns the token labels of its hsm
  // versions, to destroy after the commit.
  std::vector<std::string> erase(const store::KeyRow& key);
  void destroy_token_keys(const std::vector<std::string>& labels) noexcept;
  // Token keys made by this KeyStore (to destroy if the transaction rolls back).
  const std::vector<std::string>& created_token_keys() const noexcept {
    return created_token_labels_;
  }

  // Keys of origin external (src/keys/import.cpp): a new wrapping key pair and import token for
  // KEY, good for kImportParamsHours; the import of material wrapped for such parameters as
  // the key's version 1; the removal of material whose expiry passed (`maintain`).
  ImportParams import_params(const store::KeyRow& key, std::string_view ref,
                             WrappingAlgorithm algorithm, TimePoint now);
  ImportOutcome import_material(store::KeyRow& key, std::string_view ref, ByteView wrapped,
                                ByteView token, const std::optional<std::string>& expires,
                                TimePoint now);
  void expire_material(store::KeyRow& key);

  // Refuses (Code::refused) unless the key is Enabled and its material has not expired, naming
  // its state (or the expiry) and the way out.
  static void require_enabled(const store::KeyRow& key, std::string_view ref);
  // Refuses (Code::refused) a key whose usage is not `usage` (a signing key asked to encrypt),
  // naming its spec and usage; `what` names the operation ("encrypt").
  static void require_usage(const store::KeyRow& key, std::string_view ref, KeyUsage usage,
                            std::string_view what);

  // The public key of an asymmetric key's version (Code::refused for a symmetric key).
  Bytes public_key(const store::KeyRow& key, std::int64_t version);
  // Signs with the primary version. The key is Enabled, of usage sign, and fits the algorithm.
  Signature sign(const store::KeyRow& key, SigningAlgorithm a, ByteView input, bool is_digest);
  // Verifies with `version`, or with each version (the primary first, then the newest first).
  Verified verify(const store::KeyRow& key, SigningAlgorithm a, ByteView input, bool is_digest,
                  ByteView signature, std::optional<std::int64_t> version);
  // Public-key encryption under the primary version (RSA-OAEP, SM2); the ciphertext names no key.
  Bytes encrypt_to(const store::KeyRow& key, EncryptionAlgorithm a, ByteView plaintext);
  // Decrypts with `version`, or tries each version as verify does; Code::integrity when none
  // opens it.
  Decrypted decrypt_with(const store::KeyRow& key, EncryptionAlgorithm a, ByteView ciphertext,
                         std::optional<std::int64_t> version);
  // The key version whose public key has this SHA-256 (of its SubjectPublicKeyInfo DER), among
  // the keys of `specs`; nullopt when this vault has none. Computes the public key of each
  // version of those keys (a file recipient names its key only by this fingerprint).
  std::optional<std::pair<store::KeyRow, std::int64_t>> find_by_public_key(
      ByteView fingerprint, std::span<const KeySpec> specs);
  // The X25519 shared secret of `version`'s private key and a peer's raw public key. The key is
  // of usage agree; nullopt when the peer's key gives none.
  std::optional<SecureBytes> agree(const store::KeyRow& key, std::int64_t version,
                                   ByteView peer_public);
  Signature mac(const store::KeyRow& key, ByteView message);
  Verified verify_mac(const store::KeyRow& key, ByteView message, ByteView mac);

  Bytes encrypt(const store::KeyRow& key, ByteView plaintext, const Context& context);
  // Finds the key from the blob. Code::not_found when this vault has no such key or no such
  // version of it (restored from an older backup, a stale copy), Code::refused when the key is
  // not enabled, Code::integrity when the blob does not open with this context.
  Decrypted decrypt(ByteView blob, const Context& context);
  // The key id a blob names, without opening it (for the audit record).
  static std::optional<std::string> blob_key_id(ByteView blob);

 private:
  std::string token_label(std::string_view key_id, std::int64_t version) const;
  // The token's key object of an hsm key version; Code::integrity when there is more than one.
  std::optional<hsm::ObjectHandle> token_key(std::string_view key_id, std::int64_t version);
  void add_version(store::KeyRow& key, std::int64_t version, TimePoint now);
  // The private or public key object of an asymmetric hsm key's version (exactly one).
  hsm::ObjectHandle token_pair_object(const store::KeyRow& key, std::int64_t version,
                                      bool private_key);
  // The SubjectPublicKeyInfo DER of an asymmetric hsm key's version, read from the token.
  Bytes token_public_key(const store::KeyRow& key, std::int64_t version);
  // The opened material of a software key's version: a PKCS#8 private key or HMAC key bytes.
  SecureBytes material(const store::KeyRow& key, std::int64_t version);
  // The versions to try when the input does not name one: the primary, then the newest first.
  std::vector<std::int64_t> versions_to_try(const store::KeyRow& key,
                                            std::optional<std::int64_t> version);

  Vault& vault_;
  std::vector<std::string> created_token_labels_;
};

}  // namespace kms::keys
