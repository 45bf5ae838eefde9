// The key operations of a vault (src/keys/operations.cpp): each is one audited transaction of the
// runner (authorise, do, audit). Reached through Service::keys().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "audit/log.hpp"
#include "keys/key_store.hpp"
#include "kms/actions.hpp"
#include "kms/context.hpp"
#include "kms/key_policy.hpp"
#include "kms/secure.hpp"
#include "kms/vocab.hpp"
#include "vault/vault.hpp"

namespace kms {

class Runner;

// KEY (ref) is a key id or alias/NAME.
class KeyOperations {
 public:
  explicit KeyOperations(Runner& runner);

  keys::KeyInfo create(const keys::CreateSpec& spec);
  KeyPage list(std::optional<KeyState> state, const std::optional<std::string>& after,
               std::int64_t limit);
  keys::KeyInfo describe(std::string_view ref);
  keys::KeyInfo enable(std::string_view ref);
  keys::KeyInfo disable(std::string_view ref);
  keys::KeyInfo rotate(std::string_view ref);
  keys::KeyInfo set_rotation(std::string_view ref, std::optional<std::int64_t> days);
  keys::KeyInfo schedule_deletion(std::string_view ref, std::int64_t pending_days);
  keys::KeyInfo cancel_deletion(std::string_view ref);
  void alias_create(std::string_view alias, std::string_view ref);
  void alias_update(std::string_view alias, std::string_view ref);
  void alias_delete(std::string_view alias);
  std::vector<std::pair<std::string, std::string>> alias_list();
  keys::KeyInfo tag(std::string_view ref,
                    const std::vector<std::pair<std::string, std::string>>& tags);
  keys::KeyInfo untag(std::string_view ref, const std::vector<std::string>& names);
  // Bring your own key (docs/KEYS.md): a wrapping public key and import token for KEY (origin
  // external), and the import of material wrapped for them as its version 1. `expires`: an
  // RFC 3339 time after now (keys::parse_material_expiry), none for never.
  keys::ImportParams import_params(std::string_view ref, WrappingAlgorithm algorithm);
  keys::KeyInfo import_material(std::string_view ref, ByteView wrapped, ByteView token,
                                const std::optional<std::string>& expires);
  // A key's own policy (docs/POLICY.md, "Key policies"): `text` a policy file (TOML or JSON, at
  // most kMaxKeyPolicy bytes, without problems: Code::usage naming each); none removes it.
  static constexpr std::size_t kMaxKeyPolicy = 64 * 1024;
  KeyPolicyInfo set_policy(std::string_view ref, const std::optional<std::string>& text);
  KeyPolicyInfo get_policy(std::string_view ref);
  // A kmsctl ciphertext blob (symmetric_default), or a public-key encryption of the plaintext
  // (RSA-OAEP, SM2: no context, no key named in it).
  Bytes encrypt(std::string_view ref, ByteView plaintext, const Context& context,
                EncryptionAlgorithm algorithm = EncryptionAlgorithm::symmetric_default);
  keys::Decrypted decrypt(ByteView blob, const Context& context);
  // A public-key ciphertext, with KEY's `version` or each of its versions in turn.
  keys::Decrypted decrypt_with(std::string_view ref, EncryptionAlgorithm algorithm,
                               ByteView ciphertext, std::optional<std::int64_t> version);
  keys::PublicKey get_public_key(std::string_view ref, std::optional<std::int64_t> version);
  keys::Signature sign(std::string_view ref, SigningAlgorithm algorithm, ByteView input,
                       bool is_digest);
  // `version` none: each version in turn (the primary first), as a signature names none.
  keys::Verified verify(std::string_view ref, SigningAlgorithm algorithm, ByteView input,
                        bool is_digest, ByteView signature, std::optional<std::int64_t> version);
  keys::Signature mac(std::string_view ref, ByteView message);
  keys::Verified verify_mac(std::string_view ref, ByteView message, ByteView mac);
  // Decrypts and encrypts again under `to_ref` (its primary version) without releasing the
  // plaintext. Returns the new blob.
  Bytes reencrypt(ByteView blob, const Context& context, std::string_view to_ref,
                  const Context& to_context);
  DataKey generate_data_key(std::string_view ref, std::size_t bytes, const Context& context);
  Bytes random(std::size_t bytes);

 private:
  // One audited operation on an existing key: resolves KEY, names it in the record, and
  // destroys token keys the operation made if it rolls back.
  using KeyBody = std::function<void(keys::KeyStore&, store::KeyRow&, audit::Event&)>;
  void key_op(Action action, std::string_view ref, const KeyBody& body,
              const Context& context = {});

  Runner& runner_;
  Vault& vault_;
};

}  // namespace kms
