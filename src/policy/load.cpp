// Loading a policy file: TOML (toml++) or JSON (nlohmann) into one neutral tree, then one walk
// that checks it and reports every problem with where it is.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "policy/policy.hpp"
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "kms/error.hpp"

namespace kms::policy {
namespace {

struct Field;

// A value of the document, whichever syntax it came in.
struct Node {
  enum class Kind : std::uint8_t { string, integer, boolean, array, table, other } kind;
  std::string str;
  std::int64_t integer = 0;
  std::vector<Node> items;    // an array's
  std::vector<Field> fields;  // a table's, in the document's order (not std::pair: clang's
                              // libstdc++ checks need pair's Node complete here)
  int line = 0, column = 0;
};

struct Field {
  std::string key;
  Node value;
};

std::string_view kind_name(Node::Kind k) {
  switch (k) {
    case Node::Kind::string:
      return "a string";
    case Node::Kind::integer:
      return "an integer";
    case Node::Kind::boolean:
      return "a boolean";
    case Node::Kind::array:
      return "an array";
    case Node::Kind::table:
      return "a table";
    case Node::Kind::other:
      break;
  }
  return "another kind of value";
}

Node from_toml(const toml::node& n) {
  Node out{Node::Kind::other,
           {},
           0,
           {},
           {},
           static_cast<int>(n.source().begin.line),
           static_cast<int>(n.source().begin.column)};
  if (const auto* s = n.as_string()) {
    out.kind = Node::Kind::string;
    out.str = s->get();
  } else if (const auto* i = n.as_integer()) {
    out.kind = Node::Kind::integer;
    out.integer = i->get();
  } else if (n.is_boolean()) {
    out.kind = Node::Kind::boolean;
  } else if (const auto* a = n.as_array()) {
    out.kind = Node::Kind::array;
    for (const toml::node& item : *a) out.items.push_back(from_toml(item));
  } else if (const auto* t = n.as_table()) {
    out.kind = Node::Kind::table;
    for (auto&& [key, value] : *t) out.fields.push_back({std::string(key.str()), from_toml(value)});
    // toml++ keeps a table's keys sorted: put them back in the file's order.
    std::stable_sort(out.fields.begin(), out.fields.end(), [](const auto& a, const auto& b) {
      return std::pair(a.value.line, a.value.column) < std::pair(b.value.line, b.value.column);
    });
  }
  return out;
}

Node from_json(const nlohmann::ordered_json& j) {
  Node out{Node::Kind::other, {}, 0, {}, {}, 0, 0};
  if (j.is_string()) {
    out.kind = Node::Kind::string;
    out.str = j.get<std::string>();
  } else if (j.is_number_integer()) {
    out.kind = Node::Kind::integer;
    out.integer = j.get<std::int64_t>();
  } else if (j.is_boolean()) {
    out.kind = Node::Kind::boolean;
  } else if (j.is_array()) {
    out.kind = Node::Kind::array;
    for (const auto& item : j) out.items.push_back(from_json(item));
  } else if (j.is_object()) {
    out.kind = Node::Kind::table;
    for (const auto& [key, value] : j.items()) out.fields.push_back({key, from_json(value)});
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// `*` matches any characters; letters match either case (IAM names are case-insensitive).
bool action_matches(std::string_view pattern, std::string_view name) {
  std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  const auto same = [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  };
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && same(pattern[p], name[n])) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

constexpr std::string_view kServices[] = {"kms", "secrets", "audit", "vault"};
constexpr std::string_view kResourceTypes[] = {"key", "alias", "secret", "vault", "file", "grant"};

// The kms::Actions an action pattern names, or a problem.
std::pair<ActionSet, std::string> action_pattern(std::string_view pattern) {
  if (pattern != "*") {
    const auto colon = pattern.find(':');
    if (colon == std::string_view::npos) {
      return {ActionSet{},
              fmt::format("action {:?} needs a service: kms:, secrets:, audit: or vault: "
                          "(or is * for every action)",
                          pattern)};
    }
    const std::string_view service = pattern.substr(0, colon);
    if (std::none_of(std::begin(kServices), std::end(kServices),
                     [&](std::string_view s) { return iequals(s, service); })) {
      return {ActionSet{},
              fmt::format("action {:?}: unknown service {:?} (kms, secrets, audit, vault)", pattern,
                          service)};
    }
  }
  ActionSet set;
  for (const ActionInfo& a : actions()) {
    if (!a.iam.empty() && action_matches(pattern, a.iam)) set |= bit(a.action);
  }
  if (set == ActionSet{})
    return {ActionSet{}, fmt::format("unknown action {:?} (docs/POLICY.md lists them)", pattern)};
  return {set, {}};
}

// A resource pattern, or a problem.
std::pair<Glob, std::string> resource_pattern(std::string_view text) {
  Glob g;
  g.text = std::string(text);
  if (text.empty()) return {g, "a resource pattern is empty"};
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return {g, fmt::format("resource {:?} has a control character", text)};
    }
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '+') continue;
    if ((i > 0 && text[i - 1] != '/') || (i + 1 < text.size() && text[i + 1] != '/')) {
      return {g, fmt::format("resource {:?}: + must stand for a whole segment (key/+ or "
                             "key/+/x, not key/a+)",
                             text)};
    }
  }
  if (text != "*") {
    const std::string_view type = text.substr(0, text.find('/'));
    if (type != "*" && type != "+" &&
        std::find(std::begin(kResourceTypes), std::end(kResourceTypes), type) ==
            std::end(kResourceTypes)) {
      return {g, fmt::format("resource {:?}: unknown type {:?} (key/, alias/, secret/, vault, "
                             "file/, grant/)",
                             text, type)};
    }
  }
  const auto wild = text.find_first_of("*+");
  if (wild == std::string_view::npos) {
    g.kind = Glob::Kind::exact;
  } else if (wild == text.size() - 1 && text.back() == '*') {
    g.kind = Glob::Kind::prefix;
  } else {
    g.kind = Glob::Kind::general;
  }
  return {g, {}};
}

std::optional<std::int64_t> parse_id(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty() || v < 0 || v > 0xfffffffeLL) {
    return std::nullopt;
  }
  return v;
}

class Loader {
 public:
  explicit Loader(const Names& names) : names_(names) {}

  LoadResult run(const Node& root) {
    std::vector<Statement> statements;
    if (root.kind != Node::Kind::table) {
      problem(root, "", "a policy is a table with a statements array");
    } else {
      const Node* list = nullptr;
      for (const auto& [key, value] : root.fields) {
        if (key == "statements") {
          list = &value;
        } else if (key == "version") {
          if (value.kind != Node::Kind::integer || value.integer != 1) {
            problem(value, "version", "version must be 1 (or left out)");
          }
        } else {
          problem(value, key, fmt::format("unknown field {:?} (version, statements)", key));
        }
      }
      if (list == nullptr) {
        problem(root, "statements", "missing: a policy needs at least one statement");
      } else if (list->kind != Node::Kind::array) {
        problem(*list, "statements", "must be an array of tables ([[statements]] in TOML)");
      } else if (list->items.empty()) {
        problem(*list, "statements", "is empty: a policy needs at least one statement");
      } else {
        for (std::size_t i = 0; i < list->items.size(); ++i) {
          if (auto s = statement(list->items[i], i)) statements.push_back(std::move(*s));
        }
      }
    }
    LoadResult r;
    std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
      return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    r.problems = std::move(problems_);
    if (r.problems.empty()) r.policy.emplace(std::move(statements));
    return r;
  }

 private:
  const Names& names_;
  std::vector<Problem> problems_;
  std::set<std::string> sids_;

  void problem(const Node& at, std::string path, std::string message) {
    problems_.push_back({at.line, at.column, std::move(path), std::move(message)});
  }

  // A non-empty array of strings, else a problem.
  bool strings(const Node& n, const std::string& path) {
    if (n.kind != Node::Kind::array) {
      problem(n, path, fmt::format("must be an array of strings, not {}", kind_name(n.kind)));
      return false;
    }
    if (n.items.empty()) {
      problem(n, path, "is empty: give at least one");
      return false;
    }
    bool ok = true;
    for (std::size_t j = 0; j < n.items.size(); ++j) {
      if (n.items[j].kind != Node::Kind::string) {
        problem(n.items[j], fmt::format("{}[{}]", path, j),
                fmt::format("must be a string, not {}", kind_name(n.items[j].kind)));
        ok = false;
      }
    }
    return ok;
  }

  // A table of strings (may be empty only when allow_empty), else a problem.
  std::optional<Context> pairs(const Node& n, const std::string& path, bool allow_empty) {
    if (n.kind != Node::Kind::table) {
      problem(n, path, fmt::format("must be a table of strings, not {}", kind_name(n.kind)));
      return std::nullopt;
    }
    if (n.fields.empty() && !allow_empty) {
      problem(n, path, "is empty: give at least one pair");
      return std::nullopt;
    }
    Context out;
    bool ok = true;
    for (const auto& [key, value] : n.fields) {
      if (value.kind != Node::Kind::string) {
        problem(value, path + "." + key,
                fmt::format("must be a string, not {}", kind_name(value.kind)));
        ok = false;
      } else {
        out.emplace(key, value.str);
      }
    }
    if (!ok) return std::nullopt;
    return out;
  }

  std::optional<Principal> principal(const Node& n, const std::string& path) {
    const std::string& t = n.str;
    Principal p;
    p.text = t;
    if (t == "*") return p;
    const auto colon = t.find(':');
    const std::string kind = t.substr(0, colon == std::string::npos ? 0 : colon);
    const std::string rest = colon == std::string::npos ? "" : t.substr(colon + 1);
    if (kind == "user" || kind == "group") {
      if (rest.empty()) {
        problem(n, path, fmt::format("principal {:?} names no {}", t, kind));
        return std::nullopt;
      }
      const auto& lookup = kind == "user" ? names_.user : names_.group;
      const std::optional<std::int64_t> id = lookup ? lookup(rest) : std::nullopt;
      if (!id) {
        problem(n, path,
                fmt::format("principal {:?}: no {} named {:?} on this system", t, kind, rest));
        return std::nullopt;
      }
      p.kind = kind == "user" ? Principal::Kind::uid : Principal::Kind::gid;
      p.id = *id;
      return p;
    }
    if (kind == "uid" || kind == "gid") {
      const std::optional<std::int64_t> id = parse_id(rest);
      if (!id) {
        problem(n, path, fmt::format("principal {:?}: {} must be a number", t, kind));
        return std::nullopt;
      }
      p.kind = kind == "uid" ? Principal::Kind::uid : Principal::Kind::gid;
      p.id = *id;
      return p;
    }
    problem(n, path,
            fmt::format("principal {:?}: expected user:NAME, group:NAME, uid:N, gid:N or *", t));
    return std::nullopt;
  }

  void conditions(const Node& n, const std::string& path, Conditions& c) {
    if (n.kind != Node::Kind::table) {
      problem(n, path, fmt::format("must be a table, not {}", kind_name(n.kind)));
      return;
    }
    for (const auto& [key, value] : n.fields) {
      const std::string at = path + "." + key;
      if (key == "context_equals") {
        c.context_equals = pairs(value, at, /*allow_empty=*/true);
      } else if (key == "context_subset") {
        if (auto p = pairs(value, at, false)) c.context_subset = std::move(*p);
      } else if (key == "resource_tags") {
        if (auto p = pairs(value, at, false)) c.resource_tags = std::move(*p);
      } else if (key == "context_keys") {
        if (strings(value, at)) {
          for (const Node& k : value.items) c.context_keys.push_back(k.str);
        }
      } else {
        problem(value, at,
                fmt::format("unknown condition {:?} (context_equals, context_subset, "
                            "context_keys, resource_tags)",
                            key));
      }
    }
  }

  std::optional<Statement> statement(const Node& n, std::size_t i) {
    const std::string base = fmt::format("statements[{}]", i);
    const std::size_t before = problems_.size();
    if (n.kind != Node::Kind::table) {
      problem(n, base, fmt::format("a statement is a table, not {}", kind_name(n.kind)));
      return std::nullopt;
    }
    Statement s;
    s.index = i;
    s.line = n.line;
    bool has_effect = false, has_principals = false, has_resources = false, has_actions = false;
    for (const auto& [key, value] : n.fields) {
      const std::string at = base + "." + key;
      if (key == "sid") {
        if (value.kind != Node::Kind::string || value.str.empty()) {
          problem(value, at, "must be a non-empty string");
        } else if (!sids_.insert(value.str).second) {
          problem(value, at, fmt::format("sid {:?} is used by an earlier statement", value.str));
        } else {
          s.sid = value.str;
        }
      } else if (key == "effect") {
        has_effect = true;
        if (value.kind != Node::Kind::string || (value.str != "allow" && value.str != "deny")) {
          problem(value, at, "must be \"allow\" or \"deny\"");
        } else {
          s.allow = value.str == "allow";
        }
      } else if (key == "principals") {
        has_principals = true;
        if (!strings(value, at)) continue;
        for (std::size_t j = 0; j < value.items.size(); ++j) {
          if (auto p = principal(value.items[j], fmt::format("{}[{}]", at, j))) {
            s.principals.push_back(std::move(*p));
          }
        }
      } else if (key == "actions") {
        has_actions = true;
        if (!strings(value, at)) continue;
        for (std::size_t j = 0; j < value.items.size(); ++j) {
          const auto [set, error] = action_pattern(value.items[j].str);
          if (!error.empty()) problem(value.items[j], fmt::format("{}[{}]", at, j), error);
          s.actions.push_back(value.items[j].str);
          s.action_set |= set;
        }
      } else if (key == "roles") {
        has_actions = true;
        if (!strings(value, at)) continue;
        for (std::size_t j = 0; j < value.items.size(); ++j) {
          const std::string& name = value.items[j].str;
          const auto all = roles();
          const auto role =
              std::find_if(all.begin(), all.end(), [&](const Role& r) { return r.name == name; });
          if (role == all.end()) {
            std::string known;
            for (const Role& r : all) {
              known += known.empty() ? "" : ", ";
              known += r.name;
            }
            problem(value.items[j], fmt::format("{}[{}]", at, j),
                    fmt::format("unknown role {:?} ({})", name, known));
            continue;
          }
          s.roles.push_back(name);
          for (std::string_view a : role->actions) s.action_set |= action_pattern(a).first;
        }
      } else if (key == "resources") {
        has_resources = true;
        if (!strings(value, at)) continue;
        for (std::size_t j = 0; j < value.items.size(); ++j) {
          auto [glob, error] = resource_pattern(value.items[j].str);
          if (!error.empty()) problem(value.items[j], fmt::format("{}[{}]", at, j), error);
          s.resources.push_back(std::move(glob));
        }
      } else if (key == "conditions") {
        conditions(value, at, s.conditions);
      } else {
        problem(value, at,
                fmt::format("unknown field {:?} (sid, effect, principals, actions, roles, "
                            "resources, conditions)",
                            key));
      }
    }
    if (!has_effect) problem(n, base, "missing effect (\"allow\" or \"deny\")");
    if (!has_principals) problem(n, base, "missing principals");
    if (!has_actions) problem(n, base, "missing actions (or roles)");
    if (!has_resources) problem(n, base, "missing resources");
    if (problems_.size() != before) return std::nullopt;
    return s;
  }
};

// Line and column (from 1) of a byte offset.
std::pair<int, int> position(std::string_view text, std::size_t offset) {
  int line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

std::optional<std::int64_t> lookup_user(const std::string& name) {
  passwd pw{};
  std::vector<char> buf(16384);
  passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(found->pw_uid);
}

std::optional<std::int64_t> lookup_group(const std::string& name) {
  group gr{};
  std::vector<char> buf(65536);
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(found->gr_gid);
}

}  // namespace

std::string Problem::text() const {
  std::string out;
  if (line > 0) out = fmt::format("{}:{}: ", line, column);
  if (!path.empty()) out += path + ": ";
  return out + message;
}

Names Names::system() { return Names{lookup_user, lookup_group}; }

LoadResult parse_toml(std::string_view text, const Names& names) {
  toml::table doc;
  try {
    doc = toml::parse(text);
  } catch (const toml::parse_error& e) {
    LoadResult r;
    r.problems.push_back({static_cast<int>(e.source().begin.line),
                          static_cast<int>(e.source().begin.column), "",
                          std::string(e.description())});
    return r;
  }
  return Loader(names).run(from_toml(doc));
}

LoadResult parse_json(std::string_view text, const Names& names) {
  nlohmann::ordered_json doc;
  // A key given twice in one object: JSON parsers keep the last, so `"effect": "deny",
  // "effect": "allow"` would load as an allow. TOML refuses it; so does this.
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> repeated;
  const auto watch = [&](int, nlohmann::ordered_json::parse_event_t event,
                         nlohmann::ordered_json& parsed) {
    using Event = nlohmann::ordered_json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end && !open_objects.empty()) {
      open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() &&
               !open_objects.back().insert(parsed.get<std::string>()).second && !repeated) {
      repeated = parsed.get<std::string>();
    }
    return true;
  };
  try {
    doc = nlohmann::ordered_json::parse(text, watch);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte: the position (from 1) where the parser stopped.
    const auto [line, column] = position(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string what = e.what();
    if (const auto at = what.find(": "); at != std::string::npos) what = what.substr(at + 2);
    LoadResult r;
    r.problems.push_back({line, column, "", "JSON: " + what});
    return r;
  }
  if (repeated) {
    LoadResult r;
    r.problems.push_back(
        {0, 0, "", fmt::format("JSON: the key \"{}\" is given twice in one object", *repeated)});
    return r;
  }
  return Loader(names).run(from_json(doc));
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(Code::usage,
                fmt::format("cannot read policy {}: {}", path.string(), std::strerror(errno)),
                "check the path of the policy file");
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

LoadResult parse_text(std::string_view text, const Names& names) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') return parse_json(text, names);
  return parse_toml(text, names);
}

Policy parse_or_refuse(std::string_view text, std::string_view what, std::string_view hint,
                       const Names& names) {
  LoadResult r = parse_text(text, names);
  if (r.policy) return std::move(*r.policy);
  std::string message = fmt::format("{} has {} problem{}", what, r.problems.size(),
                                    r.problems.size() == 1 ? "" : "s");
  for (std::size_t i = 0; i < r.problems.size(); ++i) {
    message += fmt::format("{} {}", i == 0 ? ":" : ";", r.problems[i].text());
  }
  throw Error(Code::usage, message, std::string(hint));
}

Policy parse_resource_policy(std::string_view text, std::string_view kind, std::string_view name,
                             std::size_t max_bytes) {
  if (text.size() > max_bytes) {
    throw Error(
        Code::usage,
        fmt::format("the policy for {} {} is {} bytes, more than the {} a {} policy may "
                    "have",
                    kind, name, text.size(), max_bytes, kind),
        fmt::format("split it: the service's policy file holds what applies to many {}s", kind));
  }
  return parse_or_refuse(text, fmt::format("the policy for {} {}", kind, name),
                         "fix it (`kmsctl policy validate FILE` lists the same problems)");
}

LoadResult load_file(const std::filesystem::path& path, const Names& names) {
  return parse_text(read_text(path), names);
}

}  // namespace kms::policy
