// The other half of the stubs that cmake/lazy_library.cmake generates for libcrypto and libpq:
// the first call of one of their functions lands here, which loads the library once and fills
// that function's slot. Only kmsctl links this (CMakeLists.txt, KMS_LAZY_LIBCRYPTO): a command
// that an agent serves never maps OpenSSL, a vault in a file never maps libpq, and the rest pay
// for them at their first call instead of at start.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace {

// Without the library kmsctl cannot go on, as the dynamic loader would have refused to start it.
[[noreturn]] void fail(const char* what, const char* detail, const char* package) {
  char message[512];
  const int n = std::snprintf(message, sizeof message, "kmsctl: error: %s: %s\nhint: install %s\n",
                              what, detail != nullptr ? detail : "unknown error", package);
  if (n > 0) {
    [[maybe_unused]] const ssize_t w =
        ::write(2, message,
                static_cast<std::size_t>(n) < sizeof message ? static_cast<std::size_t>(n)
                                                             : sizeof message - 1);
  }
  ::_exit(1);  // exit code 1: the operation failed
}

// The symbols the generator defines for one library, under its prefix.
struct Library {
  const char* soname;
  std::uint32_t count;
  const char* names;
  const std::uint32_t* offsets;
  void** table;
  const char* package;  // what the hint tells to install
};

void* load(const Library& lib) {
  void* h = ::dlopen(lib.soname, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) fail("cannot load a library kmsctl needs", ::dlerror(), lib.package);
  return h;
}

void* resolve(const Library& lib, void* handle, std::uint32_t index) {
  if (index >= lib.count) fail("lazy library stub", "index out of range", lib.package);
  const char* name = lib.names + lib.offsets[index];
  void* const f = ::dlsym(handle, name);
  if (f == nullptr) fail(name, ::dlerror(), lib.package);
  __atomic_store_n(&lib.table[index], f, __ATOMIC_RELEASE);
  return f;
}

}  // namespace

// One resolver per library. Its handle is a function-local static: loaded once, even when two
// threads make their first call at once.
#define KMS_LAZY_LIBRARY(prefix, package_hint)                                 \
  extern "C" {                                                                 \
  extern const char prefix##_soname[];                                         \
  extern const std::uint32_t prefix##_count;                                   \
  extern const char prefix##_names[];                                          \
  extern const std::uint32_t prefix##_offsets[];                               \
  extern void* prefix##_table[];                                               \
  void* prefix##_resolve(std::uint32_t index) {                                \
    static const Library lib{prefix##_soname,  prefix##_count, prefix##_names, \
                             prefix##_offsets, prefix##_table, package_hint};  \
    static void* const handle = load(lib);                                     \
    return resolve(lib, handle, index);                                        \
  }                                                                            \
  }

KMS_LAZY_LIBRARY(kms_lazy_crypto, "OpenSSL 3's library (Debian package libssl3)")
KMS_LAZY_LIBRARY(kms_lazy_pq, "PostgreSQL's client library (Debian package libpq5)")
