// Keys of origin external (docs/KEYS.md, "Bring your own key"; docs/FORMAT.md §12.5): the
// parameters to wrap material for (an RSA-3072 wrapping key pair per call, its private key
// sealed in the vault, and an import token that names it), the import of wrapped material as
// the key's version 1, and the removal of material whose expiry passed.
#include <fmt/format.h>

#include "keys/key_store.hpp"
#include "kms/asymmetric.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/grants.hpp"

namespace kms::keys {
namespace {

constexpr std::string_view kParamsTable = "key_import_params";
constexpr std::string_view kTokenPrefix = "kmsctl-import-token-v1.";
constexpr std::size_t kTokenSecretSize = 32;
constexpr std::size_t kWrappingKeyBytes = 384;  // RSA-3072: one OAEP block
// The longest expiry `key import --expires` takes (AWS KMS has no limit; ten years, as grants).
constexpr std::chrono::hours kMaxMaterialLifetime{24 * 3650};

RecordRef params_ref(std::string_view key_id, std::string_view token_id) {
  return {std::string(kParamsTable), fmt::format("{}/{}", key_id, token_id), 0};
}

std::string token_id_of(ByteView secret) { return crypto::to_hex(crypto::sha256(secret)); }

struct ParsedToken {
  std::string key_id;
  Bytes secret;
};

// "kmsctl-import-token-v1." key id "." 64 hex digits, white space around it ignored.
ParsedToken parse_token(ByteView token) {
  std::string_view t = as_chars(token);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  const auto bad = [] {
    return Error(Code::usage, "the --import-token file does not hold a kmsctl import token",
                 "pass the file `kmsctl key import-params` wrote (import-token), unchanged");
  };
  if (t.substr(0, kTokenPrefix.size()) != kTokenPrefix) throw bad();
  t.remove_prefix(kTokenPrefix.size());
  const auto dot = t.find('.');
  if (dot == std::string_view::npos) throw bad();
  ParsedToken p;
  p.key_id = std::string(t.substr(0, dot));
  auto secret = crypto::from_hex(t.substr(dot + 1));
  if (!secret || secret->size() != kTokenSecretSize || p.key_id.size() != 36) throw bad();
  p.secret = std::move(*secret);
  return p;
}

std::string key_name(const store::KeyRow& key, std::string_view ref) {
  return ref == key.id ? key.id : fmt::format("{} ({})", ref, key.id);
}

void require_external(const store::KeyRow& key, std::string_view ref, std::string_view what) {
  if (key.origin == Origin::external) return;
  throw Error(Code::refused,
              fmt::format("key {} was made by the vault (origin kms): it does not {}",
                          key_name(key, ref), what),
              Remedy::use_key_for_operation, std::string(ref),
              "import material into a key created with `--origin external`");
}

// The material as the key's spec takes it (the spec's own check: sizes, a private key of the
// spec, re-encoded as the vault stores it). Code::usage naming what does not fit; never the bytes.
SecureBytes material_for(const store::KeyRow& key, SecureBytes raw) {
  const KeySpecInfo& info = key_spec_info(key.spec);
  if (!info.asymmetric) {
    std::size_t min = 32, max = 32;
    if (key.spec == KeySpec::hmac_sha256) min = kMinImportedHmacKey, max = 64;
    if (key.spec == KeySpec::hmac_sha512) min = kMinImportedHmacKey, max = 128;
    if (raw.size() >= min && raw.size() <= max) return raw;
    throw Error(
        Code::usage,
        fmt::format(
            "the imported material has {} bytes; a {} key takes {}", raw.size(), info.name,
            min == max ? fmt::format("{} bytes", min) : fmt::format("{} to {} bytes", min, max)),
        "wrap the key's own bytes (for AES_256 and SM4, 32 bytes; docs/KEYS.md)");
  }
  std::optional<crypto::ImportedPrivateKey> k;
  try {
    k = crypto::import_private_key(raw.view());
  } catch (const Error&) {
    k.reset();
  }
  if (!k) {
    throw Error(Code::usage,
                fmt::format("the imported material is not a valid private key (PKCS #8 DER) for "
                            "the {} key {}",
                            info.name, key.id),
                "wrap the private key as PKCS #8 DER (`openssl pkcs8 -topk8 -nocrypt -outform "
                "DER`) with RSA_AES_KEY_WRAP_SHA_256");
  }
  if (k->spec != key.spec) {
    throw Error(
        Code::usage,
        fmt::format("the imported private key is {}, and key {} is {}",
                    k->spec ? fmt::format("of spec {}", key_spec_name(*k->spec))
                            : std::string("of a type, curve or size kmsctl has no spec for"),
                    key.id, info.name),
        fmt::format("import a {} private key, or create a key of the material's spec", info.name));
  }
  return std::move(k->pkcs8);
}

}  // namespace

std::string parse_material_expiry(const std::string& text, TimePoint now) {
  const TimePoint latest =
      now + std::chrono::duration_cast<std::chrono::milliseconds>(kMaxMaterialLifetime);
  TimePoint t;
  if (text.find('-') != std::string::npos) {
    const auto parsed = parse_rfc3339(text);
    if (!parsed) {
      throw Error(Code::usage,
                  fmt::format("--expires {:?} is neither a duration nor a date or time", text),
                  "give a duration (30d, 12h), a date (2030-01-31) or an RFC 3339 time "
                  "(2030-01-31T00:00:00Z)");
    }
    t = *parsed;
  } else {
    t = now + std::chrono::duration_cast<std::chrono::milliseconds>(parse_duration(
                  text, "--expires",
                  std::chrono::duration_cast<std::chrono::seconds>(kMaxMaterialLifetime)));
  }
  if (t <= now || t > latest) {
    throw Error(Code::usage,
                fmt::format("material expiry {} is not in the next ten years", format_rfc3339(t)),
                "give a time after now and at most ten years away");
  }
  return format_rfc3339(t);
}

ImportParams KeyStore::import_params(const store::KeyRow& key, std::string_view ref,
                                     WrappingAlgorithm algorithm, TimePoint now) {
  require_external(key, ref, "take imported material");
  if (key.state == KeyState::pending_deletion) require_enabled(key, ref);
  const SecureBytes wrapping = crypto::generate_key_material(KeySpec::rsa_3072);
  const SecureBytes secret = crypto::random_secret(kTokenSecretSize);
  store::ImportParamsRow row;
  row.token_id = token_id_of(secret.view());
  row.key_id = key.id;
  row.wrapping_algorithm = algorithm;
  row.created = format_rfc3339(now);
  row.expires = format_rfc3339(now + std::chrono::hours(kImportParamsHours));
  row.private_key = vault_.seal(params_ref(key.id, row.token_id), wrapping.view());
  store::import_params_insert(vault_.db(), row);
  ImportParams out;
  out.key_id = key.id;
  out.wrapping_algorithm = algorithm;
  out.public_key = crypto::public_key_of(wrapping.view());
  const std::string token =
      fmt::format("{}{}.{}", kTokenPrefix, key.id, crypto::to_hex(secret.view()));
  out.import_token.assign(token.begin(), token.end());
  out.expires = row.expires;
  return out;
}

ImportOutcome KeyStore::import_material(store::KeyRow& key, std::string_view ref, ByteView wrapped,
                                        ByteView token, const std::optional<std::string>& expires,
                                        TimePoint now) {
  require_external(key, ref, "take imported material");
  if (key.state == KeyState::pending_deletion) require_enabled(key, ref);
  const std::string at = format_rfc3339(now);
  if (expires && *expires <= at) {
    throw Error(Code::usage, fmt::format("material expiry {} is not after now", *expires),
                "give a time after now");
  }
  const ParsedToken t = parse_token(token);
  if (t.key_id != key.id) {
    throw Error(
        Code::refused,
        fmt::format("the import token is for key {}, not for key {}", t.key_id, key_name(key, ref)),
        Remedy::get_import_params, std::string(ref), "and wrap the material with its wrapping key");
  }
  const std::string token_id = token_id_of(t.secret);
  const auto row = store::import_params_get(vault_.db(), token_id);
  if (!row || row->key_id != key.id) {
    throw Error(Code::refused,
                fmt::format("the import token for key {} is not known to this vault (expired "
                            "parameters are removed by `maintain`, or it is another vault's)",
                            key.id),
                Remedy::get_import_params, std::string(ref));
  }
  if (row->used_at || !row->private_key) {
    throw Error(Code::refused,
                fmt::format("the import token for key {} was already used (on {}): a token "
                            "serves one import",
                            key.id, row->used_at.value_or("?")),
                Remedy::get_import_params, std::string(ref));
  }
  if (row->expires <= at) {
    throw Error(Code::refused,
                fmt::format("the import token for key {} expired on {}", key.id, row->expires),
                Remedy::get_import_params, std::string(ref));
  }
  const SecureBytes priv = vault_.open_sealed(params_ref(key.id, token_id), *row->private_key);
  const auto altered = [&] {
    return Error(Code::integrity,
                 fmt::format("the wrapped material does not unwrap with the wrapping key of this "
                             "import token ({}): it was altered, or wrapped for other parameters",
                             wrapping_algorithm_name(row->wrapping_algorithm)),
                 Remedy::get_import_params, std::string(ref),
                 "wrap the material with the wrapping-key.pem written with this token");
  };
  std::optional<SecureBytes> raw;
  if (row->wrapping_algorithm == WrappingAlgorithm::rsaes_oaep_sha_256) {
    raw = crypto::private_decrypt(priv.view(), EncryptionAlgorithm::rsaes_oaep_sha_256, wrapped);
  } else {
    if (wrapped.size() <= kWrappingKeyBytes) throw altered();
    const auto kek = crypto::private_decrypt(priv.view(), EncryptionAlgorithm::rsaes_oaep_sha_256,
                                             wrapped.first(kWrappingKeyBytes));
    if (!kek || kek->size() != crypto::kAes256KeySize) throw altered();
    raw = crypto::aes_key_unwrap_pad(kek->view(), wrapped.subspan(kWrappingKeyBytes));
  }
  if (!raw) throw altered();
  const SecureBytes material = material_for(key, std::move(*raw));
  const Bytes commitment = vault_.material_commitment(key.id, material.view());
  if (key.material_commitment && !crypto::equal(*key.material_commitment, commitment)) {
    throw Error(Code::refused,
                fmt::format("key {} takes only the material imported into it before: this is "
                            "other material",
                            key_name(key, ref)),
                Remedy::use_key_for_operation, std::string(ref),
                "import the same material, or create another key (origin external) for this one");
  }
  ImportOutcome out;
  out.wrapping_algorithm = row->wrapping_algorithm;
  out.reimport = key.material_commitment.has_value();
  const bool present = !store::key_versions(vault_.db(), key.id).empty();
  if (!present) {
    store::KeyVersionRow v{{key.id, 1, at}, std::nullopt};
    v.material = vault_.seal({"key_versions", key.id, 1}, material.view());
    store::key_version_insert(vault_.db(), v);
  }
  out.restored = !present;
  if (key.state == KeyState::pending_import) key.state = KeyState::enabled;
  key.primary_version = 1;
  key.material_expires = expires;
  key.material_commitment = commitment;
  store::key_update(vault_.db(), key);
  store::import_params_use(vault_.db(), token_id, at);
  return out;
}

void KeyStore::expire_material(store::KeyRow& key) {
  store::key_versions_delete(vault_.db(), key.id);
  if (key.state != KeyState::pending_deletion) key.state = KeyState::pending_import;
  key.material_expires.reset();
  store::key_update(vault_.db(), key);
}

}  // namespace kms::keys
