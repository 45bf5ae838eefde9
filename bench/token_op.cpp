// bench_token_op: the bare PKCS#11 baseline for `kmsctl status` (scripts/bench.sh).
//
// One process does exactly what a CLI command must do at least once: load the module, initialise
// it, open a session on the token with the given label, log in as user, find an AES key by label
// and run one CKM_AES_GCM C_Encrypt of 32 bytes, then finalise. No kmsctl code is involved: raw
// dlopen + the p11-kit pkcs11.h header, so this is the floor a CLI on this token can reach.
//
//   usage: KMSCTL_PIN=... bench_token_op MODULE TOKEN_LABEL KEY_LABEL
//   (SOFTHSM2_CONF selects the SoftHSM2 token directory, as for kmsctl)
//   BENCH_TRACE=1 prints the time of each step to stderr.
#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <p11-kit/pkcs11.h>

namespace {

using Clock = std::chrono::steady_clock;
bool g_trace = false;
Clock::time_point g_last;

void step(const char* name) {
  if (!g_trace) return;
  const auto now = Clock::now();
  std::fprintf(stderr, "%-22s %8.3f ms\n", name,
               std::chrono::duration<double, std::milli>(now - g_last).count());
  g_last = now;
}

[[noreturn]] void die(const char* what, CK_RV rv) {
  std::fprintf(stderr, "bench_token_op: %s failed (CK_RV 0x%lx)\n", what,
               static_cast<unsigned long>(rv));
  std::exit(1);
}

void check(CK_RV rv, const char* what) {
  if (rv != CKR_OK) die(what, rv);
}

std::string trim(const unsigned char* field, size_t n) {
  std::string s(reinterpret_cast<const char*>(field), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: KMSCTL_PIN=... %s MODULE TOKEN_LABEL KEY_LABEL\n", argv[0]);
    return 2;
  }
  const char* module = argv[1];
  const std::string_view token_label = argv[2];
  const std::string_view key_label = argv[3];
  const char* pin_env = std::getenv("KMSCTL_PIN");
  if (pin_env == nullptr || *pin_env == '\0') {
    std::fprintf(stderr, "bench_token_op: set KMSCTL_PIN to the token user PIN\n");
    return 2;
  }
  std::string pin = pin_env;
  g_trace = std::getenv("BENCH_TRACE") != nullptr;
  g_last = Clock::now();
  const auto start = g_last;

  void* lib = ::dlopen(module, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "bench_token_op: cannot load %s: %s\n", module, ::dlerror());
    return 1;
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(lib, "C_GetFunctionList"));
  CK_FUNCTION_LIST* f = nullptr;
  if (get == nullptr || get(&f) != CKR_OK || f == nullptr) {
    std::fprintf(stderr, "bench_token_op: %s is not a PKCS#11 module\n", module);
    return 1;
  }
  step("dlopen");

  CK_C_INITIALIZE_ARGS init{};
  init.flags = CKF_OS_LOCKING_OK;
  check(f->C_Initialize(&init), "C_Initialize");
  step("C_Initialize");

  CK_ULONG count = 0;
  check(f->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(count);
  check(f->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
  slots.resize(count);
  bool found = false;
  CK_SLOT_ID slot = 0;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO ti{};
    if (f->C_GetTokenInfo(s, &ti) != CKR_OK) continue;
    if ((ti.flags & CKF_TOKEN_INITIALIZED) && trim(ti.label, sizeof ti.label) == token_label) {
      slot = s;
      found = true;
      break;
    }
  }
  if (!found) {
    std::fprintf(stderr, "bench_token_op: no token labelled \"%.*s\"\n",
                 static_cast<int>(token_label.size()), token_label.data());
    return 1;
  }
  step("find token");

  CK_SESSION_HANDLE h = 0;
  check(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h),
        "C_OpenSession");
  step("C_OpenSession");
  check(f->C_Login(h, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size()), "C_Login");
  std::memset(pin.data(), 0, pin.size());
  step("C_Login");

  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_LABEL, const_cast<char*>(key_label.data()), key_label.size()},
  };
  check(f->C_FindObjectsInit(h, tmpl, 2), "C_FindObjectsInit");
  CK_OBJECT_HANDLE key = 0;
  CK_ULONG n = 0;
  check(f->C_FindObjects(h, &key, 1, &n), "C_FindObjects");
  check(f->C_FindObjectsFinal(h), "C_FindObjectsFinal");
  if (n != 1) {
    std::fprintf(stderr, "bench_token_op: no secret key labelled \"%.*s\"\n",
                 static_cast<int>(key_label.size()), key_label.data());
    return 1;
  }
  step("find key");

  unsigned char iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  unsigned char pt[32] = {};
  unsigned char ct[32 + 16];
  CK_GCM_PARAMS p{};
  p.pIv = iv;
  p.ulIvLen = sizeof iv;
  p.ulIvBits = sizeof iv * 8;
  p.ulTagBits = 128;
  CK_MECHANISM mech{CKM_AES_GCM, &p, sizeof p};
  check(f->C_EncryptInit(h, &mech, key), "C_EncryptInit");
  CK_ULONG len = sizeof ct;
  check(f->C_Encrypt(h, pt, sizeof pt, ct, &len), "C_Encrypt");
  if (len != sizeof ct) die("C_Encrypt (unexpected length)", CKR_GENERAL_ERROR);
  step("AES-GCM encrypt");

  f->C_Logout(h);
  f->C_CloseSession(h);
  check(f->C_Finalize(nullptr), "C_Finalize");
  step("logout+close+finalize");
  if (g_trace) {
    std::fprintf(stderr, "%-22s %8.3f ms\n", "total (in process)",
                 std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  // SoftHSM2 registers atexit handlers: the module stays mapped (as in kmsctl).
  return 0;
}
