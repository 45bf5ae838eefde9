// kmsctl key create | list | describe | enable | disable | rotate | versions | set-rotation |
//            schedule-deletion | cancel-deletion | tag | untag | set-policy | get-policy |
//            import-params | import | alias {create,update,delete,list}
#include <filesystem>

#include <fmt/format.h>

#include "cli/app.hpp"
#include "kms/asymmetric.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"

namespace kms::cli {
namespace key_verbs {
namespace {

void print_key(const keys::KeyInfo& info, bool json) {
  if (json) {
    print_json(key_json(info));
    return;
  }
  const KeyMetadata& k = info.key;
  std::string aliases;
  for (const auto& a : info.aliases) {
    if (!aliases.empty()) aliases += ", ";
    aliases += escape_text(a);
  }
  fmt::print("key id           {}\n", escape_text(k.id));
  fmt::print("aliases          {}\n", aliases.empty() ? "-" : aliases);
  fmt::print("description      {}\n", k.description.empty() ? "-" : escape_text(k.description));
  fmt::print("spec / usage     {} / {}\n", key_spec_name(k.spec), key_usage_name(k.usage));
  if (k.spec != KeySpec::aes_256) {
    fmt::print("algorithms       {}\n", spec_algorithms(k.spec, k.usage));
  }
  fmt::print("state            {}\n", key_state_name(k.state));
  fmt::print("protection       {}\n", protection_name(k.protection));
  fmt::print("origin           {}\n", origin_name(k.origin));
  if (k.origin == Origin::external) {
    fmt::print("material expires {}\n", escape_text(k.material_expires.value_or("never")));
  }
  fmt::print("created          {}\n", escape_text(k.created));
  fmt::print("rotation         {}\n",
             k.rotation_period_days
                 ? escape_text(fmt::format("every {}d; last {}; next {}", *k.rotation_period_days,
                                           k.last_rotated,
                                           info.next_rotation.value_or("- (key not enabled)")))
                 : std::string("off"));
  if (k.deletion_date) fmt::print("deletion date    {}\n", escape_text(*k.deletion_date));
  fmt::print("versions         {} (primary {})\n", info.versions.size(), k.primary_version);
  for (const auto& [name, value] : info.tags) {
    fmt::print("tag              {}={}\n", escape_text(name), escape_text(value));
  }
}

void print_versions(const keys::KeyInfo& info, bool json) {
  if (json) {
    print_list_json(key_json(info)["versions"], std::nullopt);
    return;
  }
  fmt::print("{:>7}  {:<24}  {}\n", "VERSION", "CREATED", "PRIMARY");
  for (const auto& v : info.versions) {
    fmt::print("{:>7}  {:<24}  {}\n", v.version, escape_text(v.created),
               v.version == info.key.primary_version ? "yes" : "");
  }
}

// What `key list --state` takes: each state as an option spells it (pending-deletion).
std::vector<std::string> state_options() {
  std::vector<std::string> out;
  for (const KeyStateInfo& i : key_states()) out.emplace_back(i.option);
  return out;
}

std::optional<KeyState> state_filter(const std::string& s) {
  if (s.empty()) return std::nullopt;
  if (const auto state = parse_key_state_option(s)) return state;
  throw Error(Code::usage, fmt::format("--state {} is not a key state", s),
              "give --state enabled, disabled or pending-deletion");
}

std::vector<std::string> spec_names() {
  std::vector<std::string> out;
  for (const KeySpecInfo& i : key_specs()) out.emplace_back(i.name);
  return out;
}

std::vector<std::string> usage_options() {
  std::vector<std::string> out;
  for (const KeyUsageInfo& i : key_usages()) out.emplace_back(i.option);
  return out;
}

std::vector<std::string> origin_names() {
  std::vector<std::string> out;
  for (const OriginInfo& i : origins()) out.emplace_back(i.name);
  return out;
}

std::vector<std::string> wrapping_names() {
  std::vector<std::string> out;
  for (const WrappingAlgorithmInfo& i : wrapping_algorithms()) out.emplace_back(i.name);
  return out;
}

std::vector<std::string> protection_names() {
  std::vector<std::string> out;
  for (const ProtectionInfo& i : protections()) out.emplace_back(i.name);
  return out;
}

// What a command that changes a key prints: with --json the key (stdout), else one line on
// stderr naming the key and its new state (`what`), as every state change confirms.
void confirm_key(const keys::KeyInfo& info, bool json, const std::string& what) {
  if (json) return print_json(key_json(info));
  note(escape_text(fmt::format("key {}: {}", info.key.id, what)));
}

std::string tags_text(const keys::KeyInfo& info) {
  if (info.tags.empty()) return "no tags";
  std::string out = "tags";
  for (const auto& [name, value] : info.tags) out += fmt::format(" {}={}", name, value);
  return out;
}

// Registers a verb that takes KEY: describe prints the key (`what` null), a state change
// confirms with what(key).
template <class R>
void key_verb(CLI::App* key, Globals& g, const char* name, const char* help,
              std::string (*what)(const keys::KeyInfo&) = nullptr) {
  struct Args {
    std::string key;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = key->add_subcommand(name, help);
  cmd->add_option("key", a->key, "Key id or alias/NAME")->required()->type_name("KEY");
  cmd->add_flag("--json", a->json, "Print the key as JSON");
  cmd->callback([&g, a, what] {
    const keys::KeyInfo info = send(g, R{a->key});
    if (what == nullptr) return print_key(info, a->json);
    confirm_key(info, a->json, what(info));
  });
}

std::string state_text(const keys::KeyInfo& info) {
  return std::string(key_state_name(info.key.state));
}

struct TagArgs {
  std::string key;
  std::vector<std::string> items;
  bool json = false;
};

void add_create(CLI::App* key, Globals& g) {
  struct CreateArgs {
    std::string spec = "AES_256", usage, description, alias, rotation,
                protection{protection_name(Protection::software)}, origin{origin_name(Origin::kms)};
    std::vector<std::string> tags;
    bool json = false;
  };
  auto ca = std::make_shared<CreateArgs>();
  CLI::App* create = key->add_subcommand("create", "Create a key (prints its id)");
  create
      ->add_option("--spec", ca->spec, "Key spec (default AES_256; `kmsctl key specs` lists them)")
      ->check(CLI::IsMember(spec_names()));
  create
      ->add_option("--usage", ca->usage,
                   "encrypt, sign, mac or agree (fixed at creation; default: the spec's first)")
      ->check(CLI::IsMember(usage_options()));
  create->add_option("--description", ca->description, "What the key is for");
  create->add_option("--alias", ca->alias, "Give it an alias/NAME");
  create->add_option("--tag", ca->tags, "Tag K=V (repeatable)")->type_name("K=V");
  create
      ->add_option("--rotation-period", ca->rotation, "Rotate automatically every N days (7d-730d)")
      ->type_name("DAYS");
  create
      ->add_option("--protection", ca->protection,
                   "software: material sealed in the vault; hsm: generated and used in the token")
      ->check(CLI::IsMember(protection_names()));
  create
      ->add_option("--origin", ca->origin,
                   "kms: the vault makes the material (default); external: none until `key "
                   "import` (bring your own key; software protection only)")
      ->check(CLI::IsMember(origin_names()));
  create->add_flag("--json", ca->json, "Print the key as JSON");
  create->callback([&g, ca] {
    keys::CreateSpec spec;
    spec.spec = parse_key_spec(ca->spec).value_or(KeySpec::aes_256);  // checked by --spec
    if (!ca->usage.empty()) spec.usage = parse_key_usage_option(ca->usage);
    spec.description = ca->description;
    if (!ca->alias.empty()) {
      keys::check_alias_name(ca->alias);
      spec.alias = ca->alias;
    }
    for (const auto& [k, v] : parse_pairs(ca->tags, "--tag")) spec.tags.emplace_back(k, v);
    if (!ca->rotation.empty()) {
      spec.rotation_days = keys::parse_days(ca->rotation, keys::kMinRotationDays,
                                            keys::kMaxRotationDays, "--rotation-period");
    }
    if (const auto p = parse_protection(ca->protection)) {
      spec.protection = *p;
    } else {  // not reached: --protection is checked against the same names
      throw Error(Code::usage, fmt::format("--protection {} is not known", ca->protection),
                  "use --protection software or --protection hsm");
    }
    spec.origin = parse_origin(ca->origin).value_or(Origin::kms);  // checked by --origin
    const keys::KeyInfo info = send(g, req::KeyCreate{spec});
    if (ca->json) {
      print_json(key_json(info));
    } else {
      fmt::print("{}\n", info.key.id);
    }
  });
}

void add_public(CLI::App* key, Globals& g) {
  struct PublicArgs {
    std::string key, format = "pem", out = "-";
    std::optional<std::int64_t> version;
    bool force = false, json = false;
  };
  auto pa = std::make_shared<PublicArgs>();
  CLI::App* cmd = key->add_subcommand(
      "public", "Print a key's public key (SubjectPublicKeyInfo, PEM or DER); not secret");
  cmd->add_option("key", pa->key, "Key id or alias/NAME")->required()->type_name("KEY");
  cmd->add_option("--version", pa->version, "Of this key version (default: the primary)")
      ->check(CLI::PositiveNumber)
      ->type_name("N");
  auto* f = cmd->add_option("--format", pa->format, "pem (default) or der")
                ->check(CLI::IsMember({"pem", "der"}));
  auto* o = cmd->add_option("-o,--out", pa->out,
                            "Output file (atomic), or - for standard output (default)")
                ->type_name("FILE");
  cmd->add_flag("--force", pa->force, "Overwrite an existing output file");
  cmd->add_flag("--json", pa->json,
                "Print {key_id, key_version, spec, usage, public_key_pem} on standard output")
      ->excludes(f)
      ->excludes(o);
  cmd->callback([&g, pa] {
    if (pa->json) {
      const keys::PublicKey k = send(g, req::GetPublicKey{pa->key, pa->version});
      return print_json({{"key_id", k.key_id},
                         {"key_version", k.key_version},
                         {"spec", std::string(key_spec_name(k.spec))},
                         {"usage", std::string(key_usage_name(k.usage))},
                         {"public_key_pem", crypto::public_key_pem(k.spki)}});
    }
    refuse_directory_output(pa->out);
    if (pa->format == "der") refuse_binary_on_terminal(pa->out, "a DER public key");
    const keys::PublicKey k = send(g, req::GetPublicKey{pa->key, pa->version});
    if (pa->format == "der") {
      write_output(pa->out, as_chars(k.spki), pa->force);
    } else {
      write_output(pa->out, crypto::public_key_pem(k.spki), pa->force);
    }
  });
}

void add_import_params(CLI::App* key, Globals& g) {
  struct ImportParamsArgs {
    std::string key, algorithm{wrapping_algorithm_name(WrappingAlgorithm::rsaes_oaep_sha_256)},
        dir = ".";
    bool force = false, json = false;
  };
  auto a = std::make_shared<ImportParamsArgs>();
  CLI::App* cmd = key->add_subcommand(
      "import-params",
      "Make a wrapping key and import token (24 h) to import material into a key of origin "
      "external: writes DIR/wrapping-key.pem and DIR/import-token");
  cmd->add_option("key", a->key, "Key id or alias/NAME")->required()->type_name("KEY");
  cmd->add_option("--wrapping-algorithm", a->algorithm,
                  "RSAES_OAEP_SHA_256 (default; symmetric and HMAC material) or "
                  "RSA_AES_KEY_WRAP_SHA_256 (private keys)")
      ->check(CLI::IsMember(wrapping_names()));
  cmd->add_option("-o,--out-dir", a->dir, "Directory to write the two files in (default .)")
      ->type_name("DIR");
  cmd->add_flag("--force", a->force, "Overwrite existing wrapping-key.pem and import-token");
  cmd->add_flag("--json", a->json,
                "Print {key_id, wrapping_algorithm, expires, wrapping_key, import_token}");
  cmd->callback([&g, a] {
    const std::filesystem::path dir(a->dir);
    const std::filesystem::path pem = dir / "wrapping-key.pem", tok = dir / "import-token";
    // Both files are refused before the vault makes anything, unless --force.
    files::AtomicFile pem_file(pem, a->force);
    files::AtomicFile token_file(tok, a->force);
    const keys::ImportParams p =
        send(g, req::KeyImportParams{a->key, parse_wrapping_algorithm(a->algorithm)
                                                 .value_or(WrappingAlgorithm::rsaes_oaep_sha_256)});
    pem_file.write(crypto::public_key_pem(p.public_key));
    token_file.write(std::string(as_chars(p.import_token)) + "\n");
    pem_file.commit();
    token_file.commit();
    if (a->json) {
      print_json(
          {{"key_id", p.key_id},
           {"wrapping_algorithm", std::string(wrapping_algorithm_name(p.wrapping_algorithm))},
           {"expires", p.expires},
           {"wrapping_key", pem.string()},
           {"import_token", tok.string()}});
      return;
    }
    note(escape_text(fmt::format(
        "key {}: wrap the material for {} ({}), then run `kmsctl key import {} --material FILE "
        "--import-token {}` before {}",
        p.key_id, pem.string(), wrapping_algorithm_name(p.wrapping_algorithm), p.key_id,
        tok.string(), p.expires)));
  });
}

void add_import(CLI::App* key, Globals& g) {
  struct ImportArgs {
    std::string key, material, token, expires;
    bool json = false;
  };
  auto a = std::make_shared<ImportArgs>();
  CLI::App* cmd = key->add_subcommand(
      "import", "Import wrapped key material into a key of origin external (as its version 1)");
  cmd->add_option("key", a->key, "Key id or alias/NAME")->required()->type_name("KEY");
  cmd->add_option("--material", a->material, "The wrapped material (binary; - for standard input)")
      ->required()
      ->type_name("WRAPPED_FILE");
  cmd->add_option("--import-token", a->token, "The import-token file of `key import-params`")
      ->required()
      ->type_name("TOKEN_FILE");
  cmd->add_option("--expires", a->expires,
                  "The material expires (then `maintain` deletes it): a duration (30d, 12h), a "
                  "date or an RFC 3339 time; default never")
      ->type_name("WHEN");
  cmd->add_flag("--json", a->json, "Print the key as JSON");
  cmd->callback([&g, a] {
    if (a->material == "-" && a->token == "-") {
      throw Error(Code::usage, "--material and --import-token cannot both be standard input",
                  "give at least one of them as a file");
    }
    std::optional<std::string> expires;
    if (!a->expires.empty()) expires = keys::parse_material_expiry(a->expires, now());
    const SecureBytes wrapped = read_input(a->material, std::size_t{64} * 1024,
                                           "wrapped key material is at most 64 KiB", "--material");
    const SecureBytes token = read_input(a->token, std::size_t{4} * 1024,
                                         "an import token is one short line", "--import-token");
    req::KeyImport r;
    r.key = a->key;
    r.wrapped_material.assign(wrapped.view().begin(), wrapped.view().end());
    r.import_token.assign(token.view().begin(), token.view().end());
    r.expires = expires;
    const keys::KeyInfo info = send(g, r);
    if (a->json) {
      print_key(info, true);
      return;
    }
    note(escape_text(fmt::format("key {}: material imported (version 1, state {}, expires {})",
                                 info.key.id, key_state_name(info.key.state),
                                 info.key.material_expires.value_or("never"))));
  });
}

void add_specs(CLI::App* key, Globals&) {
  struct SpecsArgs {
    bool json = false;
  };
  auto sa = std::make_shared<SpecsArgs>();
  CLI::App* cmd = key->add_subcommand("specs", "List the key specs, their usages and algorithms");
  cmd->add_flag("--json", sa->json, "Print them as JSON");
  cmd->callback([sa] {
    nlohmann::json all = nlohmann::json::array();
    for (const KeySpecInfo& i : key_specs()) {
      nlohmann::json usages = nlohmann::json::object();
      for (const KeyUsageInfo& u : key_usages()) {
        if ((i.usages & usage_bit(u.usage)) != 0) {
          usages[std::string(u.option)] = spec_algorithms(i.spec, u.usage);
        }
      }
      if (!sa->json) {
        std::string text;
        for (const auto& [option, algorithms] : usages.items()) {
          text += fmt::format("{}{}: {}", text.empty() ? "" : "; ", option,
                              algorithms.get<std::string>());
        }
        fmt::print("{:<14} {}\n{:<14} {}\n", i.name, i.summary, "", text);
      }
      all.push_back(
          {{"spec", std::string(i.name)}, {"summary", std::string(i.summary)}, {"usages", usages}});
    }
    if (sa->json) print_json(all);
  });
}

void add_list(CLI::App* key, Globals& g) {
  struct ListArgs {
    std::string state, after;
    std::int64_t limit = 100;
    bool json = false;
  };
  auto la = std::make_shared<ListArgs>();
  CLI::App* list = key->add_subcommand("list", "List keys, oldest first, a page at a time");
  list->add_option("--state", la->state, "Only keys in this state")
      ->check(CLI::IsMember(state_options()));
  list->add_option("--limit", la->limit, "At most N keys (default 100)")
      ->check(CLI::Range(std::int64_t{1}, keys::kMaxListLimit));
  list->add_option("--after", la->after,
                   "Start after this key id (the `next` of the previous page)")
      ->type_name("KEY_ID");
  list->add_flag("--json", la->json, "Print {\"items\": [...], \"next\": ID|null}");
  list->callback([&g, la] {
    const KeyPage page = send(
        g, req::KeyList{state_filter(la->state),
                        la->after.empty() ? std::nullopt : std::optional(la->after), la->limit});
    if (la->json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& k : page.keys) arr.push_back(key_json(k));
      print_list_json(arr, page.next);
      return;
    }
    fmt::print("{:<36}  {:<15}  {:<10}  {:<8}  {:<7}  {:<24}  {:<24}  {}\n", "KEY ID", "STATE",
               "PROTECTION", "ORIGIN", "VERSION", "CREATED", "MATERIAL EXPIRES", "ALIASES");
    for (const auto& k : page.keys) {
      std::string aliases;
      for (const auto& a : k.aliases) {
        if (!aliases.empty()) aliases += ',';
        aliases += escape_text(a);
      }
      fmt::print("{:<36}  {:<15}  {:<10}  {:<8}  {:>7}  {:<24}  {:<24}  {}\n",
                 escape_text(k.key.id), key_state_name(k.key.state),
                 protection_name(k.key.protection), origin_name(k.key.origin),
                 k.key.primary_version, escape_text(k.key.created),
                 escape_text(k.key.material_expires.value_or("-")), aliases);
    }
    if (page.next) {
      note(fmt::format("more keys: kmsctl key list --after {}", escape_text(*page.next)));
    }
  });
}

void add_describe(CLI::App* key, Globals& g) {
  key_verb<req::KeyDescribe>(key, g, "describe",
                             "Show a key: state, versions, rotation, deletion date, tags");
}

void add_enable(CLI::App* key, Globals& g) {
  key_verb<req::KeyEnable>(key, g, "enable", "Enable a disabled key", state_text);
}

void add_disable(CLI::App* key, Globals& g) {
  key_verb<req::KeyDisable>(key, g, "disable",
                            "Disable a key: it refuses every cryptographic operation", state_text);
}

void add_rotate(CLI::App* key, Globals& g) {
  key_verb<req::KeyRotate>(
      key, g, "rotate", "Make a new version the primary; old versions still decrypt",
      [](const keys::KeyInfo& info) {
        return fmt::format("rotated, version {} is primary", info.key.primary_version);
      });
}

void add_cancel_deletion(CLI::App* key, Globals& g) {
  key_verb<req::KeyCancelDeletion>(
      key, g, "cancel-deletion", "Cancel a scheduled deletion (the key becomes Disabled)",
      [](const keys::KeyInfo& info) {
        return fmt::format("deletion cancelled, {}", key_state_name(info.key.state));
      });
}

void add_versions(CLI::App* key, Globals& g) {
  struct VersionsArgs {
    std::string key;
    bool json = false;
  };
  auto va = std::make_shared<VersionsArgs>();
  CLI::App* versions = key->add_subcommand("versions", "List a key's versions");
  versions->add_option("key", va->key, "Key id or alias/NAME")->required()->type_name("KEY");
  versions->add_flag("--json", va->json, "Print {\"items\": [...], \"next\": null}");
  versions->callback([&g, va] { print_versions(send(g, req::KeyDescribe{va->key}), va->json); });
}

void add_set_rotation(CLI::App* key, Globals& g) {
  struct RotationArgs {
    std::string key, period;
    bool off = false, json = false;
  };
  auto ra = std::make_shared<RotationArgs>();
  CLI::App* set_rotation =
      key->add_subcommand("set-rotation", "Set or turn off automatic rotation");
  set_rotation->add_option("key", ra->key, "Key id or alias/NAME")->required()->type_name("KEY");
  auto* period =
      set_rotation->add_option("--period", ra->period, "Every N days (7d-730d)")->type_name("DAYS");
  auto* off = set_rotation->add_flag("--off", ra->off, "No automatic rotation");
  period->excludes(off);
  set_rotation->add_flag("--json", ra->json, "Print the key as JSON");
  set_rotation->callback([&g, ra] {
    if (ra->period.empty() && !ra->off) {
      throw Error(Code::usage, "set-rotation needs --period DAYS or --off", "e.g. --period 90d");
    }
    std::optional<std::int64_t> days;
    if (!ra->off) {
      days =
          keys::parse_days(ra->period, keys::kMinRotationDays, keys::kMaxRotationDays, "--period");
    }
    const keys::KeyInfo info = send(g, req::KeySetRotation{ra->key, days});
    confirm_key(info, ra->json,
                info.key.rotation_period_days
                    ? fmt::format("rotates every {}d, next {}", *info.key.rotation_period_days,
                                  info.next_rotation.value_or("- (key not enabled)"))
                    : std::string("no automatic rotation"));
  });
}

void add_schedule_deletion(CLI::App* key, Globals& g) {
  struct DeletionArgs {
    std::string key, days = "30";
    bool json = false;
  };
  auto da = std::make_shared<DeletionArgs>();
  CLI::App* schedule = key->add_subcommand(
      "schedule-deletion", "Schedule a key's permanent deletion after a waiting period");
  schedule->add_option("key", da->key, "Key id or alias/NAME")->required()->type_name("KEY");
  schedule->add_option("--pending-days", da->days, "Waiting period, 7-30 days (default 30)")
      ->type_name("DAYS");
  schedule->add_flag("--json", da->json, "Print the key as JSON");
  schedule->callback([&g, da] {
    const std::int64_t days =
        keys::parse_days(da->days, keys::kMinPendingDays, keys::kMaxPendingDays, "--pending-days");
    const keys::KeyInfo info = send(g, req::KeyScheduleDeletion{da->key, days});
    confirm_key(info, da->json,
                fmt::format("{}, deleted on {} (cancel with `kmsctl key cancel-deletion {}`)",
                            key_state_name(info.key.state), info.key.deletion_date.value_or("?"),
                            info.key.id));
  });
}

void add_tag(CLI::App* key, Globals& g) {
  auto ta = std::make_shared<TagArgs>();
  CLI::App* tag = key->add_subcommand("tag", "Add or change tags K=V");
  tag->add_option("key", ta->key, "Key id or alias/NAME")->required()->type_name("KEY");
  tag->add_option("tags", ta->items, "K=V pairs")->required()->type_name("K=V");
  tag->add_flag("--json", ta->json, "Print the key as JSON");
  tag->callback([&g, ta] {
    std::vector<std::pair<std::string, std::string>> tags;
    for (const auto& [k, v] : parse_pairs(ta->items, "tag")) tags.emplace_back(k, v);
    const keys::KeyInfo info = send(g, req::KeyTag{ta->key, tags});
    confirm_key(info, ta->json, tags_text(info));
  });
}

void add_untag(CLI::App* key, Globals& g) {
  auto ua = std::make_shared<TagArgs>();
  CLI::App* untag = key->add_subcommand("untag", "Remove tags by name");
  untag->add_option("key", ua->key, "Key id or alias/NAME")->required()->type_name("KEY");
  untag->add_option("names", ua->items, "Tag names")->required()->type_name("NAME");
  untag->add_flag("--json", ua->json, "Print the key as JSON");
  untag->callback([&g, ua] {
    const keys::KeyInfo info = send(g, req::KeyUntag{ua->key, ua->items});
    confirm_key(info, ua->json, tags_text(info));
  });
}

nlohmann::json policy_json(const KeyPolicyInfo& p) {
  return {{"key_id", p.key_id},
          {"text", json_or_null(p.text)},
          {"sha256", json_or_null(p.sha256)},
          {"updated", json_or_null(p.updated)},
          {"updated_by_uid", json_or_null(p.updated_by_uid)}};
}

void add_set_policy(CLI::App* key, Globals& g) {
  struct SetPolicyArgs {
    std::string key, file;
    bool remove = false, json = false;
  };
  auto pa = std::make_shared<SetPolicyArgs>();
  CLI::App* set_policy = key->add_subcommand(
      "set-policy", "Set a key's own policy from a policy file (TOML or JSON), or remove it");
  set_policy->add_option("key", pa->key, "Key id or alias/NAME")->required()->type_name("KEY");
  auto* file =
      set_policy->add_option("file", pa->file, "The policy file (- for stdin)")->type_name("FILE");
  auto* remove = set_policy->add_flag("--remove", pa->remove, "Remove the key's policy");
  file->excludes(remove);
  set_policy->add_flag("--json", pa->json, "Print the key's policy as JSON");
  set_policy->callback([&g, pa] {
    if (pa->file.empty() && !pa->remove) {
      throw Error(Code::usage, "set-policy needs a policy FILE or --remove",
                  "e.g. kmsctl key set-policy alias/app key-policy.toml");
    }
    std::optional<std::string> text;
    if (!pa->remove) {
      const SecureBytes bytes =
          read_input(pa->file, std::size_t{64} * 1024,
                     "a key policy is at most 64 KiB: the service's policy file holds what "
                     "applies to many keys",
                     "FILE");
      text.emplace(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    const KeyPolicyInfo info = send(g, req::KeySetPolicy{pa->key, text});
    if (pa->json) return print_json(policy_json(info));
    note(escape_text(fmt::format("key {}: {}", info.key_id, policy_change(text, info.sha256))));
  });
}

void add_get_policy(CLI::App* key, Globals& g) {
  struct GetPolicyArgs {
    std::string key;
    bool json = false;
  };
  auto pa = std::make_shared<GetPolicyArgs>();
  CLI::App* get_policy =
      key->add_subcommand("get-policy", "Print a key's own policy exactly as it was set");
  get_policy->add_option("key", pa->key, "Key id or alias/NAME")->required()->type_name("KEY");
  get_policy->add_flag("--json", pa->json,
                       "Print {key_id, text, sha256, updated, updated_by_uid} (null: none)");
  get_policy->callback([&g, pa] {
    const KeyPolicyInfo info = send(g, req::KeyGetPolicy{pa->key});
    if (pa->json) {
      print_json(policy_json(info));
    } else if (info.text) {
      write_output("-", *info.text, false);
    } else {
      note(escape_text(fmt::format("key {} has no policy of its own", info.key_id)));
    }
  });
}

void add_alias(CLI::App* key, Globals& g) {
  CLI::App* alias = key->add_subcommand("alias", "Name keys with alias/NAME");
  alias->require_subcommand(1);
  alias->fallthrough();
  struct AliasArgs {
    std::string alias, key;
  };
  auto ac = std::make_shared<AliasArgs>();
  CLI::App* acreate = alias->add_subcommand("create", "Create an alias for a key");
  acreate->add_option("alias", ac->alias, "alias/NAME")->required()->type_name("ALIAS");
  acreate->add_option("key", ac->key, "Key id or alias/NAME")->required()->type_name("KEY");
  acreate->callback([&g, ac] {
    keys::check_alias_name(ac->alias);
    send(g, req::AliasCreate{ac->alias, ac->key});
    note(escape_text(fmt::format("alias {}: names key {}", ac->alias, ac->key)));
  });
  auto au = std::make_shared<AliasArgs>();
  CLI::App* aupdate = alias->add_subcommand("update", "Point an alias at another key");
  aupdate->add_option("alias", au->alias, "alias/NAME")->required()->type_name("ALIAS");
  aupdate->add_option("key", au->key, "Key id or alias/NAME")->required()->type_name("KEY");
  aupdate->callback([&g, au] {
    keys::check_alias_name(au->alias);
    send(g, req::AliasUpdate{au->alias, au->key});
    note(escape_text(fmt::format("alias {}: names key {}", au->alias, au->key)));
  });
  auto ad = std::make_shared<std::string>();
  CLI::App* adelete = alias->add_subcommand("delete", "Delete an alias (the key stays)");
  adelete->add_option("alias", *ad, "alias/NAME")->required()->type_name("ALIAS");
  adelete->callback([&g, ad] {
    send(g, req::AliasDelete{*ad});
    note(escape_text(fmt::format("alias {}: deleted", *ad)));
  });
  auto aljson = std::make_shared<bool>(false);
  CLI::App* alist = alias->add_subcommand("list", "List aliases");
  alist->add_flag("--json", *aljson, "Print {\"items\": [{alias, key_id}...], \"next\": null}");
  alist->callback([&g, aljson] {
    const auto aliases = send(g, req::AliasList{});
    if (*aljson) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& [a, k] : aliases) arr.push_back({{"alias", a}, {"key_id", k}});
      print_list_json(arr, std::nullopt);
      return;
    }
    fmt::print("{:<40}  {}\n", "ALIAS", "KEY ID");
    for (const auto& [a, k] : aliases) fmt::print("{:<40}  {}\n", escape_text(a), escape_text(k));
  });
}

}  // namespace
}  // namespace key_verbs

nlohmann::json key_json(const keys::KeyInfo& info) {
  const KeyMetadata& k = info.key;
  nlohmann::json versions = nlohmann::json::array();
  for (const auto& v : info.versions) {
    versions.push_back({{"version", v.version},
                        {"created", v.created},
                        {"primary", v.version == k.primary_version}});
  }
  return {
      {"key_id", k.id},
      {"aliases", info.aliases},
      {"description", k.description},
      {"spec", std::string(key_spec_name(k.spec))},
      {"usage", std::string(key_usage_name(k.usage))},
      {"algorithms", spec_algorithms(k.spec, k.usage)},
      {"state", std::string(key_state_name(k.state))},
      {"protection", std::string(protection_name(k.protection))},
      {"origin", std::string(origin_name(k.origin))},
      {"material_expires", json_or_null(k.material_expires)},
      {"created", k.created},
      {"rotation_period_days", json_or_null(k.rotation_period_days)},
      {"last_rotated", k.last_rotated},
      {"next_rotation", json_or_null(info.next_rotation)},
      {"deletion_date", json_or_null(k.deletion_date)},
      {"primary_version", k.primary_version},
      {"versions", versions},
      {"tags", tags_json(info.tags)},
  };
}

void register_key(CLI::App& app, Globals& g) {
  CLI::App* key = app.add_subcommand("key",
                                     "Create and manage keys: states, versions, rotation, "
                                     "aliases, tags");
  key->require_subcommand(1);
  key->fallthrough();
  static constexpr Verb kVerbs[] = {
      {"create", key_verbs::add_create},
      {"list", key_verbs::add_list},
      {"describe", key_verbs::add_describe},
      {"enable", key_verbs::add_enable},
      {"disable", key_verbs::add_disable},
      {"rotate", key_verbs::add_rotate},
      {"cancel-deletion", key_verbs::add_cancel_deletion},
      {"versions", key_verbs::add_versions},
      {"set-rotation", key_verbs::add_set_rotation},
      {"schedule-deletion", key_verbs::add_schedule_deletion},
      {"tag", key_verbs::add_tag},
      {"untag", key_verbs::add_untag},
      {"set-policy", key_verbs::add_set_policy},
      {"get-policy", key_verbs::add_get_policy},
      {"public", key_verbs::add_public},
      {"import-params", key_verbs::add_import_params},
      {"import", key_verbs::add_import},
      {"specs", key_verbs::add_specs},
      {"alias", key_verbs::add_alias},
  };
  add_verbs(key, g, kVerbs);
}

}  // namespace kms::cli
