// Which PKCS#11 modules kmsctl agrees to load. The vault header names the module, and it is
// loaded (its code runs, and it receives the PIN) before anything in the header can be
// verified: so whoever can write the vault file must not be able to choose the code. A module is
// loaded only from a place that writer does not control (docs/SECURITY.md §3.3).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

#include "kms/error.hpp"
#include "vault/detail.hpp"

namespace kms::detail {
namespace fs = std::filesystem;

namespace {

// Directories where the system's package manager installs libraries.
constexpr const char* kSystemLibraryDirs[] = {"/usr/lib", "/usr/lib64",     "/usr/lib32", "/lib",
                                              "/lib64",   "/usr/local/lib", "/opt"};
// p11-kit's module registrations: the administrator's and the packages'.
constexpr const char* kP11KitModuleDirs[] = {"/etc/pkcs11/modules", "/usr/share/p11-kit/modules"};

bool writable_by_others(const struct stat& st) { return (st.st_mode & (S_IWGRP | S_IWOTH)) != 0; }

// The file and every directory above it belong to root and no one else can write them.
bool root_owned_chain(const fs::path& file) {
  for (fs::path p = file;; p = p.parent_path()) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || st.st_uid != 0) return false;
    // A sticky, world-writable directory (/tmp) still lets anyone add a file: not trusted.
    if (writable_by_others(st)) return false;
    if (p == p.root_path()) return true;
  }
}

bool under(const fs::path& file, const fs::path& dir) {
  auto f = file.begin();
  for (auto d = dir.begin(); d != dir.end(); ++d, ++f) {
    if (f == file.end() || *f != *d) return false;
  }
  return true;
}

// Paths listed in a file that only its owner (this user or root) can write, one per line.
std::vector<fs::path> listed_in(const fs::path& list, bool must_be_root) {
  struct stat st {};
  if (::stat(list.c_str(), &st) != 0 || writable_by_others(st)) return {};
  if (st.st_uid != 0 && (must_be_root || st.st_uid != ::geteuid())) return {};
  std::vector<fs::path> out;
  std::ifstream in(list);
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (!line.empty() && line[0] != '#') out.emplace_back(line);
  }
  return out;
}

bool registered_with_p11kit(const fs::path& real) {
  for (const char* dir : kP11KitModuleDirs) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() != ".module") continue;
      for (const fs::path& line : listed_in(e.path(), /*must_be_root=*/true)) {
        const std::string s = line.string();
        if (!s.starts_with("module:")) continue;
        std::string name = s.substr(7);
        name.erase(0, name.find_first_not_of(" \t"));
        // A bare name is found in p11-kit's own module directory, under /usr/lib: the system
        // directory rule covers it.
        const fs::path p(name);
        if (p.is_absolute() && fs::weakly_canonical(p, ec) == real) return true;
      }
    }
  }
  return false;
}

}  // namespace

fs::path trusted_modules_file() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  const fs::path base =
      xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : "/") / ".config";
  return base / "kmsctl" / "trusted-modules";
}

void check_module_trusted(const std::string& module, std::string_view named_by) {
  std::error_code ec;
  const fs::path real = fs::canonical(module, ec);
  if (ec) return;  // Module::load reports a missing module
  struct stat st {};
  if (::stat(real.c_str(), &st) != 0) return;
  const fs::path list = trusted_modules_file();
  for (const fs::path& p : listed_in(list, /*must_be_root=*/false)) {
    if (fs::weakly_canonical(p, ec) == real && !writable_by_others(st)) return;
  }
  bool system = false;
  for (const char* dir : kSystemLibraryDirs) system = system || under(real, dir);
  if ((system || registered_with_p11kit(real)) && root_owned_chain(real)) return;
  throw Error(Code::unavailable,
              fmt::format("refusing to load the PKCS#11 module {} {}: it is not installed in a "
                          "system library directory owned by root, nor registered with p11-kit, "
                          "nor listed in {}",
                          real.string(), named_by, list.string()),
              fmt::format("if you trust this module, add the line {} to {} (a file only you can "
                          "write); otherwise restore the vault header from a backup",
                          real.string(), list.string()));
}

}  // namespace kms::detail
