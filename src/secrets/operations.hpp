// The secret operations of a vault (src/secrets/operations.cpp): one audit record per command,
// one per step of a rotation, each written by the runner (authorise, do, audit). Reached through
// Service::secrets().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/actions.hpp"
#include "kms/secret_policy.hpp"
#include "kms/secure.hpp"
#include "kms/vocab.hpp"
#include "secrets/secret_store.hpp"
#include "vault/vault.hpp"

namespace kms {

class Runner;

class SecretOperations {
 public:
  explicit SecretOperations(Runner& runner);

  secrets::SecretInfo create(const secrets::CreateSpec& spec, const SecretInput& input);
  secrets::SecretInfo put(std::string_view name, const SecretInput& input);
  // `exec`: a read for `kmsctl exec`, which the record names (the variable and the command).
  secrets::Value get(std::string_view name, std::optional<SecretStage> stage,
                     std::optional<std::int64_t> version,
                     const std::optional<secrets::ExecUse>& exec = std::nullopt);
  std::vector<secrets::SecretInfo> list();
  secrets::SecretInfo describe(std::string_view name);
  secrets::SecretInfo versions(std::string_view name);
  // `secret delete`. days: schedule a purge after that many days; none: purge now (--force).
  secrets::SecretInfo remove(std::string_view name, std::optional<std::int64_t> days);
  secrets::SecretInfo restore(std::string_view name);
  secrets::SecretInfo set_rotation(std::string_view name, const secrets::RotationChange& change);
  // A secret's own policy (docs/POLICY.md, "Secret policies"): `text` a policy file (TOML or
  // JSON, at most kMaxSecretPolicy bytes, without problems: Code::usage naming each); none
  // removes it. Neither reads the secret's value.
  static constexpr std::size_t kMaxSecretPolicy = 64 * 1024;
  SecretPolicyInfo set_policy(std::string_view name, const std::optional<std::string>& text);
  SecretPolicyInfo get_policy(std::string_view name);
  // The four-step rotation (README "Secrets"). Code::failed when a step fails (current unchanged).
  SecretRotation rotate(std::string_view name);

 private:
  void rotation_step_failed(std::string_view name, std::string_view step, std::int64_t version,
                            const std::string& failure);
  // describe and versions: the same read of a secret, under their own action names.
  secrets::SecretInfo info(Action action, std::string_view name);

  Runner& runner_;
  Vault& vault_;
};

}  // namespace kms
