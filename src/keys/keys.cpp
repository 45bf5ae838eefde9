#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "crypto/sm.hpp"
#include "keys/key_store.hpp"
#include "kms/asymmetric.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::keys {
namespace {

constexpr std::string_view kVersionsTable = "key_versions";

RecordRef material_ref(std::string_view key_id, std::int64_t version) {
  return {std::string(kVersionsTable), std::string(key_id), version};
}

// An SM4 key's blob carries the same 12-byte nonce as an AES key's; SM4-CTR's 16-byte initial
// counter block is the nonce followed by a 32-bit zero counter (docs/FORMAT.md §12.3).
Bytes sm4_iv(ByteView nonce) {
  Bytes iv(nonce.begin(), nonce.end());
  iv.resize(crypto::sm::kSm4IvSize, 0);
  return iv;
}

Bytes seal_with(KeySpec spec, ByteView material, ByteView nonce, ByteView aad, ByteView pt) {
  if (spec == KeySpec::sm4) return crypto::sm::sm4_seal(material, sm4_iv(nonce), aad, pt);
  return crypto::aes_gcm_seal(material, nonce, aad, pt);
}

std::optional<SecureBytes> open_with(KeySpec spec, ByteView material, ByteView nonce, ByteView aad,
                                     ByteView sealed) {
  if (spec == KeySpec::sm4) return crypto::sm::sm4_open(material, sm4_iv(nonce), aad, sealed);
  return crypto::aes_gcm_open(material, nonce, aad, sealed);
}

// ---- key pairs in the token (docs/FORMAT.md §12.1) ----

struct Mechanism {
  CK_MECHANISM_TYPE type;
  CK_FLAGS flags;
};

// The key pair to generate for an asymmetric hsm key of `spec` and `usage`.
hsm::KeyPairParams key_pair_params(KeySpec spec, KeyUsage usage) {
  hsm::KeyPairParams p;
  switch (spec) {
    case KeySpec::rsa_2048:
    case KeySpec::rsa_3072:
    case KeySpec::rsa_4096:
      p.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
      p.modulus_bits = spec == KeySpec::rsa_2048 ? 2048 : spec == KeySpec::rsa_3072 ? 3072 : 4096;
      p.decrypt = usage == KeyUsage::encrypt;
      break;
    case KeySpec::ec_p256:  // prime256v1
      p.mechanism = CKM_EC_KEY_PAIR_GEN;
      p.ec_params = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
      break;
    case KeySpec::ec_p384:  // secp384r1
      p.mechanism = CKM_EC_KEY_PAIR_GEN;
      p.ec_params = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
      break;
    case KeySpec::ec_secp256k1:
      p.mechanism = CKM_EC_KEY_PAIR_GEN;
      p.ec_params = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
      break;
    case KeySpec::ed25519:  // id-Ed25519, 1.3.101.112
      p.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
      p.ec_params = {0x06, 0x03, 0x2b, 0x65, 0x70};
      break;
    default:
      break;
  }
  return p;
}

// The mechanisms an hsm key of `spec` and `usage` needs of the token.
std::vector<Mechanism> needed_mechanisms(KeySpec spec, KeyUsage usage) {
  if (spec == KeySpec::aes_256) {
    return {{CKM_AES_KEY_GEN, CKF_GENERATE}, {CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT}};
  }
  const hsm::KeyPairParams p = key_pair_params(spec, usage);
  std::vector<Mechanism> out{{p.mechanism, CKF_GENERATE_KEY_PAIR}};
  if (p.mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN) {
    if (usage == KeyUsage::encrypt) {
      // CKM_RSA_PKCS_OAEP; where the token's OAEP takes only SHA-1, CKM_RSA_X_509 as well
      // (Session::rsa_oaep_decrypt).
      out.push_back({CKM_RSA_PKCS_OAEP, CKF_DECRYPT});
      out.push_back({CKM_RSA_X_509, CKF_DECRYPT});
    } else {
      out.push_back({CKM_RSA_PKCS, CKF_SIGN});
      out.push_back({CKM_RSA_PKCS_PSS, CKF_SIGN});
    }
  } else if (p.mechanism == CKM_EC_KEY_PAIR_GEN) {
    out.push_back({CKM_ECDSA, CKF_SIGN});
  } else {
    out.push_back({CKM_EDDSA, CKF_SIGN});
  }
  return out;
}

// Why the token cannot hold a key of `spec` whatever its mechanisms; nullopt when it may.
std::optional<std::string> never_in_token(KeySpec spec) {
  switch (spec) {
    case KeySpec::ec_sm2:
      return "PKCS #11 has no SM2 mechanism (no CKM_ for SM2 key pairs, SM2DSA or SM2PKE)";
    case KeySpec::sm4:
      return "PKCS #11 has no SM4 mechanism (no CKM_SM4_KEY_GEN)";
    case KeySpec::x25519:
      return "kmsctl does not generate X25519 keys with CKM_EC_MONTGOMERY_KEY_PAIR_GEN (the file "
             "format agrees keys in the process)";
    case KeySpec::hmac_sha256:
    case KeySpec::hmac_sha512:
      return "kmsctl does not make HMAC keys in the token (CKM_GENERIC_SECRET_KEY_GEN with "
             "CKM_SHA256_HMAC)";
    default:
      return std::nullopt;
  }
}

Bytes digest_of(SigningAlgorithm a, ByteView message) {
  const EVP_MD* md = a == SigningAlgorithm::ecdsa_sha_384 ? EVP_sha384() : EVP_sha256();
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (EVP_Digest(message.data(), message.size(), out.data(), &len, md, nullptr) != 1) {
    throw Error(Code::failed, "cannot compute a digest");
  }
  out.resize(len);
  return out;
}

// The token's raw ECDSA signature r || s as DER Ecdsa-Sig-Value, as OpenSSL makes it.
Bytes ecdsa_der(const Bytes& raw) {
  const int half = static_cast<int>(raw.size() / 2);
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(raw.data(), half, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, half, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || raw.size() % 2 != 0 ||
      ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    throw Error(Code::failed, "the token's ECDSA signature is malformed");
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) throw Error(Code::failed, "cannot encode an ECDSA signature");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

// A signature by a private key in the token, byte for byte what crypto::sign makes.
Bytes token_sign(hsm::Session& token, hsm::ObjectHandle priv, SigningAlgorithm a, ByteView input,
                 bool is_digest) {
  crypto::check_sign_input(a, input, is_digest);
  if (a == SigningAlgorithm::ed25519) return token.sign(priv, CKM_EDDSA, nullptr, 0, input);
  const Bytes digest = is_digest ? Bytes(input.begin(), input.end()) : digest_of(a, input);
  switch (a) {
    case SigningAlgorithm::ecdsa_sha_256:
    case SigningAlgorithm::ecdsa_sha_384:
      return ecdsa_der(token.sign(priv, CKM_ECDSA, nullptr, 0, digest));
    case SigningAlgorithm::rsassa_pss_sha_256: {
      CK_RSA_PKCS_PSS_PARAMS p{CKM_SHA256, CKG_MGF1_SHA256, 32};
      return token.sign(priv, CKM_RSA_PKCS_PSS, &p, sizeof p, digest);
    }
    case SigningAlgorithm::rsassa_pkcs1_v1_5_sha_256: {
      // DigestInfo of SHA-256, with the NULL parameters (RFC 8017 §9.2).
      Bytes info = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
      info.insert(info.end(), digest.begin(), digest.end());
      return token.sign(priv, CKM_RSA_PKCS, nullptr, 0, info);
    }
    default:
      throw Error(Code::usage,
                  fmt::format("the token does not sign with {}", signing_algorithm_name(a)));
  }
}

}  // namespace

void check_alias_name(std::string_view alias) {
  const bool prefixed = alias.substr(0, kAliasPrefix.size()) == kAliasPrefix;
  const std::string_view name = prefixed ? alias.substr(kAliasPrefix.size()) : std::string_view();
  const bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '/';
  });
  if (!prefixed || name.empty() || name.size() > 250 || !chars_ok) {
    throw Error(Code::usage, fmt::format("\"{}\" is not a valid alias", alias),
                "write alias/NAME, NAME of 1-250 letters, digits, '-', '_' or '/'");
  }
}

std::int64_t parse_days(std::string_view text, std::int64_t min, std::int64_t max,
                        std::string_view what) {
  std::string_view digits = text;
  if (!digits.empty() && digits.back() == 'd') digits.remove_suffix(1);
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || v < min ||
      v > max) {
    throw Error(Code::usage,
                fmt::format("{} \"{}\" is not between {}d and {}d", what, text, min, max),
                fmt::format("write a number of days such as {}d", min == 7 && max == 30 ? 30 : 90));
  }
  return v;
}

void check_days(std::int64_t days, std::int64_t min, std::int64_t max, std::string_view what) {
  if (days >= min && days <= max) return;
  throw Error(Code::usage,
              fmt::format("{} of {} days is not between {}d and {}d", what, days, min, max),
              fmt::format("give a number of days from {} to {}", min, max));
}

std::string KeyStore::token_label(std::string_view key_id, std::int64_t version) const {
  return fmt::format("{}{}:{}", kTokenKeyLabelPrefix, key_id, version);
}

std::optional<hsm::ObjectHandle> KeyStore::token_key(std::string_view key_id,
                                                     std::int64_t version) {
  const auto handles = vault_.token().find_keys(token_label(key_id, version), as_bytes(key_id));
  if (handles.size() > 1) {
    // Two private keys with one label: not something kmsctl makes (a rotation removes a stray of
    // an interrupted one first). Using either could encrypt under a key the vault does not know.
    throw Error(Code::integrity,
                fmt::format("the token holds {} key objects for key {} version {}, where kmsctl "
                            "made one: the token was altered",
                            handles.size(), key_id, version),
                "list them with `pkcs11-tool --login --list-objects --type secrkey` (for a private "
                "token, with SOFTHSM2_CONF=VAULT.token/softhsm2.conf) and restore VAULT.token/ "
                "from a backup");
  }
  if (handles.empty()) return std::nullopt;
  return handles.front();
}

void KeyStore::add_version(store::KeyRow& key, std::int64_t version, TimePoint now) {
  store::KeyVersionRow v{{key.id, version, format_rfc3339(now)}, std::nullopt};
  if (key.protection == Protection::hsm) {
    const std::string label = token_label(key.id, version);
    // A key object of this version already in the token was made by a rotation that was killed
    // before its commit (the version has no row: this transaction makes it, under the writer
    // lock). Left there, it would be a second key with the label that names this version.
    for (hsm::ObjectHandle stray : vault_.token().find_key_objects(label)) {
      vault_.token().destroy(stray);
    }
    if (key.spec == KeySpec::aes_256) {
      vault_.token().generate_aes256(label, as_bytes(key.id));
    } else {
      vault_.token().generate_key_pair(key_pair_params(key.spec, key.usage), label,
                                       as_bytes(key.id));
    }
    created_token_labels_.push_back(label);
  } else {
    const SecureBytes material = crypto::generate_key_material(key.spec);
    v.material = vault_.seal(material_ref(key.id, version), material.view());
  }
  store::key_version_insert(vault_.db(), v);
}

store::KeyRow KeyStore::create(const CreateSpec& spec, TimePoint now) {
  const KeySpecInfo& info = key_spec_info(spec.spec);
  const KeyUsage usage = spec.usage.value_or(info.default_usage);
  if ((info.usages & usage_bit(usage)) == 0) {
    std::string allowed;
    for (const KeyUsageInfo& u : key_usages()) {
      if ((info.usages & usage_bit(u.usage)) == 0) continue;
      allowed += fmt::format("{}{}", allowed.empty() ? "" : " or ", u.option);
    }
    throw Error(Code::usage,
                fmt::format("a {} key cannot have usage {}", info.name, key_usage_name(usage)),
                fmt::format("pass --usage {} (or leave it out)", allowed));
  }
  if (spec.protection == Protection::hsm) {
    if (const auto why = never_in_token(spec.spec)) {
      throw Error(Code::refused,
                  fmt::format("{} keys cannot be protected by the token: {}", info.name, *why),
                  Remedy::use_software_protection, {},
                  "the vault's master key, sealed by the token, then protects it");
    }
    for (const Mechanism& m : needed_mechanisms(spec.spec, usage)) {
      if (vault_.token().has_mechanism(m.type, m.flags)) continue;
      throw Error(Code::refused,
                  fmt::format("{} keys of usage {} cannot be protected by this token: the token "
                              "has no {}",
                              info.name, key_usage_name(usage), hsm::mechanism_name(m.type)),
                  Remedy::use_software_protection, {},
                  "the vault's master key, sealed by the token, then protects it");
    }
  }
  if (spec.rotation_days) {
    check_days(*spec.rotation_days, kMinRotationDays, kMaxRotationDays, "a rotation period");
  }
  const bool external = spec.origin == Origin::external;
  if (external && spec.protection == Protection::hsm) {
    throw Error(Code::refused,
                "keys of origin external are protected by software only: kmsctl does not put "
                "imported material into the token",
                Remedy::use_software_protection, {},
                "the vault's master key, sealed by the token, then protects it");
  }
  if (external && spec.rotation_days) {
    throw Error(Code::refused,
                "keys of origin external are never rotated automatically: their material is "
                "imported",
                "leave out --rotation-period; to change the material, create another key");
  }
  store::KeyRow k;
  k.id = crypto::uuid_v4();
  k.spec = spec.spec;
  k.usage = usage;
  k.description = spec.description;
  k.state = external ? KeyState::pending_import : KeyState::enabled;
  k.protection = spec.protection;
  k.created = k.last_rotated = format_rfc3339(now);
  k.rotation_period_days = spec.rotation_days;
  k.primary_version = 1;
  k.origin = spec.origin;
  store::key_insert(vault_.db(), k);
  if (!external) add_version(k, 1, now);
  if (spec.alias) {
    check_alias_name(*spec.alias);
    if (store::alias_target(vault_.db(), *spec.alias)) {
      throw Error(Code::refused, fmt::format("alias {} already exists", *spec.alias),
                  Remedy::choose_alias_name);
    }
    store::alias_insert(vault_.db(), *spec.alias, k.id, k.created);
  }
  for (const auto& [name, value] : spec.tags) store::tag_set(vault_.db(), k.id, name, value);
  return k;
}

store::KeyRow KeyStore::resolve(std::string_view ref) {
  std::string id(ref);
  if (ref.substr(0, kAliasPrefix.size()) == kAliasPrefix) {
    auto target = store::alias_target(vault_.db(), ref);
    if (!target) {
      throw Error(Code::not_found, fmt::format("no key has the alias {}", ref),
                  Remedy::list_aliases);
    }
    id = *target;
  }
  auto key = store::key_get(vault_.db(), id);
  if (!key) {
    throw Error(Code::not_found, fmt::format("no key {} in this vault", ref), Remedy::list_keys);
  }
  return *key;
}

std::optional<std::string> KeyStore::next_rotation(const store::KeyRow& key) const {
  if (!key.rotation_period_days || key.state != KeyState::enabled) return std::nullopt;
  return add_days(key.last_rotated, *key.rotation_period_days);
}

KeyInfo KeyStore::describe(const store::KeyRow& key) {
  KeyInfo info;
  info.key = key;
  info.aliases = store::aliases_of(vault_.db(), key.id);
  for (const store::KeyVersionRow& v : store::key_versions(vault_.db(), key.id)) {
    info.versions.push_back(v);
  }
  info.tags = store::tags_of(vault_.db(), key.id);
  info.next_rotation = next_rotation(key);
  return info;
}

void KeyStore::require_enabled(const store::KeyRow& key, std::string_view ref) {
  const std::string name = ref == key.id ? key.id : fmt::format("{} ({})", ref, key.id);
  if (key.material_expires && key.state != KeyState::pending_import &&
      *key.material_expires <= format_rfc3339(now())) {
    throw Error(
        Code::refused,
        fmt::format("key {}'s imported material expired on {}", name, *key.material_expires),
        Remedy::import_key_material, std::string(ref),
        "the same material only; `kmsctl maintain` deletes expired material");
  }
  if (key.state == KeyState::enabled) return;
  if (key.state == KeyState::pending_import) {
    throw Error(
        Code::refused,
        fmt::format("key {} has no key material: it is pending import (origin external)", name),
        Remedy::import_key_material, std::string(ref));
  }
  if (key.state == KeyState::disabled) {
    throw Error(Code::refused, fmt::format("key {} is disabled", name), Remedy::enable_key,
                std::string(ref));
  }
  throw Error(
      Code::refused,
      fmt::format("key {} is pending deletion (on {})", name, key.deletion_date.value_or("?")),
      Remedy::cancel_key_deletion, std::string(ref), "then enable it");
}

void KeyStore::require_usage(const store::KeyRow& key, std::string_view ref, KeyUsage usage,
                             std::string_view what) {
  if (key.usage == usage) return;
  const std::string name = ref == key.id ? key.id : fmt::format("{} ({})", ref, key.id);
  std::string fit;
  for (const KeySpecInfo& s : key_specs()) {
    if ((s.usages & usage_bit(usage)) == 0) continue;
    fit += fmt::format("{}{}", fit.empty() ? "" : ", ", s.name);
  }
  throw Error(Code::refused,
              fmt::format("key {} ({}, usage {}) does not {}", name, key_spec_name(key.spec),
                          key_usage_name(key.usage), what),
              Remedy::use_key_for_operation, std::string(ref),
              fmt::format("{} with a key of usage {} ({})", what, key_usage_name(usage), fit));
}

void KeyStore::enable(store::KeyRow& key) {
  if (key.state == KeyState::pending_import) require_enabled(key, key.id);
  if (key.state == KeyState::pending_deletion) {
    throw Error(Code::refused, fmt::format("key {} is pending deletion", key.id),
                Remedy::cancel_key_deletion_before_enable, key.id);
  }
  key.state = KeyState::enabled;
  store::key_update(vault_.db(), key);
}

void KeyStore::disable(store::KeyRow& key) {
  if (key.state == KeyState::pending_import) require_enabled(key, key.id);
  if (key.state == KeyState::pending_deletion) {
    throw Error(Code::refused, fmt::format("key {} is pending deletion", key.id),
                Remedy::cancel_key_deletion, key.id);
  }
  key.state = KeyState::disabled;
  store::key_update(vault_.db(), key);
}

namespace {
[[noreturn]] void refuse_rotation(const store::KeyRow& key) {
  throw Error(Code::refused,
              fmt::format("key {} has imported material (origin external): kmsctl does not "
                          "rotate it",
                          key.id),
              "to change the material, create another key with --origin external and import "
              "the new material into it");
}
}  // namespace

std::int64_t KeyStore::rotate(store::KeyRow& key, TimePoint now) {
  if (key.origin == Origin::external) refuse_rotation(key);
  if (key.state == KeyState::pending_deletion) require_enabled(key, key.id);
  const std::int64_t version =
      std::max(store::key_version_max(vault_.db(), key.id), key.highest_lost_version) + 1;
  add_version(key, version, now);
  key.primary_version = version;
  key.last_rotated = format_rfc3339(now);
  store::key_update(vault_.db(), key);
  return version;
}

void KeyStore::set_rotation(store::KeyRow& key, std::optional<std::int64_t> days) {
  if (days && key.origin == Origin::external) refuse_rotation(key);
  if (days) check_days(*days, kMinRotationDays, kMaxRotationDays, "a rotation period");
  key.rotation_period_days = days;
  store::key_update(vault_.db(), key);
}

std::string KeyStore::schedule_deletion(store::KeyRow& key, std::int64_t days, TimePoint now) {
  check_days(days, kMinPendingDays, kMaxPendingDays, "a deletion waiting period");
  if (key.state == KeyState::pending_deletion) {
    throw Error(Code::refused,
                fmt::format("key {} is already pending deletion (on {})", key.id,
                            key.deletion_date.value_or("?")),
                Remedy::cancel_existing_key_deletion, key.id);
  }
  key.state = KeyState::pending_deletion;
  key.deletion_date = format_rfc3339(now + std::chrono::days(days));
  store::key_update(vault_.db(), key);
  return *key.deletion_date;
}

void KeyStore::cancel_deletion(store::KeyRow& key) {
  if (key.state != KeyState::pending_deletion) {
    throw Error(Code::refused, fmt::format("key {} is not pending deletion", key.id),
                "nothing to cancel");
  }
  // An imported key whose material is gone (never imported, or expired) goes back to waiting
  // for it.
  key.state = key.origin == Origin::external && store::key_versions(vault_.db(), key.id).empty()
                  ? KeyState::pending_import
                  : KeyState::disabled;
  key.deletion_date.reset();
  store::key_update(vault_.db(), key);
}

std::vector<std::string> KeyStore::erase(const store::KeyRow& key) {
  std::vector<std::string> labels;
  if (key.protection == Protection::hsm) {
    for (const auto& v : store::key_versions(vault_.db(), key.id)) {
      labels.push_back(token_label(key.id, v.version));
    }
  }
  store::key_delete(vault_.db(), key.id);
  return labels;
}

void KeyStore::destroy_token_keys(const std::vector<std::string>& labels) noexcept {
  for (const std::string& label : labels) {
    try {
      for (hsm::ObjectHandle h : vault_.token().find_key_objects(label)) {
        vault_.token().destroy(h);
      }
    } catch (...) {
      // A key left in the token is unreachable (its rows are gone); nothing else to do here.
    }
  }
}

Bytes KeyStore::encrypt(const store::KeyRow& key, ByteView plaintext, const Context& context) {
  if (!spec_encrypts_with(key.spec, EncryptionAlgorithm::symmetric_default)) {
    require_usage(key, key.id, KeyUsage::encrypt, "encrypt");
    throw Error(Code::refused,
                fmt::format("key {} ({}) encrypts only with {}, not into a kmsctl ciphertext "
                            "(encrypt, data keys, files, secrets)",
                            key.id, key_spec_name(key.spec), spec_algorithms(key.spec, key.usage)),
                Remedy::use_key_for_operation, key.id,
                "use a symmetric key (AES_256) for envelope encryption");
  }
  const blob::Header h{key.id, static_cast<std::uint32_t>(key.primary_version)};
  const Bytes header = blob::encode_header(h);
  const Bytes aad = blob::aad(header, context);
  const Bytes nonce = crypto::random_bytes(blob::kNonceSize);
  Bytes sealed;
  if (key.protection == Protection::hsm) {
    const auto handle = token_key(key.id, key.primary_version);
    if (!handle) {
      throw Error(
          Code::unavailable,
          fmt::format("the token holds no key for {} version {}", key.id, key.primary_version),
          "check that the vault's token is the one the key was created in");
    }
    sealed = vault_.token().gcm_encrypt(*handle, nonce, aad, plaintext);
  } else {
    const auto v = store::key_version_get(vault_.db(), key.id, key.primary_version);
    if (!v || !v->material) {
      throw Error(Code::integrity, fmt::format("key {} has no material for version {}", key.id,
                                               key.primary_version));
    }
    const SecureBytes material = vault_.open_sealed(material_ref(key.id, v->version), *v->material);
    sealed = seal_with(key.spec, material.view(), nonce, aad, plaintext);
  }
  Bytes out = header;
  out.insert(out.end(), nonce.begin(), nonce.end());
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

std::optional<std::string> KeyStore::blob_key_id(ByteView b) {
  const auto p = blob::parse(b);
  if (!p) return std::nullopt;
  return p->header.key_id;
}

Decrypted KeyStore::decrypt(ByteView b, const Context& context) {
  const auto p = blob::parse(b);
  if (!p) {
    throw Error(Code::integrity, "the input is not a kmsctl ciphertext blob (or it is damaged)",
                Remedy::pass_ciphertext);
  }
  auto key = store::key_get(vault_.db(), p->header.key_id);
  if (!key) {
    throw Error(Code::not_found,
                fmt::format("this vault has no key {}: the key was deleted, this vault was "
                            "restored from an older backup or is a stale copy, or the data was "
                            "made by another vault",
                            p->header.key_id),
                "decrypt it with the vault (or vault copy) that has the key; a deleted key "
                "decrypts nothing");
  }
  require_enabled(*key, key->id);
  if (!spec_encrypts_with(key->spec, EncryptionAlgorithm::symmetric_default)) {
    throw Error(Code::integrity,
                fmt::format("the ciphertext names key {}, a {} key, which makes no kmsctl "
                            "ciphertext: it was altered",
                            key->id, key_spec_name(key->spec)),
                Remedy::pass_ciphertext);
  }
  // A version the vault does not have is told apart from one that does not open the data: it
  // was made after the backup this vault was restored from (or in another copy of the vault).
  // Versions are never removed one by one, so a missing one below the newest was deleted from
  // the vault file, unless a restore dropped it (its number is never made again).
  const std::int64_t version = p->header.key_version;
  const auto v = store::key_version_get(vault_.db(), key->id, version);
  if (!v && version > key->highest_lost_version &&
      version < store::key_version_max(vault_.db(), key->id)) {
    throw Error(Code::integrity,
                fmt::format("key {} has no version {} but has later ones: the vault file was "
                            "altered",
                            key->id, version),
                Remedy::verify_and_restore_vault);
  }
  if (!v) {
    const std::vector<std::string> aliases = store::aliases_of(vault_.db(), key->id);
    std::string name = key->id;
    for (std::size_t i = 0; i < aliases.size(); ++i) {
      name += (i == 0 ? " (" : ", ") + aliases[i] + (i + 1 == aliases.size() ? ")" : "");
    }
    throw Error(Code::not_found,
                fmt::format("this vault has no version {} of key {}: it was restored from an "
                            "older backup, or this is a stale copy of the vault",
                            version, name),
                Remedy::list_restores, {},
                fmt::format("restore the vault copy that has version {} of the key, or decrypt "
                            "it with the vault that made the data",
                            version));
  }
  const auto failed = [&] {
    return Error(Code::integrity,
                 fmt::format("the ciphertext does not open with key {} version {}: it was altered, "
                             "or the encryption context differs",
                             key->id, version),
                 Remedy::pass_encryption_context);
  };
  const Bytes aad = blob::aad(p->header_bytes, context);
  std::optional<SecureBytes> pt;
  if (key->protection == Protection::hsm) {
    const auto handle = token_key(key->id, version);
    if (!handle) {
      throw Error(
          Code::unavailable,
          fmt::format("the token holds no key object for key {} version {}", key->id, version),
          "check that the vault's token is the one the key version was made in (a token "
          "directory put back from an older copy lacks the newer versions)");
    }
    pt = vault_.token().gcm_decrypt(*handle, p->nonce, aad, p->sealed);
  } else {
    if (!v->material) {
      throw Error(Code::integrity,
                  fmt::format("key {} has no material for version {}", key->id, version),
                  Remedy::verify_and_restore_backup, {}, "the vault file was altered");
    }
    const SecureBytes material =
        vault_.open_sealed(material_ref(key->id, v->version), *v->material);
    pt = open_with(key->spec, material.view(), p->nonce, aad, p->sealed);
  }
  if (!pt) throw failed();
  return {std::move(*pt), key->id, p->header.key_version};
}

SecureBytes KeyStore::material(const store::KeyRow& key, std::int64_t version) {
  const auto v = store::key_version_get(vault_.db(), key.id, version);
  if (!v) {
    throw Error(Code::not_found, fmt::format("key {} has no version {}", key.id, version),
                Remedy::list_keys);
  }
  if (!v->material) {
    throw Error(Code::integrity,
                fmt::format("key {} has no material for version {}", key.id, version),
                Remedy::verify_and_restore_backup, {}, "the vault file was altered");
  }
  return vault_.open_sealed(material_ref(key.id, version), *v->material);
}

std::vector<std::int64_t> KeyStore::versions_to_try(const store::KeyRow& key,
                                                    std::optional<std::int64_t> version) {
  if (version) return {*version};
  std::vector<std::int64_t> out{key.primary_version};
  const auto all = store::key_versions(vault_.db(), key.id);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->version != key.primary_version) out.push_back(it->version);
  }
  return out;
}

Bytes KeyStore::public_key(const store::KeyRow& key, std::int64_t version) {
  if (!key_spec_info(key.spec).asymmetric) {
    throw Error(
        Code::refused,
        fmt::format("key {} is a {} key, which has no public key", key.id, key_spec_name(key.spec)),
        Remedy::use_key_for_operation, key.id,
        "public keys belong to RSA, EC, Ed25519, X25519 and SM2 keys");
  }
  if (key.protection == Protection::hsm) return token_public_key(key, version);
  return crypto::public_key_of(material(key, version).view());
}

hsm::ObjectHandle KeyStore::token_pair_object(const store::KeyRow& key, std::int64_t version,
                                              bool private_key) {
  if (!store::key_version_get(vault_.db(), key.id, version)) {
    throw Error(Code::not_found, fmt::format("key {} has no version {}", key.id, version),
                Remedy::list_keys);
  }
  const std::string label = token_label(key.id, version);
  const auto handles = private_key ? vault_.token().find_private_keys(label, as_bytes(key.id))
                                   : vault_.token().find_public_keys(label, as_bytes(key.id));
  const char* what = private_key ? "private" : "public";
  if (handles.size() > 1) {
    throw Error(Code::integrity,
                fmt::format("the token holds {} {} key objects for key {} version {}, where "
                            "kmsctl made one: the token was altered",
                            handles.size(), what, key.id, version),
                fmt::format("list them with `pkcs11-tool --login --list-objects --type {}` (for a "
                            "private token, with SOFTHSM2_CONF=VAULT.token/softhsm2.conf) and "
                            "restore VAULT.token/ from a backup",
                            private_key ? "privkey" : "pubkey"));
  }
  if (handles.empty()) {
    throw Error(Code::unavailable,
                fmt::format("the token holds no {} key object for key {} version {}", what, key.id,
                            version),
                "check that the vault's token is the one the key version was made in (a token "
                "directory put back from an older copy lacks the newer versions)");
  }
  return handles.front();
}

Bytes KeyStore::token_public_key(const store::KeyRow& key, std::int64_t version) {
  Bytes spki = vault_.token().public_key_info(token_pair_object(key, version, false));
  if (crypto::public_key_spec(spki) != key.spec) {
    throw Error(Code::integrity,
                fmt::format("the token's public key for key {} version {} is not a {} key: the "
                            "token was altered",
                            key.id, version, key_spec_name(key.spec)),
                "restore VAULT.token/ from a backup");
  }
  return spki;
}

namespace {

void check_signing(const store::KeyRow& key, SigningAlgorithm a) {
  if (spec_signs_with(key.spec, a)) return;
  throw Error(Code::usage,
              fmt::format("key {} ({}) does not sign with {}", key.id, key_spec_name(key.spec),
                          signing_algorithm_name(a)),
              Remedy::choose_algorithm, key.id, spec_algorithms(key.spec, KeyUsage::sign));
}

void check_encryption(const store::KeyRow& key, EncryptionAlgorithm a) {
  if (spec_encrypts_with(key.spec, a)) return;
  throw Error(Code::usage,
              fmt::format("key {} ({}) does not encrypt with {}", key.id, key_spec_name(key.spec),
                          encryption_algorithm_name(a)),
              Remedy::choose_algorithm, key.id, spec_algorithms(key.spec, KeyUsage::encrypt));
}

MacAlgorithm mac_algorithm(KeySpec spec) {
  return spec == KeySpec::hmac_sha512 ? MacAlgorithm::hmac_sha_512 : MacAlgorithm::hmac_sha_256;
}

}  // namespace

Signature KeyStore::sign(const store::KeyRow& key, SigningAlgorithm a, ByteView input,
                         bool is_digest) {
  require_usage(key, key.id, KeyUsage::sign, "sign");
  check_signing(key, a);
  if (key.protection == Protection::hsm) {
    const hsm::ObjectHandle priv = token_pair_object(key, key.primary_version, true);
    return {key.id, key.primary_version, token_sign(vault_.token(), priv, a, input, is_digest)};
  }
  const SecureBytes priv = material(key, key.primary_version);
  return {key.id, key.primary_version, crypto::sign(priv.view(), a, input, is_digest)};
}

Verified KeyStore::verify(const store::KeyRow& key, SigningAlgorithm a, ByteView input,
                          bool is_digest, ByteView signature, std::optional<std::int64_t> version) {
  require_usage(key, key.id, KeyUsage::sign, "verify signatures");
  check_signing(key, a);
  for (std::int64_t v : versions_to_try(key, version)) {
    if (crypto::verify(public_key(key, v), a, input, is_digest, signature)) {
      return {key.id, v, true};
    }
  }
  return {key.id, 0, false};
}

Bytes KeyStore::encrypt_to(const store::KeyRow& key, EncryptionAlgorithm a, ByteView plaintext) {
  require_usage(key, key.id, KeyUsage::encrypt, "encrypt");
  check_encryption(key, a);
  return crypto::public_encrypt(public_key(key, key.primary_version), a, plaintext);
}

Decrypted KeyStore::decrypt_with(const store::KeyRow& key, EncryptionAlgorithm a,
                                 ByteView ciphertext, std::optional<std::int64_t> version) {
  require_usage(key, key.id, KeyUsage::encrypt, "decrypt");
  check_encryption(key, a);
  for (std::int64_t v : versions_to_try(key, version)) {
    if (key.protection == Protection::hsm) {
      const hsm::ObjectHandle priv = token_pair_object(key, v, true);
      if (auto pt = vault_.token().rsa_oaep_decrypt(priv, ciphertext)) {
        return {std::move(*pt), key.id, static_cast<std::uint32_t>(v)};
      }
      continue;
    }
    const SecureBytes priv = material(key, v);
    if (auto pt = crypto::private_decrypt(priv.view(), a, ciphertext)) {
      return {std::move(*pt), key.id, static_cast<std::uint32_t>(v)};
    }
  }
  throw Error(Code::integrity,
              fmt::format("the ciphertext does not decrypt with key {}{}: it was altered, or made "
                          "for another key",
                          key.id, version ? fmt::format(" version {}", *version) : ""),
              Remedy::pass_ciphertext);
}

std::optional<std::pair<store::KeyRow, std::int64_t>> KeyStore::find_by_public_key(
    ByteView fingerprint, std::span<const KeySpec> specs) {
  std::optional<std::string> after;
  for (;;) {
    const std::vector<store::KeyRow> page =
        store::key_list(vault_.db(), std::nullopt, after, kMaxListLimit);
    for (const store::KeyRow& key : page) {
      if (std::find(specs.begin(), specs.end(), key.spec) == specs.end()) continue;
      for (const store::KeyVersionRow& v : store::key_versions(vault_.db(), key.id)) {
        const crypto::Digest d = crypto::sha256(public_key(key, v.version));
        if (crypto::equal(ByteView(d.data(), d.size()), fingerprint)) {
          return std::pair{key, v.version};
        }
      }
    }
    if (page.size() < static_cast<std::size_t>(kMaxListLimit)) return std::nullopt;
    after = page.back().id;
  }
}

std::optional<SecureBytes> KeyStore::agree(const store::KeyRow& key, std::int64_t version,
                                           ByteView peer_public) {
  require_usage(key, key.id, KeyUsage::agree, "agree keys");
  return crypto::x25519_shared(material(key, version).view(), peer_public);
}

Signature KeyStore::mac(const store::KeyRow& key, ByteView message) {
  require_usage(key, key.id, KeyUsage::mac, "make MACs");
  const SecureBytes k = material(key, key.primary_version);
  return {key.id, key.primary_version, crypto::hmac(mac_algorithm(key.spec), k.view(), message)};
}

Verified KeyStore::verify_mac(const store::KeyRow& key, ByteView message, ByteView tag) {
  require_usage(key, key.id, KeyUsage::mac, "verify MACs");
  for (std::int64_t v : versions_to_try(key, std::nullopt)) {
    const SecureBytes k = material(key, v);
    if (crypto::equal(crypto::hmac(mac_algorithm(key.spec), k.view(), message), tag)) {
      return {key.id, v, true};
    }
  }
  return {key.id, 0, false};
}

}  // namespace kms::keys
