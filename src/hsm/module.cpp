#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "check.hpp"
#include <fmt/format.h>
#include <p11-kit/pkcs11.h>

#include "hsm/faulty.hpp"
#include "hsm/hsm.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/signals.hpp"

namespace kms::hsm {
namespace {

std::string trim_field(const unsigned char* field, size_t n) {
  std::string s(reinterpret_cast<const char*>(field), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

TokenInfo to_info(SlotId slot, const CK_TOKEN_INFO& ti) {
  TokenInfo t;
  t.slot = slot;
  t.label = trim_field(ti.label, sizeof ti.label);
  t.serial = trim_field(ti.serialNumber, sizeof ti.serialNumber);
  t.manufacturer = trim_field(ti.manufacturerID, sizeof ti.manufacturerID);
  t.model = trim_field(ti.model, sizeof ti.model);
  t.initialized = (ti.flags & CKF_TOKEN_INITIALIZED) != 0;
  t.user_pin_initialized = (ti.flags & CKF_USER_PIN_INITIALIZED) != 0;
  t.user_pin_locked = (ti.flags & CKF_USER_PIN_LOCKED) != 0;
  t.user_pin_final_try = (ti.flags & CKF_USER_PIN_FINAL_TRY) != 0;
  t.min_pin_len = ti.ulMinPinLen;
  t.max_pin_len = ti.ulMaxPinLen;
  return t;
}

}  // namespace

namespace {
// A PKCS#11 library has one state per process: every Module of one path shares it, so that
// closing one does not finalise the library under another.
struct Loaded {
  std::string config;  // SOFTHSM2_CONF when loaded: a library reads its configuration once
  std::weak_ptr<Module> module;
};
std::mutex registry_mutex;
std::map<std::string, Loaded>& registry() {
  static std::map<std::string, Loaded> r;
  return r;
}
std::string current_config() {
  const char* c = std::getenv("SOFTHSM2_CONF");
  return c ? c : "";
}

// SoftHSM2 2.6 shares this process's OpenSSL and reaches its algorithms only through EVP_aes_*(),
// EVP_sha*() and the like, never by name (`nm -D --undefined-only libsofthsm2.so`), so it works
// without the legacy tables its C_Initialize would have OpenSSL build: about 0.5 ms of every
// command. What it loses: an OpenSSL error in its syslog lines reads as a code (`openssl errstr`
// decodes it). Other modules may look algorithms up by name, and get OpenSSL as it starts.
bool is_softhsm2(const std::string& path) {
  return std::filesystem::path(path).filename().string().starts_with("libsofthsm2.so");
}
}  // namespace

std::shared_ptr<Module> Module::load(const std::string& path) {
  std::lock_guard lock(registry_mutex);
  auto it = registry().find(path);
  if (it != registry().end()) {
    if (auto live = it->second.module.lock()) {
      if (it->second.config != current_config()) {
        throw Error(Code::unavailable,
                    fmt::format("{} is already in use in this process with the configuration {}",
                                path, it->second.config),
                    "open vaults of different private SoftHSM2 tokens in separate processes");
      }
      return live;
    }
  }
  auto m = load_new(path);
  registry()[path] = {current_config(), m};
  return m;
}

std::shared_ptr<Module> Module::load_new(const std::string& path) {
  if (is_softhsm2(path)) crypto::skip_openssl_legacy_tables();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    throw Error(Code::unavailable,
                fmt::format("cannot load PKCS#11 module {}: {}", path, dlerror()),
                Remedy::install_module);
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* fn = nullptr;
  if (get == nullptr || get(&fn) != CKR_OK || fn == nullptr) {
    ::dlclose(handle);
    throw Error(Code::unavailable,
                fmt::format("{} is not a PKCS#11 module (no C_GetFunctionList)", path),
                Remedy::choose_module);
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  const CK_RV rv = fn->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    ::dlclose(handle);
    try {
      detail::check(rv, fmt::format("cannot initialise PKCS#11 module {}", path));
    } catch (const Error& e) {
      throw Error(Code::unavailable, e.what(),
                  "check the module's configuration (for SoftHSM2: SOFTHSM2_CONF and its "
                  "token directory)");
    }
  }
  return std::shared_ptr<Module>(new Module(path, handle, detail::with_faults(fn)));
}

Module::Module(std::string path, void* handle, CK_FUNCTION_LIST* fn)
    : path_(std::move(path)), handle_(handle), fn_(fn) {}

Module::~Module() {
  fn_->C_Finalize(nullptr);
  // SoftHSM2 registers atexit handlers; unloading it early crashes at exit. Leave it mapped.
  (void)handle_;
}

bool Module::reload() {
  if (open_sessions_ != 0) return false;
  fn_->C_Finalize(nullptr);
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  return fn_->C_Initialize(&args) == CKR_OK;
}

std::vector<TokenInfo> Module::tokens() const {
  CK_ULONG count = 0;
  detail::check(fn_->C_GetSlotList(CK_TRUE, nullptr, &count), "cannot list token slots");
  std::vector<CK_SLOT_ID> slots(count);
  detail::check(fn_->C_GetSlotList(CK_TRUE, slots.data(), &count), "cannot list token slots");
  slots.resize(count);
  std::vector<TokenInfo> out;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO ti{};
    if (fn_->C_GetTokenInfo(s, &ti) == CKR_OK) out.push_back(to_info(s, ti));
  }
  return out;
}

TokenInfo Module::find_token(const std::optional<std::string>& label,
                             const std::optional<std::string>& serial) const {
  // A software token being written by another process at the moment this one initialised can be
  // missing from its slot list (SoftHSM2 scans the token directory in C_Initialize): look again
  // after re-initialising the module before concluding that the token is absent. Only while no
  // session is open: C_Finalize would close the sessions of every other user of this module.
  // A C_Login rewrites the token file (strace: truncate, then write), so with 8 processes
  // logging in a scan can catch it half-written: 6 looks over 310 ms still missed it once in 400
  // commands (ci-like run, e2e_robustness_concurrency). 12 looks, 10 to 50 ms apart: up to 0.5 s.
  constexpr int kAttempts = 12;
  const int attempts = open_sessions_ == 0 ? kAttempts : 1;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) {
      ::usleep(std::min(5000u << attempt, 50000u));
      const_cast<Module*>(this)->reload();
    }
    for (const TokenInfo& t : tokens()) {
      if (!t.initialized) continue;
      if (label && t.label != *label) continue;
      if (serial && t.serial != *serial) continue;
      return t;
    }
  }
  std::string which = serial ? fmt::format("serial {}", *serial) : std::string();
  if (label) which = fmt::format("label \"{}\"{}", *label, which.empty() ? "" : " and " + which);
  // p11-kit's client module shows the tokens of the server at P11_KIT_SERVER_ADDRESS: none when
  // that server is down or the variable is unset.
  const bool forwarded = std::filesystem::path(path_).filename() == "p11-kit-client.so";
  throw Error(Code::unavailable,
              fmt::format("no initialised token with {} in PKCS#11 module {}", which, path_),
              forwarded
                  ? "check that P11_KIT_SERVER_ADDRESS names the socket of a running "
                    "`p11-kit server` that exports this token (pkcs11-tool --module MODULE "
                    "--list-slots lists what it exports)"
                  : "check the token label/serial (pkcs11-tool --module MODULE --list-slots)");
}

TokenInfo Module::init_token(SlotId slot, std::string_view label, const SecureBytes& so_pin,
                             const SecureBytes& user_pin) {
  const signals::Deferred hold;  // C_InitToken and C_InitPIN write the token's files
  unsigned char padded[32];
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, label.data(), std::min(label.size(), sizeof padded));
  detail::check(
      fn_->C_InitToken(slot, const_cast<CK_UTF8CHAR*>(so_pin.data()), so_pin.size(), padded),
      "cannot initialise the token");
  // C_InitPIN needs a session logged in as SO.
  CK_SESSION_HANDLE h = 0;
  detail::check(fn_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h),
                "cannot open a session on the new token");
  CK_RV rv = fn_->C_Login(h, CKU_SO, const_cast<CK_UTF8CHAR*>(so_pin.data()), so_pin.size());
  if (rv == CKR_OK)
    rv = fn_->C_InitPIN(h, const_cast<CK_UTF8CHAR*>(user_pin.data()), user_pin.size());
  fn_->C_Logout(h);
  fn_->C_CloseSession(h);
  detail::check(rv, "cannot set the user PIN on the new token");
  for (const TokenInfo& t : tokens()) {
    if (t.initialized && t.label == std::string(label.substr(0, 32))) return t;
  }
  throw Error(Code::failed, "the new token is not listed by the module after initialisation");
}

}  // namespace kms::hsm
