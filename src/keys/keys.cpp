#include <charconv>

#include <fmt/format.h>

#include "keys/key_store.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"

namespace kms::keys {
namespace {

constexpr std::string_view kVersionsTable = "key_versions";

RecordRef material_ref(std::string_view key_id, std::int64_t version) {
  return {std::string(kVersionsTable), std::string(key_id), version};
}

}  // namespace

void check_alias_name(std::string_view alias) {
  const bool prefixed = alias.substr(0, kAliasPrefix.size()) == kAliasPrefix;
  const std::string_view name = prefixed ? alias.substr(kAliasPrefix.size()) : std::string_view();
  const bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '/';
  });
  if (!prefixed || name.empty() || name.size() > 250 || !chars_ok) {
    throw Error(Code::usage, fmt::format("\"{}\" is not a valid alias", alias),
                "write alias/NAME, NAME of 1-250 letters, digits, '-', '_' or '/'");
  }
}

std::int64_t parse_days(std::string_view text, std::int64_t min, std::int64_t max,
                        std::string_view what) {
  std::string_view digits = text;
  if (!digits.empty() && digits.back() == 'd') digits.remove_suffix(1);
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || v < min ||
      v > max) {
    throw Error(Code::usage,
                fmt::format("{} \"{}\" is not between {}d and {}d", what, text, min, max),
                fmt::format("write a number of days such as {}d", min == 7 && max == 30 ? 30 : 90));
  }
  return v;
}

void check_days(std::int64_t days, std::int64_t min, std::int64_t max, std::string_view what) {
  if (days >= min && days <= max) return;
  throw Error(Code::usage,
              fmt::format("{} of {} days is not between {}d and {}d", what, days, min, max),
              fmt::format("give a number of days from {} to {}", min, max));
}

std::string KeyStore::token_label(std::string_view key_id, std::int64_t version) const {
  return fmt::format("{}{}:{}", kTokenKeyLabelPrefix, key_id, version);
}

std::optional<hsm::ObjectHandle> KeyStore::token_key(std::string_view key_id,
                                                     std::int64_t version) {
  const auto handles = vault_.token().find_keys(token_label(key_id, version), as_bytes(key_id));
  if (handles.size() > 1) {
    // Two private keys with one label: not something kmsctl makes (a rotation removes a stray of
    // an interrupted one first). Using either could encrypt under a key the vault does not know.
    throw Error(Code::integrity,
                fmt::format("the token holds {} key objects for key {} version {}, where kmsctl "
                            "made one: the token was altered",
                            handles.size(), key_id, version),
                "list them with `pkcs11-tool --login --list-objects --type secrkey` (for a private "
                "token, with SOFTHSM2_CONF=VAULT.token/softhsm2.conf) and restore VAULT.token/ "
                "from a backup");
  }
  if (handles.empty()) return std::nullopt;
  return handles.front();
}

void KeyStore::add_version(store::KeyRow& key, std::int64_t version, TimePoint now) {
  store::KeyVersionRow v{{key.id, version, format_rfc3339(now)}, std::nullopt};
  if (key.protection == Protection::hsm) {
    const std::string label = token_label(key.id, version);
    // A key object of this version already in the token was made by a rotation that was killed
    // before its commit (the version has no row: this transaction makes it, under the writer
    // lock). Left there, it would be a second key with the label that names this version.
    for (hsm::ObjectHandle stray : vault_.token().find_keys(label)) vault_.token().destroy(stray);
    vault_.token().generate_aes256(label, as_bytes(key.id));
    created_token_labels_.push_back(label);
  } else {
    const SecureBytes material = crypto::random_secret(32);
    v.material = vault_.seal(material_ref(key.id, version), material.view());
  }
  store::key_version_insert(vault_.db(), v);
}

store::KeyRow KeyStore::create(const CreateSpec& spec, TimePoint now) {
  if (spec.spec != "AES_256") {
    throw Error(Code::usage, fmt::format("key spec {} is not supported", spec.spec),
                Remedy::use_aes_256);
  }
  if (spec.rotation_days) {
    check_days(*spec.rotation_days, kMinRotationDays, kMaxRotationDays, "a rotation period");
  }
  store::KeyRow k;
  k.id = crypto::uuid_v4();
  k.spec = spec.spec;
  k.usage = "ENCRYPT_DECRYPT";
  k.description = spec.description;
  k.state = KeyState::enabled;
  k.protection = spec.protection;
  k.created = k.last_rotated = format_rfc3339(now);
  k.rotation_period_days = spec.rotation_days;
  k.primary_version = 1;
  store::key_insert(vault_.db(), k);
  add_version(k, 1, now);
  if (spec.alias) {
    check_alias_name(*spec.alias);
    if (store::alias_target(vault_.db(), *spec.alias)) {
      throw Error(Code::refused, fmt::format("alias {} already exists", *spec.alias),
                  Remedy::choose_alias_name);
    }
    store::alias_insert(vault_.db(), *spec.alias, k.id, k.created);
  }
  for (const auto& [name, value] : spec.tags) store::tag_set(vault_.db(), k.id, name, value);
  return k;
}

store::KeyRow KeyStore::resolve(std::string_view ref) {
  std::string id(ref);
  if (ref.substr(0, kAliasPrefix.size()) == kAliasPrefix) {
    auto target = store::alias_target(vault_.db(), ref);
    if (!target) {
      throw Error(Code::not_found, fmt::format("no key has the alias {}", ref),
                  Remedy::list_aliases);
    }
    id = *target;
  }
  auto key = store::key_get(vault_.db(), id);
  if (!key) {
    throw Error(Code::not_found, fmt::format("no key {} in this vault", ref), Remedy::list_keys);
  }
  return *key;
}

std::optional<std::string> KeyStore::next_rotation(const store::KeyRow& key) const {
  if (!key.rotation_period_days || key.state != KeyState::enabled) return std::nullopt;
  return add_days(key.last_rotated, *key.rotation_period_days);
}

KeyInfo KeyStore::describe(const store::KeyRow& key) {
  KeyInfo info;
  info.key = key;
  info.aliases = store::aliases_of(vault_.db(), key.id);
  for (const store::KeyVersionRow& v : store::key_versions(vault_.db(), key.id)) {
    info.versions.push_back(v);
  }
  info.tags = store::tags_of(vault_.db(), key.id);
  info.next_rotation = next_rotation(key);
  return info;
}

void KeyStore::require_enabled(const store::KeyRow& key, std::string_view ref) {
  if (key.state == KeyState::enabled) return;
  const std::string name = ref == key.id ? key.id : fmt::format("{} ({})", ref, key.id);
  if (key.state == KeyState::disabled) {
    throw Error(Code::refused, fmt::format("key {} is disabled", name), Remedy::enable_key,
                std::string(ref));
  }
  throw Error(
      Code::refused,
      fmt::format("key {} is pending deletion (on {})", name, key.deletion_date.value_or("?")),
      Remedy::cancel_key_deletion, std::string(ref), "then enable it");
}

void KeyStore::enable(store::KeyRow& key) {
  if (key.state == KeyState::pending_deletion) {
    throw Error(Code::refused, fmt::format("key {} is pending deletion", key.id),
                Remedy::cancel_key_deletion_before_enable, key.id);
  }
  key.state = KeyState::enabled;
  store::key_update(vault_.db(), key);
}

void KeyStore::disable(store::KeyRow& key) {
  if (key.state == KeyState::pending_deletion) {
    throw Error(Code::refused, fmt::format("key {} is pending deletion", key.id),
                Remedy::cancel_key_deletion, key.id);
  }
  key.state = KeyState::disabled;
  store::key_update(vault_.db(), key);
}

std::int64_t KeyStore::rotate(store::KeyRow& key, TimePoint now) {
  if (key.state == KeyState::pending_deletion) require_enabled(key, key.id);
  const std::int64_t version =
      std::max(store::key_version_max(vault_.db(), key.id), key.highest_lost_version) + 1;
  add_version(key, version, now);
  key.primary_version = version;
  key.last_rotated = format_rfc3339(now);
  store::key_update(vault_.db(), key);
  return version;
}

void KeyStore::set_rotation(store::KeyRow& key, std::optional<std::int64_t> days) {
  if (days) check_days(*days, kMinRotationDays, kMaxRotationDays, "a rotation period");
  key.rotation_period_days = days;
  store::key_update(vault_.db(), key);
}

std::string KeyStore::schedule_deletion(store::KeyRow& key, std::int64_t days, TimePoint now) {
  check_days(days, kMinPendingDays, kMaxPendingDays, "a deletion waiting period");
  if (key.state == KeyState::pending_deletion) {
    throw Error(Code::refused,
                fmt::format("key {} is already pending deletion (on {})", key.id,
                            key.deletion_date.value_or("?")),
                Remedy::cancel_existing_key_deletion, key.id);
  }
  key.state = KeyState::pending_deletion;
  key.deletion_date = format_rfc3339(now + std::chrono::days(days));
  store::key_update(vault_.db(), key);
  return *key.deletion_date;
}

void KeyStore::cancel_deletion(store::KeyRow& key) {
  if (key.state != KeyState::pending_deletion) {
    throw Error(Code::refused, fmt::format("key {} is not pending deletion", key.id),
                "nothing to cancel");
  }
  key.state = KeyState::disabled;
  key.deletion_date.reset();
  store::key_update(vault_.db(), key);
}

std::vector<std::string> KeyStore::erase(const store::KeyRow& key) {
  std::vector<std::string> labels;
  if (key.protection == Protection::hsm) {
    for (const auto& v : store::key_versions(vault_.db(), key.id)) {
      labels.push_back(token_label(key.id, v.version));
    }
  }
  store::key_delete(vault_.db(), key.id);
  return labels;
}

void KeyStore::destroy_token_keys(const std::vector<std::string>& labels) noexcept {
  for (const std::string& label : labels) {
    try {
      for (hsm::ObjectHandle h : vault_.token().find_keys(label)) vault_.token().destroy(h);
    } catch (...) {
      // A key left in the token is unreachable (its rows are gone); nothing else to do here.
    }
  }
}

Bytes KeyStore::encrypt(const store::KeyRow& key, ByteView plaintext, const Context& context) {
  const blob::Header h{key.id, static_cast<std::uint32_t>(key.primary_version)};
  const Bytes header = blob::encode_header(h);
  const Bytes aad = blob::aad(header, context);
  const Bytes nonce = crypto::random_bytes(blob::kNonceSize);
  Bytes sealed;
  if (key.protection == Protection::hsm) {
    const auto handle = token_key(key.id, key.primary_version);
    if (!handle) {
      throw Error(
          Code::unavailable,
          fmt::format("the token holds no key for {} version {}", key.id, key.primary_version),
          "check that the vault's token is the one the key was created in");
    }
    sealed = vault_.token().gcm_encrypt(*handle, nonce, aad, plaintext);
  } else {
    const auto v = store::key_version_get(vault_.db(), key.id, key.primary_version);
    if (!v || !v->material) {
      throw Error(Code::integrity, fmt::format("key {} has no material for version {}", key.id,
                                               key.primary_version));
    }
    const SecureBytes material = vault_.open_sealed(material_ref(key.id, v->version), *v->material);
    sealed = crypto::aes_gcm_seal(material.view(), nonce, aad, plaintext);
  }
  Bytes out = header;
  out.insert(out.end(), nonce.begin(), nonce.end());
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

std::optional<std::string> KeyStore::blob_key_id(ByteView b) {
  const auto p = blob::parse(b);
  if (!p) return std::nullopt;
  return p->header.key_id;
}

Decrypted KeyStore::decrypt(ByteView b, const Context& context) {
  const auto p = blob::parse(b);
  if (!p) {
    throw Error(Code::integrity, "the input is not a kmsctl ciphertext blob (or it is damaged)",
                Remedy::pass_ciphertext);
  }
  auto key = store::key_get(vault_.db(), p->header.key_id);
  if (!key) {
    throw Error(Code::not_found,
                fmt::format("this vault has no key {}: the key was deleted, this vault was "
                            "restored from an older backup or is a stale copy, or the data was "
                            "made by another vault",
                            p->header.key_id),
                "decrypt it with the vault (or vault copy) that has the key; a deleted key "
                "decrypts nothing");
  }
  require_enabled(*key, key->id);
  // A version the vault does not have is told apart from one that does not open the data: it
  // was made after the backup this vault was restored from (or in another copy of the vault).
  // Versions are never removed one by one, so a missing one below the newest was deleted from
  // the vault file, unless a restore dropped it (its number is never made again).
  const std::int64_t version = p->header.key_version;
  const auto v = store::key_version_get(vault_.db(), key->id, version);
  if (!v && version > key->highest_lost_version &&
      version < store::key_version_max(vault_.db(), key->id)) {
    throw Error(Code::integrity,
                fmt::format("key {} has no version {} but has later ones: the vault file was "
                            "altered",
                            key->id, version),
                Remedy::verify_and_restore_vault);
  }
  if (!v) {
    const std::vector<std::string> aliases = store::aliases_of(vault_.db(), key->id);
    std::string name = key->id;
    for (std::size_t i = 0; i < aliases.size(); ++i) {
      name += (i == 0 ? " (" : ", ") + aliases[i] + (i + 1 == aliases.size() ? ")" : "");
    }
    throw Error(Code::not_found,
                fmt::format("this vault has no version {} of key {}: it was restored from an "
                            "older backup, or this is a stale copy of the vault",
                            version, name),
                Remedy::list_restores, {},
                fmt::format("restore the vault copy that has version {} of the key, or decrypt "
                            "it with the vault that made the data",
                            version));
  }
  const auto failed = [&] {
    return Error(Code::integrity,
                 fmt::format("the ciphertext does not open with key {} version {}: it was altered, "
                             "or the encryption context differs",
                             key->id, version),
                 Remedy::pass_encryption_context);
  };
  const Bytes aad = blob::aad(p->header_bytes, context);
  std::optional<SecureBytes> pt;
  if (key->protection == Protection::hsm) {
    const auto handle = token_key(key->id, version);
    if (!handle) {
      throw Error(
          Code::unavailable,
          fmt::format("the token holds no key object for key {} version {}", key->id, version),
          "check that the vault's token is the one the key version was made in (a token "
          "directory put back from an older copy lacks the newer versions)");
    }
    pt = vault_.token().gcm_decrypt(*handle, p->nonce, aad, p->sealed);
  } else {
    if (!v->material) {
      throw Error(Code::integrity,
                  fmt::format("key {} has no material for version {}", key->id, version),
                  Remedy::verify_and_restore_backup, {}, "the vault file was altered");
    }
    const SecureBytes material =
        vault_.open_sealed(material_ref(key->id, v->version), *v->material);
    pt = crypto::aes_gcm_open(material.view(), p->nonce, aad, p->sealed);
  }
  if (!pt) throw failed();
  return {std::move(*pt), key->id, p->header.key_version};
}

}  // namespace kms::keys
