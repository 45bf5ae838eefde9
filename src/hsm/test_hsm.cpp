// Unit tests of kms::hsm that need no token: CK_RV names and loading modules by path. The token
// operations themselves run against a real SoftHSM2 token in test_vault.cpp.
#include <cctype>
#include <filesystem>
#include <functional>
#include <string>

#include "support.hpp"
#include <doctest/doctest.h>

#include "hsm/hsm.hpp"
#include "kms/error.hpp"

using namespace kms;
using kms::test::error_of;

TEST_CASE("rv_name names the CK_RV constants and shows unknown values in hex") {
  CHECK(hsm::rv_name(CKR_OK) == "CKR_OK");
  CHECK(hsm::rv_name(CKR_PIN_INCORRECT) == "CKR_PIN_INCORRECT");
  CHECK(hsm::rv_name(CKR_PIN_LOCKED) == "CKR_PIN_LOCKED");
  CHECK(hsm::rv_name(CKR_GENERAL_ERROR) == "CKR_GENERAL_ERROR");
  CHECK(hsm::rv_name(CKR_ENCRYPTED_DATA_INVALID) == "CKR_ENCRYPTED_DATA_INVALID");
  CHECK(hsm::rv_name(CKR_CRYPTOKI_NOT_INITIALIZED) == "CKR_CRYPTOKI_NOT_INITIALIZED");
  std::string unknown = hsm::rv_name(0x7abcdefUL);
  for (char& c : unknown) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CHECK(unknown.find("7abcdef") != std::string::npos);
  CHECK(hsm::rv_name(0x7abcdefUL) != hsm::rv_name(0x7abcdeeUL));
}

TEST_CASE("Module::load of a missing path is Code::unavailable naming the path") {
  kms::test::TempDir dir;
  const std::string path = (dir / "libnothing.so").string();
  const Error e = error_of([&] { (void)hsm::Module::load(path); });
  CHECK(e.code() == Code::unavailable);
  CHECK(std::string(e.what()).find(path) != std::string::npos);
  CHECK(e.remedy() == Remedy::install_module);
}

TEST_CASE("Module::load of a file that is not a shared library is Code::unavailable") {
  kms::test::TempDir dir;
  kms::test::write_file(dir / "fake.so", "not an ELF file");
  CHECK(error_of([&] { (void)hsm::Module::load((dir / "fake.so").string()); }).code() ==
        Code::unavailable);
}

TEST_CASE("Module::load of a shared library without C_GetFunctionList is Code::unavailable") {
  std::string lib;
  for (const char* p :
       {"/usr/lib/x86_64-linux-gnu/libsqlite3.so.0", "/usr/lib/aarch64-linux-gnu/libsqlite3.so.0",
        "/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"}) {
    if (std::filesystem::exists(p)) {
      lib = p;
      break;
    }
  }
  REQUIRE_MESSAGE(!lib.empty(), "no ordinary shared library found to load");
  const Error e = error_of([&] { (void)hsm::Module::load(lib); });
  CHECK(e.code() == Code::unavailable);
  CHECK(std::string(e.what()).find("not a PKCS#11 module") != std::string::npos);
}
