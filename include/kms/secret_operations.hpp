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
#include "kms/secrets.hpp"
#include "kms/secure.hpp"
#include "kms/vault.hpp"
#include "kms/vocab.hpp"

namespace kms {

class Runner;

// How a secret's value is given: bytes, or generated with the secret's generator.
struct SecretInput {
  std::optional<SecureBytes> value;  // none: generate
  secrets::Generator generator;
};

struct SecretRotation {
  std::string name;
  std::int64_t version = 0;           // the new current version
  std::int64_t previous_version = 0;  // now previous
  bool resumed = false;               // a pending version from an earlier attempt was finished
  std::vector<std::string> steps;     // the steps run, in order
};

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
