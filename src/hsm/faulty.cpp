// Fault injection for PKCS#11 (base/faults.hpp, Op::pkcs11): with a fault armed, kmsctl calls the
// module through a copy of its function list whose every entry counts the call and fails the
// chosen one with CKR_DEVICE_ERROR before it reaches the token, as a token that drops off the
// bus would. `mechanism:N` (a token that lacks one mechanism) uses the same copy.
#include "hsm/faulty.hpp"

#include <p11-kit/pkcs11.h>

#include "base/faults.hpp"

namespace kms::hsm::detail {
namespace {

CK_FUNCTION_LIST* g_real = nullptr;  // the module's own list (one module per process)

// Fails the call before it reaches the token, or (`after`) lets the token do the work and loses
// the answer: a failed C_Encrypt or C_Decrypt ends the operation in the token (PKCS#11 §5.8,
// §5.9), which only the real call does.
template <typename Fn, Fn CK_FUNCTION_LIST::*Member, bool After>
struct Faulty;

template <typename... A, CK_RV (*CK_FUNCTION_LIST::*Member)(A...), bool After>
struct Faulty<CK_RV (*)(A...), Member, After> {
  static CK_RV call(A... a) {
    if (!faults::fail_now(faults::Op::pkcs11)) return (g_real->*Member)(a...);
    if (After) (void)(g_real->*Member)(a...);
    return CKR_DEVICE_ERROR;
  }
};

// C_GetMechanismInfo of a token that lacks the mechanism `mechanism:N` names.
CK_RV mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO* info) {
  if (faults::mechanism_hidden(type)) return CKR_MECHANISM_INVALID;
  return g_real->C_GetMechanismInfo(slot, type, info);
}

}  // namespace

CK_FUNCTION_LIST* with_faults(CK_FUNCTION_LIST* real) {
  if (!faults::armed() || g_real != nullptr) return real;
  g_real = real;
  static CK_FUNCTION_LIST list = *real;
#define KMS_FAULTY_AS(name, after) \
  list.name = &Faulty<decltype(list.name), &CK_FUNCTION_LIST::name, after>::call
#define KMS_FAULTY(name) KMS_FAULTY_AS(name, false)
  KMS_FAULTY(C_GetSlotList);
  KMS_FAULTY(C_GetTokenInfo);
  KMS_FAULTY(C_InitToken);
  KMS_FAULTY(C_InitPIN);
  KMS_FAULTY(C_SetPIN);
  KMS_FAULTY(C_OpenSession);
  KMS_FAULTY(C_CloseSession);
  KMS_FAULTY(C_Login);
  KMS_FAULTY(C_Logout);
  KMS_FAULTY(C_CreateObject);
  KMS_FAULTY(C_DestroyObject);
  KMS_FAULTY(C_GetAttributeValue);
  KMS_FAULTY(C_SetAttributeValue);
  KMS_FAULTY(C_FindObjectsInit);
  KMS_FAULTY(C_FindObjects);
  KMS_FAULTY(C_FindObjectsFinal);
  KMS_FAULTY(C_EncryptInit);
  KMS_FAULTY_AS(C_Encrypt, true);
  KMS_FAULTY(C_DecryptInit);
  KMS_FAULTY_AS(C_Decrypt, true);
  KMS_FAULTY(C_GenerateKey);
  list.C_GetMechanismInfo = &mechanism_info;
#undef KMS_FAULTY
#undef KMS_FAULTY_AS
  return &list;
}

}  // namespace kms::hsm::detail
