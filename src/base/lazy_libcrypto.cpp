// The other half of the stubs that cmake/lazy_library.cmake generates for libcrypto: the first call
// of a libcrypto function lands here, which loads the library once and fills that function's slot.
// Only kmsctl links this (CMakeLists.txt, KMS_LAZY_LIBCRYPTO): a command that an agent serves
// never maps OpenSSL; the rest pay for it at their first call instead of at start.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

extern "C" {
extern const char kms_lazy_crypto_soname[];
extern const std::uint32_t kms_lazy_crypto_count;
extern const char kms_lazy_crypto_names[];
extern const std::uint32_t kms_lazy_crypto_offsets[];
extern void* kms_lazy_crypto_table[];
void* kms_lazy_crypto_resolve(std::uint32_t index);
}

namespace {

// Without the library kmsctl cannot go on, as the dynamic loader would have refused to start it.
[[noreturn]] void fail(const char* what, const char* detail) {
  char message[512];
  const int n = std::snprintf(message, sizeof message,
                              "kmsctl: error: %s: %s\nhint: install OpenSSL 3's library "
                              "(Debian package libssl3)\n",
                              what, detail != nullptr ? detail : "unknown error");
  if (n > 0) {
    [[maybe_unused]] const ssize_t w =
        ::write(2, message,
                static_cast<std::size_t>(n) < sizeof message ? static_cast<std::size_t>(n)
                                                             : sizeof message - 1);
  }
  ::_exit(1);  // exit code 1: the operation failed
}

void* library() {
  // A function-local static: initialised once, even when two threads make their first call at once.
  static void* const handle = [] {
    void* h = ::dlopen(kms_lazy_crypto_soname, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) fail("cannot load libcrypto", ::dlerror());
    return h;
  }();
  return handle;
}

}  // namespace

extern "C" void* kms_lazy_crypto_resolve(std::uint32_t index) {
  if (index >= kms_lazy_crypto_count) fail("libcrypto stub", "index out of range");
  const char* name = kms_lazy_crypto_names + kms_lazy_crypto_offsets[index];
  void* const f = ::dlsym(library(), name);
  if (f == nullptr) fail(name, ::dlerror());
  __atomic_store_n(&kms_lazy_crypto_table[index], f, __ATOMIC_RELEASE);
  return f;
}
