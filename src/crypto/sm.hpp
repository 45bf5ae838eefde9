// The Chinese national (ShangMi) algorithms as pure functions over OpenSSL 3's EVP API: SM3
// (GB/T 32905) and HMAC-SM3, HKDF-SM3, and an authenticated encryption built of SM4 (GB/T 32907)
// in CTR mode and HMAC-SM3 (FORMAT.md "SM4 authenticated encryption"). No I/O, no state.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kms/secure.hpp"

namespace kms::crypto::sm {

inline constexpr std::size_t kSm3Size = 32;
using Sm3Digest = std::array<std::uint8_t, kSm3Size>;

// SM3 (GB/T 32905-2016).
Sm3Digest sm3(ByteView data);
// HMAC (RFC 2104) over SM3; any key length (a key longer than 64 bytes is hashed first).
Sm3Digest hmac_sm3(ByteView key, ByteView data);
// HKDF (RFC 5869) over SM3: extract then expand. Throws kms::Error when length is not
// 1..255*32.
SecureBytes hkdf_sm3(ByteView ikm, ByteView salt, ByteView info, std::size_t length);

// SM4 authenticated encryption: SM4-CTR, then HMAC-SM3 over len(aad), aad, iv and ciphertext,
// with an SM4 key and a MAC key derived from one 32-byte key by HKDF-SM3 (FORMAT.md, "SM4
// authenticated encryption"). The iv MUST NOT repeat under one key: draw it with
// random_bytes(kSm4IvSize) for each message.
inline constexpr std::size_t kSm4AeadKeySize = 32;
inline constexpr std::size_t kSm4IvSize = 16;
inline constexpr std::size_t kSm4TagSize = 32;
inline constexpr std::string_view kSm4AeadKeyInfo = "kmsctl/v1/sm4-ctr-hmac-sm3";

// Returns ciphertext || tag (plaintext.size() + kSm4TagSize bytes); the iv is not included.
// Throws kms::Error on misuse (a key other than 32 bytes, an iv other than 16 bytes).
Bytes sm4_seal(ByteView key, ByteView iv, ByteView aad, ByteView plaintext);
// Returns nullopt when the tag does not verify (checked in constant time before anything is
// decrypted) or the input is shorter than a tag. Throws kms::Error on misuse, as sm4_seal.
[[nodiscard]] std::optional<SecureBytes> sm4_open(ByteView key, ByteView iv, ByteView aad,
                                                  ByteView ciphertext_and_tag);

}  // namespace kms::crypto::sm
