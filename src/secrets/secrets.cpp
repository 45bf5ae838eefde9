#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "secrets/secret_store.hpp"

namespace kms::secrets {
namespace {

constexpr std::string_view kAlnum =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kSymbols = "!#$%&()*+,-./:;<=>?@[]^_{|}~";
constexpr std::string_view kHex = "0123456789abcdef";
constexpr std::string_view kBase64Extra = "+/";

RecordRef value_ref(std::string_view secret_id, std::int64_t version) {
  return {std::string(kVersionsTable), std::string(secret_id), version};
}

// The encryption context binds a version's ciphertext to its secret and version.
Context value_context(std::string_view secret_id, std::int64_t version) {
  return {{"kmsctl:secret", std::string(secret_id)}, {"kmsctl:version", std::to_string(version)}};
}

}  // namespace

std::string alphabet(const Generator& g) {
  std::string base;
  if (g.charset == "alnum") {
    base = kAlnum;
  } else if (g.charset == "alnum-symbols") {
    base = std::string(kAlnum) + std::string(kSymbols);
  } else if (g.charset == "hex") {
    base = kHex;
  } else if (g.charset == "base64") {
    base = std::string(kAlnum) + std::string(kBase64Extra);
  } else {
    throw Error(Code::usage, fmt::format("the charset {} is not known", g.charset),
                "use alnum, alnum-symbols, hex or base64");
  }
  std::string out;
  for (char c : base) {
    if (g.exclude.find(c) == std::string::npos) out.push_back(c);
  }
  if (out.size() < 2) {
    throw Error(Code::usage, "the excluded characters leave fewer than 2 to generate from",
                Remedy::choose_charset, {}, "exclude fewer characters");
  }
  if (g.length < kMinGenLength || g.length > kMaxGenLength) {
    throw Error(Code::usage,
                fmt::format("a generated length of {} is not between {} and {}", g.length,
                            kMinGenLength, kMaxGenLength),
                Remedy::choose_length);
  }
  return out;
}

SecureBytes generate(const Generator& g) {
  const std::string chars = alphabet(g);
  SecureBytes out(static_cast<std::size_t>(g.length));
  for (std::size_t i = 0; i < out.size(); ++i) {
    out.data()[i] = static_cast<std::uint8_t>(
        chars[crypto::random_uniform(static_cast<std::uint32_t>(chars.size()))]);
  }
  return out;
}

SecureBytes generate_like(const Generator& g, ByteView current) {
  nlohmann::json j = nlohmann::json::parse(as_chars(current), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("password") || !j["password"].is_string()) {
    return generate(g);
  }
  const SecureBytes pw = generate(g);
  j["password"] = std::string(pw.chars());
  const std::string text = j.dump();
  SecureBytes out(as_bytes(text));
  return out;
}

void check_name(std::string_view name) {
  const bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("/_+=.@-").find(c) != std::string_view::npos;
  });
  if (name.empty() || name.size() > 256 || !chars_ok) {
    throw Error(Code::usage, fmt::format("\"{}\" is not a valid secret name", name),
                "use 1-256 letters, digits and / _ + = . @ -");
  }
}

store::KeyRow SecretStore::key_for_create(const CreateSpec& spec, TimePoint now,
                                          bool& key_created) {
  key_created = false;
  if (spec.key) {
    store::KeyRow key = keys_.resolve(*spec.key);
    keys::KeyStore::require_enabled(key, *spec.key);
    return key;
  }
  if (store::alias_target(vault_.db(), kDefaultKeyAlias)) {
    store::KeyRow key = keys_.resolve(kDefaultKeyAlias);
    keys::KeyStore::require_enabled(key, kDefaultKeyAlias);
    return key;
  }
  keys::CreateSpec ks;
  ks.description = "kmsctl secrets (created on first use)";
  ks.alias = std::string(kDefaultKeyAlias);
  key_created = true;
  return keys_.create(ks, now);
}

Bytes SecretStore::seal_value(const store::SecretRow& s, std::int64_t version, ByteView value) {
  const store::KeyRow key = keys_.resolve(s.key_id);
  keys::KeyStore::require_enabled(key, key.id);
  const Bytes blob = keys_.encrypt(key, value, value_context(s.id, version));
  return vault_.seal(value_ref(s.id, version), blob);
}

store::SecretRow SecretStore::create(const CreateSpec& spec, ByteView value, TimePoint now,
                                     bool& key_created) {
  check_name(spec.name);
  if (auto existing = store::secret_by_name(vault_.db(), spec.name)) {
    if (existing->deletion_date) {
      throw Error(Code::refused,
                  fmt::format("secret {} is scheduled for deletion (on {})", spec.name,
                              *existing->deletion_date),
                  Remedy::restore_or_purge_secret, spec.name);
    }
    throw Error(Code::refused, fmt::format("secret {} already exists", spec.name),
                Remedy::put_secret_version, spec.name);
  }
  alphabet(spec.generator);  // validates the generator kept for rotations
  if (spec.rotation_days) {
    keys::check_days(*spec.rotation_days, kMinRotationDays, kMaxRotationDays, "a rotation period");
  }
  const store::KeyRow key = key_for_create(spec, now, key_created);
  store::SecretRow s;
  s.id = crypto::uuid_v4();
  s.name = spec.name;
  s.key_id = key.id;
  s.description = spec.description;
  s.created = s.updated = format_rfc3339(now);
  s.gen_length = spec.generator.length;
  s.gen_charset = spec.generator.charset;
  s.gen_exclude = spec.generator.exclude;
  s.rotation_period_days = spec.rotation_days;
  s.rotation_command = spec.rotation_command;
  store::secret_insert(vault_.db(), s);
  for (const auto& [k, v] : spec.tags) store::secret_tag_set(vault_.db(), s.id, k, v);
  add_version(s, value, SecretStage::current, now);
  return s;
}

store::SecretRow SecretStore::resolve(std::string_view name) {
  auto s = store::secret_by_name(vault_.db(), name);
  if (!s) {
    throw Error(Code::not_found, fmt::format("no secret {} in this vault", name),
                Remedy::list_secrets);
  }
  return *s;
}

void SecretStore::require_active(const store::SecretRow& s) {
  if (!s.deletion_date) return;
  throw Error(Code::refused,
              fmt::format("secret {} is scheduled for deletion (on {})", s.name, *s.deletion_date),
              Remedy::restore_secret, s.name);
}

std::int64_t SecretStore::add_version(store::SecretRow& s, ByteView value, SecretStage stage,
                                      TimePoint now) {
  require_active(s);
  if (value.empty()) {
    throw Error(Code::usage, fmt::format("the value for secret {} is empty", s.name),
                Remedy::give_secret_value);
  }
  if (value.size() > kMaxValueSize) {
    throw Error(Code::usage,
                fmt::format("a secret value holds at most {} bytes; this one has {}", kMaxValueSize,
                            value.size()),
                Remedy::store_as_file);
  }
  const std::int64_t version = s.next_version;
  // Member by member: with a base class, g++ 12 destroys the base twice when a later
  // initialiser of a braced aggregate (seal_value, refused for a disabled key) throws.
  store::SecretVersionRow v;
  v.value = seal_value(s, version, value);
  v.secret_id = s.id;
  v.version = version;
  v.created = format_rfc3339(now);
  if (stage == SecretStage::current) {
    store::secret_stage_clear(vault_.db(), s.id, SecretStage::previous);
    if (auto cur = store::secret_version_at_stage(vault_.db(), s.id, SecretStage::current)) {
      store::secret_stage_set(vault_.db(), s.id, cur->version, SecretStage::previous);
    }
  } else {
    store::secret_stage_clear(vault_.db(), s.id, stage);
  }
  v.stage = stage;
  store::secret_version_insert(vault_.db(), v);
  s.next_version = version + 1;
  s.updated = format_rfc3339(now);
  store::secret_update(vault_.db(), s);
  store::secret_versions_purge(vault_.db(), s.id, kMaxVersions);
  return version;
}

std::optional<store::SecretVersionRow> SecretStore::at_stage(const store::SecretRow& s,
                                                             SecretStage stage) {
  return store::secret_version_at_stage(vault_.db(), s.id, stage);
}

Value SecretStore::read(const store::SecretRow& s, std::optional<SecretStage> stage,
                        std::optional<std::int64_t> version) {
  require_active(s);
  std::optional<store::SecretVersionRow> v;
  if (version) {
    v = store::secret_version_get(vault_.db(), s.id, *version);
    if (!v) {
      throw Error(Code::not_found, fmt::format("secret {} has no version {}", s.name, *version),
                  Remedy::list_secret_versions, s.name);
    }
  } else {
    const SecretStage st = stage.value_or(SecretStage::current);
    v = store::secret_version_at_stage(vault_.db(), s.id, st);
    if (!v) {
      throw Error(Code::not_found,
                  fmt::format("secret {} has no {} version", s.name, secret_stage_name(st)),
                  Remedy::list_secret_stages, s.name);
    }
  }
  const SecureBytes blob = vault_.open_sealed(value_ref(s.id, v->version), v->value);
  keys::Decrypted d = keys_.decrypt(blob.view(), value_context(s.id, v->version));
  return {std::move(d.plaintext), v->version, v->stage};
}

void SecretStore::promote_pending(store::SecretRow& s, TimePoint now) {
  const auto pending = store::secret_version_at_stage(vault_.db(), s.id, SecretStage::pending);
  if (!pending) {
    throw Error(Code::failed, fmt::format("secret {} has no pending version to finish", s.name));
  }
  store::secret_stage_clear(vault_.db(), s.id, SecretStage::previous);
  if (auto cur = store::secret_version_at_stage(vault_.db(), s.id, SecretStage::current)) {
    store::secret_stage_set(vault_.db(), s.id, cur->version, SecretStage::previous);
  }
  store::secret_stage_set(vault_.db(), s.id, pending->version, SecretStage::current);
  s.last_rotated = s.updated = format_rfc3339(now);
  s.rotation_status = RotationStatus::succeeded;
  s.rotation_error.reset();
  store::secret_update(vault_.db(), s);
}

std::optional<std::string> SecretStore::next_rotation(const store::SecretRow& s) const {
  if (!s.rotation_period_days || s.deletion_date) return std::nullopt;
  return add_days(s.last_rotated.value_or(s.created), *s.rotation_period_days);
}

SecretInfo SecretStore::describe(const store::SecretRow& s) {
  SecretInfo info;
  info.secret = s;
  info.key_aliases = store::aliases_of(vault_.db(), s.key_id);
  for (const store::SecretVersionRow& v : store::secret_versions(vault_.db(), s.id)) {
    info.versions.push_back(v);
  }
  info.tags = store::secret_tags_of(vault_.db(), s.id);
  info.next_rotation = next_rotation(s);
  return info;
}

std::string SecretStore::schedule_deletion(store::SecretRow& s, std::int64_t days, TimePoint now) {
  keys::check_days(days, kMinRecoveryDays, kMaxRecoveryDays, "a recovery window");
  if (s.deletion_date) {
    throw Error(Code::refused,
                fmt::format("secret {} is already scheduled for deletion (on {})", s.name,
                            *s.deletion_date),
                Remedy::restore_or_purge_secret_now, s.name);
  }
  s.deletion_date = format_rfc3339(now + std::chrono::days(days));
  s.updated = format_rfc3339(now);
  store::secret_update(vault_.db(), s);
  return *s.deletion_date;
}

void SecretStore::restore(store::SecretRow& s) {
  if (!s.deletion_date) {
    throw Error(Code::refused, fmt::format("secret {} is not scheduled for deletion", s.name),
                "nothing to restore");
  }
  s.deletion_date.reset();
  store::secret_update(vault_.db(), s);
}

void SecretStore::set_rotation(store::SecretRow& s, const RotationChange& change, TimePoint now) {
  require_active(s);
  if (change.set_period && change.period_days) {
    keys::check_days(*change.period_days, kMinRotationDays, kMaxRotationDays, "a rotation period");
  }
  if (change.set_period) s.rotation_period_days = change.period_days;
  if (change.set_command) s.rotation_command = change.command;
  s.updated = format_rfc3339(now);
  store::secret_update(vault_.db(), s);
}

void SecretStore::erase(const store::SecretRow& s) { store::secret_delete(vault_.db(), s.id); }

}  // namespace kms::secrets
