// Unit tests of kms::Error and its code vocabulary (docs/ARCHITECTURE.md §6 exit codes).
#include <string>

#include <doctest/doctest.h>

#include "kms/error.hpp"

using namespace kms;

TEST_CASE("exit_code maps each Code to the exit status of ARCHITECTURE.md §6") {
  CHECK(exit_code(Code::failed) == 1);
  CHECK(exit_code(Code::usage) == 2);
  CHECK(exit_code(Code::not_found) == 3);
  CHECK(exit_code(Code::refused) == 4);
  CHECK(exit_code(Code::integrity) == 5);
  CHECK(exit_code(Code::unavailable) == 6);
}

TEST_CASE("code_name gives the stable lower-case names written into audit records") {
  CHECK(code_name(Code::failed) == "failed");
  CHECK(code_name(Code::usage) == "usage");
  CHECK(code_name(Code::not_found) == "not_found");
  CHECK(code_name(Code::refused) == "refused");
  CHECK(code_name(Code::integrity) == "integrity");
  CHECK(code_name(Code::unavailable) == "unavailable");
  CHECK(code_name(static_cast<Code>(42)) == "failed");  // never an empty or garbage name
}

TEST_CASE("Error carries its code, message and hint and is a std::runtime_error") {
  const Error e(Code::refused, "key alias/app is disabled", "enable it with `kmsctl key enable`");
  CHECK(e.code() == Code::refused);
  CHECK(std::string(e.what()) == "key alias/app is disabled");
  CHECK(e.hint() == "enable it with `kmsctl key enable`");
  const std::runtime_error& base = e;
  CHECK(std::string(base.what()) == "key alias/app is disabled");
  CHECK(Error(Code::failed, "x").hint().empty());
}
