// Public-key cryptography and MACs of the key specs (kms/key_specs.hpp), as pure functions over
// OpenSSL 3: key generation, public keys, signatures, public-key encryption, HMAC. Private keys
// are PKCS#8 DER in SecureBytes; public keys are SubjectPublicKeyInfo DER. What a function does
// not serve for a spec or algorithm is Code::usage; a value that is not a key is Code::integrity.
#pragma once

#include <optional>
#include <string>

#include "kms/key_specs.hpp"
#include "kms/secure.hpp"

namespace kms::crypto {

// The longest message `sign` and `verify` take raw (as AWS KMS); longer ones are signed as a
// digest the caller computes.
inline constexpr std::size_t kMaxSignMessage = 4096;

// New key material of `spec`: a PKCS#8 DER private key for an asymmetric spec, random bytes for
// a symmetric one (32 for AES_256 and SM4 and HMAC_SHA256, 64 for HMAC_SHA512).
SecureBytes generate_key_material(KeySpec spec);

// The SubjectPublicKeyInfo DER of a PKCS#8 DER private key.
Bytes public_key_of(ByteView pkcs8);
// A public key given as PEM ("-----BEGIN PUBLIC KEY-----") or SubjectPublicKeyInfo DER, as DER;
// nullopt when the bytes are neither.
std::optional<Bytes> parse_public_key(ByteView pem_or_der);
// The key spec of a public key; nullopt when it is none of kmsctl's specs (another RSA size,
// another curve).
std::optional<KeySpec> public_key_spec(ByteView spki);
std::string public_key_pem(ByteView spki);

// A signature by the private key: of the message itself (raw, at most kMaxSignMessage bytes), or
// of `input` as the digest the algorithm would compute (its digest_size bytes). RSASSA-PSS uses
// MGF1 with the same hash and a salt as long as the digest; ECDSA signatures are DER.
Bytes sign(ByteView pkcs8, SigningAlgorithm a, ByteView input, bool input_is_digest);
// What `sign` refuses of its input (Code::usage): a digest of the wrong size or for an algorithm
// that signs messages only, a raw message over kMaxSignMessage bytes. For signers in the token.
void check_sign_input(SigningAlgorithm a, ByteView input, bool input_is_digest);
// Whether `signature` is a valid signature of `input` under the public key (false for any
// malformed signature, wrong size of digest, or a key of another type).
[[nodiscard]] bool verify(ByteView spki, SigningAlgorithm a, ByteView input, bool input_is_digest,
                          ByteView signature);

// RSAES-OAEP with SHA-256 (and MGF1-SHA-256), or SM2 public-key encryption.
Bytes public_encrypt(ByteView spki, EncryptionAlgorithm a, ByteView plaintext);
// nullopt when the ciphertext does not decrypt under this key.
[[nodiscard]] std::optional<SecureBytes> private_decrypt(ByteView pkcs8, EncryptionAlgorithm a,
                                                         ByteView ciphertext);

Bytes hmac(MacAlgorithm a, ByteView key, ByteView data);

// X25519 key agreement (RFC 7748). The raw 32-byte public key of an X25519 SubjectPublicKeyInfo
// (nullopt for any other key).
std::optional<Bytes> x25519_raw_public_key(ByteView spki);
// The shared secret of an X25519 private key (PKCS#8 DER) and a peer's raw public key; nullopt
// when the peer's key is not 32 bytes or the result is all zero (a point of small order).
[[nodiscard]] std::optional<SecureBytes> x25519_shared(ByteView pkcs8, ByteView peer_public);
// A fresh ephemeral key pair agreed with a peer's raw public key: the ephemeral public key (raw)
// and the shared secret. Code::usage when the peer's key gives no secret (small order).
struct X25519Agreement {
  Bytes ephemeral_public;
  SecureBytes shared;
};
X25519Agreement x25519_agree_ephemeral(ByteView peer_public);

// A private key to import (PKCS #8 DER, or a DER key OpenSSL reads), checked and re-encoded as
// kmsctl stores a key version's (PKCS #8 DER, an EC key with its public key): nullopt when it
// does not parse or fails OpenSSL's check; `spec` none when it is none of kmsctl's specs.
struct ImportedPrivateKey {
  SecureBytes pkcs8;
  std::optional<KeySpec> spec;
};
[[nodiscard]] std::optional<ImportedPrivateKey> import_private_key(ByteView der);

}  // namespace kms::crypto
