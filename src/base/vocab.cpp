#include "kms/vocab.hpp"

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>

#include "kms/key_specs.hpp"

namespace kms {
namespace {

constexpr std::array kKeyStates{
    KeyStateInfo{KeyState::enabled, "Enabled", "enabled", "the key encrypts and decrypts"},
    KeyStateInfo{KeyState::disabled, "Disabled", "disabled",
                 "the key refuses every cryptographic operation until enabled"},
    KeyStateInfo{KeyState::pending_deletion, "PendingDeletion", "pending-deletion",
                 "the key is scheduled for deletion and refuses every cryptographic operation"},
    KeyStateInfo{KeyState::pending_import, "PendingImport", "pending-import",
                 "the key (origin external) has no material: import it with `key import`"},
};

constexpr std::array kOrigins{
    OriginInfo{Origin::kms, "kms", "the vault made the key's material"},
    OriginInfo{Origin::external, "external",
               "the key's material was imported (`key import`); it is never rotated"},
};

constexpr std::array kWrappingAlgorithms{
    WrappingAlgorithmInfo{WrappingAlgorithm::rsaes_oaep_sha_256, "RSAES_OAEP_SHA_256",
                          "RSA-OAEP (SHA-256, MGF1-SHA-256) of the material itself: symmetric and "
                          "HMAC keys"},
    WrappingAlgorithmInfo{WrappingAlgorithm::rsa_aes_key_wrap_sha_256, "RSA_AES_KEY_WRAP_SHA_256",
                          "a fresh AES-256 key by RSA-OAEP (SHA-256), then the material by AES "
                          "key wrap with padding (RFC 5649): private keys as PKCS #8"},
};

constexpr std::array kProtections{
    ProtectionInfo{Protection::software, "software",
                   "the key's material is sealed in the vault under the master key"},
    ProtectionInfo{Protection::hsm, "hsm",
                   "the key is generated and used in the token and never leaves it"},
};

constexpr std::array kSecretStages{
    SecretStageInfo{SecretStage::current, "current", "the version reads return by default"},
    SecretStageInfo{SecretStage::previous, "previous", "the version current before the newest"},
    SecretStageInfo{SecretStage::pending, "pending",
                    "the new version while a rotation is in progress"},
};

constexpr std::array kRotationStatuses{
    RotationStatusInfo{RotationStatus::never, "never", "the secret was never rotated"},
    RotationStatusInfo{RotationStatus::in_progress, "in_progress",
                       "a rotation made its pending version and has not finished"},
    RotationStatusInfo{RotationStatus::succeeded, "succeeded", "the last rotation finished"},
    RotationStatusInfo{RotationStatus::failed, "failed", "the last rotation failed"},
};

// Whether every row's enum value is its index (and so the table is in the enum's order).
template <auto Member, class Table>
constexpr bool in_enum_order(const Table& t) {
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (static_cast<std::size_t>(t[i].*Member) != i) return false;
  }
  return true;
}
static_assert(in_enum_order<&KeyStateInfo::state>(kKeyStates),
              "kKeyStates must list every KeyState in the enum's order");
static_assert(static_cast<std::size_t>(KeyState::pending_import) + 1 == kKeyStates.size(),
              "every KeyState needs its row in kKeyStates");
static_assert(in_enum_order<&ProtectionInfo::protection>(kProtections),
              "kProtections must list every Protection in the enum's order");
static_assert(static_cast<std::size_t>(Protection::hsm) + 1 == kProtections.size(),
              "every Protection needs its row in kProtections");
static_assert(in_enum_order<&OriginInfo::origin>(kOrigins),
              "kOrigins must list every Origin in the enum's order");
static_assert(static_cast<std::size_t>(Origin::external) + 1 == kOrigins.size(),
              "every Origin needs its row in kOrigins");
static_assert(in_enum_order<&WrappingAlgorithmInfo::algorithm>(kWrappingAlgorithms),
              "kWrappingAlgorithms must list every WrappingAlgorithm in the enum's order");
static_assert(static_cast<std::size_t>(WrappingAlgorithm::rsa_aes_key_wrap_sha_256) + 1 ==
                  kWrappingAlgorithms.size(),
              "every WrappingAlgorithm needs its row in kWrappingAlgorithms");
static_assert(in_enum_order<&SecretStageInfo::stage>(kSecretStages),
              "kSecretStages must list every SecretStage in the enum's order");
static_assert(static_cast<std::size_t>(SecretStage::pending) + 1 == kSecretStages.size(),
              "every SecretStage needs its row in kSecretStages");
static_assert(in_enum_order<&RotationStatusInfo::status>(kRotationStatuses),
              "kRotationStatuses must list every RotationStatus in the enum's order");
static_assert(static_cast<std::size_t>(RotationStatus::failed) + 1 == kRotationStatuses.size(),
              "every RotationStatus needs its row in kRotationStatuses");

// The name of an enum value; "?" for a value outside the enum (a cast, never a name to store).
template <class Table, class E>
std::string_view name_in(const Table& t, E e) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < t.size() ? t[i].name : std::string_view("?");
}

// The enum value a name spells (exactly: names are case-sensitive).
template <auto Member, class Table>
auto parse_in(const Table& t, std::string_view text) noexcept
    -> std::optional<std::remove_cvref_t<decltype(t[0].*Member)>> {
  for (const auto& row : t) {
    if (row.name == text) return row.*Member;
  }
  return std::nullopt;
}

constexpr UsageSet kEncrypt = usage_bit(KeyUsage::encrypt), kSign = usage_bit(KeyUsage::sign),
                   kMac = usage_bit(KeyUsage::mac), kAgree = usage_bit(KeyUsage::agree);

constexpr std::array kKeySpecs{
    KeySpecInfo{KeySpec::aes_256, "AES_256", kEncrypt, KeyUsage::encrypt, false, 0,
                "AES-256-GCM: encrypt, decrypt, data keys, files, secrets"},
    KeySpecInfo{KeySpec::rsa_2048, "RSA_2048", kEncrypt | kSign, KeyUsage::encrypt, true, 190,
                "RSA 2048-bit: OAEP encryption or PSS/PKCS#1 v1.5 signatures"},
    KeySpecInfo{KeySpec::rsa_3072, "RSA_3072", kEncrypt | kSign, KeyUsage::encrypt, true, 318,
                "RSA 3072-bit: OAEP encryption or PSS/PKCS#1 v1.5 signatures"},
    KeySpecInfo{KeySpec::rsa_4096, "RSA_4096", kEncrypt | kSign, KeyUsage::encrypt, true, 446,
                "RSA 4096-bit: OAEP encryption or PSS/PKCS#1 v1.5 signatures"},
    KeySpecInfo{KeySpec::ec_p256, "EC_P256", kSign, KeyUsage::sign, true, 0,
                "NIST P-256: ECDSA with SHA-256"},
    KeySpecInfo{KeySpec::ec_p384, "EC_P384", kSign, KeyUsage::sign, true, 0,
                "NIST P-384: ECDSA with SHA-384"},
    KeySpecInfo{KeySpec::ec_secp256k1, "EC_SECP256K1", kSign, KeyUsage::sign, true, 0,
                "secp256k1: ECDSA with SHA-256"},
    KeySpecInfo{KeySpec::ed25519, "ED25519", kSign, KeyUsage::sign, true, 0,
                "Ed25519 (pure): signatures of raw messages"},
    KeySpecInfo{KeySpec::x25519, "X25519", kAgree, KeyUsage::agree, true, 0,
                "X25519: files encrypted to its public key (`file encrypt --recipient`) open in "
                "the vault"},
    KeySpecInfo{KeySpec::ec_sm2, "EC_SM2", kEncrypt | kSign, KeyUsage::encrypt, true, 1024,
                "SM2 (GB/T 32918): encryption, or SM2DSA signatures with SM3"},
    KeySpecInfo{KeySpec::sm4, "SM4", kEncrypt, KeyUsage::encrypt, false, 0,
                "SM4 (GB/T 32907): encrypt and decrypt (SM4-CTR with HMAC-SM3)"},
    KeySpecInfo{KeySpec::hmac_sha256, "HMAC_SHA256", kMac, KeyUsage::mac, false, 0,
                "HMAC-SHA256 with a 32-byte key"},
    KeySpecInfo{KeySpec::hmac_sha512, "HMAC_SHA512", kMac, KeyUsage::mac, false, 0,
                "HMAC-SHA512 with a 64-byte key"},
};

constexpr std::array kKeyUsages{
    KeyUsageInfo{KeyUsage::encrypt, "ENCRYPT_DECRYPT", "encrypt", "encrypt and decrypt"},
    KeyUsageInfo{KeyUsage::sign, "SIGN_VERIFY", "sign", "sign and verify"},
    KeyUsageInfo{KeyUsage::mac, "GENERATE_VERIFY_MAC", "mac", "make and verify MACs"},
    KeyUsageInfo{KeyUsage::agree, "KEY_AGREEMENT", "agree", "key agreement (X25519)"},
};

constexpr std::array kSigningAlgorithms{
    SigningAlgorithmInfo{SigningAlgorithm::rsassa_pss_sha_256, "RSASSA_PSS_SHA_256", 32, "SHA256"},
    SigningAlgorithmInfo{SigningAlgorithm::rsassa_pkcs1_v1_5_sha_256, "RSASSA_PKCS1_V1_5_SHA_256",
                         32, "SHA256"},
    SigningAlgorithmInfo{SigningAlgorithm::ecdsa_sha_256, "ECDSA_SHA_256", 32, "SHA256"},
    SigningAlgorithmInfo{SigningAlgorithm::ecdsa_sha_384, "ECDSA_SHA_384", 48, "SHA384"},
    SigningAlgorithmInfo{SigningAlgorithm::ed25519, "ED25519", 0, ""},
    SigningAlgorithmInfo{SigningAlgorithm::sm2dsa, "SM2DSA", 0, "SM3"},
};

constexpr std::array<std::string_view, 3> kEncryptionAlgorithms{"SYMMETRIC_DEFAULT",
                                                                "RSAES_OAEP_SHA_256", "SM2PKE"};
constexpr std::array<std::string_view, 2> kMacAlgorithms{"HMAC_SHA_256", "HMAC_SHA_512"};

static_assert(in_enum_order<&KeySpecInfo::spec>(kKeySpecs),
              "kKeySpecs must list every KeySpec in the enum's order");
static_assert(static_cast<std::size_t>(KeySpec::hmac_sha512) + 1 == kKeySpecs.size(),
              "every KeySpec needs its row in kKeySpecs");
static_assert(in_enum_order<&KeyUsageInfo::usage>(kKeyUsages),
              "kKeyUsages must list every KeyUsage in the enum's order");
static_assert(static_cast<std::size_t>(KeyUsage::agree) + 1 == kKeyUsages.size(),
              "every KeyUsage needs its row in kKeyUsages");
static_assert(in_enum_order<&SigningAlgorithmInfo::algorithm>(kSigningAlgorithms),
              "kSigningAlgorithms must list every SigningAlgorithm in the enum's order");
static_assert(static_cast<std::size_t>(SigningAlgorithm::sm2dsa) + 1 == kSigningAlgorithms.size(),
              "every SigningAlgorithm needs its row in kSigningAlgorithms");
static_assert(static_cast<std::size_t>(EncryptionAlgorithm::sm2pke) + 1 ==
              kEncryptionAlgorithms.size());
static_assert(static_cast<std::size_t>(MacAlgorithm::hmac_sha_512) + 1 == kMacAlgorithms.size());

template <class E, std::size_t N>
std::optional<E> parse_plain(const std::array<std::string_view, N>& names, std::string_view text) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == text) return static_cast<E>(i);
  }
  return std::nullopt;
}
template <class E, std::size_t N>
std::string_view plain_name(const std::array<std::string_view, N>& names, E e) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : std::string_view("?");
}

}  // namespace

std::span<const KeyStateInfo> key_states() noexcept { return kKeyStates; }
std::string_view key_state_name(KeyState s) noexcept { return name_in(kKeyStates, s); }
std::optional<KeyState> parse_key_state(std::string_view name) noexcept {
  return parse_in<&KeyStateInfo::state>(kKeyStates, name);
}
std::optional<KeyState> parse_key_state_option(std::string_view option) noexcept {
  for (const KeyStateInfo& i : kKeyStates) {
    if (i.option == option) return i.state;
  }
  return std::nullopt;
}

std::span<const ProtectionInfo> protections() noexcept { return kProtections; }
std::string_view protection_name(Protection p) noexcept { return name_in(kProtections, p); }
std::optional<Protection> parse_protection(std::string_view name) noexcept {
  return parse_in<&ProtectionInfo::protection>(kProtections, name);
}

std::span<const OriginInfo> origins() noexcept { return kOrigins; }
std::string_view origin_name(Origin o) noexcept { return name_in(kOrigins, o); }
std::optional<Origin> parse_origin(std::string_view name) noexcept {
  return parse_in<&OriginInfo::origin>(kOrigins, name);
}

std::span<const WrappingAlgorithmInfo> wrapping_algorithms() noexcept {
  return kWrappingAlgorithms;
}
std::string_view wrapping_algorithm_name(WrappingAlgorithm a) noexcept {
  return name_in(kWrappingAlgorithms, a);
}
std::optional<WrappingAlgorithm> parse_wrapping_algorithm(std::string_view name) noexcept {
  return parse_in<&WrappingAlgorithmInfo::algorithm>(kWrappingAlgorithms, name);
}

std::span<const SecretStageInfo> secret_stages() noexcept { return kSecretStages; }
std::string_view secret_stage_name(SecretStage s) noexcept { return name_in(kSecretStages, s); }
std::optional<SecretStage> parse_secret_stage(std::string_view name) noexcept {
  return parse_in<&SecretStageInfo::stage>(kSecretStages, name);
}

std::span<const RotationStatusInfo> rotation_statuses() noexcept { return kRotationStatuses; }
std::string_view rotation_status_name(RotationStatus s) noexcept {
  return name_in(kRotationStatuses, s);
}
std::optional<RotationStatus> parse_rotation_status(std::string_view name) noexcept {
  return parse_in<&RotationStatusInfo::status>(kRotationStatuses, name);
}

std::span<const KeySpecInfo> key_specs() noexcept { return kKeySpecs; }
const KeySpecInfo& key_spec_info(KeySpec s) noexcept {
  const auto i = static_cast<std::size_t>(s);
  return kKeySpecs[i < kKeySpecs.size() ? i : 0];
}
std::string_view key_spec_name(KeySpec s) noexcept { return name_in(kKeySpecs, s); }
std::optional<KeySpec> parse_key_spec(std::string_view name) noexcept {
  return parse_in<&KeySpecInfo::spec>(kKeySpecs, name);
}

std::span<const KeyUsageInfo> key_usages() noexcept { return kKeyUsages; }
std::string_view key_usage_name(KeyUsage u) noexcept { return name_in(kKeyUsages, u); }
std::optional<KeyUsage> parse_key_usage(std::string_view name) noexcept {
  return parse_in<&KeyUsageInfo::usage>(kKeyUsages, name);
}
std::optional<KeyUsage> parse_key_usage_option(std::string_view option) noexcept {
  for (const KeyUsageInfo& i : kKeyUsages) {
    if (i.option == option) return i.usage;
  }
  return std::nullopt;
}

std::span<const SigningAlgorithmInfo> signing_algorithms() noexcept { return kSigningAlgorithms; }
const SigningAlgorithmInfo& signing_algorithm_info(SigningAlgorithm a) noexcept {
  const auto i = static_cast<std::size_t>(a);
  return kSigningAlgorithms[i < kSigningAlgorithms.size() ? i : 0];
}
std::string_view signing_algorithm_name(SigningAlgorithm a) noexcept {
  return name_in(kSigningAlgorithms, a);
}
std::optional<SigningAlgorithm> parse_signing_algorithm(std::string_view name) noexcept {
  return parse_in<&SigningAlgorithmInfo::algorithm>(kSigningAlgorithms, name);
}

std::string_view encryption_algorithm_name(EncryptionAlgorithm a) noexcept {
  return plain_name(kEncryptionAlgorithms, a);
}
std::optional<EncryptionAlgorithm> parse_encryption_algorithm(std::string_view name) noexcept {
  return parse_plain<EncryptionAlgorithm>(kEncryptionAlgorithms, name);
}
std::string_view mac_algorithm_name(MacAlgorithm a) noexcept {
  return plain_name(kMacAlgorithms, a);
}
std::optional<MacAlgorithm> parse_mac_algorithm(std::string_view name) noexcept {
  return parse_plain<MacAlgorithm>(kMacAlgorithms, name);
}

bool spec_signs_with(KeySpec s, SigningAlgorithm a) noexcept {
  using A = SigningAlgorithm;
  switch (s) {
    case KeySpec::rsa_2048:
    case KeySpec::rsa_3072:
    case KeySpec::rsa_4096:
      return a == A::rsassa_pss_sha_256 || a == A::rsassa_pkcs1_v1_5_sha_256;
    case KeySpec::ec_p256:
    case KeySpec::ec_secp256k1:
      return a == A::ecdsa_sha_256;
    case KeySpec::ec_p384:
      return a == A::ecdsa_sha_384;
    case KeySpec::ed25519:
      return a == A::ed25519;
    case KeySpec::ec_sm2:
      return a == A::sm2dsa;
    default:
      return false;
  }
}

bool spec_encrypts_with(KeySpec s, EncryptionAlgorithm a) noexcept {
  using A = EncryptionAlgorithm;
  switch (s) {
    case KeySpec::aes_256:
    case KeySpec::sm4:
      return a == A::symmetric_default;
    case KeySpec::rsa_2048:
    case KeySpec::rsa_3072:
    case KeySpec::rsa_4096:
      return a == A::rsaes_oaep_sha_256;
    case KeySpec::ec_sm2:
      return a == A::sm2pke;
    default:
      return false;
  }
}

bool spec_macs_with(KeySpec s, MacAlgorithm a) noexcept {
  return (s == KeySpec::hmac_sha256 && a == MacAlgorithm::hmac_sha_256) ||
         (s == KeySpec::hmac_sha512 && a == MacAlgorithm::hmac_sha_512);
}

std::string spec_algorithms(KeySpec s, KeyUsage u) {
  std::string out;
  const auto add = [&](std::string_view name) {
    if (!out.empty()) out += ", ";
    out += name;
  };
  if (u == KeyUsage::sign) {
    for (const auto& a : kSigningAlgorithms) {
      if (spec_signs_with(s, a.algorithm)) add(a.name);
    }
  } else if (u == KeyUsage::encrypt) {
    for (std::size_t i = 0; i < kEncryptionAlgorithms.size(); ++i) {
      if (spec_encrypts_with(s, static_cast<EncryptionAlgorithm>(i))) add(kEncryptionAlgorithms[i]);
    }
  } else if (u == KeyUsage::mac) {
    for (std::size_t i = 0; i < kMacAlgorithms.size(); ++i) {
      if (spec_macs_with(s, static_cast<MacAlgorithm>(i))) add(kMacAlgorithms[i]);
    }
  } else {
    add("X25519");
  }
  return out;
}

}  // namespace kms
