#include <memory>

#include <openssl/evp.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::crypto {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const EVP_CIPHER* gcm_cipher(std::size_t key_size) {
  switch (key_size) {
    case 16:
      return EVP_aes_128_gcm();
    case 24:
      return EVP_aes_192_gcm();
    case 32:
      return EVP_aes_256_gcm();
    default:
      throw Error(Code::failed, "AES-GCM key must be 16, 24 or 32 bytes");
  }
}

CipherCtx start(ByteView key, ByteView nonce, ByteView aad, std::size_t tag_size, bool encrypt) {
  if (nonce.empty() || nonce.size() > kGcmMaxNonceSize) {
    throw Error(Code::failed, "AES-GCM nonce must be 1..128 bytes");
  }
  if (tag_size < 4 || tag_size > 16) throw Error(Code::failed, "AES-GCM tag must be 4..16 bytes");
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw std::bad_alloc();
  const EVP_CIPHER* cipher = gcm_cipher(key.size());
  int len = 0;
  const bool ok =
      EVP_CipherInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr, encrypt ? 1 : 0) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, int(nonce.size()), nullptr) == 1 &&
      EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce.data(), -1) == 1 &&
      (aad.empty() || EVP_CipherUpdate(ctx.get(), nullptr, &len, aad.data(), int(aad.size())) == 1);
  if (!ok) throw Error(Code::failed, "AES-GCM initialisation failed in OpenSSL");
  return ctx;
}

}  // namespace

Bytes aes_gcm_seal(ByteView key, ByteView nonce, ByteView aad, ByteView pt, std::size_t tag_size) {
  auto ctx = start(key, nonce, aad, tag_size, true);
  Bytes out(pt.size() + tag_size);
  int len = 0, fin = 0;
  if ((!pt.empty() &&
       EVP_CipherUpdate(ctx.get(), out.data(), &len, pt.data(), int(pt.size())) != 1) ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, int(tag_size), out.data() + pt.size()) !=
          1) {
    throw Error(Code::failed, "AES-GCM encryption failed in OpenSSL");
  }
  return out;
}

std::optional<SecureBytes> aes_gcm_open(ByteView key, ByteView nonce, ByteView aad, ByteView ct,
                                        std::size_t tag_size) {
  auto ctx = start(key, nonce, aad, tag_size, false);
  if (ct.size() < tag_size) return std::nullopt;
  const std::size_t body = ct.size() - tag_size;
  SecureBytes out(body);
  int len = 0, fin = 0;
  if (body > 0 && EVP_CipherUpdate(ctx.get(), out.data(), &len, ct.data(), int(body)) != 1) {
    return std::nullopt;
  }
  // OpenSSL takes the expected tag as a non-const pointer but does not modify it.
  std::uint8_t tag[16];
  std::copy(ct.begin() + body, ct.end(), tag);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, int(tag_size), tag) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &fin) != 1) {
    return std::nullopt;
  }
  return out;
}

struct Aes256Gcm::Impl {
  CipherCtx enc{EVP_CIPHER_CTX_new()};
  CipherCtx dec{EVP_CIPHER_CTX_new()};
};

Aes256Gcm::Aes256Gcm(ByteView key) : impl_(std::make_unique<Impl>()) {
  if (key.size() != kAes256KeySize) throw Error(Code::failed, "AES-256-GCM needs a 32-byte key");
  if (!impl_->enc || !impl_->dec ||
      EVP_EncryptInit_ex(impl_->enc.get(), EVP_aes_256_gcm(), nullptr, key.data(), nullptr) != 1 ||
      EVP_DecryptInit_ex(impl_->dec.get(), EVP_aes_256_gcm(), nullptr, key.data(), nullptr) != 1) {
    throw Error(Code::failed, "AES-GCM initialisation failed in OpenSSL");
  }
}

Aes256Gcm::~Aes256Gcm() = default;

void Aes256Gcm::seal(ByteView nonce, ByteView aad, const std::uint8_t* in, std::size_t len,
                     std::uint8_t* out, std::uint8_t* tag) {
  EVP_CIPHER_CTX* c = impl_->enc.get();
  int n = 0;
  const bool ok =
      nonce.size() == kGcmNonceSize &&
      EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, nonce.data()) == 1 &&
      (aad.empty() || EVP_EncryptUpdate(c, nullptr, &n, aad.data(), int(aad.size())) == 1) &&
      (len == 0 || EVP_EncryptUpdate(c, out, &n, in, int(len)) == 1) &&
      EVP_EncryptFinal_ex(c, out + len, &n) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, int(kGcmTagSize), tag) == 1;
  if (!ok) throw Error(Code::failed, "AES-GCM encryption failed in OpenSSL");
}

bool Aes256Gcm::open(ByteView nonce, ByteView aad, const std::uint8_t* in, std::size_t len,
                     const std::uint8_t* tag, std::uint8_t* out) {
  EVP_CIPHER_CTX* c = impl_->dec.get();
  int n = 0;
  std::uint8_t t[kGcmTagSize];
  std::copy(tag, tag + kGcmTagSize, t);
  return nonce.size() == kGcmNonceSize &&
         EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, nonce.data()) == 1 &&
         (aad.empty() || EVP_DecryptUpdate(c, nullptr, &n, aad.data(), int(aad.size())) == 1) &&
         (len == 0 || EVP_DecryptUpdate(c, out, &n, in, int(len)) == 1) &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, int(kGcmTagSize), t) == 1 &&
         EVP_DecryptFinal_ex(c, out + len, &n) == 1;
}

namespace {

// AES key wrap with padding (RFC 5649) with a 32-byte key: OpenSSL's wrap mode, one call.
std::optional<SecureBytes> kwp(ByteView kek, ByteView in, bool wrap) {
  if (kek.size() != kAes256KeySize) {
    throw Error(Code::usage, "AES key wrap takes a 32-byte key");
  }
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  if (!ctx) throw std::bad_alloc();
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_CipherInit_ex(ctx.get(), EVP_aes_256_wrap_pad(), nullptr, kek.data(), nullptr,
                        wrap ? 1 : 0) != 1) {
    throw Error(Code::failed, "starting AES key wrap failed in OpenSSL");
  }
  if (!wrap && (in.size() < 16 || in.size() % 8 != 0)) return std::nullopt;
  SecureBytes out(in.size() + 16);
  int len = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1 ||
      len <= 0) {
    if (wrap) throw Error(Code::failed, "AES key wrap failed in OpenSSL");
    return std::nullopt;
  }
  out.truncate(static_cast<std::size_t>(len));
  return out;
}

}  // namespace

Bytes aes_key_wrap_pad(ByteView kek, ByteView plaintext) {
  const SecureBytes w = *kwp(kek, plaintext, true);
  return Bytes(w.view().begin(), w.view().end());
}

std::optional<SecureBytes> aes_key_unwrap_pad(ByteView kek, ByteView wrapped) {
  return kwp(kek, wrapped, false);
}

}  // namespace kms::crypto
