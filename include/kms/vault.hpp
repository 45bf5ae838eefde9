// Where a vault lives and how one is created: the token to use, what `init` reports. The vault
// itself (its file, the unsealed master key, the token session and anchor) is internal
// (src/vault/vault.hpp).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "kms/records.hpp"
#include "kms/secure.hpp"

namespace kms {

struct TokenChoice {
  std::optional<std::string> module;  // none: a private SoftHSM2 token beside the vault
  std::optional<std::string> label;
  std::optional<std::string> serial;
};

struct InitOptions {
  std::filesystem::path vault;
  TokenChoice token;
  bool force = false;  // move an existing vault aside instead of refusing
};

struct InitReport {
  std::string vault_id;
  TokenInfo token;
  std::string module;
  std::optional<SecureBytes> so_pin;                 // set when kmsctl initialised a private token
  std::optional<std::filesystem::path> moved_aside;  // the previous vault, with --force
};

// Paths that belong to a vault file.
std::filesystem::path default_vault_path();
std::filesystem::path lock_path(const std::filesystem::path& vault);
std::filesystem::path private_token_dir(const std::filesystem::path& vault);
std::optional<std::string> find_softhsm_module();

}  // namespace kms
