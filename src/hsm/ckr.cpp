#include "check.hpp"
#include <fmt/format.h>

#include "hsm/hsm.hpp"
#include "kms/error.hpp"

namespace kms::hsm {

std::string rv_name(unsigned long rv) {
  switch (rv) {
#define KMS_CKR(name) \
  case name:          \
    return #name;
    KMS_CKR(CKR_OK)
    KMS_CKR(CKR_CANCEL)
    KMS_CKR(CKR_HOST_MEMORY)
    KMS_CKR(CKR_SLOT_ID_INVALID)
    KMS_CKR(CKR_GENERAL_ERROR)
    KMS_CKR(CKR_FUNCTION_FAILED)
    KMS_CKR(CKR_ARGUMENTS_BAD)
    KMS_CKR(CKR_ATTRIBUTE_READ_ONLY)
    KMS_CKR(CKR_ATTRIBUTE_SENSITIVE)
    KMS_CKR(CKR_ATTRIBUTE_TYPE_INVALID)
    KMS_CKR(CKR_ATTRIBUTE_VALUE_INVALID)
    KMS_CKR(CKR_DATA_INVALID)
    KMS_CKR(CKR_DATA_LEN_RANGE)
    KMS_CKR(CKR_DEVICE_ERROR)
    KMS_CKR(CKR_DEVICE_MEMORY)
    KMS_CKR(CKR_DEVICE_REMOVED)
    KMS_CKR(CKR_ENCRYPTED_DATA_INVALID)
    KMS_CKR(CKR_ENCRYPTED_DATA_LEN_RANGE)
    KMS_CKR(CKR_FUNCTION_NOT_SUPPORTED)
    KMS_CKR(CKR_KEY_HANDLE_INVALID)
    KMS_CKR(CKR_KEY_SIZE_RANGE)
    KMS_CKR(CKR_KEY_TYPE_INCONSISTENT)
    KMS_CKR(CKR_KEY_FUNCTION_NOT_PERMITTED)
    KMS_CKR(CKR_MECHANISM_INVALID)
    KMS_CKR(CKR_MECHANISM_PARAM_INVALID)
    KMS_CKR(CKR_OBJECT_HANDLE_INVALID)
    KMS_CKR(CKR_OPERATION_ACTIVE)
    KMS_CKR(CKR_OPERATION_NOT_INITIALIZED)
    KMS_CKR(CKR_PIN_INCORRECT)
    KMS_CKR(CKR_PIN_INVALID)
    KMS_CKR(CKR_PIN_LEN_RANGE)
    KMS_CKR(CKR_PIN_EXPIRED)
    KMS_CKR(CKR_PIN_LOCKED)
    KMS_CKR(CKR_SESSION_CLOSED)
    KMS_CKR(CKR_SESSION_COUNT)
    KMS_CKR(CKR_SESSION_HANDLE_INVALID)
    KMS_CKR(CKR_SESSION_READ_ONLY)
    KMS_CKR(CKR_SESSION_EXISTS)
    KMS_CKR(CKR_SESSION_READ_ONLY_EXISTS)
    KMS_CKR(CKR_SESSION_READ_WRITE_SO_EXISTS)
    KMS_CKR(CKR_TEMPLATE_INCOMPLETE)
    KMS_CKR(CKR_TEMPLATE_INCONSISTENT)
    KMS_CKR(CKR_TOKEN_NOT_PRESENT)
    KMS_CKR(CKR_TOKEN_NOT_RECOGNIZED)
    KMS_CKR(CKR_TOKEN_WRITE_PROTECTED)
    KMS_CKR(CKR_USER_ALREADY_LOGGED_IN)
    KMS_CKR(CKR_USER_NOT_LOGGED_IN)
    KMS_CKR(CKR_USER_PIN_NOT_INITIALIZED)
    KMS_CKR(CKR_USER_TYPE_INVALID)
    KMS_CKR(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    KMS_CKR(CKR_BUFFER_TOO_SMALL)
    KMS_CKR(CKR_CRYPTOKI_NOT_INITIALIZED)
    KMS_CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef KMS_CKR
    default:
      return fmt::format("CKR_0x{:08X}", rv);
  }
}

namespace detail {

bool is_transient(CK_RV rv) noexcept {
  // CKR_USER_PIN_NOT_INITIALIZED is not retried here: SoftHSM2 keeps the PIN state it read at
  // C_Initialize, so only Module::reload helps (see Session::try_login_user).
  return rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_ERROR || rv == CKR_FUNCTION_FAILED ||
         rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_DEVICE_MEMORY;
}

void check(CK_RV rv, std::string_view what) {
  if (rv == CKR_OK) return;
  const std::string msg = fmt::format("{}: {}", what, rv_name(rv));
  switch (rv) {
    case CKR_PIN_INCORRECT:
      throw Error(Code::unavailable, msg, Remedy::check_pin, {},
                  "SoftHSM2 counts no wrong PINs and never locks, but a hardware token may lock "
                  "after a few");
    case CKR_PIN_LOCKED:
      throw Error(Code::unavailable, msg,
                  "the token's user PIN is locked; unlock it with the SO PIN (softhsm2-util or "
                  "your HSM's tools)");
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_INVALID:
      throw Error(Code::usage, msg, "choose a PIN of the length and characters the token accepts");
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SLOT_ID_INVALID:
    case CKR_USER_PIN_NOT_INITIALIZED:
      throw Error(Code::unavailable, msg, "check that the token is present and initialised");
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
      throw Error(Code::integrity, msg,
                  "the data was altered or belongs to another key: restore it from a backup");
    case CKR_GENERAL_ERROR:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_FUNCTION_FAILED:
      throw Error(Code::failed, msg,
                  "check free space and permissions where the token keeps its objects (for the "
                  "private SoftHSM2 token: the directory VAULT.token beside the vault file), "
                  "then retry");
    default:
      throw Error(Code::failed, msg, Remedy::check_token, {}, "run the command again");
  }
}

}  // namespace detail
}  // namespace kms::hsm
