#include "crypto/sm.hpp"

#include <algorithm>
#include <memory>
#include <new>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::crypto::sm {
namespace {

template <typename T, void (*Free)(T*)>
struct Freer {
  void operator()(T* p) const noexcept { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Freer<T, Free>>;

using Pkey = Owned<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtx = Owned<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using MdCtx = Owned<EVP_MD_CTX, EVP_MD_CTX_free>;
using CipherCtx = Owned<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using Mac = Owned<EVP_MAC, EVP_MAC_free>;
using MacCtx = Owned<EVP_MAC_CTX, EVP_MAC_CTX_free>;
using Kdf = Owned<EVP_KDF, EVP_KDF_free>;
using KdfCtx = Owned<EVP_KDF_CTX, EVP_KDF_CTX_free>;
using DecoderCtx = Owned<OSSL_DECODER_CTX, OSSL_DECODER_CTX_free>;
using EncoderCtx = Owned<OSSL_ENCODER_CTX, OSSL_ENCODER_CTX_free>;
using Bio = Owned<BIO, BIO_free_all>;
using Bn = Owned<BIGNUM, BN_free>;

// OpenSSL leaves the reasons of a failure in the thread's error queue; kmsctl reports its own
// messages, so a failure empties the queue rather than leave it to whatever uses OpenSSL next.
[[noreturn]] void fail(Code code, const char* message) {
  ERR_clear_error();
  throw Error(code, message);
}

// OpenSSL's param API takes non-const buffers that it only reads, and no null pointer for an
// empty one.
std::uint8_t* param_ptr(ByteView v) {
  static const std::uint8_t empty = 0;
  return const_cast<std::uint8_t*>(v.empty() ? &empty : v.data());
}

constexpr char kSm3Name[] = "SM3";
constexpr char kSm2Name[] = "SM2";

// ---- SM3, HMAC-SM3, HKDF-SM3 ----------------------------------------------------------------

// Starts an HMAC-SM3 under key (an empty key is a valid HMAC key).
MacCtx hmac_sm3_start(ByteView key) {
  Mac mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  MacCtx ctx(mac ? EVP_MAC_CTX_new(mac.get()) : nullptr);
  if (!ctx) fail(Code::failed, "HMAC-SM3 is not available in OpenSSL");
  char digest[] = "SM3";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_init(ctx.get(), param_ptr(key), key.size(), params) != 1) {
    fail(Code::failed, "HMAC-SM3 failed in OpenSSL");
  }
  return ctx;
}

void hmac_update(EVP_MAC_CTX* ctx, ByteView data) {
  if (!data.empty() && EVP_MAC_update(ctx, data.data(), data.size()) != 1) {
    fail(Code::failed, "HMAC-SM3 failed in OpenSSL");
  }
}

Sm3Digest hmac_finish(EVP_MAC_CTX* ctx) {
  Sm3Digest d{};
  std::size_t len = 0;
  if (EVP_MAC_final(ctx, d.data(), &len, d.size()) != 1 || len != d.size()) {
    fail(Code::failed, "HMAC-SM3 failed in OpenSSL");
  }
  return d;
}

// ---- SM4 authenticated encryption ----------------------------------------------------------

constexpr std::size_t kSm4KeySize = 16;

struct AeadKeys {
  SecureBytes okm;  // k_enc (16 bytes) || k_mac (32 bytes)
  ByteView enc() const { return okm.view().first(kSm4KeySize); }
  ByteView mac() const { return okm.view().subspan(kSm4KeySize); }
};

AeadKeys aead_keys(ByteView key, ByteView iv) {
  if (key.size() != kSm4AeadKeySize) fail(Code::failed, "SM4 AEAD key must be 32 bytes");
  if (iv.size() != kSm4IvSize) fail(Code::failed, "SM4 AEAD iv must be 16 bytes");
  return {hkdf_sm3(key, {}, as_bytes(kSm4AeadKeyInfo), kSm4KeySize + kSm3Size)};
}

// HMAC-SM3(k_mac, u64be(len(aad)) || aad || iv || ciphertext), all 32 bytes.
Sm3Digest aead_tag(const AeadKeys& keys, ByteView aad, ByteView iv, ByteView ciphertext) {
  std::uint8_t aad_len[8];
  for (int i = 0; i < 8; ++i) {
    aad_len[i] = static_cast<std::uint8_t>(std::uint64_t{aad.size()} >> (56 - 8 * i));
  }
  MacCtx ctx = hmac_sm3_start(keys.mac());
  hmac_update(ctx.get(), aad_len);
  hmac_update(ctx.get(), aad);
  hmac_update(ctx.get(), iv);
  hmac_update(ctx.get(), ciphertext);
  return hmac_finish(ctx.get());
}

// SM4-CTR: the counter block starts at iv and is incremented as a 128-bit big-endian integer.
// Encryption and decryption are the same operation.
void sm4_ctr(const AeadKeys& keys, ByteView iv, ByteView in, std::uint8_t* out) {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw std::bad_alloc();
  if (EVP_EncryptInit_ex2(ctx.get(), EVP_sm4_ctr(), keys.enc().data(), iv.data(), nullptr) != 1) {
    fail(Code::failed, "SM4-CTR initialisation failed in OpenSSL");
  }
  // EVP takes int lengths: a longer input goes in pieces (CTR keeps its counter across them).
  constexpr std::size_t kPiece = std::size_t{1} << 30;
  int len = 0;
  for (std::size_t done = 0; done < in.size(); done += kPiece) {
    const std::size_t n = std::min(kPiece, in.size() - done);
    if (EVP_EncryptUpdate(ctx.get(), out + done, &len, in.data() + done, int(n)) != 1) {
      fail(Code::failed, "SM4-CTR failed in OpenSSL");
    }
  }
  if (EVP_EncryptFinal_ex(ctx.get(), out + in.size(), &len) != 1) {
    fail(Code::failed, "SM4-CTR failed in OpenSSL");
  }
}

// ---- SM2 keys ------------------------------------------------------------------------------

bool is_sm2_key(const EVP_PKEY* key) {
  char group[16] = {};
  std::size_t len = 0;
  return EVP_PKEY_is_a(key, kSm2Name) &&
         EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                        &len) == 1 &&
         std::string_view(group, len) == kSm2Name;
}

// Decodes the whole input as a DER key of the given structure and type (nullptr: any type);
// nullptr when it is not one.
Pkey try_decode(ByteView der, const char* structure, const char* type, int selection) {
  EVP_PKEY* raw = nullptr;
  DecoderCtx ctx(
      OSSL_DECODER_CTX_new_for_pkey(&raw, "DER", structure, type, selection, nullptr, nullptr));
  if (!ctx) fail(Code::failed, "OpenSSL has no decoder of keys");
  const unsigned char* p = der.data();
  std::size_t left = der.size();
  const bool decoded = !der.empty() && OSSL_DECODER_from_data(ctx.get(), &p, &left) == 1;
  Pkey key(raw);
  if (!decoded || left != 0) key.reset();
  ERR_clear_error();
  return key;
}

// An SM2 key, or a failure as kms/asymmetric.hpp reports one: a key of another algorithm or
// curve is Code::usage, bytes that are no key of that structure Code::integrity. (A decoder of
// SM2 keys alone is several times faster than one of any type, which only a failure then runs.)
Pkey decode(ByteView der, const char* structure, int selection, const char* what) {
  Pkey key = try_decode(der, structure, kSm2Name, selection);
  if (key && is_sm2_key(key.get())) return key;
  if (try_decode(der, structure, nullptr, selection)) fail(Code::usage, "not an SM2 key");
  fail(Code::integrity, what);
}

constexpr char kNotPrivate[] = "not an SM2 private key (PKCS#8 DER)";
constexpr char kNotPublic[] = "not an SM2 public key (SubjectPublicKeyInfo DER)";

Pkey private_key(ByteView pkcs8) {
  return decode(pkcs8, "PrivateKeyInfo", EVP_PKEY_KEYPAIR, kNotPrivate);
}
Pkey public_key(ByteView spki) {
  return decode(spki, "SubjectPublicKeyInfo", EVP_PKEY_PUBLIC_KEY, kNotPublic);
}

// Encodes a key into a memory BIO; OpenSSL wipes the BIO's buffer when it is freed.
Bio encode(EVP_PKEY* key, int selection, const char* type, const char* structure) {
  EncoderCtx ctx(OSSL_ENCODER_CTX_new_for_pkey(key, selection, type, structure, nullptr));
  Bio bio(BIO_new(BIO_s_mem()));
  if (!ctx || !bio || OSSL_ENCODER_CTX_get_num_encoders(ctx.get()) == 0 ||
      OSSL_ENCODER_to_bio(ctx.get(), bio.get()) != 1) {
    fail(Code::failed, "encoding an SM2 key failed in OpenSSL");
  }
  return bio;
}

ByteView bio_bytes(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) fail(Code::failed, "encoding an SM2 key failed in OpenSSL");
  return {reinterpret_cast<const std::uint8_t*>(data), static_cast<std::size_t>(len)};
}

SecureBytes to_pkcs8(EVP_PKEY* key) {
  Bio bio = encode(key, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo");
  return SecureBytes(bio_bytes(bio.get()));
}

Bytes to_spki(EVP_PKEY* key) {
  Bio bio = encode(key, EVP_PKEY_PUBLIC_KEY, "DER", "SubjectPublicKeyInfo");
  const ByteView der = bio_bytes(bio.get());
  return Bytes(der.begin(), der.end());
}

PkeyCtx pkey_ctx(EVP_PKEY* key) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) fail(Code::failed, "SM2 is not available in OpenSSL");
  return ctx;
}

// ---- SM2 signatures ------------------------------------------------------------------------

// Sets the distinguishing identifier on the context of a DigestSign/DigestVerify: always
// kSm2DefaultId, never OpenSSL's default (empty in OpenSSL 3.0, 1234567812345678 from 4.0).
bool set_default_id(EVP_PKEY_CTX* pctx) {
  return EVP_PKEY_CTX_set1_id(pctx, kSm2DefaultId.data(), int(kSm2DefaultId.size())) == 1;
}

Bytes signature_buffer(EVP_PKEY* key) {
  const int size = EVP_PKEY_get_size(key);  // the longest DER signature: 72 bytes
  if (size <= 0) fail(Code::failed, "SM2 signature failed in OpenSSL");
  return Bytes(static_cast<std::size_t>(size));
}

constexpr std::size_t kDigestSize = kSm3Size;

// The curve sm2p256v1's a, b, x_G and y_G (GM/T 0003.5 / GB/T 32918.5), in the order Z_A takes
// them.
constexpr std::uint8_t kCurveParams[4][32] = {
    {0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00,
     0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc},
    {0x28, 0xe9, 0xfa, 0x9e, 0x9d, 0x9f, 0x5e, 0x34, 0x4d, 0x5a, 0x9e,
     0x4b, 0xcf, 0x65, 0x09, 0xa7, 0xf3, 0x97, 0x89, 0xf5, 0x15, 0xab,
     0x8f, 0x92, 0xdd, 0xbc, 0xbd, 0x41, 0x4d, 0x94, 0x0e, 0x93},
    {0x32, 0xc4, 0xae, 0x2c, 0x1f, 0x19, 0x81, 0x19, 0x5f, 0x99, 0x04,
     0x46, 0x6a, 0x39, 0xc9, 0x94, 0x8f, 0xe3, 0x0b, 0xbf, 0xf2, 0x66,
     0x0b, 0xe1, 0x71, 0x5a, 0x45, 0x89, 0x33, 0x4c, 0x74, 0xc7},
    {0xbc, 0x37, 0x36, 0xa2, 0xf4, 0xf6, 0x77, 0x9c, 0x59, 0xbd, 0xce,
     0xe3, 0x6b, 0x69, 0x21, 0x53, 0xd0, 0xa9, 0x87, 0x7c, 0xc6, 0x2a,
     0x47, 0x40, 0x02, 0xdf, 0x32, 0xe5, 0x21, 0x39, 0xf0, 0xa0}};

std::array<std::uint8_t, kSm2PointSize> point_of(const EVP_PKEY* key) {
  BIGNUM* x_raw = nullptr;
  BIGNUM* y_raw = nullptr;
  const bool got = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x_raw) == 1 &&
                   EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y_raw) == 1;
  Bn x(x_raw), y(y_raw);
  std::array<std::uint8_t, kSm2PointSize> point{};
  point[0] = 0x04;
  if (!got || BN_bn2binpad(x.get(), point.data() + 1, 32) != 32 ||
      BN_bn2binpad(y.get(), point.data() + 33, 32) != 32) {
    fail(Code::failed, "reading an SM2 public key failed in OpenSSL");
  }
  return point;
}

std::size_t check_digest(ByteView e) {
  if (e.size() != kDigestSize) fail(Code::usage, "an SM2 digest (e) must be 32 bytes");
  return e.size();
}

}  // namespace

// ---- SM3, HMAC-SM3, HKDF-SM3 ----------------------------------------------------------------

Sm3Digest sm3(ByteView data) {
  Sm3Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sm3(), nullptr) != 1 ||
      len != d.size()) {
    fail(Code::failed, "SM3 failed in OpenSSL");
  }
  return d;
}

Sm3Digest hmac_sm3(ByteView key, ByteView data) {
  MacCtx ctx = hmac_sm3_start(key);
  hmac_update(ctx.get(), data);
  return hmac_finish(ctx.get());
}

SecureBytes hkdf_sm3(ByteView ikm, ByteView salt, ByteView info, std::size_t length) {
  if (length == 0 || length > 255 * kSm3Size) {
    fail(Code::failed, "HKDF-SM3 output length must be 1..8160 bytes");
  }
  Kdf kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  KdfCtx ctx(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  if (!ctx) fail(Code::failed, "HKDF is not available in OpenSSL");
  char digest[] = "SM3";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, param_ptr(ikm), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, param_ptr(salt), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, param_ptr(info), info.size()),
      OSSL_PARAM_construct_end(),
  };
  SecureBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), length, params) != 1) {
    fail(Code::failed, "HKDF-SM3 derivation failed in OpenSSL");
  }
  return out;
}

// ---- SM4 authenticated encryption ----------------------------------------------------------

Bytes sm4_seal(ByteView key, ByteView iv, ByteView aad, ByteView plaintext) {
  const AeadKeys keys = aead_keys(key, iv);
  Bytes out(plaintext.size() + kSm4TagSize);
  sm4_ctr(keys, iv, plaintext, out.data());
  const ByteView ciphertext = ByteView(out).first(plaintext.size());
  const Sm3Digest tag = aead_tag(keys, aad, iv, ciphertext);
  std::copy(tag.begin(), tag.end(), out.begin() + std::ptrdiff_t(plaintext.size()));
  return out;
}

std::optional<SecureBytes> sm4_open(ByteView key, ByteView iv, ByteView aad,
                                    ByteView ciphertext_and_tag) {
  const AeadKeys keys = aead_keys(key, iv);
  if (ciphertext_and_tag.size() < kSm4TagSize) return std::nullopt;
  const std::size_t body = ciphertext_and_tag.size() - kSm4TagSize;
  const ByteView ciphertext = ciphertext_and_tag.first(body);
  const Sm3Digest tag = aead_tag(keys, aad, iv, ciphertext);
  if (!equal(tag, ciphertext_and_tag.subspan(body))) return std::nullopt;  // CRYPTO_memcmp
  SecureBytes out(body);
  sm4_ctr(keys, iv, ciphertext, out.data());
  return out;
}

// ---- SM2 keys ------------------------------------------------------------------------------

SecureBytes sm2_generate_key() {
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, kSm2Name, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), kSm2Name) != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1) {
    fail(Code::failed, "SM2 key generation failed in OpenSSL");
  }
  Pkey key(raw);
  return to_pkcs8(key.get());
}

SecureBytes sm2_private_key_from_der(ByteView der) {
  Pkey key = private_key(der);
  // The whole pair: the scalar in [1, n-2] (SM2's range) and the public point, when the input
  // has one, equal to the scalar's.
  PkeyCtx ctx = pkey_ctx(key.get());
  if (EVP_PKEY_check(ctx.get()) != 1) fail(Code::integrity, "the SM2 private key is not valid");
  // An input without the public key (ECPrivateKey's is optional) gets it on output.
  if (EVP_PKEY_set_int_param(key.get(), OSSL_PKEY_PARAM_EC_INCLUDE_PUBLIC, 1) != 1) {
    fail(Code::failed, "re-encoding an SM2 private key failed in OpenSSL");
  }
  return to_pkcs8(key.get());
}

Bytes sm2_public_key(ByteView private_pkcs8) {
  Pkey key = private_key(private_pkcs8);
  return to_spki(key.get());
}

Bytes sm2_public_key_from_point(ByteView point) {
  if (point.size() != kSm2PointSize || point[0] != 0x04) {
    fail(Code::usage, "an SM2 public point must be 65 bytes, 04 || x || y");
  }
  char group[] = "SM2";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, param_ptr(point), point.size()),
      OSSL_PARAM_construct_end(),
  };
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, kSm2Name, nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    fail(Code::failed, "SM2 is not available in OpenSSL");
  }
  EVP_PKEY* raw = nullptr;
  const bool made =
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, const_cast<OSSL_PARAM*>(params)) == 1;
  Pkey key(raw);
  if (!made || !key) fail(Code::integrity, "the point is not on the SM2 curve");
  PkeyCtx check = pkey_ctx(key.get());
  if (EVP_PKEY_public_check(check.get()) != 1) {
    fail(Code::integrity, "not a valid SM2 public key");
  }
  return to_spki(key.get());
}

std::array<std::uint8_t, kSm2PointSize> sm2_public_point(ByteView spki) {
  return point_of(public_key(spki).get());
}

std::string sm2_public_key_pem(ByteView spki) {
  Pkey key = public_key(spki);
  Bio bio = encode(key.get(), EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo");
  return std::string(as_chars(bio_bytes(bio.get())));
}

// ---- SM2 signatures ------------------------------------------------------------------------

Bytes sm2_sign(ByteView private_pkcs8, ByteView message) {
  Pkey key = private_key(private_pkcs8);
  MdCtx md(EVP_MD_CTX_new());
  if (!md) throw std::bad_alloc();
  EVP_PKEY_CTX* pctx = nullptr;  // owned by md
  Bytes sig = signature_buffer(key.get());
  std::size_t len = sig.size();
  if (EVP_DigestSignInit_ex(md.get(), &pctx, kSm3Name, nullptr, nullptr, key.get(), nullptr) != 1 ||
      !set_default_id(pctx) ||
      EVP_DigestSign(md.get(), sig.data(), &len, message.data(), message.size()) != 1) {
    fail(Code::failed, "SM2 signature failed in OpenSSL");
  }
  sig.resize(len);
  return sig;
}

bool sm2_verify(ByteView spki, ByteView message, ByteView signature) {
  Pkey key = public_key(spki);
  MdCtx md(EVP_MD_CTX_new());
  if (!md) throw std::bad_alloc();
  EVP_PKEY_CTX* pctx = nullptr;  // owned by md
  if (EVP_DigestVerifyInit_ex(md.get(), &pctx, kSm3Name, nullptr, nullptr, key.get(), nullptr) !=
          1 ||
      !set_default_id(pctx)) {
    fail(Code::failed, "SM2 verification failed in OpenSSL");
  }
  const bool ok = EVP_DigestVerify(md.get(), signature.data(), signature.size(), message.data(),
                                   message.size()) == 1;
  if (!ok) ERR_clear_error();
  return ok;
}

Sm3Digest sm2_z(ByteView spki) {
  const auto point = sm2_public_point(spki);
  // ENTL_A: the identifier's length in bits, two bytes big-endian (16 bytes: 0x0080).
  constexpr std::size_t bits = kSm2DefaultId.size() * 8;
  Bytes z_input = {static_cast<std::uint8_t>(bits >> 8), static_cast<std::uint8_t>(bits & 0xff)};
  const ByteView id = as_bytes(kSm2DefaultId);
  z_input.insert(z_input.end(), id.begin(), id.end());
  for (const auto& param : kCurveParams) z_input.insert(z_input.end(), param, param + 32);
  z_input.insert(z_input.end(), point.begin() + 1, point.end());  // x_A || y_A
  return sm3(z_input);
}

Sm3Digest sm2_message_digest(ByteView spki, ByteView message) {
  const Sm3Digest z = sm2_z(spki);
  MdCtx md(EVP_MD_CTX_new());
  Sm3Digest e{};
  unsigned int len = 0;
  if (!md || EVP_DigestInit_ex2(md.get(), EVP_sm3(), nullptr) != 1 ||
      EVP_DigestUpdate(md.get(), z.data(), z.size()) != 1 ||
      (!message.empty() && EVP_DigestUpdate(md.get(), message.data(), message.size()) != 1) ||
      EVP_DigestFinal_ex(md.get(), e.data(), &len) != 1) {
    fail(Code::failed, "SM3 failed in OpenSSL");
  }
  return e;
}

Bytes sm2_sign_digest(ByteView private_pkcs8, ByteView e) {
  const std::size_t e_size = check_digest(e);
  Pkey key = private_key(private_pkcs8);
  PkeyCtx ctx = pkey_ctx(key.get());
  Bytes sig = signature_buffer(key.get());
  std::size_t len = sig.size();
  // EVP_PKEY_sign on an SM2 key signs its input as e itself.
  if (EVP_PKEY_sign_init(ctx.get()) != 1 ||
      EVP_PKEY_sign(ctx.get(), sig.data(), &len, e.data(), e_size) != 1) {
    fail(Code::failed, "SM2 signature failed in OpenSSL");
  }
  sig.resize(len);
  return sig;
}

bool sm2_verify_digest(ByteView spki, ByteView e, ByteView signature) {
  const std::size_t e_size = check_digest(e);
  Pkey key = public_key(spki);
  PkeyCtx ctx = pkey_ctx(key.get());
  if (EVP_PKEY_verify_init(ctx.get()) != 1)
    fail(Code::failed, "SM2 verification failed in OpenSSL");
  const bool ok =
      EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), e.data(), e_size) == 1;
  if (!ok) ERR_clear_error();
  return ok;
}

// ---- SM2 encryption ------------------------------------------------------------------------

namespace {

// Starts an SM2 encryption or decryption with SM3 as its hash (C3 and the KDF), named
// explicitly although it is OpenSSL's default.
PkeyCtx sm2_cipher_start(EVP_PKEY* key, bool encrypt) {
  PkeyCtx ctx = pkey_ctx(key);
  char digest[] = "SM3";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if ((encrypt ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get())) != 1 ||
      EVP_PKEY_CTX_set_params(ctx.get(), params) != 1) {
    fail(Code::failed, "SM2 encryption is not available in OpenSSL");
  }
  return ctx;
}

// The ciphertext's shape, before OpenSSL reads it (which would also take trailing bytes and some
// non-DER encodings): exactly one DER SEQUENCE { INTEGER x, INTEGER y, OCTET STRING (32 bytes),
// OCTET STRING (not empty) }, each length and integer in its shortest form.
std::optional<ByteView> der_take(ByteView& in, std::uint8_t tag) {
  if (in.size() < 2 || in[0] != tag) return std::nullopt;
  std::size_t len = in[1], header = 2;
  if (len & 0x80) {
    const std::size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in.size() < 2 + n || in[2] == 0) return std::nullopt;
    len = 0;
    for (std::size_t i = 0; i < n; ++i) len = len << 8 | in[2 + i];
    if (len < 0x80) return std::nullopt;
    header += n;
  }
  if (in.size() - header < len) return std::nullopt;
  const ByteView content = in.subspan(header, len);
  in = in.subspan(header + len);
  return content;
}

bool is_coordinate(const std::optional<ByteView>& v) {
  // A non-negative INTEGER below 2^256, without a superfluous leading zero.
  return v && !v->empty() && v->size() <= 33 && ((*v)[0] & 0x80) == 0 &&
         (v->size() == 1 || (*v)[0] != 0 || ((*v)[1] & 0x80) != 0) &&
         (v->size() < 33 || (*v)[0] == 0);
}

bool is_sm2_ciphertext(ByteView ciphertext) {
  ByteView rest = ciphertext;
  const auto seq = der_take(rest, 0x30);
  if (!seq || !rest.empty()) return false;
  ByteView fields = *seq;
  const auto x = der_take(fields, 0x02);
  const auto y = der_take(fields, 0x02);
  const auto hash = der_take(fields, 0x04);
  const auto c2 = der_take(fields, 0x04);
  return is_coordinate(x) && is_coordinate(y) && hash && hash->size() == kSm3Size && c2 &&
         !c2->empty() && fields.empty();
}

}  // namespace

Bytes sm2_encrypt(ByteView spki, ByteView plaintext) {
  if (plaintext.empty()) fail(Code::usage, "SM2 encryption needs a non-empty plaintext");
  Pkey key = public_key(spki);
  PkeyCtx ctx = sm2_cipher_start(key.get(), true);
  std::size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, plaintext.data(), plaintext.size()) != 1) {
    fail(Code::failed, "SM2 encryption failed in OpenSSL");
  }
  Bytes out(len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &len, plaintext.data(), plaintext.size()) != 1) {
    fail(Code::failed, "SM2 encryption failed in OpenSSL");
  }
  out.resize(len);
  return out;
}

std::optional<SecureBytes> sm2_decrypt(ByteView private_pkcs8, ByteView ciphertext) {
  Pkey key = private_key(private_pkcs8);
  PkeyCtx ctx = sm2_cipher_start(key.get(), false);
  std::size_t len = 0;
  if (!is_sm2_ciphertext(ciphertext) ||
      EVP_PKEY_decrypt(ctx.get(), nullptr, &len, ciphertext.data(), ciphertext.size()) != 1 ||
      len == 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  SecureBytes out(len);
  if (EVP_PKEY_decrypt(ctx.get(), out.data(), &len, ciphertext.data(), ciphertext.size()) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  out.truncate(len);
  return out;
}

}  // namespace kms::crypto::sm
