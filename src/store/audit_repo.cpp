#include <string>
#include <vector>

#include "store/store.hpp"

namespace kms::store {
namespace {

constexpr const char* kColumns =
    "seq, time, principal, uid, action, resource, params, outcome, error_code, prev_hash, hash, "
    "mac, state";

AuditRowView read_view(const Stmt& s) {
  AuditRowView r;
  r.seq = s.col_int(0);
  r.time = s.col_text_view(1);
  r.principal = s.col_text_view(2);
  r.uid = s.col_int(3);
  r.action = s.col_text_view(4);
  r.resource = s.col_text_view(5);
  r.params = s.col_text_view(6);
  r.outcome = s.col_text_view(7);
  r.error_code = s.col_text_view(8);
  r.prev_hash = s.col_blob(9);
  r.hash = s.col_blob(10);
  r.mac = s.col_blob(11);
  r.state = s.col_blob(12);
  return r;
}

// Assigns into `r` so that a reused row keeps its buffers.
void read_row(const Stmt& s, AuditRow& r) {
  const AuditRowView v = read_view(s);
  auto assign = [](Bytes& b, ByteView x) { b.assign(x.begin(), x.end()); };
  r.seq = v.seq;
  r.time = v.time;
  r.principal = v.principal;
  r.uid = v.uid;
  r.action = v.action;
  r.resource = v.resource;
  r.params = v.params;
  r.outcome = v.outcome;
  r.error_code = v.error_code;
  assign(r.prev_hash, v.prev_hash);
  assign(r.hash, v.hash);
  assign(r.mac, v.mac);
  assign(r.state, v.state);
}

}  // namespace

std::optional<AuditHead> audit_last(Db& db) {
  Stmt s(db, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
  if (!s.step()) return std::nullopt;
  const ByteView h = s.col_blob(1);
  return AuditHead{s.col_int(0), Bytes(h.begin(), h.end())};
}

std::optional<Bytes> audit_hash_at(Db& db, std::int64_t seq) {
  Stmt s(db, "SELECT hash FROM audit_log WHERE seq = ?");
  s.bind(1, seq);
  if (!s.step()) return std::nullopt;
  const ByteView h = s.col_blob(0);
  return Bytes(h.begin(), h.end());
}

std::int64_t audit_count(Db& db) {
  Stmt s(db, "SELECT coalesce(max(seq), 0) FROM audit_log");
  s.step();
  return s.col_int(0);
}

void audit_insert(Db& db, const AuditRow& r) {
  Stmt s(db, (std::string("INSERT INTO audit_log (") + kColumns +
              ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                 .c_str());
  s.bind(1, r.seq).bind(2, r.time).bind(3, r.principal).bind(4, r.uid).bind(5, r.action);
  s.bind(6, r.resource).bind(7, r.params).bind(8, r.outcome).bind(9, r.error_code);
  s.bind(10, ByteView(r.prev_hash)).bind(11, ByteView(r.hash)).bind(12, ByteView(r.mac));
  if (r.state.empty())
    s.bind_null(13);
  else
    s.bind(13, ByteView(r.state));
  s.step();
}

void audit_scan(Db& db, const std::function<void(const AuditRow&)>& visit) {
  Stmt s(db, (std::string("SELECT ") + kColumns + " FROM audit_log ORDER BY seq").c_str());
  AuditRow row;
  while (s.step()) {
    read_row(s, row);
    visit(row);
  }
}

void audit_scan_views(Db& db, const std::function<void(const AuditRowView&)>& visit) {
  Stmt s(db, (std::string("SELECT ") + kColumns + " FROM audit_log ORDER BY seq").c_str());
  while (s.step()) visit(read_view(s));
}

void audit_query(Db& db, const AuditFilter& f, const std::function<void(const AuditRow&)>& visit) {
  std::string sql = std::string("SELECT ") + kColumns + " FROM audit_log WHERE TRUE";
  std::vector<std::string> args;
  auto where = [&](const std::optional<std::string>& v, const char* clause) {
    if (v) {
      sql += clause;
      args.push_back(*v);
    }
  };
  where(f.since, " AND time >= ?");
  where(f.until, " AND time < ?");
  where(f.action, " AND action = ?");
  where(f.resource, " AND resource = ?");
  where(f.principal, " AND principal = ?");
  where(f.outcome, " AND outcome = ?");
  if (f.grant) {
    // The grant the record is about, the grant a created one was made under, or the grant that
    // allowed the request.
    sql +=
        " AND (json_extract(params, '$.grant_id') = ? OR "
        "json_extract(params, '$.parent_grant_id') = ? OR "
        "json_extract(params, '$.rule') = 'grant:' || ?)";
    for (int k = 0; k < 3; ++k) args.push_back(*f.grant);
  }
  if (f.after_seq) sql += " AND seq > ?";
  if (f.before_seq) sql += " AND seq < ?";
  sql += f.newest_first ? " ORDER BY seq DESC" : " ORDER BY seq";
  sql += " LIMIT ?";
  Stmt s(db, sql.c_str());
  int i = 1;
  for (const std::string& a : args) s.bind(i++, std::string_view(a));
  if (f.after_seq) s.bind(i++, *f.after_seq);
  if (f.before_seq) s.bind(i++, *f.before_seq);
  s.bind(i, f.limit);
  AuditRow row;
  while (s.step()) {
    read_row(s, row);
    visit(row);
  }
}

}  // namespace kms::store
