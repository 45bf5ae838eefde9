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
  const Error e(Code::failed, "cannot write out.bin: No space left on device",
                "check free space on that file system");
  CHECK(e.code() == Code::failed);
  CHECK(std::string(e.what()) == "cannot write out.bin: No space left on device");
  CHECK(e.hint() == "check free space on that file system");
  CHECK(e.remedy() == Remedy::none);
  CHECK(e.subject().empty());
  const std::runtime_error& base = e;
  CHECK(std::string(base.what()) == "cannot write out.bin: No space left on device");
  CHECK(Error(Code::failed, "x").hint().empty());
}

TEST_CASE("Error carries a remedy and its subject, and a hint only where one is given") {
  const Error e(Code::refused, "key alias/app is disabled", Remedy::enable_key, "alias/app");
  CHECK(e.code() == Code::refused);
  CHECK(std::string(e.what()) == "key alias/app is disabled");
  CHECK(e.remedy() == Remedy::enable_key);
  CHECK(e.subject() == "alias/app");
  CHECK(e.hint().empty());
  const Error with_hint(Code::failed, "rotation failed", Remedy::retry_rotation, "app/db",
                        "it starts again at step create");
  CHECK(with_hint.hint() == "it starts again at step create");
  // Copies keep all of it (a failure is kept and thrown again as the best of several).
  const Error copy = with_hint;
  CHECK(copy.remedy() == Remedy::retry_rotation);
  CHECK(copy.subject() == "app/db");
}
