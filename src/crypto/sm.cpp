#include "crypto/sm.hpp"

#include <algorithm>
#include <memory>
#include <new>

#include <openssl/core_names.h>
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

using CipherCtx = Owned<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using Mac = Owned<EVP_MAC, EVP_MAC_free>;
using MacCtx = Owned<EVP_MAC_CTX, EVP_MAC_CTX_free>;
using Kdf = Owned<EVP_KDF, EVP_KDF_free>;
using KdfCtx = Owned<EVP_KDF_CTX, EVP_KDF_CTX_free>;

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

}  // namespace kms::crypto::sm
