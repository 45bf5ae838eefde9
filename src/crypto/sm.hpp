// The Chinese national (ShangMi) algorithms as pure functions over OpenSSL 3's EVP API: SM3
// (GB/T 32905) and HMAC-SM3, HKDF-SM3, an authenticated encryption built of SM4 (GB/T 32907)
// in CTR mode and HMAC-SM3 (FORMAT.md "SM4 authenticated encryption"), and SM2 (GB/T 32918 /
// GM/T 0003) key pairs, signatures and public-key encryption. No I/O, no state.
//
// SM2 keys cross this interface as bytes: a private key as an unencrypted PKCS#8
// PrivateKeyInfo DER (in SecureBytes), a public key as a SubjectPublicKeyInfo DER. Both name
// the algorithm id-ecPublicKey with the curve sm2p256v1 (1.2.156.10197.1.301) as its
// parameter, as OpenSSL writes SM2 keys. Each function parses the key it is given, with the
// convention of kms/asymmetric.hpp: bytes that are not a key of that form throw kms::Error with
// Code::integrity, a key of another algorithm or curve Code::usage.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
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

// SM2 on the recommended curve sm2p256v1 (GM/T 0003.5, GB/T 32918.5). Signatures hash the
// message with SM3 after Z_A, and Z_A always uses the default distinguishing identifier of
// GM/T 0009 below: it is set explicitly on every signature and verification (OpenSSL 3.0's own
// default is the empty identifier, which no other SM2 implementation uses by default).
inline constexpr std::string_view kSm2DefaultId = "1234567812345678";
inline constexpr std::size_t kSm2PointSize = 65;  // 04 || x || y

// A new key pair, as its private key's PKCS#8 DER.
SecureBytes sm2_generate_key();
// A private key made elsewhere: a PKCS#8 PrivateKeyInfo DER (OpenSSL also accepts the RFC 5915
// ECPrivateKey it wraps) of an SM2 key, checked (the scalar in range, the public key, when
// present, the scalar's; Code::integrity when not). Returns it as sm2_generate_key would
// (PKCS#8 DER, with the public key).
SecureBytes sm2_private_key_from_der(ByteView der);
// The public key of a private key, as a SubjectPublicKeyInfo DER.
Bytes sm2_public_key(ByteView private_pkcs8);
// A public key given as its uncompressed point (04 || x || y, 65 bytes; other sizes and forms
// are Code::usage), checked to lie on the curve (Code::integrity when not), as a
// SubjectPublicKeyInfo DER.
Bytes sm2_public_key_from_point(ByteView point);
// The point of a public key (04 || x || y).
std::array<std::uint8_t, kSm2PointSize> sm2_public_point(ByteView spki);
// A SubjectPublicKeyInfo DER as PEM text ("-----BEGIN PUBLIC KEY-----", lines of 64
// characters, a final newline): what `openssl pkey -pubin` reads.
std::string sm2_public_key_pem(ByteView spki);

// The signature of a message: DER SEQUENCE { r INTEGER, s INTEGER } (GM/T 0009), at most 72
// bytes, over e = SM3(Z_A || message) with Z_A of kSm2DefaultId. Randomised: two signatures of
// one message differ.
Bytes sm2_sign(ByteView private_pkcs8, ByteView message);
// False for a signature that does not verify, including one that is not DER exactly as
// sm2_sign writes it (OpenSSL refuses other encodings of (r, s)).
[[nodiscard]] bool sm2_verify(ByteView spki, ByteView message, ByteView signature);

// Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A) with ID_A = kSm2DefaultId
// (GB/T 32918.2 §5.5), and e = SM3(Z_A || message): what sm2_sign signs.
Sm3Digest sm2_z(ByteView spki);
Sm3Digest sm2_message_digest(ByteView spki, ByteView message);
// Signing a digest: for SM2 the caller passes e (32 bytes), which already binds Z_A, not
// SM3(message). A caller that hashes the message itself computes e with sm2_message_digest;
// sm2_sign(key, m) and sm2_sign_digest(key, sm2_message_digest(pub, m)) verify alike. Throws
// kms::Error when e is not 32 bytes.
Bytes sm2_sign_digest(ByteView private_pkcs8, ByteView e);
[[nodiscard]] bool sm2_verify_digest(ByteView spki, ByteView e, ByteView signature);

// SM2 public-key encryption (GB/T 32918.4) with SM3, in the ASN.1 encoding of GM/T 0009 §7.2,
// SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING (C3, 32 bytes), ciphertext OCTET STRING
// (C2) }: C1 || C3 || C2 in DER, about 100 bytes longer than the plaintext (C1's coordinates and
// C3 take 96, the rest is DER headers). Throws kms::Error (Code::usage) on an empty plaintext.
Bytes sm2_encrypt(ByteView spki, ByteView plaintext);
// Returns nullopt when the ciphertext does not decrypt: not exactly that DER (no trailing bytes,
// no other encoding of the same fields), C1 not on the curve, or C3 not matching.
[[nodiscard]] std::optional<SecureBytes> sm2_decrypt(ByteView private_pkcs8, ByteView ciphertext);

}  // namespace kms::crypto::sm
