// kmsctl secret create | get | put | list | describe | versions | delete | restore | rotate |
// set-rotation | set-policy | get-policy
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::cli {
namespace secret_verbs {
namespace {

// Where a value comes from: exactly one of --value-stdin, --value-file F, --generate.
struct ValueArgs {
  bool value_stdin = false, generate = false;
  std::string value_file;
  std::int64_t length = 0;  // 0: not given
  std::string charset, exclude;
};

void add_value_options(CLI::App* cmd, ValueArgs& v) {
  auto* in = cmd->add_flag("--value-stdin", v.value_stdin,
                           "Read the value from standard input (verbatim)");
  auto* file = cmd->add_option("--value-file", v.value_file, "Read the value from FILE (verbatim)")
                   ->type_name("FILE");
  auto* gen = cmd->add_flag("--generate", v.generate, "Generate a random value");
  in->excludes(file)->excludes(gen);
  file->excludes(gen);
  cmd->add_option("--length", v.length, "Generated length (default 32)")
      ->check(CLI::Range(secrets::kMinGenLength, secrets::kMaxGenLength));
  cmd->add_option("--charset", v.charset, "Generated characters (default alnum)")
      ->check(CLI::IsMember({"alnum", "alnum-symbols", "hex", "base64"}));
  cmd->add_option("--exclude", v.exclude, "Characters never to generate")->type_name("CHARS");
}

bool has_generator_options(const ValueArgs& v) {
  return v.length != 0 || !v.charset.empty() || !v.exclude.empty();
}

secrets::Generator generator_of(const ValueArgs& v) {
  secrets::Generator g;
  if (v.length != 0) g.length = v.length;
  if (!v.charset.empty()) g.charset = v.charset;
  g.exclude = v.exclude;
  secrets::alphabet(g);  // a usage error before the vault is opened
  return g;
}

SecretInput input_of(const ValueArgs& v) {
  if (!v.value_stdin && v.value_file.empty() && !v.generate) {
    throw Error(Code::usage, "no value given",
                "pass --value-stdin, --value-file FILE or --generate (values are never arguments)");
  }
  if (has_generator_options(v) && !v.generate) {
    throw Error(Code::usage, "--length, --charset and --exclude need --generate",
                "add --generate, or drop them");
  }
  SecretInput in;
  if (v.generate) {
    in.generator = generator_of(v);
    return in;
  }
  in.value = read_input(v.value_stdin ? "-" : v.value_file, secrets::kMaxValueSize,
                        "store large data with `kmsctl file encrypt`", "--value-file");
  if (in.value->empty()) {
    throw Error(Code::usage, "the value is empty", "give a non-empty value, or use --generate");
  }
  return in;
}

std::vector<std::string> stage_names() {
  std::vector<std::string> out;
  for (const SecretStageInfo& i : secret_stages()) out.emplace_back(i.name);
  return out;
}

nlohmann::json stages_of(const SecretVersionMetadata& v) {
  nlohmann::json st = nlohmann::json::array();
  if (v.stage) st.push_back(std::string(secret_stage_name(*v.stage)));
  return st;
}

std::optional<std::int64_t> version_at(const secrets::SecretInfo& info, SecretStage stage) {
  for (const auto& v : info.versions) {
    if (v.stage && *v.stage == stage) return v.version;
  }
  return std::nullopt;
}

nlohmann::json secret_json(const secrets::SecretInfo& info) {
  const SecretMetadata& s = info.secret;
  nlohmann::json stages = nlohmann::json::object();  // {"current": N|null, ...}
  for (const SecretStageInfo& i : secret_stages()) {
    stages[std::string(i.name)] = json_or_null(version_at(info, i.stage));
  }
  nlohmann::json versions = nlohmann::json::array();
  for (const auto& v : info.versions) {
    versions.push_back({{"version", v.version}, {"created", v.created}, {"stages", stages_of(v)}});
  }
  return {
      {"name", s.name},
      {"secret_id", s.id},
      {"key_id", s.key_id},
      {"key_aliases", info.key_aliases},
      {"description", s.description},
      {"created", s.created},
      {"updated", s.updated},
      {"tags", tags_json(info.tags)},
      {"stages", stages},
      {"rotation",
       {{"period_days", json_or_null(s.rotation_period_days)},
        {"command", json_or_null(s.rotation_command)},
        {"last_rotated", json_or_null(s.last_rotated)},
        {"next_rotation", json_or_null(info.next_rotation)},
        {"status", std::string(rotation_status_name(s.rotation_status))},
        {"last_error", json_or_null(s.rotation_error)}}},
      {"deletion_date", json_or_null(s.deletion_date)},
      {"version_count", info.versions.size()},
      {"versions", versions},
  };
}

std::string opt_num(const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : "-"; }

void print_secret(const secrets::SecretInfo& info, bool json) {
  if (json) {
    print_json(secret_json(info));
    return;
  }
  const SecretMetadata& s = info.secret;
  std::string aliases;
  for (const auto& a : info.key_aliases) {
    aliases += aliases.empty() ? " (" : ", ";
    aliases += escape_text(a);
  }
  if (!aliases.empty()) aliases += ")";
  fmt::print("name             {}\n", escape_text(s.name));
  fmt::print("secret id        {}\n", escape_text(s.id));
  fmt::print("description      {}\n", s.description.empty() ? "-" : escape_text(s.description));
  fmt::print("key id           {}{}\n", escape_text(s.key_id), aliases);
  fmt::print("created          {}\n", escape_text(s.created));
  fmt::print("updated          {}\n", escape_text(s.updated));
  fmt::print("stages           current {}, previous {}, pending {}\n",
             opt_num(version_at(info, SecretStage::current)),
             opt_num(version_at(info, SecretStage::previous)),
             opt_num(version_at(info, SecretStage::pending)));
  fmt::print("versions         {}\n", info.versions.size());
  fmt::print("rotation         {}\n",
             s.rotation_period_days
                 ? escape_text(fmt::format("every {}d; next {}", *s.rotation_period_days,
                                           info.next_rotation.value_or("-")))
                 : std::string("not scheduled"));
  fmt::print("rotation command {}\n",
             escape_text(s.rotation_command.value_or("- (kmsctl generates the value)")));
  fmt::print(
      "last rotation    {}{}\n", rotation_status_name(s.rotation_status),
      s.last_rotated ? fmt::format(" (last succeeded {})", escape_text(*s.last_rotated)) : "");
  if (s.rotation_error) fmt::print("rotation error   {}\n", escape_text(*s.rotation_error));
  if (s.deletion_date) fmt::print("deletion date    {}\n", escape_text(*s.deletion_date));
  for (const auto& [k, v] : info.tags) {
    fmt::print("tag              {}={}\n", escape_text(k), escape_text(v));
  }
}

void print_versions(const secrets::SecretInfo& info, bool json) {
  if (json) {
    print_list_json(secret_json(info)["versions"], std::nullopt);
    return;
  }
  fmt::print("{:>10}  {:<24}  {}\n", "VERSION ID", "CREATED", "STAGES");
  for (const auto& v : info.versions) {
    fmt::print("{:>10}  {:<24}  {}\n", v.version, escape_text(v.created),
               v.stage ? secret_stage_name(*v.stage) : std::string_view());
  }
}

void write_stdout(std::string_view data) { write_output("-", data, false); }

// --field F of a JSON object value: a string prints raw, anything else as JSON.
SecureBytes field_of(const secrets::Value& v, const std::string& name, const std::string& field) {
  const nlohmann::json j = nlohmann::json::parse(v.value.chars(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw Error(Code::usage,
                fmt::format("--field {}: the value of secret {} is not a JSON object", field, name),
                "drop --field to print the whole value");
  }
  const auto it = j.find(field);
  if (it == j.end()) {
    throw Error(Code::not_found, fmt::format("the value of secret {} has no field {}", name, field),
                "print the field names with `kmsctl secret get NAME | jq keys`");
  }
  const std::string text = it->is_string() ? it->get<std::string>() : it->dump();
  return SecureBytes(as_bytes(text));
}

void print_value(const std::string& name, const secrets::Value& v, const std::string& field,
                 bool json) {
  const SecureBytes picked = field.empty() ? SecureBytes(v.value.view()) : field_of(v, name, field);
  if (!json) {
    write_stdout(picked.chars());
    // On a terminal the prompt then starts on its own line; piped, the value is exact.
    if (::isatty(STDOUT_FILENO) == 1 && !picked.chars().ends_with('\n')) write_stdout("\n");
    return;
  }
  nlohmann::json out = {
      {"name", name},
      {"version", v.version},
      {"stages", v.stage ? nlohmann::json::array({std::string(secret_stage_name(*v.stage))})
                         : nlohmann::json::array()}};
  if (!field.empty()) out["field"] = field;
  std::string text;
  out["value"] = std::string(picked.chars());
  try {
    text = out.dump(2);
  } catch (const nlohmann::json::exception&) {
    // Not UTF-8: base64 instead (the exception's message quotes a byte of the value; dropped).
    out.erase("value");
    out["value_base64"] = crypto::to_base64(picked.view());
    text = out.dump(2);
  }
  text.push_back('\n');
  write_stdout(text);
}

struct NameArgs {
  std::string name;
  bool json = false;
};

void add_create(CLI::App* secret, Globals& g) {
  struct CreateArgs {
    std::string name, key, description, rotation, command;
    std::vector<std::string> tags;
    ValueArgs value;
    bool json = false;
  };
  auto ca = std::make_shared<CreateArgs>();
  CLI::App* create =
      secret->add_subcommand("create", "Create a secret; its first version is current");
  create->add_option("name", ca->name, "Secret name")->required()->type_name("NAME");
  add_value_options(create, ca->value);
  create
      ->add_option("--key", ca->key,
                   "Key id or alias/NAME to encrypt under (default alias/kmsctl/secrets)")
      ->type_name("KEY");
  create->add_option("--description", ca->description, "What the secret is for");
  create->add_option("--tag", ca->tags, "Tag K=V (repeatable)")->type_name("K=V");
  create
      ->add_option("--rotation-period", ca->rotation,
                   "Rotate every N days from `kmsctl maintain` (1d-365d)")
      ->type_name("DAYS");
  create
      ->add_option("--rotation-command", ca->command,
                   "Hook run by /bin/sh -c at each rotation step (see README \"Secrets\")")
      ->type_name("CMD");
  create->add_flag("--json", ca->json, "Print the secret as JSON");
  create->callback([&g, ca] {
    secrets::check_name(ca->name);
    secrets::CreateSpec spec;
    spec.name = ca->name;
    if (!ca->key.empty()) spec.key = ca->key;
    spec.description = ca->description;
    for (const auto& [k, v] : parse_pairs(ca->tags, "--tag")) spec.tags.emplace_back(k, v);
    if (!ca->rotation.empty()) {
      spec.rotation_days = keys::parse_days(ca->rotation, secrets::kMinRotationDays,
                                            secrets::kMaxRotationDays, "--rotation-period");
    }
    if (!ca->command.empty()) spec.rotation_command = ca->command;
    SecretInput in = input_of(ca->value);
    if (ca->value.generate) spec.generator = in.generator;
    const secrets::SecretInfo info = send(g, req::SecretCreate{spec, std::move(in)});
    if (ca->json) {
      print_secret(info, true);
    } else {
      note(escape_text(fmt::format("created secret {} (version 1, key {})", info.secret.name,
                                   info.secret.key_id)));
    }
  });
}

void add_get(CLI::App* secret, Globals& g) {
  struct GetArgs {
    std::string name, stage, field;
    std::int64_t version = 0;
    bool json = false;
  };
  auto ga = std::make_shared<GetArgs>();
  CLI::App* get = secret->add_subcommand(
      "get", "Print a secret's value: exact when piped, a newline added on a terminal");
  get->add_option("name", ga->name, "Secret name")->required()->type_name("NAME");
  auto* stage = get->add_option("--stage", ga->stage, "Which stage (default current)")
                    ->check(CLI::IsMember(stage_names()));
  auto* vid = get->add_option("--version-id", ga->version, "A version by id")
                  ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()))
                  ->type_name("ID");
  stage->excludes(vid);
  get->add_option("--field", ga->field, "Print one field of a JSON object value")->type_name("F");
  get->add_flag("--json", ga->json, "Print {name, version, stages, value} as JSON");
  get->callback([&g, ga] {
    const secrets::Value v = send(
        g, req::SecretGet{ga->name,
                          ga->stage.empty() ? std::nullopt : std::optional(stage_option(ga->stage)),
                          ga->version ? std::optional(ga->version) : std::nullopt, std::nullopt});
    print_value(ga->name, v, ga->field, ga->json);
  });
}

void add_put(CLI::App* secret, Globals& g) {
  struct PutArgs {
    std::string name;
    ValueArgs value;
    bool json = false;
  };
  auto pa = std::make_shared<PutArgs>();
  CLI::App* put = secret->add_subcommand("put", "Store a new version; it becomes current");
  put->add_option("name", pa->name, "Secret name")->required()->type_name("NAME");
  add_value_options(put, pa->value);
  put->add_flag("--json", pa->json, "Print the secret as JSON");
  put->callback([&g, pa] {
    SecretInput in = input_of(pa->value);
    if (pa->value.generate && !has_generator_options(pa->value))
      in.generator.length = 0;  // the secret's own
    const secrets::SecretInfo info = send(g, req::SecretPut{pa->name, std::move(in)});
    if (pa->json) {
      print_secret(info, true);
    } else {
      note(escape_text(fmt::format("secret {}: version {} is current", info.secret.name,
                                   opt_num(version_at(info, SecretStage::current)))));
    }
  });
}

void add_list(CLI::App* secret, Globals& g) {
  auto lj = std::make_shared<bool>(false);
  CLI::App* list =
      secret->add_subcommand("list", "List secrets (names and metadata, never values)");
  list->add_flag("--json", *lj, "Print {\"items\": [...], \"next\": null}");
  list->callback([&g, lj] {
    const auto all = send(g, req::SecretList{});
    if (*lj) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& s : all) {
        nlohmann::json j = secret_json(s);
        j.erase("versions");
        arr.push_back(j);
      }
      print_list_json(arr, std::nullopt);
      return;
    }
    fmt::print("{:<32}  {:>7}  {:>8}  {:<10}  {:<11}  {}\n", "NAME", "CURRENT", "VERSIONS",
               "ROTATION", "LAST ROTATE", "DELETION");
    for (const auto& s : all) {
      fmt::print(
          "{:<32}  {:>7}  {:>8}  {:<10}  {:<11}  {}\n", escape_text(s.secret.name),
          opt_num(version_at(s, SecretStage::current)), s.versions.size(),
          s.secret.rotation_period_days ? fmt::format("{}d", *s.secret.rotation_period_days) : "-",
          rotation_status_name(s.secret.rotation_status),
          escape_text(s.secret.deletion_date.value_or("-")));
    }
  });
}

void add_describe(CLI::App* secret, Globals& g) {
  auto da = std::make_shared<NameArgs>();
  CLI::App* describe = secret->add_subcommand(
      "describe",
      "Show a secret: key, stages, versions, rotation (and its last error), deletion date");
  describe->add_option("name", da->name, "Secret name")->required()->type_name("NAME");
  describe->add_flag("--json", da->json, "Print the secret as JSON");
  describe->callback([&g, da] { print_secret(send(g, req::SecretDescribe{da->name}), da->json); });
}

void add_versions(CLI::App* secret, Globals& g) {
  auto va = std::make_shared<NameArgs>();
  CLI::App* versions =
      secret->add_subcommand("versions", "List a secret's versions and their stages");
  versions->add_option("name", va->name, "Secret name")->required()->type_name("NAME");
  versions->add_flag("--json", va->json, "Print {\"items\": [...], \"next\": null}");
  versions->callback(
      [&g, va] { print_versions(send(g, req::SecretVersions{va->name}), va->json); });
}

void add_delete(CLI::App* secret, Globals& g) {
  struct DeleteArgs {
    std::string name, days;
    bool force = false, json = false;
  };
  auto dl = std::make_shared<DeleteArgs>();
  CLI::App* del = secret->add_subcommand(
      "delete", "Schedule a secret's purge after a recovery window (reads are refused meanwhile)");
  del->add_option("name", dl->name, "Secret name")->required()->type_name("NAME");
  auto* days =
      del->add_option("--recovery-days", dl->days, "Recovery window, 7-30 days (default 30)")
          ->type_name("DAYS");
  auto* force = del->add_flag("--force", dl->force, "Purge now, with every version (no recovery)");
  days->excludes(force);
  del->add_flag("--json", dl->json, "Print the secret as JSON");
  del->callback([&g, dl] {
    std::optional<std::int64_t> d;
    if (!dl->force) {
      d = keys::parse_days(dl->days.empty() ? "30" : dl->days, secrets::kMinRecoveryDays,
                           secrets::kMaxRecoveryDays, "--recovery-days");
    }
    const secrets::SecretInfo info = send(g, req::SecretDelete{dl->name, d});
    if (dl->json) return print_secret(info, true);
    if (dl->force) {
      note(escape_text(
          fmt::format("secret {} purged ({} versions)", info.secret.name, info.versions.size())));
    } else {
      note(escape_text(fmt::format(
          "secret {} will be purged on {} (undo with `kmsctl secret restore {}`)", info.secret.name,
          info.secret.deletion_date.value_or("?"), info.secret.name)));
    }
  });
}

void add_restore(CLI::App* secret, Globals& g) {
  auto ra = std::make_shared<NameArgs>();
  CLI::App* restore = secret->add_subcommand("restore", "Cancel a scheduled deletion");
  restore->add_option("name", ra->name, "Secret name")->required()->type_name("NAME");
  restore->add_flag("--json", ra->json, "Print the secret as JSON");
  restore->callback([&g, ra] {
    const secrets::SecretInfo info = send(g, req::SecretRestore{ra->name});
    if (ra->json) {
      print_secret(info, true);
    } else {
      note(escape_text(fmt::format("secret {} restored", info.secret.name)));
    }
  });
}

void add_rotate(CLI::App* secret, Globals& g) {
  auto rt = std::make_shared<NameArgs>();
  CLI::App* rotate = secret->add_subcommand(
      "rotate",
      "Rotate now: create, set, test, finish (resumes a pending version left by a failure)");
  rotate->add_option("name", rt->name, "Secret name")->required()->type_name("NAME");
  rotate->add_flag("--json", rt->json, "Print the result as JSON");
  rotate->callback([&g, rt] {
    export_for_hooks(g);
    const SecretRotation r = run_here(g, req::SecretRotate{rt->name});
    if (rt->json) {
      print_json({{"name", r.name},
                  {"version", r.version},
                  {"previous_version", r.previous_version},
                  {"resumed", r.resumed},
                  {"steps", r.steps}});
    } else {
      note(escape_text(fmt::format("secret {}: version {} is current (previous {}){}", r.name,
                                   r.version, r.previous_version,
                                   r.resumed ? "; resumed a pending version" : "")));
    }
  });
}

void add_set_rotation(CLI::App* secret, Globals& g) {
  struct SetRotationArgs {
    std::string name, period, command;
    bool off = false, no_command = false, json = false;
  };
  auto sr = std::make_shared<SetRotationArgs>();
  CLI::App* set = secret->add_subcommand(
      "set-rotation", "Change when a secret rotates and the hook that rotates it");
  set->add_option("name", sr->name, "Secret name")->required()->type_name("NAME");
  auto* period = set->add_option("--period", sr->period,
                                 "Rotate every N days from `kmsctl maintain` (1d-365d)")
                     ->type_name("DAYS");
  auto* off =
      set->add_flag("--off", sr->off, "No automatic rotation (`secret rotate` still works)");
  auto* command =
      set->add_option("--command", sr->command, "Hook run by /bin/sh -c at each rotation step")
          ->type_name("CMD");
  auto* no_command =
      set->add_flag("--no-command", sr->no_command, "No hook: kmsctl generates each new value");
  period->excludes(off);
  command->excludes(no_command);
  set->add_flag("--json", sr->json, "Print the secret as JSON");
  set->callback([&g, sr, period, command] {
    secrets::RotationChange c;
    c.set_period = sr->off || period->count() > 0;
    if (period->count() > 0) {
      c.period_days = keys::parse_days(sr->period, secrets::kMinRotationDays,
                                       secrets::kMaxRotationDays, "--period");
    }
    c.set_command = sr->no_command || command->count() > 0;
    if (command->count() > 0) {
      if (sr->command.empty()) {
        throw Error(Code::usage, "--command is empty",
                    "give the hook's command, or --no-command to drop the hook");
      }
      c.command = sr->command;
    }
    if (!c.set_period && !c.set_command) {
      throw Error(Code::usage, "set-rotation needs --period, --off, --command or --no-command",
                  fmt::format("e.g. `kmsctl secret set-rotation {} --period 30d`", sr->name));
    }
    const secrets::SecretInfo info = send(g, req::SecretSetRotation{sr->name, c});
    if (sr->json) {
      print_secret(info, true);
    } else {
      const SecretMetadata& s = info.secret;
      note(escape_text(
          fmt::format("secret {}: {}; {}", s.name,
                      s.rotation_period_days
                          ? fmt::format("rotates every {}d, next {}", *s.rotation_period_days,
                                        info.next_rotation.value_or("-"))
                          : std::string("no automatic rotation"),
                      s.rotation_command ? "rotation hook set" : "no hook (kmsctl generates)")));
    }
  });
}

nlohmann::json policy_json(const SecretPolicyInfo& p) {
  return {{"name", p.name},
          {"secret_id", p.secret_id},
          {"text", json_or_null(p.text)},
          {"sha256", json_or_null(p.sha256)},
          {"updated", json_or_null(p.updated)},
          {"updated_by_uid", json_or_null(p.updated_by_uid)}};
}

void add_set_policy(CLI::App* secret, Globals& g) {
  struct SetPolicyArgs {
    std::string name, file;
    bool remove = false, json = false;
  };
  auto pa = std::make_shared<SetPolicyArgs>();
  CLI::App* set_policy = secret->add_subcommand(
      "set-policy", "Set a secret's own policy from a policy file (TOML or JSON), or remove it");
  set_policy->add_option("name", pa->name, "Secret name")->required()->type_name("NAME");
  auto* file =
      set_policy->add_option("file", pa->file, "The policy file (- for stdin)")->type_name("FILE");
  auto* remove = set_policy->add_flag("--remove", pa->remove, "Remove the secret's policy");
  file->excludes(remove);
  set_policy->add_flag("--json", pa->json, "Print the secret's policy as JSON");
  set_policy->callback([&g, pa] {
    if (pa->file.empty() && !pa->remove) {
      throw Error(Code::usage, "set-policy needs a policy FILE or --remove",
                  "e.g. kmsctl secret set-policy app/db secret-policy.toml");
    }
    std::optional<std::string> text;
    if (!pa->remove) {
      const SecureBytes bytes =
          read_input(pa->file, std::size_t{64} * 1024,
                     "a secret policy is at most 64 KiB: the service's policy file holds what "
                     "applies to many secrets",
                     "FILE");
      text.emplace(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    const SecretPolicyInfo info = send(g, req::SecretSetPolicy{pa->name, text});
    if (pa->json) return print_json(policy_json(info));
    note(escape_text(fmt::format("secret {}: {}", info.name, policy_change(text, info.sha256))));
  });
}

void add_get_policy(CLI::App* secret, Globals& g) {
  auto pa = std::make_shared<NameArgs>();
  CLI::App* get_policy =
      secret->add_subcommand("get-policy", "Print a secret's own policy exactly as it was set");
  get_policy->add_option("name", pa->name, "Secret name")->required()->type_name("NAME");
  get_policy->add_flag(
      "--json", pa->json,
      "Print {name, secret_id, text, sha256, updated, updated_by_uid} (null: none)");
  get_policy->callback([&g, pa] {
    const SecretPolicyInfo info = send(g, req::SecretGetPolicy{pa->name});
    if (pa->json) {
      print_json(policy_json(info));
    } else if (info.text) {
      write_stdout(*info.text);
    } else {
      note(escape_text(fmt::format("secret {} has no policy of its own", info.name)));
    }
  });
}

}  // namespace
}  // namespace secret_verbs

void register_secret(CLI::App& app, Globals& g) {
  CLI::App* secret = app.add_subcommand(
      "secret", "Store, version, read and rotate secrets (passwords, tokens, JSON credentials)");
  secret->require_subcommand(1);
  secret->fallthrough();

  static constexpr Verb kVerbs[] = {
      {"create", secret_verbs::add_create},
      {"get", secret_verbs::add_get},
      {"put", secret_verbs::add_put},
      {"list", secret_verbs::add_list},
      {"describe", secret_verbs::add_describe},
      {"versions", secret_verbs::add_versions},
      {"delete", secret_verbs::add_delete},
      {"restore", secret_verbs::add_restore},
      {"rotate", secret_verbs::add_rotate},
      {"set-rotation", secret_verbs::add_set_rotation},
      {"set-policy", secret_verbs::add_set_policy},
      {"get-policy", secret_verbs::add_get_policy},
  };
  add_verbs(secret, g, kVerbs);
}

}  // namespace kms::cli
