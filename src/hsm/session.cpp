#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "check.hpp"
#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "hsm/hsm.hpp"
#include "kms/error.hpp"
#include "kms/signals.hpp"

namespace kms::hsm {
namespace {

constexpr int kAttempts = 10;  // up to ~2 s in all: a loaded machine stretches the window

// Retries a call that failed with a transient CK_RV: several processes using one SoftHSM2
// token directory at once can briefly see each other's half-written object files.
template <class F>
CK_RV with_retry(F&& f, int attempts = kAttempts) {
  CK_RV rv = CKR_OK;
  for (int i = 0; i < attempts; ++i) {
    rv = f();
    if (!detail::is_transient(rv)) return rv;
    ::usleep(2000u << i);
  }
  return rv;
}

// Every call below that makes the token write its files (a login rewrites SoftHSM2's
// token.object; creating, changing or destroying an object rewrites or removes its file) runs
// with the terminating signals deferred (signals::Deferred), so Ctrl-C or a SIGTERM lands after
// the write, never inside it.

CK_UTF8CHAR* pin_ptr(const SecureBytes& pin) { return const_cast<CK_UTF8CHAR*>(pin.data()); }

}  // namespace

Session::Session(std::shared_ptr<Module> module, SlotId slot)
    : module_(std::move(module)), slot_(slot) {
  auto* fn = module_->fn();
  CK_SESSION_HANDLE h = 0;
  detail::check(with_retry([&] {
                  return fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                           nullptr, &h);
                }),
                "cannot open a session on the token");
  handle_ = h;
  ++module_->open_sessions_;
}

Session::~Session() {
  auto* fn = module_->fn();
  if (logged_in_) fn->C_Logout(handle_);
  fn->C_CloseSession(handle_);
  --module_->open_sessions_;
}

namespace {
constexpr const char* kLoginFailed = "cannot log in to the token";
}

// A wrong or locked user PIN, in words: what the token now says of its PIN (its flags after
// the refusal: a token that counts wrong PINs sets COUNT_LOW, FINAL_TRY, then LOCKED). The
// CK_RV stays in the message, in parentheses, for whoever compares it with the token's logs.
void Session::refuse_pin(CK_RV rv) const {
  CK_TOKEN_INFO ti{};
  CK_FLAGS flags = module_->fn()->C_GetTokenInfo(slot_, &ti) == CKR_OK ? ti.flags : CK_FLAGS{0};
  // SoftHSM2 sets COUNT_LOW at every refused PIN, yet counts none and never locks.
  constexpr std::string_view kSoftHsm = "SoftHSM";
  if (std::string_view(reinterpret_cast<const char*>(ti.manufacturerID), kSoftHsm.size()) ==
      kSoftHsm) {
    flags &= ~CK_FLAGS{CKF_USER_PIN_COUNT_LOW};
  }
  const std::string name(rv_name(rv));
  if (rv == CKR_PIN_LOCKED || (flags & CKF_USER_PIN_LOCKED) != 0) {
    throw Error(Code::unavailable,
                fmt::format("{}the token's user PIN is locked: it refuses every PIN now ({})",
                            rv == CKR_PIN_INCORRECT ? "the PIN is wrong, and " : "", name),
                Remedy::unlock_pin);
  }
  if ((flags & CKF_USER_PIN_FINAL_TRY) != 0) {
    throw Error(Code::unavailable,
                fmt::format("the PIN is wrong: one try remains before the token locks its user "
                            "PIN ({})",
                            name),
                Remedy::check_pin, {},
                "a further wrong PIN locks it, and only the SO PIN unlocks it");
  }
  if ((flags & CKF_USER_PIN_COUNT_LOW) != 0) {
    throw Error(Code::unavailable,
                fmt::format("the PIN is wrong: few tries remain before the token locks its user "
                            "PIN ({})",
                            name),
                Remedy::check_pin, {},
                "the token counts wrong PINs and locks the user PIN after a few more");
  }
  throw Error(Code::unavailable, fmt::format("the PIN is wrong: the token refused it ({})", name),
              Remedy::check_pin, {},
              "SoftHSM2 counts no wrong PINs and never locks, but a hardware token may lock "
              "after a few");
}

bool Session::try_login_user(const SecureBytes& pin) {
  const signals::Deferred hold;
  auto* fn = module_->fn();
  const CK_RV rv =
      with_retry([&] { return fn->C_Login(handle_, CKU_USER, pin_ptr(pin), pin.size()); });
  if (rv == CKR_USER_ALREADY_LOGGED_IN) return true;
  if (rv == CKR_USER_PIN_NOT_INITIALIZED) return false;
  if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED) refuse_pin(rv);
  detail::check(rv, kLoginFailed);
  logged_in_ = true;
  return true;
}

void Session::login_user(const SecureBytes& pin) {
  if (!try_login_user(pin)) detail::check(CKR_USER_PIN_NOT_INITIALIZED, kLoginFailed);
}

void Session::login_so(const SecureBytes& so_pin) {
  const signals::Deferred hold;
  auto* fn = module_->fn();
  detail::check(fn->C_Login(handle_, CKU_SO, pin_ptr(so_pin), so_pin.size()),
                "cannot log in to the token as security officer");
  logged_in_ = true;
}

void Session::logout() {
  if (logged_in_) module_->fn()->C_Logout(handle_);
  logged_in_ = false;
}

void Session::set_pin(const SecureBytes& old_pin, const SecureBytes& new_pin) {
  const signals::Deferred hold;
  detail::check(module_->fn()->C_SetPIN(handle_, pin_ptr(old_pin), old_pin.size(), pin_ptr(new_pin),
                                        new_pin.size()),
                "cannot change the token's user PIN");
}

void Session::init_pin(const SecureBytes& new_pin) {
  const signals::Deferred hold;
  detail::check(module_->fn()->C_InitPIN(handle_, pin_ptr(new_pin), new_pin.size()),
                "cannot set the token's user PIN");
}

namespace {
// A secret key generated in the token (CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, never
// extractable) of 32 bytes, for one use: encrypt and decrypt, or sign (MAC) only.
CK_OBJECT_HANDLE generate_secret(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_KEY_TYPE type,
                                 CK_MECHANISM_TYPE gen, bool mac, std::string_view label,
                                 ByteView id, std::string_view what) {
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_BBOOL crypt = mac ? CK_FALSE : CK_TRUE, sign = mac ? CK_TRUE : CK_FALSE;
  CK_ULONG len = 32;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_VALUE_LEN, &len, sizeof len},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no},
      {CKA_ENCRYPT, &crypt, sizeof crypt},
      {CKA_DECRYPT, &crypt, sizeof crypt},
      {CKA_WRAP, &no, sizeof no},
      {CKA_UNWRAP, &no, sizeof no},
      {CKA_SIGN, &sign, sizeof sign},
      {CKA_VERIFY, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
      {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()},
  };
  CK_MECHANISM mech{gen, nullptr, 0};
  CK_OBJECT_HANDLE h = 0;
  detail::check(
      with_retry([&] { return fn->C_GenerateKey(s, &mech, tmpl, sizeof tmpl / sizeof *tmpl, &h); }),
      what);
  return h;
}
}  // namespace

ObjectHandle Session::generate_aes256(std::string_view label, ByteView id) {
  const signals::Deferred hold;
  return generate_secret(module_->fn(), handle_, CKK_AES, CKM_AES_KEY_GEN, false, label, id,
                         "cannot generate an AES-256 key in the token");
}

ObjectHandle Session::generate_hmac_key(std::string_view label, ByteView id) {
  const signals::Deferred hold;
  return generate_secret(module_->fn(), handle_, CKK_GENERIC_SECRET, CKM_GENERIC_SECRET_KEY_GEN,
                         true, label, id, "cannot generate an HMAC key in the token");
}

namespace {
// C_SignInit then C_Sign of `data` into `out` (room for `len` bytes; the signature's length on
// return), retried as a whole: a retry must start the operation again.
CK_RV sign_into(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_MECHANISM& mech, ObjectHandle key,
                ByteView data, std::uint8_t* out, CK_ULONG& len) {
  const CK_ULONG room = len;
  return with_retry([&] {
    CK_RV r = fn->C_SignInit(s, &mech, key);
    if (r != CKR_OK) return r;
    len = room;
    return fn->C_Sign(s, const_cast<std::uint8_t*>(data.data()), data.size(), out, &len);
  });
}
}  // namespace

std::optional<SecureBytes> Session::hmac_sha256(ObjectHandle key, ByteView data) {
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  SecureBytes out(32);
  CK_ULONG len = out.size();
  const CK_RV rv = sign_into(module_->fn(), handle_, mech, key, data, out.data(), len);
  if (rv == CKR_KEY_TYPE_INCONSISTENT || rv == CKR_KEY_FUNCTION_NOT_PERMITTED) return std::nullopt;
  detail::check(rv, "HMAC-SHA256 in the token failed");
  if (len != out.size()) {
    throw Error(Code::failed, fmt::format("the token's HMAC-SHA256 gave {} bytes, not 32", len));
  }
  return out;
}

namespace {
// Objects that match every attribute of `tmpl`.
std::vector<ObjectHandle> find(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_ATTRIBUTE* tmpl,
                               CK_ULONG count) {
  std::vector<ObjectHandle> out;
  CK_RV rv = with_retry([&] { return fn->C_FindObjectsInit(s, tmpl, count); });
  detail::check(rv, "cannot search the token");
  CK_OBJECT_HANDLE batch[16];
  CK_ULONG n = 0;
  do {
    rv = fn->C_FindObjects(s, batch, 16, &n);
    if (rv != CKR_OK) break;
    out.insert(out.end(), batch, batch + n);
  } while (n == 16);
  fn->C_FindObjectsFinal(s);
  detail::check(rv, "cannot search the token");
  return out;
}

// Objects of class `cls` that carry the attributes kmsctl creates them with, and match `extra`.
// Anyone who can write a SoftHSM2 token directory can add *public* objects to it without the
// PIN, with any label and value; only private ones need the PIN. So only private token objects
// are ever found, and keys only if also sensitive, never extractable and generated in the token.
std::vector<ObjectHandle> find_own(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                                   std::initializer_list<CK_ATTRIBUTE> extra) {
  static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  std::vector<CK_ATTRIBUTE> tmpl = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
  };
  if (cls == CKO_SECRET_KEY || cls == CKO_PRIVATE_KEY) {
    tmpl.push_back({CKA_SENSITIVE, &yes, sizeof yes});
    tmpl.push_back({CKA_EXTRACTABLE, &no, sizeof no});
  }
  if (cls == CKO_SECRET_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY) {
    tmpl.push_back({CKA_LOCAL, &yes, sizeof yes});
  }
  tmpl.insert(tmpl.end(), extra.begin(), extra.end());
  return find(fn, s, tmpl.data(), tmpl.size());
}

// Objects of class `cls` whose text attribute `attr` (CKA_LABEL, CKA_APPLICATION) equals `value`.
std::vector<ObjectHandle> find(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                               CK_ATTRIBUTE_TYPE attr, std::string_view value) {
  return find_own(fn, s, cls, {{attr, const_cast<char*>(value.data()), value.size()}});
}

// Attributes of one object, in one C_GetAttributeValue when each fits in kGuess bytes (every
// attribute kmsctl reads does), else a second call that asks for the sizes first. Each call is
// a round trip to the token (SoftHSM2 re-reads the object's file), so there are few.
constexpr CK_ULONG kGuess = 512;

std::vector<Bytes> get_attrs(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                             std::initializer_list<CK_ATTRIBUTE_TYPE> types,
                             std::string_view what) {
  std::vector<Bytes> values(types.size(), Bytes(kGuess));
  std::vector<CK_ATTRIBUTE> a;
  for (CK_ATTRIBUTE_TYPE t : types) a.push_back({t, values[a.size()].data(), kGuess});
  auto get = [&] {
    return with_retry([&] { return fn->C_GetAttributeValue(s, o, a.data(), a.size()); });
  };
  CK_RV rv = get();
  if (rv == CKR_BUFFER_TOO_SMALL) {
    for (CK_ATTRIBUTE& x : a) x.pValue = nullptr;
    detail::check(get(), what);
    for (size_t i = 0; i < a.size(); ++i) {
      values[i].resize(a[i].ulValueLen);
      a[i].pValue = values[i].data();
    }
    rv = get();
  }
  detail::check(rv, what);
  for (size_t i = 0; i < a.size(); ++i) values[i].resize(a[i].ulValueLen);
  return values;
}

Bytes get_attr(CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
               std::string_view what) {
  return std::move(get_attrs(fn, s, o, {t}, what).front());
}
}  // namespace

std::vector<ObjectHandle> Session::find_keys(std::string_view label) {
  return find(module_->fn(), handle_, CKO_SECRET_KEY, CKA_LABEL, label);
}

std::vector<ObjectHandle> Session::find_keys(std::string_view label, ByteView id) {
  return find_own(module_->fn(), handle_, CKO_SECRET_KEY,
                  {{CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                   {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()}});
}

std::vector<ObjectHandle> Session::find_private_keys(std::string_view label, ByteView id) {
  return find_own(module_->fn(), handle_, CKO_PRIVATE_KEY,
                  {{CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                   {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()}});
}

std::vector<ObjectHandle> Session::find_public_keys(std::string_view label, ByteView id) {
  return find_own(module_->fn(), handle_, CKO_PUBLIC_KEY,
                  {{CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                   {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()}});
}

std::vector<ObjectHandle> Session::find_key_objects(std::string_view label) {
  std::vector<ObjectHandle> out;
  for (CK_OBJECT_CLASS cls : {CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
    for (ObjectHandle h : find(module_->fn(), handle_, cls, CKA_LABEL, label)) out.push_back(h);
  }
  return out;
}

std::vector<ObjectHandle> Session::find_data(std::string_view label) {
  return find(module_->fn(), handle_, CKO_DATA, CKA_LABEL, label);
}

Bytes Session::get_id(ObjectHandle object) {
  return get_attr(module_->fn(), handle_, object, CKA_ID, "cannot read a token object's id");
}

void Session::destroy(ObjectHandle object) {
  const signals::Deferred hold;
  auto* fn = module_->fn();
  detail::check(with_retry([&] { return fn->C_DestroyObject(handle_, object); }),
                "cannot destroy a token object");
}

Bytes Session::gcm_encrypt(ObjectHandle key, ByteView iv, ByteView aad, ByteView pt) {
  CK_GCM_PARAMS p{};
  p.pIv = const_cast<std::uint8_t*>(iv.data());
  p.ulIvLen = iv.size();
  p.ulIvBits = iv.size() * 8;
  p.pAAD = const_cast<std::uint8_t*>(aad.data());
  p.ulAADLen = aad.size();
  p.ulTagBits = 128;
  CK_MECHANISM mech{CKM_AES_GCM, &p, sizeof p};
  auto* fn = module_->fn();
  Bytes out(pt.size() + 16);
  CK_ULONG len = out.size();
  const CK_RV rv = with_retry([&] {
    CK_RV r = fn->C_EncryptInit(handle_, &mech, key);
    if (r != CKR_OK) return r;
    len = out.size();
    return fn->C_Encrypt(handle_, const_cast<std::uint8_t*>(pt.data()), pt.size(), out.data(),
                         &len);
  });
  detail::check(rv, "AES-GCM encryption in the token failed");
  out.resize(len);
  return out;
}

std::optional<SecureBytes> Session::gcm_decrypt(ObjectHandle key, ByteView iv, ByteView aad,
                                                ByteView ct) {
  CK_GCM_PARAMS p{};
  p.pIv = const_cast<std::uint8_t*>(iv.data());
  p.ulIvLen = iv.size();
  p.ulIvBits = iv.size() * 8;
  p.pAAD = const_cast<std::uint8_t*>(aad.data());
  p.ulAADLen = aad.size();
  p.ulTagBits = 128;
  CK_MECHANISM mech{CKM_AES_GCM, &p, sizeof p};
  auto* fn = module_->fn();
  SecureBytes out(ct.size());
  CK_ULONG len = out.size();
  // SoftHSM2 reports a tag that does not verify as CKR_GENERAL_ERROR, which is also what a
  // transient failure looks like: one retry tells them apart well enough.
  const CK_RV rv = with_retry(
      [&] {
        CK_RV r = fn->C_DecryptInit(handle_, &mech, key);
        if (r != CKR_OK) return r;
        len = out.size();
        return fn->C_Decrypt(handle_, const_cast<std::uint8_t*>(ct.data()), ct.size(), out.data(),
                             &len);
      },
      2);
  // A key of another type or use (a header whose seal version was edited) opens nothing either.
  if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
      rv == CKR_DATA_INVALID || rv == CKR_DATA_LEN_RANGE || rv == CKR_GENERAL_ERROR ||
      rv == CKR_FUNCTION_FAILED || rv == CKR_KEY_TYPE_INCONSISTENT ||
      rv == CKR_KEY_FUNCTION_NOT_PERMITTED) {
    return std::nullopt;
  }
  detail::check(rv, "AES-GCM decryption in the token failed");
  out.truncate(len);
  return out;
}

ObjectHandle Session::create_data(std::string_view label, ByteView value,
                                  std::string_view application) {
  const signals::Deferred hold;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_OBJECT_CLASS cls = CKO_DATA;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_MODIFIABLE, &yes, sizeof yes},
      {CKA_COPYABLE, &no, sizeof no},
      {CKA_APPLICATION, const_cast<char*>(application.data()), application.size()},
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
      {CKA_VALUE, const_cast<std::uint8_t*>(value.data()), value.size()},
  };
  CK_OBJECT_HANDLE h = 0;
  auto* fn = module_->fn();
  detail::check(
      with_retry([&] { return fn->C_CreateObject(handle_, tmpl, sizeof tmpl / sizeof *tmpl, &h); }),
      "cannot create a data object in the token");
  return h;
}

bool ObjectInfo::own_attributes() const {
  if (!is_private) return false;
  if (object_class == CKO_SECRET_KEY || object_class == CKO_PRIVATE_KEY) {
    return sensitive && !extractable && local;
  }
  return object_class != CKO_PUBLIC_KEY || local;
}

std::vector<ObjectInfo> Session::list_objects() {
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &yes, sizeof yes}};
  auto* fn = module_->fn();
  std::vector<ObjectInfo> out;
  for (ObjectHandle h : find(fn, handle_, tmpl, 1)) {
    ObjectInfo o;
    o.handle = h;
    // One attribute per call: a type that does not apply to the object's class (CKA_SENSITIVE
    // of a data object) fails the whole call on some tokens.
    auto attr = [&](CK_ATTRIBUTE_TYPE t) -> std::optional<Bytes> {
      Bytes v(kGuess);
      CK_ATTRIBUTE a{t, v.data(), v.size()};
      if (fn->C_GetAttributeValue(handle_, h, &a, 1) != CKR_OK ||
          a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        return std::nullopt;
      }
      v.resize(a.ulValueLen);
      return v;
    };
    auto flag = [&](CK_ATTRIBUTE_TYPE t, bool otherwise) {
      const auto v = attr(t);
      return v && v->size() == sizeof(CK_BBOOL) ? (*v)[0] != CK_FALSE : otherwise;
    };
    auto text = [&](CK_ATTRIBUTE_TYPE t) {
      const auto v = attr(t);
      return v ? std::string(v->begin(), v->end()) : std::string();
    };
    if (const auto c = attr(CKA_CLASS); c && c->size() == sizeof(CK_OBJECT_CLASS)) {
      std::memcpy(&o.object_class, c->data(), sizeof(CK_OBJECT_CLASS));
    }
    o.label = text(CKA_LABEL);
    o.is_private = flag(CKA_PRIVATE, false);
    if (o.object_class == CKO_DATA) o.application = text(CKA_APPLICATION);
    if (o.object_class == CKO_SECRET_KEY || o.object_class == CKO_PRIVATE_KEY) {
      o.id = attr(CKA_ID).value_or(Bytes());
      o.sensitive = flag(CKA_SENSITIVE, false);
      o.extractable = flag(CKA_EXTRACTABLE, true);
      o.local = flag(CKA_LOCAL, false);
    } else if (o.object_class == CKO_PUBLIC_KEY) {
      o.id = attr(CKA_ID).value_or(Bytes());
      o.local = flag(CKA_LOCAL, false);
    }
    out.push_back(std::move(o));
  }
  return out;
}

Bytes Session::get_value(ObjectHandle object) {
  return get_attr(module_->fn(), handle_, object, CKA_VALUE, "cannot read a token data object");
}

std::vector<ObjectHandle> Session::find_data_by_application(std::string_view application) {
  return find(module_->fn(), handle_, CKO_DATA, CKA_APPLICATION, application);
}

DataObject Session::read_data(ObjectHandle object) {
  std::vector<Bytes> v =
      get_attrs(module_->fn(), handle_, object, {CKA_VALUE, CKA_LABEL, CKA_APPLICATION},
                "cannot read a token data object");
  return {std::move(v[0]), std::string(v[1].begin(), v[1].end()),
          std::string(v[2].begin(), v[2].end())};
}

std::string Session::get_label(ObjectHandle object) {
  const Bytes v =
      get_attr(module_->fn(), handle_, object, CKA_LABEL, "cannot read a token object's label");
  return std::string(v.begin(), v.end());
}

bool Session::try_set_value(ObjectHandle object, ByteView value) {
  const signals::Deferred hold;
  CK_ATTRIBUTE a{CKA_VALUE, const_cast<std::uint8_t*>(value.data()), value.size()};
  auto* fn = module_->fn();
  const CK_RV rv = with_retry([&] { return fn->C_SetAttributeValue(handle_, object, &a, 1); });
  if (rv == CKR_ATTRIBUTE_READ_ONLY) return false;
  detail::check(rv, "cannot update a token data object");
  return true;
}

void Session::set_label(ObjectHandle object, std::string_view label) {
  const signals::Deferred hold;
  CK_ATTRIBUTE a{CKA_LABEL, const_cast<char*>(label.data()), label.size()};
  auto* fn = module_->fn();
  detail::check(with_retry([&] { return fn->C_SetAttributeValue(handle_, object, &a, 1); }),
                "cannot update a token object's label");
}

std::string mechanism_name(unsigned long mechanism) {
  switch (mechanism) {
    case CKM_RSA_PKCS_KEY_PAIR_GEN:
      return "CKM_RSA_PKCS_KEY_PAIR_GEN";
    case CKM_RSA_PKCS:
      return "CKM_RSA_PKCS";
    case CKM_RSA_PKCS_PSS:
      return "CKM_RSA_PKCS_PSS";
    case CKM_RSA_PKCS_OAEP:
      return "CKM_RSA_PKCS_OAEP";
    case CKM_RSA_X_509:
      return "CKM_RSA_X_509";
    case CKM_EC_KEY_PAIR_GEN:
      return "CKM_EC_KEY_PAIR_GEN";
    case CKM_ECDSA:
      return "CKM_ECDSA";
    case CKM_EC_EDWARDS_KEY_PAIR_GEN:
      return "CKM_EC_EDWARDS_KEY_PAIR_GEN";
    case CKM_EDDSA:
      return "CKM_EDDSA";
    case CKM_AES_KEY_GEN:
      return "CKM_AES_KEY_GEN";
    case CKM_AES_GCM:
      return "CKM_AES_GCM";
    case CKM_GENERIC_SECRET_KEY_GEN:
      return "CKM_GENERIC_SECRET_KEY_GEN";
    case CKM_SHA256_HMAC:
      return "CKM_SHA256_HMAC";
    default:
      return fmt::format("mechanism 0x{:x}", mechanism);
  }
}

bool Session::has_mechanism(unsigned long mechanism, unsigned long flags) {
  CK_MECHANISM_INFO info{};
  auto* fn = module_->fn();
  const CK_RV rv = with_retry([&] { return fn->C_GetMechanismInfo(slot_, mechanism, &info); });
  if (rv == CKR_MECHANISM_INVALID) return false;
  detail::check(rv, "cannot read the token's mechanisms");
  return (info.flags & flags) == flags;
}

KeyPairHandles Session::generate_key_pair(const KeyPairParams& p, std::string_view label,
                                          ByteView id) {
  const signals::Deferred hold;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY, priv_cls = CKO_PRIVATE_KEY;
  CK_ULONG bits = p.modulus_bits;
  CK_BYTE exponent[] = {0x01, 0x00, 0x01};
  CK_BBOOL sign = p.decrypt ? CK_FALSE : CK_TRUE;
  CK_BBOOL decrypt = p.decrypt ? CK_TRUE : CK_FALSE;
  CK_ATTRIBUTE label_attr{CKA_LABEL, const_cast<char*>(label.data()), label.size()};
  CK_ATTRIBUTE id_attr{CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()};
  // The public key object is private too: only who has the PIN can make an object that
  // `key public` and `verify` would read (a public object is never found, see find_own).
  std::vector<CK_ATTRIBUTE> pub = {
      {CKA_CLASS, &pub_cls, sizeof pub_cls},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_VERIFY, &sign, sizeof sign},
      {CKA_ENCRYPT, &decrypt, sizeof decrypt},
      {CKA_WRAP, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},
      label_attr,
      id_attr,
  };
  std::vector<CK_ATTRIBUTE> priv = {
      {CKA_CLASS, &priv_cls, sizeof priv_cls},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no},
      {CKA_SIGN, &sign, sizeof sign},
      {CKA_DECRYPT, &decrypt, sizeof decrypt},
      {CKA_UNWRAP, &no, sizeof no},
      {CKA_DERIVE, &no, sizeof no},
      label_attr,
      id_attr,
  };
  if (p.mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN) {
    pub.push_back({CKA_MODULUS_BITS, &bits, sizeof bits});
    pub.push_back({CKA_PUBLIC_EXPONENT, exponent, sizeof exponent});
  } else {
    pub.push_back(
        {CKA_EC_PARAMS, const_cast<std::uint8_t*>(p.ec_params.data()), p.ec_params.size()});
  }
  CK_MECHANISM mech{p.mechanism, nullptr, 0};
  CK_OBJECT_HANDLE hpub = 0, hpriv = 0;
  auto* fn = module_->fn();
  detail::check(
      with_retry([&] {
        return fn->C_GenerateKeyPair(handle_, &mech, pub.data(), pub.size(), priv.data(),
                                     priv.size(), &hpub, &hpriv);
      }),
      fmt::format("cannot generate a key pair in the token ({})", mechanism_name(p.mechanism)));
  return {hpriv, hpub};
}

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

[[noreturn]] void bad_public_key(std::string_view why) {
  throw Error(Code::integrity, fmt::format("the token's public key object is not usable: {}", why),
              "the token was altered; restore the token directory from a backup");
}

// CKA_EC_POINT is the DER OCTET STRING around the point (PKCS #11 2.40, SoftHSM2); a few tokens
// give the bare point.
Bytes unwrap_point(const Bytes& v) {
  const unsigned char* p = v.data();
  ASN1_OCTET_STRING* os = d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(v.size()));
  if (os != nullptr && p == v.data() + v.size()) {
    Bytes out(os->data, os->data + os->length);
    ASN1_OCTET_STRING_free(os);
    return out;
  }
  ASN1_OCTET_STRING_free(os);
  return v;
}

Pkey from_params(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* k = nullptr;
  const bool ok = params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
                  EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (!ok) bad_public_key(fmt::format("its attributes are not an {} public key", type));
  return Pkey(k);
}

}  // namespace

Bytes Session::public_key_info(ObjectHandle object) {
  auto* fn = module_->fn();
  constexpr std::string_view what = "cannot read a token public key";
  const Bytes type_v = get_attr(fn, handle_, object, CKA_KEY_TYPE, what);
  CK_KEY_TYPE type = 0;
  if (type_v.size() != sizeof type) bad_public_key("no key type");
  std::memcpy(&type, type_v.data(), sizeof type);
  Pkey key;
  if (type == CKK_RSA) {
    const auto v = get_attrs(fn, handle_, object, {CKA_MODULUS, CKA_PUBLIC_EXPONENT}, what);
    BIGNUM* n = BN_bin2bn(v[0].data(), static_cast<int>(v[0].size()), nullptr);
    BIGNUM* e = BN_bin2bn(v[1].data(), static_cast<int>(v[1].size()), nullptr);
    OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
    if (n != nullptr && e != nullptr && bld != nullptr) {
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    }
    key = from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
  } else if (type == CKK_EC) {
    const auto v = get_attrs(fn, handle_, object, {CKA_EC_PARAMS, CKA_EC_POINT}, what);
    const unsigned char* p = v[0].data();
    ASN1_OBJECT* oid = d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(v[0].size()));
    const int nid = oid != nullptr ? OBJ_obj2nid(oid) : NID_undef;
    ASN1_OBJECT_free(oid);
    const char* group = nid != NID_undef ? OBJ_nid2sn(nid) : nullptr;
    if (group == nullptr) bad_public_key("CKA_EC_PARAMS names no known curve");
    Bytes point = unwrap_point(v[1]);
    OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
    if (bld != nullptr) {
      OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    }
    key = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
  } else if (type == CKK_EC_EDWARDS) {
    const Bytes point = unwrap_point(get_attr(fn, handle_, object, CKA_EC_POINT, what));
    if (point.size() != 32) bad_public_key("CKA_EC_POINT is not an Ed25519 point");
    key.reset(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, point.data(), point.size()));
    if (!key) bad_public_key("CKA_EC_POINT is not an Ed25519 point");
  } else {
    bad_public_key(fmt::format("key type 0x{:x}", type));
  }
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key.get(), &der);
  if (len <= 0) bad_public_key("OpenSSL cannot encode it");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

Bytes Session::sign(ObjectHandle key, unsigned long mechanism, void* param, unsigned long param_len,
                    ByteView data) {
  CK_MECHANISM mech{mechanism, param, param_len};
  Bytes out(1024);  // RSA-4096: 512 bytes; ECDSA P-384: 96; Ed25519: 64
  CK_ULONG len = out.size();
  const CK_RV rv = sign_into(module_->fn(), handle_, mech, key, data, out.data(), len);
  detail::check(rv, fmt::format("signing in the token failed ({})", mechanism_name(mechanism)));
  out.resize(len);
  return out;
}

namespace {
bool data_rejected(CK_RV rv) {
  return rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
         rv == CKR_DATA_INVALID || rv == CKR_DATA_LEN_RANGE || rv == CKR_GENERAL_ERROR ||
         rv == CKR_FUNCTION_FAILED;
}
}  // namespace

std::optional<SecureBytes> Session::rsa_oaep_decrypt(ObjectHandle key, ByteView ct) {
  auto* fn = module_->fn();
  SecureBytes out(std::max<std::size_t>(ct.size(), 1));
  CK_ULONG len = out.size();
  auto decrypt = [&](CK_MECHANISM* mech) {
    return with_retry(
        [&] {
          CK_RV r = fn->C_DecryptInit(handle_, mech, key);
          if (r != CKR_OK) return r;
          len = out.size();
          return fn->C_Decrypt(handle_, const_cast<std::uint8_t*>(ct.data()), ct.size(), out.data(),
                               &len);
        },
        2);
  };
  CK_RSA_PKCS_OAEP_PARAMS p{CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, nullptr, 0};
  CK_MECHANISM oaep{CKM_RSA_PKCS_OAEP, &p, sizeof p};
  CK_RV rv = decrypt(&oaep);
  if (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_MECHANISM_INVALID) {
    // The token's OAEP takes only SHA-1 (SoftHSM2 2.6 refuses the parameters before it
    // decrypts anything): the token decrypts raw RSA, and the OAEP block is decoded here.
    CK_MECHANISM raw{CKM_RSA_X_509, nullptr, 0};
    rv = decrypt(&raw);
    if (data_rejected(rv)) return std::nullopt;
    detail::check(rv, "RSA decryption in the token failed (CKM_RSA_X_509)");
    if (len != ct.size()) return std::nullopt;
    return detail::oaep_sha256_decode(ByteView(out.data(), len));
  }
  if (data_rejected(rv)) return std::nullopt;
  detail::check(rv, "RSA-OAEP decryption in the token failed");
  out.truncate(len);
  return out;
}

}  // namespace kms::hsm
