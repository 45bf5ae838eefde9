// Grants (docs/POLICY.md §6): authenticated rows like the keys they name.
#include <fmt/format.h>

#include "kms/error.hpp"
#include "store/rows.hpp"
#include "store/store.hpp"

namespace kms::store {
namespace {

using rows::Table;

constexpr const char* kGrantColumns =
    "id, key_id, grantee_uid, grantee, operations, context_equals, context_subset, retiring_uid, "
    "retiring, name, created_at, created_by_uid, expires_at, state, ended_at";

std::string join_operations(const std::vector<std::string>& ops) {
  std::string out;
  for (const std::string& o : ops) {
    if (!out.empty()) out += ',';
    out += o;
  }
  return out;
}

std::vector<std::string> split_operations(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    out.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::uint32_t get_u32(ByteView b, std::size_t& pos, bool& ok) {
  if (b.size() - pos < 4) {
    ok = false;
    return 0;
  }
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = v << 8 | b[pos++];
  return v;
}

std::optional<std::string> get_str(ByteView b, std::size_t& pos, bool& ok) {
  const std::uint32_t n = get_u32(b, pos, ok);
  if (!ok || b.size() - pos < n) {
    ok = false;
    return std::nullopt;
  }
  std::string s(reinterpret_cast<const char*>(b.data() + pos), n);
  pos += n;
  return s;
}

// The canonical encoding of a context (docs/FORMAT.md §11.2) read back; nothing when it is not
// one.
std::optional<Context> decode_context(ByteView b) {
  std::size_t pos = 0;
  bool ok = true;
  const std::uint32_t n = get_u32(b, pos, ok);
  Context c;
  for (std::uint32_t i = 0; ok && i < n; ++i) {
    auto k = get_str(b, pos, ok);
    auto v = get_str(b, pos, ok);
    if (!ok) break;
    if (!c.empty() && !(std::prev(c.end())->first < *k)) return std::nullopt;
    c.emplace_hint(c.end(), std::move(*k), std::move(*v));
  }
  if (!ok || pos != b.size()) return std::nullopt;
  return c;
}

Context context_column(const Stmt& s, int column) {
  if (auto c = decode_context(s.col_blob(column))) return std::move(*c);
  throw Error(Code::integrity,
              fmt::format("grant {}: column {} holds no encryption context", s.col_text(0),
                          column == 5 ? "context_equals" : "context_subset"),
              Remedy::verify_audit_log_or_upgrade);
}

GrantRow read_grant(Db& db, const Stmt& s) {
  rows::check(db, Table::grants, s);
  GrantRow g;
  g.id = s.col_text(0);
  g.key_id = s.col_text(1);
  g.grantee_uid = s.col_int(2);
  g.grantee = s.col_text(3);
  g.operations = split_operations(s.col_text_view(4));
  if (!s.col_null(5)) g.context_equals = context_column(s, 5);
  g.context_subset = context_column(s, 6);
  if (!s.col_null(7)) g.retiring_uid = s.col_int(7);
  if (!s.col_null(8)) g.retiring_principal = s.col_text(8);
  if (!s.col_null(9)) g.name = s.col_text(9);
  g.created = s.col_text(10);
  g.created_by_uid = s.col_int(11);
  if (!s.col_null(12)) g.expires = s.col_text(12);
  g.state = rows::name_column(Table::grants, s, 13, parse_grant_state);
  if (!s.col_null(14)) g.ended = s.col_text(14);
  return g;
}

std::vector<GrantRow> read_grants(Db& db, Stmt& s) {
  std::vector<GrantRow> out;
  while (s.step()) out.push_back(read_grant(db, s));
  return out;
}

void bind_opt(Stmt& s, int i, const std::optional<std::string>& v) {
  if (v)
    s.bind(i, std::string_view(*v));
  else
    s.bind_null(i);
}

}  // namespace

void grant_insert(Db& db, const GrantRow& g) {
  Stmt s(db, fmt::format("INSERT INTO grants ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                         "?, ?)",
                         kGrantColumns)
                 .c_str());
  s.bind(1, g.id).bind(2, g.key_id).bind(3, g.grantee_uid).bind(4, g.grantee);
  s.bind(5, join_operations(g.operations));
  if (g.context_equals) {
    const Bytes e = encode_context(*g.context_equals);
    s.bind(6, ByteView(e));
  } else {
    s.bind_null(6);
  }
  const Bytes sub = encode_context(g.context_subset);
  s.bind(7, ByteView(sub));
  if (g.retiring_uid)
    s.bind(8, *g.retiring_uid);
  else
    s.bind_null(8);
  bind_opt(s, 9, g.retiring_principal);
  bind_opt(s, 10, g.name);
  s.bind(11, g.created).bind(12, g.created_by_uid);
  bind_opt(s, 13, g.expires);
  s.bind(14, grant_state_name(g.state));
  bind_opt(s, 15, g.ended);
  s.step();
  rows::seal(db, Table::grants, {g.id});
}

void grant_end(Db& db, std::string_view id, GrantState state, std::string_view ended_at) {
  Stmt s(db, "UPDATE grants SET state = ?2, ended_at = ?3 WHERE id = ?1");
  s.bind(1, id).bind(2, grant_state_name(state)).bind(3, ended_at);
  s.step();
  rows::seal(db, Table::grants, {id});
}

std::optional<GrantRow> grant_get(Db& db, std::string_view id) {
  Stmt s(db,
         fmt::format("SELECT {} FROM grants WHERE id = ?", rows::columns(Table::grants)).c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_grant(db, s);
}

std::vector<GrantRow> grant_list(Db& db, const GrantQuery& q) {
  std::string sql = fmt::format("SELECT {} FROM grants WHERE TRUE", rows::columns(Table::grants));
  if (q.key_id) sql += " AND key_id = ?1";
  if (q.grantee_uid) sql += " AND grantee_uid = ?2";
  if (q.live_at) sql += " AND state = 'active' AND (expires_at IS NULL OR expires_at > ?3)";
  if (q.after) sql += " AND (created_at, id) > (SELECT created_at, id FROM grants WHERE id = ?4)";
  sql += " ORDER BY created_at, id LIMIT ?5";
  Stmt s(db, sql.c_str());
  if (q.key_id) s.bind(1, std::string_view(*q.key_id));
  if (q.grantee_uid) s.bind(2, *q.grantee_uid);
  if (q.live_at) s.bind(3, std::string_view(*q.live_at));
  if (q.after) s.bind(4, std::string_view(*q.after));
  s.bind(5, q.limit);
  return read_grants(db, s);
}

std::vector<GrantRow> grants_of_key(Db& db, std::string_view key_id) {
  Stmt s(db, fmt::format("SELECT {} FROM grants WHERE key_id = ? ORDER BY created_at, id",
                         rows::columns(Table::grants))
                 .c_str());
  s.bind(1, key_id);
  return read_grants(db, s);
}

std::optional<GrantRow> grant_active_by_name(Db& db, std::string_view key_id,
                                             std::string_view name) {
  Stmt s(db, fmt::format("SELECT {} FROM grants WHERE key_id = ? AND name = ? AND state = 'active'",
                         rows::columns(Table::grants))
                 .c_str());
  s.bind(1, key_id).bind(2, name);
  if (!s.step()) return std::nullopt;
  return read_grant(db, s);
}

}  // namespace kms::store
