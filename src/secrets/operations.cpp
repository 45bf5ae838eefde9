// The secret operations: each command is one audited transaction; a rotation is
// one audited transaction per step, with the hook run between them (outside any transaction and
// the vault's writer lock, so that a hook may itself call kmsctl, e.g. for an admin secret).
#include "secrets/operations.hpp"

#include "policy/policy.hpp"
#include <fmt/format.h>

#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "runner/runner.hpp"

namespace kms {
namespace {

audit::Event secret_event(Action action, std::string_view name) {
  return {action, secret_resource(name), {{"name", std::string(name)}}};
}

SecureBytes input_value(const SecretInput& in) {
  if (in.value) return SecureBytes(in.value->view());
  return secrets::generate(in.generator);
}

SecretPolicyInfo policy_info(const store::SecretRow& s,
                             const std::optional<store::SecretPolicyRow>& row) {
  SecretPolicyInfo info;
  info.name = s.name;
  info.secret_id = s.id;
  if (row) {
    info.text = row->text;
    info.sha256 = row->sha256;
    info.updated = row->updated;
    info.updated_by_uid = row->updated_by_uid;
  }
  return info;
}

}  // namespace

SecretOperations::SecretOperations(Runner& runner) : runner_(runner), vault_(runner.vault()) {}

secrets::SecretInfo SecretOperations::create(const secrets::CreateSpec& spec,
                                             const SecretInput& input) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  secrets::SecretInfo info;
  audit::Event ev = secret_event(Action::secret_create, spec.name);
  ev.params["generated"] = !input.value.has_value();
  if (spec.key) audit::name_key(ev.params, *spec.key);
  if (spec.rotation_days) ev.params["rotation_period_days"] = *spec.rotation_days;
  ev.params["rotation_command"] = spec.rotation_command.has_value();
  runner_.run(std::move(ev), [&](audit::Event& e) {
    const SecureBytes value = input_value(input);
    bool key_created = false;
    const store::SecretRow s = ss.create(spec, value.view(), now(), key_created);
    e.params["key_id"] = s.key_id;
    e.params["version"] = 1;
    if (key_created) e.params["key_created"] = true;
    info = ss.describe(s);
  });
  return info;
}

secrets::SecretInfo SecretOperations::put(std::string_view name, const SecretInput& input) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  secrets::SecretInfo info;
  audit::Event ev = secret_event(Action::secret_put, name);
  ev.params["generated"] = !input.value.has_value();
  runner_.run(std::move(ev), [&](audit::Event& e) {
    store::SecretRow s = ss.resolve(name);
    secrets::Generator gen = input.generator;
    if (!input.value && gen.length == 0) gen = {s.gen_length, s.gen_charset, s.gen_exclude};
    const SecureBytes value =
        input.value ? SecureBytes(input.value->view()) : secrets::generate(gen);
    e.params["version"] = ss.add_version(s, value.view(), SecretStage::current, now());
    info = ss.describe(s);
  });
  return info;
}

secrets::Value SecretOperations::get(std::string_view name, std::optional<SecretStage> stage,
                                     std::optional<std::int64_t> version,
                                     const std::optional<secrets::ExecUse>& exec) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  std::optional<secrets::Value> out;
  audit::Event ev = secret_event(Action::secret_get, name);
  if (stage) ev.params["stage"] = std::string(secret_stage_name(*stage));
  if (version) ev.params["version"] = *version;
  if (exec) ev.params["exec"] = {{"env", exec->env}, {"command", exec->command}};
  runner_.run(std::move(ev), [&](audit::Event& e) {
    const store::SecretRow s = ss.resolve(name);
    e.params["key_id"] = s.key_id;
    out = ss.read(s, stage, version);
    e.params["version"] = out->version;
  });
  return std::move(*out);
}

std::vector<secrets::SecretInfo> SecretOperations::list() {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  std::vector<secrets::SecretInfo> out;
  runner_.run({Action::secret_list, "vault/" + vault_.meta().vault_id, {}}, [&](audit::Event& e) {
    for (const auto& s : store::secret_list(vault_.db())) out.push_back(ss.describe(s));
    e.params["count"] = out.size();
  });
  return out;
}

secrets::SecretInfo SecretOperations::info(Action action, std::string_view name) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  secrets::SecretInfo info;
  runner_.run(secret_event(action, name),
              [&](audit::Event&) { info = ss.describe(ss.resolve(name)); });
  return info;
}

secrets::SecretInfo SecretOperations::describe(std::string_view name) {
  return info(Action::secret_describe, name);
}

secrets::SecretInfo SecretOperations::versions(std::string_view name) {
  return info(Action::secret_versions, name);
}

secrets::SecretInfo SecretOperations::remove(std::string_view name,
                                             std::optional<std::int64_t> days) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  secrets::SecretInfo info;
  audit::Event ev = secret_event(Action::secret_delete, name);
  ev.params["force"] = !days.has_value();
  if (days) ev.params["recovery_days"] = *days;
  runner_.run(std::move(ev), [&](audit::Event& e) {
    store::SecretRow s = ss.resolve(name);
    if (days) {
      e.params["deletion_date"] = ss.schedule_deletion(s, *days, now());
      info = ss.describe(s);
    } else {
      info = ss.describe(s);
      ss.erase(s);
      e.params["purged_versions"] = info.versions.size();
    }
  });
  return info;
}

secrets::SecretInfo SecretOperations::restore(std::string_view name) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  secrets::SecretInfo info;
  runner_.run(secret_event(Action::secret_restore, name), [&](audit::Event&) {
    store::SecretRow s = ss.resolve(name);
    ss.restore(s);
    info = ss.describe(s);
  });
  return info;
}

secrets::SecretInfo SecretOperations::set_rotation(std::string_view name,
                                                   const secrets::RotationChange& change) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  secrets::SecretInfo info;
  audit::Event ev = secret_event(Action::secret_set_rotation, name);
  if (change.set_period) {
    ev.params["rotation_period_days"] = json_or_null(change.period_days);
  }
  // As at create: whether a hook is set, not its text.
  if (change.set_command) ev.params["rotation_command"] = change.command.has_value();
  runner_.run(std::move(ev), [&](audit::Event&) {
    store::SecretRow s = ss.resolve(name);
    ss.set_rotation(s, change, now());
    info = ss.describe(s);
  });
  return info;
}

SecretPolicyInfo SecretOperations::set_policy(std::string_view name,
                                              const std::optional<std::string>& text) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  SecretPolicyInfo info;
  runner_.run(secret_event(Action::secret_set_policy, name), [&](audit::Event& e) {
    const store::SecretRow s = ss.resolve(name);
    store::Db& db = vault_.db();
    if (!text) {
      e.params["removed"] = store::secret_policy_delete(db, s.id);
      info = policy_info(s, std::nullopt);
      return;
    }
    const policy::Policy parsed =
        policy::parse_resource_policy(*text, "secret", s.name, kMaxSecretPolicy);
    store::SecretPolicyRow row;
    row.secret_id = s.id;
    row.text = *text;
    row.sha256 = crypto::to_hex(crypto::sha256(as_bytes(*text)));
    row.updated = format_rfc3339(now());
    row.updated_by_uid = runner_.caller().uid;
    e.params["sha256"] = row.sha256;
    e.params["statements"] = parsed.statements().size();
    store::secret_policy_put(db, row);
    info = policy_info(s, row);
  });
  return info;
}

SecretPolicyInfo SecretOperations::get_policy(std::string_view name) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  SecretPolicyInfo info;
  runner_.run(secret_event(Action::secret_get_policy, name), [&](audit::Event& e) {
    const store::SecretRow s = ss.resolve(name);
    const auto row = store::secret_policy_get(vault_.db(), s.id);
    if (row) e.params["sha256"] = row->sha256;
    info = policy_info(s, row);
  });
  return info;
}

void SecretOperations::rotation_step_failed(std::string_view name, std::string_view step,
                                            std::int64_t version, const std::string& failure) {
  audit::Event ev = secret_event(Action::secret_rotate, name);
  ev.params["step"] = std::string(step);
  ev.params["version"] = version;
  ev.params["failure"] = failure;
  runner_.run_failed(std::move(ev), Code::failed, [&](audit::Event&) {
    if (auto s = store::secret_by_name(vault_.db(), name)) {
      s->rotation_status = RotationStatus::failed;
      s->rotation_error =
          fmt::format("{}: step {} failed: {}", format_rfc3339(now()), step, failure);
      store::secret_update(vault_.db(), *s);
    }
  });
}

SecretRotation SecretOperations::rotate(std::string_view name) {
  keys::KeyStore ks(vault_);
  secrets::SecretStore ss(vault_, ks);
  SecretRotation rep;
  rep.name = std::string(name);
  std::optional<secrets::RotationLock> lock;
  store::SecretRow s;
  secrets::Value current;
  std::optional<secrets::Value> pending;

  // start: resolve, lock, and read the values the hook will be given (audited before release).
  runner_.run(secret_event(Action::secret_rotate, name), [&](audit::Event& e) {
    e.params["step"] = "start";
    s = ss.resolve(name);
    secrets::SecretStore::require_active(s);
    // A rotation command runs as the user: never one from a row put back to an older copy of
    // itself (a hook the owner has since removed), so the whole state is checked first.
    if (s.rotation_command)
      runner_.require_recorded_state("run the rotation command of secret " + s.name);
    lock.emplace(vault_.db(), vault_.final_path(), s.id, s.name);
    current = ss.read(s, SecretStage::current, std::nullopt);
    if (ss.at_stage(s, SecretStage::pending))
      pending = ss.read(s, SecretStage::pending, std::nullopt);
    e.params["current_version"] = current.version;
    e.params["resumed"] = pending.has_value();
    if (pending) e.params["pending_version"] = pending->version;
  });
  rep.previous_version = current.version;
  rep.resumed = pending.has_value();

  const std::optional<std::string>& command = s.rotation_command;
  auto call = [&](std::string_view step, std::int64_t pending_version, ByteView pending_value) {
    secrets::HookCall c;
    c.step = std::string(step);
    c.secret_name = s.name;
    c.secret_id = s.id;
    c.current_version = current.version;
    c.pending_version = pending_version;
    c.current = current.value.view();
    c.pending = pending_value;
    return c;
  };
  auto fail = [&](std::string_view step, std::int64_t version, const std::string& failure) {
    rotation_step_failed(name, step, version, failure);
    const std::string resume =
        step == "create" ? "it starts again at step create"
                         : fmt::format("it resumes pending version {} at step set", version);
    return Error(Code::failed,
                 fmt::format("rotation of secret {} failed at step {}: the rotation command {}; "
                             "current is still version {}",
                             name, step, failure, current.version),
                 Remedy::retry_rotation, std::string(name), resume);
  };

  // create: the hook may print the new value; otherwise kmsctl generates it.
  if (!pending) {
    const std::int64_t version = s.next_version;
    std::optional<SecureBytes> supplied;
    if (command) {
      secrets::HookResult r = secrets::run_hook(*command, call("create", version, {}));
      if (!r.ok) throw fail("create", version, r.failure);
      if (!r.output.empty()) supplied = std::move(r.output);
    }
    rep.steps.push_back("create");
    audit::Event ev = secret_event(Action::secret_rotate, name);
    ev.params["step"] = "create";
    ev.params["supplied_by_hook"] = supplied.has_value();
    runner_.run(std::move(ev), [&](audit::Event& e) {
      store::SecretRow fresh = ss.resolve(name);
      const secrets::Generator gen{fresh.gen_length, fresh.gen_charset, fresh.gen_exclude};
      SecureBytes value =
          supplied ? std::move(*supplied) : secrets::generate_like(gen, current.value.view());
      const std::int64_t v = ss.add_version(fresh, value.view(), SecretStage::pending, now());
      fresh.rotation_status = RotationStatus::in_progress;
      store::secret_update(vault_.db(), fresh);
      e.params["version"] = v;
      pending = secrets::Value{std::move(value), v, SecretStage::pending};
    });
  }

  for (const char* step : {"set", "test", "finish"}) {
    if (command) {
      const secrets::HookResult r =
          secrets::run_hook(*command, call(step, pending->version, pending->value.view()));
      if (!r.ok) throw fail(step, pending->version, r.failure);
    } else if (std::string_view(step) != "finish") {
      continue;  // no rotation command: nothing to apply or test
    }
    rep.steps.push_back(step);
    audit::Event ev = secret_event(Action::secret_rotate, name);
    ev.params["step"] = step;
    ev.params["version"] = pending->version;
    runner_.run(std::move(ev), [&](audit::Event& e) {
      if (std::string_view(step) != "finish") return;
      store::SecretRow fresh = ss.resolve(name);
      ss.promote_pending(fresh, now());
      e.params["previous_version"] = current.version;
    });
  }
  rep.version = pending->version;
  return rep;
}

}  // namespace kms
