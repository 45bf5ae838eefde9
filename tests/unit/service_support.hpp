// Helpers shared by the unit tests that open a vault through kms::Service (linked with
// kms_service or above): a fresh vault on a private SoftHSM2 token.
#pragma once

#include <filesystem>
#include <memory>

#include "support.hpp"

#include "kms/service.hpp"
#include "vault/vault.hpp"

namespace kms::test {

// Creates a vault at `path` (its private token beside it) and opens it, with kPin as user PIN.
inline std::unique_ptr<Service> init_service(const std::filesystem::path& path) {
  InitOptions opts;
  opts.vault = path;
  InitReport report;
  return Service::init(opts, pin_of(kPin), report);
}

}  // namespace kms::test
