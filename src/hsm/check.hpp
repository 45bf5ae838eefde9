// The one translation of CK_RV into kms::Error (internal to the hsm module).
#pragma once

#include <string_view>

#include <p11-kit/pkcs11.h>

namespace kms::hsm::detail {

// Throws kms::Error when rv != CKR_OK: "<what>: CKR_NAME", with an exit code by class.
void check(CK_RV rv, std::string_view what);

// Transient failures that a retry may clear (concurrent processes on one token directory).
bool is_transient(CK_RV rv) noexcept;

}  // namespace kms::hsm::detail
