// Public-key recipients of the file envelope (docs/FORMAT.md §11.3): the data key wrapped for an
// X25519 or RSA public key, with no vault. Each recipient agrees or encapsulates a fresh secret
// for the key, derives a one-time key-encryption key from it, and seals the data key with
// AES-256-GCM bound to the recipient's fields and the file's context.
#include <algorithm>

#include <fmt/format.h>

#include "kms/asymmetric.hpp"
#include "kms/crypto.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"

namespace kms::envelope {
namespace {

std::string_view info_of(std::uint8_t type) {
  return type == kRecipientX25519 ? kInfoX25519 : kInfoRsaOaep;
}

// KEK = HKDF(secret, fingerprint ‖ encapsulation, info); AAD = type ‖ fingerprint ‖
// encapsulation ‖ ctx. The KEK is used once (a fresh ephemeral key or seed per file), so the
// nonce is fixed at zero.
Bytes kek_input(std::uint8_t type, ByteView fingerprint, ByteView encapsulation) {
  Bytes b(1 + fingerprint.size() + encapsulation.size());
  b[0] = type;
  std::copy(fingerprint.begin(), fingerprint.end(), b.begin() + 1);
  std::copy(encapsulation.begin(), encapsulation.end(),
            b.begin() + 1 + static_cast<std::ptrdiff_t>(fingerprint.size()));
  return b;
}

SecureBytes kek(std::uint8_t type, ByteView secret, ByteView fp_and_encapsulation) {
  return crypto::hkdf_sha256(secret, fp_and_encapsulation, as_bytes(info_of(type)), 32);
}

Bytes aad_of(const Bytes& fields, const Context& context) {
  Bytes aad = fields;
  const Bytes ctx = encode_context(context);
  aad.insert(aad.end(), ctx.begin(), ctx.end());
  return aad;
}

constexpr std::uint8_t kZeroNonce[kFrameNonceSize] = {};

// The recipient type of a public key; nullopt for a key that cannot be one.
std::optional<std::uint8_t> recipient_type(ByteView spki) {
  switch (crypto::public_key_spec(spki).value_or(KeySpec::aes_256)) {
    case KeySpec::x25519:
      return kRecipientX25519;
    case KeySpec::rsa_2048:
    case KeySpec::rsa_3072:
    case KeySpec::rsa_4096:
      return kRecipientRsaOaep;
    default:
      return std::nullopt;
  }
}

}  // namespace

Bytes public_key_fingerprint(ByteView spki) {
  const crypto::Digest d = crypto::sha256(spki);
  return Bytes(d.begin(), d.end());
}

std::optional<PublicKeyRecipient> parse_public_key_recipient(const Recipient& r) {
  const std::size_t fixed = kFingerprintSize + kWrappedKeySize;
  if (r.type != kRecipientX25519 && r.type != kRecipientRsaOaep) return std::nullopt;
  if (r.body.size() <= fixed) return std::nullopt;
  const std::size_t enc = r.body.size() - fixed;
  if (r.type == kRecipientX25519 && enc != kX25519KeySize) return std::nullopt;
  const ByteView body(r.body);
  return PublicKeyRecipient{r.type, body.subspan(0, kFingerprintSize),
                            body.subspan(kFingerprintSize, enc),
                            body.subspan(kFingerprintSize + enc)};
}

void check_recipient_key(ByteView spki, std::string_view what) {
  if (recipient_type(spki)) return;
  const std::optional<KeySpec> spec = crypto::public_key_spec(spki);
  throw Error(Code::usage,
              spec ? fmt::format("{}: a {} public key cannot be a file's recipient", what,
                                 key_spec_name(*spec))
                   : fmt::format("{}: this public key cannot be a file's recipient", what),
              "use the public key of an X25519 key, or of an RSA key of usage encrypt "
              "(`kmsctl key public KEY`)");
}

Recipient wrap_for_public_key(ByteView spki, ByteView data_key, const Context& context) {
  check_recipient_key(spki, "a public key");
  Recipient out;
  out.type = *recipient_type(spki);
  Bytes encapsulation;
  SecureBytes secret;
  if (out.type == kRecipientX25519) {
    crypto::X25519Agreement a =
        crypto::x25519_agree_ephemeral(*crypto::x25519_raw_public_key(spki));
    encapsulation = std::move(a.ephemeral_public);
    secret = std::move(a.shared);
  } else {
    secret = crypto::random_secret(kSeedSize);
    encapsulation =
        crypto::public_encrypt(spki, EncryptionAlgorithm::rsaes_oaep_sha_256, secret.view());
  }
  const Bytes fields = kek_input(out.type, public_key_fingerprint(spki), encapsulation);
  const SecureBytes k = kek(out.type, secret.view(), ByteView(fields).subspan(1));
  const Bytes wrapped =
      crypto::aes_gcm_seal(k.view(), kZeroNonce, aad_of(fields, context), data_key);
  out.body.assign(fields.begin() + 1, fields.end());
  out.body.insert(out.body.end(), wrapped.begin(), wrapped.end());
  return out;
}

std::optional<SecureBytes> unwrap_public_key_recipient(const PublicKeyRecipient& r, ByteView secret,
                                                       const Context& context) {
  const Bytes fields = kek_input(r.type, r.fingerprint, r.encapsulation);
  const SecureBytes k = kek(r.type, secret, ByteView(fields).subspan(1));
  auto dk = crypto::aes_gcm_open(k.view(), kZeroNonce, aad_of(fields, context), r.wrapped);
  if (dk && dk->size() != kDataKeySize) return std::nullopt;
  return dk;
}

}  // namespace kms::envelope
