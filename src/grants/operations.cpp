// The grant operations: each is one audited transaction of the runner (Runner::run).
#include "grants/operations.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "base/json.hpp"
#include "keys/key_store.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "runner/runner.hpp"
#include "store/store.hpp"

namespace kms {
namespace {

std::string grant_resource(std::string_view id) { return "grant/" + std::string(id); }

nlohmann::json constraints_json(const std::optional<Context>& equals, const Context& subset) {
  nlohmann::json j = nlohmann::json::object();
  if (equals) j["context_equals"] = context_json(*equals);
  if (!subset.empty()) j["context_subset"] = context_json(subset);
  return j;
}

std::string new_grant_id() {
  return std::string(grants::kIdPrefix) + crypto::to_hex(crypto::random_bytes(12));
}

// The grant that allowed the request, as the runner named it after authorising ("grant:<id>").
std::optional<std::string> allowing_grant(const audit::Event& ev) {
  const auto it = ev.params.find("rule");
  if (it == ev.params.end() || !it->is_string()) return std::nullopt;
  const std::string& rule = it->get_ref<const std::string&>();
  if (!rule.starts_with("grant:")) return std::nullopt;
  return rule.substr(6);
}

// An RFC 3339 time, or a duration from `now` (at most grants::kMaxLifetime either way).
std::string parse_expiry(const std::string& text, TimePoint now) {
  const TimePoint latest =
      now + std::chrono::duration_cast<std::chrono::milliseconds>(grants::kMaxLifetime);
  if (text.find('-') != std::string::npos) {
    const auto t = parse_rfc3339(text);
    if (!t) {
      throw Error(Code::usage, fmt::format("expiry {:?} is neither a duration nor a time", text),
                  "give a duration (30d, 12h) or an RFC 3339 time (2030-01-31T00:00:00Z)");
    }
    if (*t <= now || *t > latest) {
      throw Error(Code::usage,
                  fmt::format("expiry {} is not in the next ten years", format_rfc3339(*t)),
                  "give a time after now and at most ten years away");
    }
    return format_rfc3339(*t);
  }
  return format_rfc3339(now + std::chrono::duration_cast<std::chrono::milliseconds>(
                                  parse_duration(text, "expiry", grants::kMaxLifetime)));
}

void check_name(std::string_view name) {
  const bool bad_char = std::any_of(name.begin(), name.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  if (name.empty() || name.size() > grants::kMaxNameLength || bad_char) {
    throw Error(Code::usage,
                fmt::format("a grant's name has 1 to {} characters and no control character",
                            grants::kMaxNameLength),
                "choose another name");
  }
}

void check_constraints(const grants::CreateSpec& spec) {
  if (spec.context_equals && !spec.context_subset.empty()) {
    throw Error(Code::usage,
                "a grant constrains the encryption context to equal some pairs or to include "
                "some pairs, not both",
                "give the exact context, or the pairs it must include");
  }
  if (spec.context_equals) check_context_size(*spec.context_equals);
  check_context_size(spec.context_subset);
}

bool includes(const Context& outer, const Context& inner) {
  return std::all_of(inner.begin(), inner.end(), [&](const auto& kv) {
    const auto it = outer.find(kv.first);
    return it != outer.end() && it->second == kv.second;
  });
}

// A grant created under `parent` is at least as strict: Code::refused naming what is wider.
void check_stricter(const GrantInfo& child, const GrantInfo& parent) {
  std::vector<std::string> wider;
  for (const std::string& op : child.operations) {
    if (std::find(parent.operations.begin(), parent.operations.end(), op) ==
        parent.operations.end()) {
      wider.push_back(fmt::format("operation {}", op));
    }
  }
  if (parent.context_equals && child.context_equals != parent.context_equals) {
    wider.emplace_back("its encryption context is not the exact context of the parent grant");
  }
  if (!parent.context_subset.empty() &&
      !includes(child.context_equals ? *child.context_equals : child.context_subset,
                parent.context_subset)) {
    wider.emplace_back(
        "its encryption context does not require every pair the parent grant requires");
  }
  if (parent.expires && (!child.expires || *child.expires > *parent.expires)) {
    wider.push_back(fmt::format("it would outlive the parent grant (expires {})", *parent.expires));
  }
  if (wider.empty()) return;
  std::string what;
  for (const std::string& w : wider) what += (what.empty() ? "" : "; ") + w;
  throw Error(Code::refused,
              fmt::format("grant {} allowed this request, and a grant it creates may not be wider "
                          "than it: {}",
                          parent.id, what),
              "ask for no more than the parent grant gives");
}

bool same_terms(const GrantInfo& a, const GrantInfo& b) {
  return a.grantee_uid == b.grantee_uid && a.operations == b.operations &&
         a.context_equals == b.context_equals && a.context_subset == b.context_subset &&
         a.retiring_uid == b.retiring_uid;
}

}  // namespace

GrantOperations::GrantOperations(Runner& runner, UserLookup users)
    : runner_(runner),
      vault_(runner.vault()),
      users_(users ? std::move(users) : policy::Names::system().user) {}

std::int64_t GrantOperations::resolve_principal(std::string_view text,
                                                std::string_view what) const {
  if (text.starts_with("user:") && text.size() > 5) {
    const std::string name(text.substr(5));
    if (const auto uid = users_(name)) return *uid;
    throw Error(Code::usage, fmt::format("{} {}: the system knows no user {:?}", what, text, name),
                "name a user of this system, or give uid:N");
  }
  if (text.starts_with("uid:") && text.size() > 4) {
    std::int64_t uid = -1;
    const char* b = text.data() + 4;
    const char* e = text.data() + text.size();
    const auto [p, ec] = std::from_chars(b, e, uid);
    if (ec == std::errc() && p == e && uid >= 0 && uid <= 0xFFFFFFFE) return uid;
  }
  throw Error(Code::usage, fmt::format("{} {:?} is not user:NAME or uid:N", what, text),
              "name the principal as user:NAME or uid:N");
}

GrantInfo GrantOperations::create(const grants::CreateSpec& spec) {
  GrantInfo out;
  audit::Event ev{Action::grant_create, key_resource(spec.key), {}};
  audit::name_key(ev.params, spec.key);
  ev.params["grantee"] = spec.grantee;
  runner_.run(std::move(ev), [&](audit::Event& e) {
    keys::KeyStore ks(vault_);
    const store::KeyRow key = ks.resolve(spec.key);
    e.params["key_id"] = key.id;
    if (e.resource != key_resource(key.id)) {
      e.resource = key_resource(key.id);
      runner_.authorize(e);  // the key an alias names
    }
    const std::optional<std::string> parent_id = allowing_grant(e);
    if (key.state == KeyState::pending_deletion) {
      throw Error(Code::refused,
                  fmt::format("key {} is pending deletion: it takes no new grant", key.id),
                  Remedy::cancel_key_deletion, key.id);
    }
    GrantInfo g;
    g.key_id = key.id;
    g.grantee = spec.grantee;
    g.grantee_uid = resolve_principal(spec.grantee, "grantee");
    g.operations = grants::canonical_operations(spec.operations);
    e.params["operations"] = g.operations;
    check_constraints(spec);
    g.context_equals = spec.context_equals;
    g.context_subset = spec.context_subset;
    e.params["constraints"] = constraints_json(g.context_equals, g.context_subset);
    if (spec.retiring_principal) {
      g.retiring_principal = spec.retiring_principal;
      g.retiring_uid = resolve_principal(*spec.retiring_principal, "retiring principal");
      e.params["retiring_principal"] = *spec.retiring_principal;
    }
    const TimePoint t = now();
    g.created = format_rfc3339(t);
    g.created_by_uid = runner_.caller().uid;
    if (spec.expires) g.expires = parse_expiry(*spec.expires, t);
    e.params["expires"] = json_or_null(g.expires);
    if (spec.name) {
      check_name(*spec.name);
      g.name = spec.name;
      e.params["name"] = *spec.name;
    }
    if (parent_id) {
      e.params["parent_grant_id"] = *parent_id;
      const auto parent = store::grant_get(vault_.db(), *parent_id);
      if (!parent) {  // not reached: the authorizer read it in this transaction
        throw Error(Code::failed, fmt::format("internal error: grant {} is gone", *parent_id));
      }
      check_stricter(g, *parent);
    }
    if (g.name) {
      if (auto existing = store::grant_active_by_name(vault_.db(), key.id, *g.name)) {
        if (!same_terms(*existing, g)) {
          throw Error(Code::refused,
                      fmt::format("key {} already has an active grant named {:?} ({}), with "
                                  "other terms",
                                  key.id, *g.name, existing->id),
                      "choose another name, or revoke that grant first");
        }
        e.params["grant_id"] = existing->id;
        e.params["existing"] = true;
        out = std::move(*existing);
        return;
      }
    }
    g.id = new_grant_id();
    g.state = GrantState::active;
    e.params["grant_id"] = g.id;
    store::grant_insert(vault_.db(), g);
    out = std::move(g);
  });
  return out;
}

GrantPage GrantOperations::list(const grants::ListFilter& f) {
  GrantPage page;
  audit::Event ev{Action::grant_list,
                  f.key ? key_resource(*f.key) : "vault/" + vault_.meta().vault_id,
                  {{"limit", f.limit}, {"all", f.all}}};
  if (f.key) audit::name_key(ev.params, *f.key);
  if (f.grantee) ev.params["grantee"] = *f.grantee;
  if (f.after) ev.params["after"] = *f.after;
  runner_.run(std::move(ev), [&](audit::Event& e) {
    if (f.limit < 1 || f.limit > grants::kMaxListLimit) {
      throw Error(Code::usage,
                  fmt::format("a page of grants holds 1 to {} grants, not {}",
                              grants::kMaxListLimit, f.limit),
                  Remedy::choose_page_limit);
    }
    store::GrantQuery q;
    q.limit = f.limit + 1;
    if (f.key) {
      keys::KeyStore ks(vault_);
      const store::KeyRow key = ks.resolve(*f.key);
      e.params["key_id"] = key.id;
      if (e.resource != key_resource(key.id)) {
        e.resource = key_resource(key.id);
        runner_.authorize(e);
      }
      q.key_id = key.id;
    }
    if (f.grantee) q.grantee_uid = resolve_principal(*f.grantee, "grantee");
    if (!f.all) q.live_at = format_rfc3339(now());
    if (f.after) {
      if (!store::grant_get(vault_.db(), *f.after)) {
        throw Error(Code::not_found,
                    fmt::format("the page should follow grant {}, which does not exist", *f.after),
                    "list from the first page");
      }
      q.after = f.after;
    }
    page.grants = store::grant_list(vault_.db(), q);
    if (static_cast<std::int64_t>(page.grants.size()) > f.limit) {
      page.grants.pop_back();
      page.next = page.grants.back().id;
    }
  });
  return page;
}

GrantInfo GrantOperations::end(Action action, std::string_view grant_id, GrantState state) {
  const std::string id(grant_id);
  std::string resource = grant_resource(id);
  if (action == Action::grant_revoke) {
    // A revoke is decided on the grant's key: read which one it is first. A grant that cannot
    // be read is named as itself, and the operation below fails with what is wrong.
    try {
      store::Tx tx(vault_.db(), store::Tx::Kind::read);
      if (const auto g = store::grant_get(vault_.db(), id)) resource = key_resource(g->key_id);
    } catch (const Error&) {
    }
  }
  GrantInfo out;
  const auto op = [&](audit::Event& e) {
    auto g = store::grant_get(vault_.db(), id);
    if (!g) {
      throw Error(Code::not_found, fmt::format("no grant {} in this vault", id),
                  "list the grants to find its id");
    }
    e.params["key_id"] = g->key_id;
    e.params["grantee"] = g->grantee;
    if (action == Action::grant_revoke && e.resource != key_resource(g->key_id)) {
      e.resource = key_resource(g->key_id);
      runner_.authorize(e);
    }
    e.params["grant_id"] = id;
    if (g->state != GrantState::active) {
      throw Error(Code::refused,
                  fmt::format("grant {} is already {} (since {})", id, grant_state_name(g->state),
                              g->ended.value_or("?")),
                  "nothing to do: an ended grant allows nothing");
    }
    const std::string t = format_rfc3339(now());
    store::grant_end(vault_.db(), id, state, t);
    g->state = state;
    g->ended = t;
    out = std::move(*g);
  };
  // A refusal's record names the grant too (the runner keeps grant_id only for a grant that
  // allowed the request).
  Runner::Hooks hooks;
  hooks.failing = [&](audit::Event& e) {
    if (!e.params.contains("grant_id")) e.params["grant_id"] = id;
  };
  runner_.run({action, resource, {{"grant_id", id}}}, op, hooks);
  return out;
}

GrantInfo GrantOperations::revoke(std::string_view grant_id) {
  return end(Action::grant_revoke, grant_id, GrantState::revoked);
}

GrantInfo GrantOperations::retire(std::string_view grant_id) {
  return end(Action::grant_retire, grant_id, GrantState::retired);
}

policy::Grant GrantOperations::to_policy(const GrantInfo& g) {
  policy::Grant p;
  p.id = g.id;
  p.key_id = g.key_id;
  p.grantee_uid = g.grantee_uid;
  p.operations = g.operations;
  p.context_equals = g.context_equals;
  p.context_subset = g.context_subset;
  if (g.expires) {
    if (const auto t = parse_rfc3339(*g.expires)) {
      p.expires = std::chrono::time_point_cast<policy::Clock::duration>(*t);
    } else {
      p.expires = policy::Clock::time_point::min();  // not reached: rows are MACed
    }
  }
  p.retired = g.state == GrantState::retired;
  p.revoked = g.state == GrantState::revoked;
  return p;
}

std::vector<policy::Grant> GrantOperations::grants_of_key(std::string_view key_id,
                                                          std::optional<TimePoint> live_at) {
  std::vector<policy::Grant> out;
  if (live_at) {
    store::GrantQuery q;
    q.key_id = std::string(key_id);
    q.live_at = format_rfc3339(*live_at);
    q.limit = -1;  // no limit
    for (const auto& g : store::grant_list(vault_.db(), q)) out.push_back(to_policy(g));
  } else {
    for (const auto& g : store::grants_of_key(vault_.db(), key_id)) out.push_back(to_policy(g));
  }
  return out;
}

}  // namespace kms
