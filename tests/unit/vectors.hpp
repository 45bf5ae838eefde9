// Helpers of the unit tests that read known-answer vectors (tests/vectors/): hex decoding that
// does not use the code under test, and the Wycheproof files (tests/vectors/wycheproof/).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "kms/crypto.hpp"
#include "kms/secure.hpp"

namespace kms::test {

// Independent of kms::crypto::from_hex, so a bug there cannot hide a bug in the vectors' use.
inline Bytes unhex(std::string_view h) {
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("bad hex in test vector");
  };
  if (h.size() % 2 != 0) throw std::invalid_argument("odd hex in test vector");
  Bytes out(h.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(nib(h[2 * i]) << 4 | nib(h[2 * i + 1]));
  }
  return out;
}

inline Bytes unhex(const nlohmann::json& j, const char* field) {
  return unhex(std::string_view(j.at(field).get_ref<const std::string&>()));
}

// ctest runs the crypto suites twice: as they are, and (..._without_legacy_tables, with
// KMS_TEST_SKIP_OPENSSL_LEGACY_TABLES set) after skip_openssl_legacy_tables() ran before any
// test, as kmsctl runs when its token is SoftHSM2. Initialise a static with it.
inline bool skip_legacy_tables_if_asked() {
  if (std::getenv("KMS_TEST_SKIP_OPENSSL_LEGACY_TABLES") == nullptr) return false;
  kms::crypto::skip_openssl_legacy_tables();
  return true;
}

#ifdef KMS_WYCHEPROOF_DIR
// Loads a Wycheproof file; FAILs (not skips) naming the file when it is missing or unreadable.
inline nlohmann::json load_vectors(const std::string& name) {
  const std::filesystem::path path = std::filesystem::path(KMS_WYCHEPROOF_DIR) / name;
  std::ifstream in(path);
  if (!in) {
    FAIL("Wycheproof vector file not found: " << path.string()
                                              << " (tests/vectors/wycheproof/ in the repository)");
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.contains("testGroups")) {
    FAIL("Wycheproof vector file is not valid JSON with testGroups: " << path.string());
  }
  return j;
}
#endif

inline std::string case_name(const nlohmann::json& t) {
  return "tcId " + std::to_string(t.at("tcId").get<int>()) + " (" +
         t.value("comment", std::string()) + ")";
}

}  // namespace kms::test
