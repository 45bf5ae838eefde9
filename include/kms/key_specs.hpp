// What kind of key a key is (its spec), what it is for (its usage, fixed at creation), and the
// algorithms each spec serves (docs/KEYS.md). Each vocabulary is an enum with one name table
// (src/base/key_specs.cpp); the names are what the vault's rows store, what the CLI prints and
// parses, and what audit params and docs spell.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kms {

enum class KeySpec : std::uint8_t {
  aes_256,
  rsa_2048,
  rsa_3072,
  rsa_4096,
  ec_p256,
  ec_p384,
  ec_secp256k1,
  ed25519,
  x25519,
  ec_sm2,
  sm4,
  hmac_sha256,
  hmac_sha512,
};

enum class KeyUsage : std::uint8_t { encrypt, sign, mac, agree };

enum class SigningAlgorithm : std::uint8_t {
  rsassa_pss_sha_256,
  rsassa_pkcs1_v1_5_sha_256,
  ecdsa_sha_256,
  ecdsa_sha_384,
  ed25519,
  sm2dsa,
};

// The algorithms of `encrypt`/`decrypt`. symmetric_default: the kmsctl ciphertext blob
// (AES-256-GCM, or SM4 for an SM4 key), which names its key; the others are a public-key
// encryption of at most `max_plaintext` bytes, whose ciphertext names no key.
enum class EncryptionAlgorithm : std::uint8_t { symmetric_default, rsaes_oaep_sha_256, sm2pke };

enum class MacAlgorithm : std::uint8_t { hmac_sha_256, hmac_sha_512 };

// A bit per usage, algorithm.
using UsageSet = std::uint8_t;
constexpr UsageSet usage_bit(KeyUsage u) {
  return static_cast<UsageSet>(1u << static_cast<int>(u));
}

struct KeySpecInfo {
  KeySpec spec;
  std::string_view name;      // "RSA_2048"
  UsageSet usages;            // the usages a key of this spec may have
  KeyUsage default_usage;     // when `key create` names none (the first allowed)
  bool asymmetric;            // has a public key (`key public`)
  std::size_t max_plaintext;  // public-key encryption: longest plaintext; 0 when none
  std::string_view summary;
};
std::span<const KeySpecInfo> key_specs() noexcept;  // in the enum's order
const KeySpecInfo& key_spec_info(KeySpec s) noexcept;
std::string_view key_spec_name(KeySpec s) noexcept;
std::optional<KeySpec> parse_key_spec(std::string_view name) noexcept;  // exactly, "RSA_2048"

struct KeyUsageInfo {
  KeyUsage usage;
  std::string_view name;    // as rows, output and audit params spell it: "SIGN_VERIFY"
  std::string_view option;  // as `key create --usage` spells it: "sign"
  std::string_view summary;
};
std::span<const KeyUsageInfo> key_usages() noexcept;
std::string_view key_usage_name(KeyUsage u) noexcept;
std::optional<KeyUsage> parse_key_usage(std::string_view name) noexcept;
std::optional<KeyUsage> parse_key_usage_option(std::string_view option) noexcept;

struct SigningAlgorithmInfo {
  SigningAlgorithm algorithm;
  std::string_view name;    // "ECDSA_SHA_256"
  std::size_t digest_size;  // the digest `--message-type digest` takes; 0: raw messages only
  std::string_view digest;  // OpenSSL's name of the digest ("SHA256"); empty for Ed25519
};
std::span<const SigningAlgorithmInfo> signing_algorithms() noexcept;
const SigningAlgorithmInfo& signing_algorithm_info(SigningAlgorithm a) noexcept;
std::string_view signing_algorithm_name(SigningAlgorithm a) noexcept;
std::optional<SigningAlgorithm> parse_signing_algorithm(std::string_view name) noexcept;

std::string_view encryption_algorithm_name(EncryptionAlgorithm a) noexcept;
std::optional<EncryptionAlgorithm> parse_encryption_algorithm(std::string_view name) noexcept;

std::string_view mac_algorithm_name(MacAlgorithm a) noexcept;
std::optional<MacAlgorithm> parse_mac_algorithm(std::string_view name) noexcept;

// What a spec serves: the algorithms a key of that spec and usage may use.
bool spec_signs_with(KeySpec s, SigningAlgorithm a) noexcept;
bool spec_encrypts_with(KeySpec s, EncryptionAlgorithm a) noexcept;
bool spec_macs_with(KeySpec s, MacAlgorithm a) noexcept;
// The names of those algorithms, comma-separated (for messages and `key describe`).
std::string spec_algorithms(KeySpec s, KeyUsage u);

}  // namespace kms
