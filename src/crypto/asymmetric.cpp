#include "kms/asymmetric.hpp"

#include <memory>
#include <new>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "crypto/sm.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::crypto {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
  void operator()(EVP_MD* p) const noexcept { EVP_MD_free(p); }
  void operator()(BIO* p) const noexcept { BIO_free(p); }
  void operator()(PKCS8_PRIV_KEY_INFO* p) const noexcept { PKCS8_PRIV_KEY_INFO_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, Free>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, Free>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Free>;
using Md = std::unique_ptr<EVP_MD, Free>;
using Bio = std::unique_ptr<BIO, Free>;

[[noreturn]] void failed(std::string_view what) {
  throw Error(Code::failed, fmt::format("{} failed in OpenSSL", what));
}

Pkey load_private(ByteView pkcs8) {
  const unsigned char* p = pkcs8.data();
  Pkey key(d2i_AutoPrivateKey_ex(nullptr, &p, static_cast<long>(pkcs8.size()), nullptr, nullptr));
  if (!key || p != pkcs8.data() + pkcs8.size()) {
    throw Error(Code::integrity, "a key version's private key does not load");
  }
  return key;
}

Pkey load_public(ByteView spki) {
  const unsigned char* p = spki.data();
  Pkey key(d2i_PUBKEY_ex(nullptr, &p, static_cast<long>(spki.size()), nullptr, nullptr));
  if (!key || p != spki.data() + spki.size()) return nullptr;
  return key;
}

Pkey generate(KeySpec spec) {
  EVP_PKEY* k = nullptr;
  switch (spec) {
    case KeySpec::rsa_2048:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048});
      break;
    case KeySpec::rsa_3072:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{3072});
      break;
    case KeySpec::rsa_4096:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{4096});
      break;
    case KeySpec::ec_p256:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeySpec::ec_p384:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case KeySpec::ec_secp256k1:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1");
      break;
    case KeySpec::ed25519:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
    case KeySpec::x25519:
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
      break;
    default:
      throw Error(Code::usage, fmt::format("{} has no key pair", key_spec_name(spec)));
  }
  if (!k) failed(fmt::format("generating a {} key", key_spec_name(spec)));
  return Pkey(k);
}

SecureBytes pkcs8_of(EVP_PKEY* key) {
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, Free> info(EVP_PKEY2PKCS8(key));
  if (!info) failed("encoding a private key");
  const int len = i2d_PKCS8_PRIV_KEY_INFO(info.get(), nullptr);
  if (len <= 0) failed("encoding a private key");
  SecureBytes out(static_cast<std::size_t>(len));
  unsigned char* p = out.data();
  if (i2d_PKCS8_PRIV_KEY_INFO(info.get(), &p) != len) failed("encoding a private key");
  return out;
}

Bytes spki_of(EVP_PKEY* key) {
  const int len = i2d_PUBKEY(key, nullptr);
  if (len <= 0) failed("encoding a public key");
  Bytes out(static_cast<std::size_t>(len));
  unsigned char* p = out.data();
  if (i2d_PUBKEY(key, &p) != len) failed("encoding a public key");
  return out;
}

std::optional<KeySpec> spec_of(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) {
    switch (EVP_PKEY_get_bits(key)) {
      case 2048:
        return KeySpec::rsa_2048;
      case 3072:
        return KeySpec::rsa_3072;
      case 4096:
        return KeySpec::rsa_4096;
      default:
        return std::nullopt;
    }
  }
  if (EVP_PKEY_is_a(key, "ED25519")) return KeySpec::ed25519;
  if (EVP_PKEY_is_a(key, "X25519")) return KeySpec::x25519;
  if (EVP_PKEY_is_a(key, "SM2")) return KeySpec::ec_sm2;
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) != 1) {
      return std::nullopt;
    }
    const std::string_view g(group, len);
    if (g == "prime256v1" || g == "P-256") return KeySpec::ec_p256;
    if (g == "secp384r1" || g == "P-384") return KeySpec::ec_p384;
    if (g == "secp256k1") return KeySpec::ec_secp256k1;
    if (g == "SM2") return KeySpec::ec_sm2;
  }
  return std::nullopt;
}

// Whether a key of this type may use the algorithm (a key of another type is refused before
// OpenSSL sees it: an Ed25519 key with ECDSA_SHA_256, an RSA key with ECDSA).
bool key_fits(EVP_PKEY* key, SigningAlgorithm a) {
  const auto spec = spec_of(key);
  return spec && spec_signs_with(*spec, a);
}

void set_padding(EVP_PKEY_CTX* pctx, SigningAlgorithm a) {
  if (a == SigningAlgorithm::rsassa_pss_sha_256) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1) {
      failed("setting RSA-PSS");
    }
  } else if (a == SigningAlgorithm::rsassa_pkcs1_v1_5_sha_256) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) failed("setting PKCS#1");
  }
}

// The context of a one-shot signature or verification of a raw message.
MdCtx message_ctx(EVP_PKEY* key, SigningAlgorithm a, bool signing) {
  const SigningAlgorithmInfo& info = signing_algorithm_info(a);
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) throw std::bad_alloc();
  EVP_PKEY_CTX* pctx = nullptr;
  const char* md = info.digest.empty() ? nullptr : info.digest.data();
  const int ok =
      signing ? EVP_DigestSignInit_ex(ctx.get(), &pctx, md, nullptr, nullptr, key, nullptr)
              : EVP_DigestVerifyInit_ex(ctx.get(), &pctx, md, nullptr, nullptr, key, nullptr);
  if (ok != 1) failed("starting a signature");
  set_padding(pctx, a);
  return ctx;
}

// The context of a signature or verification of a digest.
PkeyCtx digest_ctx(EVP_PKEY* key, SigningAlgorithm a, bool signing) {
  const SigningAlgorithmInfo& info = signing_algorithm_info(a);
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) throw std::bad_alloc();
  Md md(EVP_MD_fetch(nullptr, info.digest.data(), nullptr));
  if (!md || (signing ? EVP_PKEY_sign_init(ctx.get()) : EVP_PKEY_verify_init(ctx.get())) != 1) {
    failed("starting a signature");
  }
  set_padding(ctx.get(), a);
  if (EVP_PKEY_CTX_set_signature_md(ctx.get(), md.get()) != 1) failed("setting the digest");
  return ctx;
}

void check_input(SigningAlgorithm a, ByteView input, bool is_digest) {
  const SigningAlgorithmInfo& info = signing_algorithm_info(a);
  if (is_digest) {
    if (info.digest_size == 0) {
      throw Error(Code::usage, fmt::format("{} signs messages, not digests", info.name),
                  "pass the message itself (--message-type raw), at most 4096 bytes");
    }
    if (input.size() != info.digest_size) {
      throw Error(Code::usage,
                  fmt::format("a digest for {} is {} bytes, not {}", info.name, info.digest_size,
                              input.size()),
                  fmt::format("pass the {} of the message", info.digest));
    }
  } else if (input.size() > kMaxSignMessage) {
    throw Error(Code::usage,
                fmt::format("a raw message is at most {} bytes; this one has {}", kMaxSignMessage,
                            input.size()),
                fmt::format("sign its digest instead: --digest HEX with the {} of the message",
                            info.digest.empty() ? "hash" : info.digest));
  }
}

}  // namespace

SecureBytes generate_key_material(KeySpec spec) {
  switch (spec) {
    case KeySpec::aes_256:
    case KeySpec::sm4:
    case KeySpec::hmac_sha256:
      return random_secret(32);
    case KeySpec::hmac_sha512:
      return random_secret(64);
    case KeySpec::ec_sm2:
      return sm::sm2_generate_key();
    default:
      return pkcs8_of(generate(spec).get());
  }
}

Bytes public_key_of(ByteView pkcs8) { return spki_of(load_private(pkcs8).get()); }

std::optional<Bytes> parse_public_key(ByteView in) {
  if (auto key = load_public(in)) return spki_of(key.get());
  Bio bio(BIO_new_mem_buf(in.data(), static_cast<int>(in.size())));
  if (!bio) throw std::bad_alloc();
  Pkey key(PEM_read_bio_PUBKEY_ex(bio.get(), nullptr, nullptr, nullptr, nullptr, nullptr));
  if (!key) return std::nullopt;
  return spki_of(key.get());
}

std::optional<KeySpec> public_key_spec(ByteView spki) {
  const Pkey key = load_public(spki);
  if (!key) return std::nullopt;
  return spec_of(key.get());
}

std::string public_key_pem(ByteView spki) {
  const Pkey key = load_public(spki);
  if (!key) throw Error(Code::integrity, "not a public key");
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) failed("writing a PEM public key");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

void check_sign_input(SigningAlgorithm a, ByteView input, bool input_is_digest) {
  check_input(a, input, input_is_digest);
}

Bytes sign(ByteView pkcs8, SigningAlgorithm a, ByteView input, bool input_is_digest) {
  check_input(a, input, input_is_digest);
  const Pkey key = load_private(pkcs8);
  if (!key_fits(key.get(), a)) {
    throw Error(Code::usage,
                fmt::format("this key does not sign with {}", signing_algorithm_name(a)));
  }
  // SM2DSA (raw messages only) is the SM module's: the distinguishing id, strict DER.
  if (a == SigningAlgorithm::sm2dsa) return sm::sm2_sign(pkcs8, input);
  std::size_t len = 0;
  Bytes sig;
  if (input_is_digest) {
    const PkeyCtx ctx = digest_ctx(key.get(), a, true);
    if (EVP_PKEY_sign(ctx.get(), nullptr, &len, input.data(), input.size()) != 1) failed("signing");
    sig.resize(len);
    if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, input.data(), input.size()) != 1) {
      failed("signing");
    }
  } else {
    const MdCtx ctx = message_ctx(key.get(), a, true);
    if (EVP_DigestSign(ctx.get(), nullptr, &len, input.data(), input.size()) != 1) {
      failed("signing");
    }
    sig.resize(len);
    if (EVP_DigestSign(ctx.get(), sig.data(), &len, input.data(), input.size()) != 1) {
      failed("signing");
    }
  }
  sig.resize(len);
  return sig;
}

bool verify(ByteView spki, SigningAlgorithm a, ByteView input, bool input_is_digest,
            ByteView signature) {
  check_input(a, input, input_is_digest);
  const Pkey key = load_public(spki);
  if (!key || !key_fits(key.get(), a)) return false;
  if (a == SigningAlgorithm::sm2dsa) return sm::sm2_verify(spki, input, signature);
  if (input_is_digest) {
    const PkeyCtx ctx = digest_ctx(key.get(), a, false);
    return EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), input.data(),
                           input.size()) == 1;
  }
  const MdCtx ctx = message_ctx(key.get(), a, false);
  return EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), input.data(),
                          input.size()) == 1;
}

namespace {

PkeyCtx crypt_ctx(EVP_PKEY* key, EncryptionAlgorithm a, bool encrypting) {
  const auto spec = spec_of(key);
  if (!spec || !spec_encrypts_with(*spec, a)) {
    throw Error(Code::usage,
                fmt::format("this key does not encrypt with {}", encryption_algorithm_name(a)));
  }
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) throw std::bad_alloc();
  if ((encrypting ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get())) != 1) {
    failed("starting public-key encryption");
  }
  if (a == EncryptionAlgorithm::rsaes_oaep_sha_256) {
    Md md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
    if (!md || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md.get()) != 1) {
      failed("setting RSA-OAEP");
    }
  }
  return ctx;
}

}  // namespace

Bytes public_encrypt(ByteView spki, EncryptionAlgorithm a, ByteView plaintext) {
  const Pkey key = load_public(spki);
  if (!key) throw Error(Code::integrity, "not a public key");
  const auto spec = spec_of(key.get());
  const std::size_t max = spec ? key_spec_info(*spec).max_plaintext : 0;
  if (spec && plaintext.size() > max) {
    throw Error(
        Code::usage,
        fmt::format("{} with a {} key encrypts at most {} bytes; the input has {}",
                    encryption_algorithm_name(a), key_spec_name(*spec), max, plaintext.size()),
        "encrypt a data key with it instead, or the data with `kmsctl file encrypt`");
  }
  const PkeyCtx ctx = crypt_ctx(key.get(), a, true);
  if (a == EncryptionAlgorithm::sm2pke) return sm::sm2_encrypt(spki, plaintext);
  std::size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, plaintext.data(), plaintext.size()) != 1) {
    failed("public-key encryption");
  }
  Bytes out(len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &len, plaintext.data(), plaintext.size()) != 1) {
    failed("public-key encryption");
  }
  out.resize(len);
  return out;
}

std::optional<SecureBytes> private_decrypt(ByteView pkcs8, EncryptionAlgorithm a,
                                           ByteView ciphertext) {
  const Pkey key = load_private(pkcs8);
  const PkeyCtx ctx = crypt_ctx(key.get(), a, false);
  if (a == EncryptionAlgorithm::sm2pke) return sm::sm2_decrypt(pkcs8, ciphertext);
  std::size_t len = 0;
  if (EVP_PKEY_decrypt(ctx.get(), nullptr, &len, ciphertext.data(), ciphertext.size()) != 1) {
    return std::nullopt;
  }
  SecureBytes out(len);
  if (EVP_PKEY_decrypt(ctx.get(), out.data(), &len, ciphertext.data(), ciphertext.size()) != 1) {
    return std::nullopt;
  }
  out.truncate(len);
  return out;
}

Bytes hmac(MacAlgorithm a, ByteView key, ByteView data) {
  const char* digest = a == MacAlgorithm::hmac_sha_512 ? "SHA512" : "SHA256";
  Bytes out(a == MacAlgorithm::hmac_sha_512 ? 64 : 32);
  std::size_t len = 0;
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, digest, nullptr, key.data(), key.size(), data.data(),
                 data.size(), out.data(), out.size(), &len) ||
      len != out.size()) {
    failed("HMAC");
  }
  return out;
}

namespace {

Pkey x25519_public_from_raw(ByteView raw) {
  if (raw.size() != 32) return nullptr;
  return Pkey(EVP_PKEY_new_raw_public_key_ex(nullptr, "X25519", nullptr, raw.data(), raw.size()));
}

// EVP_PKEY_derive refuses an all-zero X25519 result (a peer key of small order).
std::optional<SecureBytes> derive_shared(EVP_PKEY* mine, EVP_PKEY* peer) {
  const PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, mine, nullptr));
  if (!ctx) throw std::bad_alloc();
  SecureBytes out(32);
  std::size_t len = out.size();
  if (EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1 || len != 32) {
    return std::nullopt;
  }
  return out;
}

}  // namespace

std::optional<Bytes> x25519_raw_public_key(ByteView spki) {
  const Pkey key = load_public(spki);
  if (!key || !EVP_PKEY_is_a(key.get(), "X25519")) return std::nullopt;
  Bytes out(32);
  std::size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), out.data(), &len) != 1 || len != 32) {
    return std::nullopt;
  }
  return out;
}

std::optional<SecureBytes> x25519_shared(ByteView pkcs8, ByteView peer_public) {
  const Pkey mine = load_private(pkcs8);
  const Pkey peer = x25519_public_from_raw(peer_public);
  if (!peer || !EVP_PKEY_is_a(mine.get(), "X25519")) return std::nullopt;
  return derive_shared(mine.get(), peer.get());
}

X25519Agreement x25519_agree_ephemeral(ByteView peer_public) {
  const Pkey peer = x25519_public_from_raw(peer_public);
  if (!peer) throw Error(Code::usage, "an X25519 public key has 32 bytes");
  const Pkey eph(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
  if (!eph) failed("generating an X25519 key");
  X25519Agreement out;
  out.ephemeral_public.resize(32);
  std::size_t len = out.ephemeral_public.size();
  if (EVP_PKEY_get_raw_public_key(eph.get(), out.ephemeral_public.data(), &len) != 1 || len != 32) {
    failed("encoding an X25519 public key");
  }
  auto shared = derive_shared(eph.get(), peer.get());
  if (!shared) {
    throw Error(Code::usage, "the X25519 public key is of small order: no key agrees with it",
                "check the recipient's public key file");
  }
  out.shared = std::move(*shared);
  return out;
}

std::optional<ImportedPrivateKey> import_private_key(ByteView der) {
  const unsigned char* p = der.data();
  Pkey key(d2i_AutoPrivateKey_ex(nullptr, &p, static_cast<long>(der.size()), nullptr, nullptr));
  if (!key || p != der.data() + der.size()) return std::nullopt;
  const auto spec = spec_of(key.get());
  if (!spec) return ImportedPrivateKey{{}, std::nullopt};
  if (*spec == KeySpec::ec_sm2) return ImportedPrivateKey{sm::sm2_private_key_from_der(der), spec};
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!ctx) throw std::bad_alloc();
  // The whole pair where OpenSSL can check it (RSA's primes and exponents, an EC scalar and
  // its point); else the private key alone.
  int ok = EVP_PKEY_check(ctx.get());
  if (ok == -2) ok = EVP_PKEY_private_check(ctx.get());
  if (ok != 1) return std::nullopt;
  if (EVP_PKEY_is_a(key.get(), "EC")) {
    // One encoding whatever the input's: with the public key.
    EVP_PKEY_set_int_param(key.get(), OSSL_PKEY_PARAM_EC_INCLUDE_PUBLIC, 1);
  }
  return ImportedPrivateKey{pkcs8_of(key.get()), spec};
}

}  // namespace kms::crypto
