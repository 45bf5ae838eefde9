#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::crypto {

SecureBytes hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, std::size_t length) {
  if (length == 0 || length > 255 * kSha256Size) {
    throw Error(Code::failed, "HKDF-SHA256 output length must be 1..8160 bytes");
  }
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  EVP_KDF_CTX* ctx = kdf ? EVP_KDF_CTX_new(kdf) : nullptr;
  EVP_KDF_free(kdf);
  if (ctx == nullptr) throw Error(Code::failed, "HKDF is not available in OpenSSL");
  // OpenSSL's param API takes non-const buffers; it only reads them.
  static const std::uint8_t empty = 0;
  auto ptr = [](ByteView v) { return const_cast<std::uint8_t*>(v.empty() ? &empty : v.data()); };
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ptr(ikm), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ptr(salt), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, ptr(info), info.size()),
      OSSL_PARAM_construct_end(),
  };
  SecureBytes out(length);
  const int rc = EVP_KDF_derive(ctx, out.data(), length, params);
  EVP_KDF_CTX_free(ctx);
  if (rc != 1) throw Error(Code::failed, "HKDF-SHA256 derivation failed in OpenSSL");
  return out;
}

}  // namespace kms::crypto
