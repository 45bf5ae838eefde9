// `vault check-token`: what is in the token, and what of it this vault did not make.
#include <charconv>
#include <map>

#include <fmt/format.h>
#include <p11-kit/pkcs11.h>

#include "keys/key_store.hpp"
#include "runner/runner.hpp"
#include "vault/detail.hpp"
#include "vault/operations.hpp"

namespace kms {
namespace {

// "kmsctl-key:KEY:VERSION" -> (KEY, VERSION)
std::optional<std::pair<std::string, std::int64_t>> parse_key_label(std::string_view label) {
  if (!label.starts_with(keys::kTokenKeyLabelPrefix)) return std::nullopt;
  label.remove_prefix(keys::kTokenKeyLabelPrefix.size());
  const size_t colon = label.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::int64_t v = 0;
  const std::string_view digits = label.substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return std::make_pair(std::string(label.substr(0, colon)), v);
}

}  // namespace

TokenCheck VaultOperations::check_token(bool remove) {
  TokenCheck report;
  const store::VaultMeta& m = vault_.meta();
  const bool private_token = !m.softhsm_conf.empty();
  const std::string root_label = std::string(kRootKeyLabelPrefix) + m.vault_id;
  const std::string anchor_app = std::string(kAnchorApplicationPrefix) + m.vault_id;
  const std::string legacy_anchor = std::string(kLegacyAnchorLabelPrefix) + m.vault_id;
  audit::Event ev{Action::vault_check_token, "vault/" + m.vault_id, {{"remove", remove}}};
  runner_.run(std::move(ev), [&](audit::Event& e) {
    hsm::Session& token = vault_.token();
    std::vector<hsm::ObjectHandle> to_remove;
    std::map<std::string, int> in_use;  // per name: copies already counted as in use
    for (const hsm::ObjectInfo& o : token.list_objects()) {
      TokenObject t{"other", o.label, "", "", o.is_private, false};
      auto mark = [&](std::string status, std::string why) {
        t.status = std::move(status);
        if (!why.empty()) t.detail += (t.detail.empty() ? "" : "; ") + why;
      };
      auto use = [&](const std::string& name) {
        if (in_use[name]++ == 0) {
          mark("in use", "");
        } else {
          mark("duplicate", "a second copy of an object in use: the token was altered");
        }
      };
      const bool key = o.object_class == CKO_SECRET_KEY;
      // An asymmetric hsm key's version is a private and a public key object with one label.
      const bool pair = o.object_class == CKO_PRIVATE_KEY || o.object_class == CKO_PUBLIC_KEY;
      const std::string use_name = o.object_class == CKO_PRIVATE_KEY  ? o.label + " (private key)"
                                   : o.object_class == CKO_PUBLIC_KEY ? o.label + " (public key)"
                                                                      : o.label;
      const bool data = o.object_class == CKO_DATA;
      if (key && o.label == root_label) {
        t.kind = "root key";
        std::int64_t gen = 0;
        for (std::uint8_t b : o.id) gen = (gen << 8) | b;
        t.detail = fmt::format("generation {}", gen);
        if (!o.own_attributes()) {
          mark("foreign", "not private, sensitive, unextractable and generated in the token");
        } else if (o.id == detail::root_key_id(m.root_key_gen)) {
          use(o.label);
        } else {
          mark("stray", "an older or unfinished generation (an interrupted rekey)");
        }
      } else if (auto k = key || pair ? parse_key_label(o.label) : std::nullopt) {
        t.kind = o.object_class == CKO_PRIVATE_KEY  ? "hsm key (priv)"
                 : o.object_class == CKO_PUBLIC_KEY ? "hsm key (pub)"
                                                    : "hsm key";
        t.detail = fmt::format("key {} version {}", k->first, k->second);
        const auto row = store::key_get(vault_.db(), k->first);
        if (!row) {
          if (private_token) {
            mark("stray", "no key of this vault has this id (a failed delete)");
          } else {
            mark("other vault", "");
          }
        } else if (!o.own_attributes() || o.id != Bytes(k->first.begin(), k->first.end())) {
          mark("foreign",
               "not private, sensitive, unextractable and generated in the token, "
               "or with another id");
        } else if (row->protection == Protection::hsm &&
                   (pair == (row->spec != KeySpec::aes_256)) &&
                   store::key_version_get(vault_.db(), k->first, k->second)) {
          use(use_name);
        } else if (k->second <= row->highest_lost_version) {
          mark("stray",
               "a version a restore dropped (only a copy of the vault made before the "
               "restore can use it)");
        } else {
          mark("stray", "no version row (an interrupted rotation)");
        }
      } else if (data && o.application == anchor_app) {
        t.kind = "anchor slot";
        if (!o.own_attributes()) {
          mark("foreign", "a public object with the anchor's application");
        } else if (in_use["anchor"]++ < 2) {
          mark("in use", "");
        } else {
          mark("duplicate", "more than two anchor slots: the token was altered");
        }
      } else if (data && o.label == legacy_anchor) {
        t.kind = "legacy anchor";
        if (o.own_attributes()) {
          use(o.label);
        } else {
          mark("foreign", "a public object with the anchor's label");
        }
      } else if (private_token) {
        mark("foreign", "this vault's private token holds nothing else");
      } else {
        mark("other vault", "");
      }
      if (t.status == "foreign") ++report.foreign;
      if (t.status == "stray") ++report.strays;
      if (t.status == "duplicate") ++report.duplicates;
      if (remove && (t.status == "foreign" || t.status == "stray")) {
        to_remove.push_back(o.handle);
        t.removed = true;
      }
      report.objects.push_back(std::move(t));
    }
    for (hsm::ObjectHandle h : to_remove) {
      token.destroy(h);
      ++report.removed;
    }
    e.params["objects"] = report.objects.size();
    e.params["foreign"] = report.foreign;
    e.params["strays"] = report.strays;
    e.params["duplicates"] = report.duplicates;
    e.params["removed"] = report.removed;
  });
  return report;
}

}  // namespace kms
