// The PKCS#11 fault-injection seam (see faulty.cpp).
#pragma once

#include <p11-kit/pkcs11.h>

namespace kms::hsm::detail {

// `real` itself unless a fault is armed (KMSCTL_TEST_FAULT=pkcs11:N); then a list whose entries
// count every call and fail the N-th.
CK_FUNCTION_LIST* with_faults(CK_FUNCTION_LIST* real);

}  // namespace kms::hsm::detail
