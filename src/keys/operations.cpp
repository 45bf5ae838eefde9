// The key operations: each is one audited transaction of the runner (Runner::run).
#include "keys/operations.hpp"

#include "policy/policy.hpp"
#include <fmt/format.h>

#include "base/json.hpp"
#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "runner/runner.hpp"

namespace kms {
namespace {

KeyPolicyInfo policy_info(std::string_view key_id, const std::optional<store::KeyPolicyRow>& row) {
  KeyPolicyInfo info;
  info.key_id = std::string(key_id);
  if (row) {
    info.text = row->text;
    info.sha256 = row->sha256;
    info.updated = row->updated;
    info.updated_by_uid = row->updated_by_uid;
  }
  return info;
}

}  // namespace

KeyOperations::KeyOperations(Runner& runner) : runner_(runner), vault_(runner.vault()) {}

void KeyOperations::key_op(Action action, std::string_view ref, const KeyBody& body,
                           const Context& context) {
  keys::KeyStore ks(vault_);
  audit::Event event{action, key_resource(ref), {}, context};
  audit::name_key(event.params, ref);
  runner_.run(std::move(event),
              [&](audit::Event& ev) {
                store::KeyRow key = ks.resolve(ref);
                ev.params["key_id"] = key.id;
                if (ev.resource != key_resource(key.id)) {
                  ev.resource = key_resource(key.id);
                  runner_.authorize(ev);  // the key an alias names
                }
                body(ks, key, ev);
              },
              {{}, [&] { ks.destroy_token_keys(ks.created_token_keys()); }});
}

keys::KeyInfo KeyOperations::create(const keys::CreateSpec& spec) {
  keys::KeyStore ks(vault_);
  keys::KeyInfo info;
  audit::Event ev{Action::key_create, "key/", {}};
  ev.params["spec"] = std::string(key_spec_name(spec.spec));
  if (spec.usage) ev.params["usage"] = std::string(key_usage_name(*spec.usage));
  ev.params["protection"] = std::string(protection_name(spec.protection));
  if (spec.origin != Origin::kms) ev.params["origin"] = std::string(origin_name(spec.origin));
  if (spec.alias) ev.params["alias"] = *spec.alias;
  if (spec.rotation_days) ev.params["rotation_period_days"] = *spec.rotation_days;
  runner_.run(std::move(ev),
              [&](audit::Event& e) {
                const store::KeyRow key = ks.create(spec, now());
                e.resource = key_resource(key.id);
                info = ks.describe(key);
              },
              {{}, [&] { ks.destroy_token_keys(ks.created_token_keys()); }});
  return info;
}

KeyPage KeyOperations::list(std::optional<KeyState> state, const std::optional<std::string>& after,
                            std::int64_t limit) {
  KeyPage page;
  audit::Event ev{Action::key_list, "vault/" + vault_.meta().vault_id, {{"limit", limit}}};
  if (state) ev.params["state"] = std::string(key_state_name(*state));
  if (after) ev.params["after"] = *after;
  runner_.run(std::move(ev), [&](audit::Event&) {
    keys::KeyStore ks(vault_);
    if (limit < 1 || limit > keys::kMaxListLimit) {
      throw Error(
          Code::usage,
          fmt::format("a page of keys holds 1 to {} keys, not {}", keys::kMaxListLimit, limit),
          Remedy::choose_page_limit);
    }
    if (after && !store::key_get(vault_.db(), *after)) {
      throw Error(Code::not_found,
                  fmt::format("the page should follow key {}, which does not exist", *after),
                  Remedy::continue_key_list);
    }
    auto rows = store::key_list(vault_.db(), state, after, limit + 1);
    if (static_cast<std::int64_t>(rows.size()) > limit) {
      rows.pop_back();
      page.next = rows.back().id;
    }
    for (const auto& r : rows) page.keys.push_back(ks.describe(r));
  });
  return page;
}

keys::KeyInfo KeyOperations::describe(std::string_view ref) {
  keys::KeyInfo info;
  key_op(Action::key_describe, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event&) { info = ks.describe(key); });
  return info;
}

keys::KeyInfo KeyOperations::enable(std::string_view ref) {
  keys::KeyInfo info;
  key_op(Action::key_enable, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event&) {
    ks.enable(key);
    info = ks.describe(key);
  });
  return info;
}

keys::KeyInfo KeyOperations::disable(std::string_view ref) {
  keys::KeyInfo info;
  key_op(Action::key_disable, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event&) {
    ks.disable(key);
    info = ks.describe(key);
  });
  return info;
}

keys::KeyInfo KeyOperations::rotate(std::string_view ref) {
  keys::KeyInfo info;
  key_op(Action::key_rotate, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
    ev.params["version"] = ks.rotate(key, now());
    info = ks.describe(key);
  });
  return info;
}

keys::KeyInfo KeyOperations::set_rotation(std::string_view ref, std::optional<std::int64_t> days) {
  keys::KeyInfo info;
  key_op(Action::key_set_rotation, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
           ev.params["rotation_period_days"] = json_or_null(days);
           ks.set_rotation(key, days);
           info = ks.describe(key);
         });
  return info;
}

keys::KeyInfo KeyOperations::schedule_deletion(std::string_view ref, std::int64_t pending_days) {
  keys::KeyInfo info;
  key_op(Action::key_schedule_deletion, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
           ev.params["pending_days"] = pending_days;
           ev.params["deletion_date"] = ks.schedule_deletion(key, pending_days, now());
           info = ks.describe(key);
         });
  return info;
}

keys::KeyInfo KeyOperations::cancel_deletion(std::string_view ref) {
  keys::KeyInfo info;
  key_op(Action::key_cancel_deletion, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event&) {
           ks.cancel_deletion(key);
           info = ks.describe(key);
         });
  return info;
}

keys::ImportParams KeyOperations::import_params(std::string_view ref, WrappingAlgorithm algorithm) {
  keys::ImportParams out;
  key_op(Action::key_get_parameters_for_import, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
           ev.params["wrapping_algorithm"] = std::string(wrapping_algorithm_name(algorithm));
           ev.params["wrapping_key_spec"] = std::string(key_spec_name(KeySpec::rsa_3072));
           out = ks.import_params(key, ref, algorithm, now());
           ev.params["expires"] = out.expires;
         });
  return out;
}

keys::KeyInfo KeyOperations::import_material(std::string_view ref, ByteView wrapped, ByteView token,
                                             const std::optional<std::string>& expires) {
  keys::KeyInfo info;
  key_op(Action::key_import_key_material, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
           const TimePoint t = now();
           std::optional<std::string> until;
           if (expires) until = keys::parse_material_expiry(*expires, t);
           ev.params["material_expires"] = json_or_null(until);
           const keys::ImportOutcome o = ks.import_material(key, ref, wrapped, token, until, t);
           ev.params["wrapping_algorithm"] =
               std::string(wrapping_algorithm_name(o.wrapping_algorithm));
           ev.params["reimport"] = o.reimport;
           ev.params["version"] = key.primary_version;
           ev.params["state"] = std::string(key_state_name(key.state));
           info = ks.describe(key);
         });
  return info;
}

KeyPolicyInfo KeyOperations::set_policy(std::string_view ref,
                                        const std::optional<std::string>& text) {
  KeyPolicyInfo info;
  key_op(Action::key_set_policy, ref, [&](keys::KeyStore&, store::KeyRow& key, audit::Event& ev) {
    store::Db& db = vault_.db();
    if (!text) {
      ev.params["removed"] = store::key_policy_delete(db, key.id);
      info = policy_info(key.id, std::nullopt);
      return;
    }
    const policy::Policy parsed =
        policy::parse_resource_policy(*text, "key", key.id, kMaxKeyPolicy);
    store::KeyPolicyRow row;
    row.key_id = key.id;
    row.text = *text;
    row.sha256 = crypto::to_hex(crypto::sha256(as_bytes(*text)));
    row.updated = format_rfc3339(now());
    row.updated_by_uid = runner_.caller().uid;
    ev.params["sha256"] = row.sha256;
    ev.params["statements"] = parsed.statements().size();
    store::key_policy_put(db, row);
    info = policy_info(key.id, row);
  });
  return info;
}

KeyPolicyInfo KeyOperations::get_policy(std::string_view ref) {
  KeyPolicyInfo info;
  key_op(Action::key_get_policy, ref, [&](keys::KeyStore&, store::KeyRow& key, audit::Event& ev) {
    const auto row = store::key_policy_get(vault_.db(), key.id);
    if (row) ev.params["sha256"] = row->sha256;
    info = policy_info(key.id, row);
  });
  return info;
}

void KeyOperations::alias_create(std::string_view alias, std::string_view ref) {
  key_op(Action::key_alias_create, ref, [&](keys::KeyStore&, store::KeyRow& key, audit::Event& ev) {
    ev.params["alias"] = std::string(alias);
    keys::check_alias_name(alias);
    if (store::alias_target(vault_.db(), alias)) {
      throw Error(Code::refused, fmt::format("alias {} already exists", alias), Remedy::move_alias,
                  std::string(alias));
    }
    store::alias_insert(vault_.db(), alias, key.id, format_rfc3339(now()));
  });
}

void KeyOperations::alias_update(std::string_view alias, std::string_view ref) {
  key_op(Action::key_alias_update, ref, [&](keys::KeyStore&, store::KeyRow& key, audit::Event& ev) {
    ev.params["alias"] = std::string(alias);
    const auto old = store::alias_target(vault_.db(), alias);
    if (!old) {
      throw Error(Code::not_found, fmt::format("no alias {}", alias), Remedy::create_alias,
                  std::string(alias));
    }
    ev.params["previous_key"] = *old;
    store::alias_update(vault_.db(), alias, key.id);
  });
}

void KeyOperations::alias_delete(std::string_view alias) {
  runner_.run(
      {Action::key_alias_delete, "alias/", {{"alias", std::string(alias)}}}, [&](audit::Event& ev) {
        const auto target = store::alias_target(vault_.db(), alias);
        if (!target) {
          throw Error(Code::not_found, fmt::format("no alias {}", alias), Remedy::list_aliases);
        }
        ev.resource = key_resource(*target);
        store::alias_delete(vault_.db(), alias);
      });
}

std::vector<std::pair<std::string, std::string>> KeyOperations::alias_list() {
  std::vector<std::pair<std::string, std::string>> out;
  runner_.run({Action::key_alias_list, "vault/" + vault_.meta().vault_id, {}},
              [&](audit::Event&) { out = store::alias_list(vault_.db()); });
  return out;
}

keys::KeyInfo KeyOperations::tag(std::string_view ref,
                                 const std::vector<std::pair<std::string, std::string>>& tags) {
  keys::KeyInfo info;
  key_op(Action::key_tag, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
    for (const auto& [k, v] : tags) {
      ev.params["tags"][k] = v;
      store::tag_set(vault_.db(), key.id, k, v);
    }
    info = ks.describe(key);
  });
  return info;
}

keys::KeyInfo KeyOperations::untag(std::string_view ref, const std::vector<std::string>& names) {
  keys::KeyInfo info;
  key_op(Action::key_untag, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
    ev.params["names"] = names;
    for (const auto& n : names) {
      if (!store::tag_remove(vault_.db(), key.id, n)) {
        throw Error(Code::not_found, fmt::format("key {} has no tag {}", key.id, n),
                    Remedy::list_key_tags, key.id);
      }
    }
    info = ks.describe(key);
  });
  return info;
}

Bytes KeyOperations::encrypt(std::string_view ref, ByteView plaintext, const Context& context,
                             EncryptionAlgorithm algorithm) {
  Bytes out;
  const bool symmetric = algorithm == EncryptionAlgorithm::symmetric_default;
  if (!symmetric && !context.empty()) {
    throw Error(Code::usage,
                fmt::format("{} takes no encryption context", encryption_algorithm_name(algorithm)),
                "leave out --context: public-key encryption binds no context");
  }
  key_op(
      Action::key_encrypt, ref,
      [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
        if (symmetric) ev.params["context"] = context_json(context);
        if (!symmetric) ev.params["algorithm"] = std::string(encryption_algorithm_name(algorithm));
        ev.params["bytes"] = plaintext.size();
        keys::KeyStore::require_enabled(key, ref);
        if (!symmetric) {
          out = ks.encrypt_to(key, algorithm, plaintext);
        } else {
          if (plaintext.size() > keys::kMaxEncryptPlaintext) {
            throw Error(Code::usage,
                        fmt::format("encrypt takes at most {} bytes; the input has {}",
                                    keys::kMaxEncryptPlaintext, plaintext.size()),
                        Remedy::encrypt_as_file);
          }
          out = ks.encrypt(key, plaintext, context);
        }
        ev.params["version"] = key.primary_version;
      },
      context);
  return out;
}

keys::Decrypted KeyOperations::decrypt_with(std::string_view ref, EncryptionAlgorithm algorithm,
                                            ByteView ciphertext,
                                            std::optional<std::int64_t> version) {
  std::optional<keys::Decrypted> out;
  key_op(Action::key_decrypt, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
    ev.params["algorithm"] = std::string(encryption_algorithm_name(algorithm));
    keys::KeyStore::require_enabled(key, ref);
    out = ks.decrypt_with(key, algorithm, ciphertext, version);
    ev.params["version"] = out->key_version;
  });
  return std::move(*out);
}

keys::PublicKey KeyOperations::get_public_key(std::string_view ref,
                                              std::optional<std::int64_t> version) {
  keys::PublicKey out;
  key_op(Action::key_get_public_key, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
           // Public keys are not secret: a disabled key still gives its own (a verifier of its
           // old signatures needs it; AWS KMS refuses), a key pending deletion does not.
           if (key.state == KeyState::pending_deletion || key.state == KeyState::pending_import) {
             keys::KeyStore::require_enabled(key, ref);
           }
           const std::int64_t v = version.value_or(key.primary_version);
           out = {key.id, v, key.spec, key.usage, ks.public_key(key, v)};
           ev.params["version"] = v;
         });
  return out;
}

keys::Signature KeyOperations::sign(std::string_view ref, SigningAlgorithm algorithm,
                                    ByteView input, bool is_digest) {
  keys::Signature out;
  key_op(Action::key_sign, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
    ev.params["algorithm"] = std::string(signing_algorithm_name(algorithm));
    ev.params["message_type"] = is_digest ? "digest" : "raw";
    ev.params["bytes"] = input.size();
    keys::KeyStore::require_enabled(key, ref);
    out = ks.sign(key, algorithm, input, is_digest);
    ev.params["version"] = out.key_version;
  });
  return out;
}

keys::Verified KeyOperations::verify(std::string_view ref, SigningAlgorithm algorithm,
                                     ByteView input, bool is_digest, ByteView signature,
                                     std::optional<std::int64_t> version) {
  keys::Verified out;
  key_op(Action::key_verify, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
    ev.params["algorithm"] = std::string(signing_algorithm_name(algorithm));
    ev.params["message_type"] = is_digest ? "digest" : "raw";
    keys::KeyStore::require_enabled(key, ref);
    out = ks.verify(key, algorithm, input, is_digest, signature, version);
    ev.params["valid"] = out.valid;
    if (out.valid) ev.params["version"] = out.key_version;
  });
  return out;
}

namespace {

void check_mac_message(ByteView message) {
  if (message.size() <= keys::kMaxMacMessage) return;
  throw Error(Code::usage,
              fmt::format("a MAC is made of at most {} bytes; the input has {}",
                          keys::kMaxMacMessage, message.size()),
              "MAC a digest of larger data (e.g. its SHA-256)");
}

}  // namespace

keys::Signature KeyOperations::mac(std::string_view ref, ByteView message) {
  check_mac_message(message);
  keys::Signature out;
  key_op(Action::key_mac, ref, [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
    ev.params["bytes"] = message.size();
    keys::KeyStore::require_enabled(key, ref);
    out = ks.mac(key, message);
    ev.params["algorithm"] = spec_algorithms(key.spec, KeyUsage::mac);
    ev.params["version"] = out.key_version;
  });
  return out;
}

keys::Verified KeyOperations::verify_mac(std::string_view ref, ByteView message, ByteView mac) {
  check_mac_message(message);
  keys::Verified out;
  key_op(Action::key_verify_mac, ref,
         [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
           keys::KeyStore::require_enabled(key, ref);
           out = ks.verify_mac(key, message, mac);
           ev.params["algorithm"] = spec_algorithms(key.spec, KeyUsage::mac);
           ev.params["valid"] = out.valid;
           if (out.valid) ev.params["version"] = out.key_version;
         });
  return out;
}

keys::Decrypted KeyOperations::decrypt(ByteView blob, const Context& context) {
  keys::KeyStore ks(vault_);
  std::optional<keys::Decrypted> out;
  const std::string key_id = keys::KeyStore::blob_key_id(blob).value_or("");
  runner_.run(
      {Action::key_decrypt, key_resource(key_id), {{"context", context_json(context)}}, context},
      [&](audit::Event& ev) {
        out = ks.decrypt(blob, context);
        ev.params["version"] = out->key_version;
      });
  return std::move(*out);
}

Bytes KeyOperations::reencrypt(ByteView blob, const Context& context, std::string_view to_ref,
                               const Context& to_context) {
  keys::KeyStore ks(vault_);
  Bytes out;
  const std::string from_id = keys::KeyStore::blob_key_id(blob).value_or("");
  audit::Event ev{Action::key_reencrypt, key_resource(from_id), {}, context};
  ev.params["context"] = context_json(context);
  audit::name_key(ev.params, to_ref, "to_");
  ev.params["to_context"] = context_json(to_context);
  runner_.run(std::move(ev), [&](audit::Event& e) {
    const keys::Decrypted d = ks.decrypt(blob, context);
    e.params["from_version"] = d.key_version;
    const store::KeyRow to = ks.resolve(to_ref);
    // The destination is decided on its own, with its own context: a caller may be allowed to
    // decrypt under one key and not to encrypt under another.
    audit::Event dest{Action::key_reencrypt, key_resource(to.id), {}, to_context};
    try {
      runner_.authorize(dest);
    } catch (const Error&) {
      e.params["rule"] = dest.params["rule"];
      e.params["to_key_id"] = to.id;
      throw;
    }
    keys::KeyStore::require_enabled(to, to_ref);
    out = ks.encrypt(to, d.plaintext.view(), to_context);
    e.params["to_key_id"] = to.id;
    e.params["to_version"] = to.primary_version;
  });
  return out;
}

DataKey KeyOperations::generate_data_key(std::string_view ref, std::size_t bytes,
                                         const Context& context) {
  if (bytes != 16 && bytes != 32) {
    throw Error(Code::usage, fmt::format("a data key of {} bytes: AES keys have 16 or 32", bytes));
  }
  DataKey dk;
  key_op(
      Action::key_generate_data_key, ref,
      [&](keys::KeyStore& ks, store::KeyRow& key, audit::Event& ev) {
        ev.params["context"] = context_json(context);
        ev.params["bytes"] = bytes;
        keys::KeyStore::require_enabled(key, ref);
        dk.plaintext = crypto::random_secret(bytes);
        dk.ciphertext_blob = ks.encrypt(key, dk.plaintext.view(), context);
        dk.key_id = key.id;
        dk.key_version = static_cast<std::uint32_t>(key.primary_version);
        ev.params["version"] = key.primary_version;
      },
      context);
  return dk;
}

Bytes KeyOperations::random(std::size_t bytes) {
  if (bytes < 1 || bytes > keys::kMaxRandomBytes) {
    throw Error(Code::usage,
                fmt::format("{} random bytes asked for: 1 to {}", bytes, keys::kMaxRandomBytes));
  }
  Bytes out;
  runner_.run({Action::random_generate, "vault/" + vault_.meta().vault_id, {{"bytes", bytes}}},
              [&](audit::Event&) { out = crypto::random_bytes(bytes); });
  return out;
}

}  // namespace kms
