// Pure cryptographic functions over OpenSSL 3 (EVP) and libsodium. No I/O, no state beyond
// small pre-keyed contexts. Every open/verify result must be checked.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kms/secure.hpp"

namespace kms::crypto {

inline constexpr std::size_t kAes256KeySize = 32;
inline constexpr std::size_t kGcmNonceSize = 12;
// Longest nonce aes_gcm_seal/open accept (OpenSSL 3 refuses longer ones; kmsctl uses 12).
inline constexpr std::size_t kGcmMaxNonceSize = 128;
inline constexpr std::size_t kGcmTagSize = 16;
inline constexpr std::size_t kSha256Size = 32;

using Digest = std::array<std::uint8_t, kSha256Size>;

// Must run once before anything else (idempotent); aborts if libsodium cannot start.
void init();
// For a process that exits as soon as its work is done (the kmsctl binary): OpenSSL registers
// no clean-up at exit, which would spend longer freeing its tables than a command spends on
// its own work. Nothing secret is left behind by it: kmsctl's keys live in SecureBytes (wiped
// when freed) and the memory goes with the process. Call before anything else uses OpenSSL.
void skip_cleanup_at_exit();
// Starts OpenSSL without the two tables it builds for programs written against OpenSSL 1.x: the
// legacy name table behind EVP_get_cipherbyname()/EVP_get_digestbyname() (about 200 names, then
// copied into the provider name map at the first fetch) and the text of its error codes. kmsctl
// needs neither: it fetches algorithms from providers by name, or through EVP_aes_256_gcm() and
// EVP_sha256(), which resolve by NID, and it never prints an OpenSSL error string. No effect once
// OpenSSL has fetched an algorithm (the tables are then built already).
void skip_openssl_legacy_tables();

void random_fill(std::span<std::uint8_t> out);
Bytes random_bytes(std::size_t n);
SecureBytes random_secret(std::size_t n);
// A uniformly distributed integer in [0, upper_bound), without modulo bias (randombytes_uniform).
std::uint32_t random_uniform(std::uint32_t upper_bound);

// AES-GCM with any AES key size (16/24/32), any non-empty nonce length and a tag of tag_size
// bytes appended to the ciphertext. Throws kms::Error on misuse (bad key size, empty nonce).
Bytes aes_gcm_seal(ByteView key, ByteView nonce, ByteView aad, ByteView plaintext,
                   std::size_t tag_size = kGcmTagSize);
// Returns nullopt when the tag does not verify (an ordinary failure, not an exception).
[[nodiscard]] std::optional<SecureBytes> aes_gcm_open(ByteView key, ByteView nonce, ByteView aad,
                                                      ByteView ciphertext_and_tag,
                                                      std::size_t tag_size = kGcmTagSize);

// AES key wrap with padding (RFC 5649, the default alternative IV A65959A6) under a 32-byte
// key. unwrap: nullopt when the input is malformed or its integrity check fails.
Bytes aes_key_wrap_pad(ByteView kek, ByteView plaintext);
[[nodiscard]] std::optional<SecureBytes> aes_key_unwrap_pad(ByteView kek, ByteView wrapped);

// AES-256-GCM with a fixed key and one reusable OpenSSL context: for streams of frames, with no
// allocation per frame. Input and output may be the same buffer.
class Aes256Gcm {
 public:
  explicit Aes256Gcm(ByteView key);  // 32 bytes
  ~Aes256Gcm();
  Aes256Gcm(const Aes256Gcm&) = delete;
  Aes256Gcm& operator=(const Aes256Gcm&) = delete;
  // Writes len bytes of ciphertext to out and the 16-byte tag to tag.
  void seal(ByteView nonce, ByteView aad, const std::uint8_t* in, std::size_t len,
            std::uint8_t* out, std::uint8_t* tag);
  [[nodiscard]] bool open(ByteView nonce, ByteView aad, const std::uint8_t* in, std::size_t len,
                          const std::uint8_t* tag, std::uint8_t* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// HKDF-SHA256 (RFC 5869). Throws kms::Error when length exceeds 255*32.
SecureBytes hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, std::size_t length);

Digest sha256(ByteView data);

// Incremental SHA-256 that can be reset and reused without reallocating (hot loops).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void reset();
  void update(ByteView data);
  Digest finish();  // then reset() before reuse

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// HMAC-SHA256 with the key schedule computed once; mac() is cheap to call in a loop. One object
// is not for concurrent use from several threads (mac() reuses one digest context).
class HmacSha256 {
 public:
  explicit HmacSha256(ByteView key);
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;
  Digest mac(ByteView data) const;
  [[nodiscard]] bool verify(ByteView data, ByteView tag) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Constant-time equality (false when sizes differ; sizes are not secret).
[[nodiscard]] bool equal(ByteView a, ByteView b) noexcept;

// A random (version 4) UUID in its canonical lower-case text form.
std::string uuid_v4();

std::string to_hex(ByteView data);
std::optional<Bytes> from_hex(std::string_view hex);
std::string to_base64(ByteView data);
std::optional<Bytes> from_base64(std::string_view b64);

}  // namespace kms::crypto
