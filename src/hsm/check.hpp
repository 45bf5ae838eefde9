// The one translation of CK_RV into kms::Error (internal to the hsm module).
#pragma once

#include <optional>
#include <string_view>

#include <p11-kit/pkcs11.h>

#include "kms/secure.hpp"

namespace kms::hsm::detail {

// Throws kms::Error when rv != CKR_OK: "<what>: CKR_NAME", with an exit code by class.
void check(CK_RV rv, std::string_view what);

// Transient failures that a retry may clear (concurrent processes on one token directory).
bool is_transient(CK_RV rv) noexcept;

// The message in an RSAES-OAEP encoded block (SHA-256, MGF1-SHA-256, empty label) of the
// modulus' size, as a raw RSA decryption (CKM_RSA_X_509) gives it; nullopt when it is not one.
std::optional<SecureBytes> oaep_sha256_decode(ByteView em);

}  // namespace kms::hsm::detail
