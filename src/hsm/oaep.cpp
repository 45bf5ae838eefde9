// RSAES-OAEP decoding (SHA-256, MGF1-SHA-256, empty label) of a raw RSA decryption the token made,
// for tokens whose CKM_RSA_PKCS_OAEP takes only SHA-1 (SoftHSM2 2.6). OpenSSL's decoder runs in
// constant time; its low-level RSA padding functions are deprecated in OpenSSL 3 but still the
// only public interface to it without a private key in the process.
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "check.hpp"
#include <openssl/evp.h>
#include <openssl/rsa.h>

namespace kms::hsm::detail {

std::optional<SecureBytes> oaep_sha256_decode(ByteView em) {
  if (em.empty() || em.size() > 2048) return std::nullopt;
  SecureBytes out(em.size());
  const int n = static_cast<int>(em.size());
  const int len = RSA_padding_check_PKCS1_OAEP_mgf1(out.data(), n, em.data(), n, n, nullptr, 0,
                                                    EVP_sha256(), EVP_sha256());
  if (len < 0) return std::nullopt;
  out.truncate(static_cast<std::size_t>(len));
  return out;
}

}  // namespace kms::hsm::detail
