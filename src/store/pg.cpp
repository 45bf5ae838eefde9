// PostgreSQL through libpq for Db and Stmt (pg.hpp).
#include "store/pg.hpp"

#include <poll.h>

#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "kms/error.hpp"
#include "store/store.hpp"

namespace kms::store::pg {
namespace {

// Type OIDs (catalog/pg_type_d.h, stable across releases).
constexpr Oid kBool = 16;
constexpr Oid kBytea = 17;
constexpr Oid kName = 19;
constexpr Oid kInt8 = 20;
constexpr Oid kInt2 = 21;
constexpr Oid kInt4 = 23;
constexpr Oid kText = 25;
constexpr Oid kOid = 26;
constexpr Oid kFloat8 = 701;
constexpr Oid kVarchar = 1043;

std::uint64_t big_endian(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

struct ResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// libpq's messages span lines (and indent them with tabs): one line, for kmsctl's.
std::string one_line(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const bool space = c == '\n' || c == '\t' || c == '\r' || c == ' ';
    if (space && (out.empty() || out.back() == ' ')) continue;
    out.push_back(space ? ' ' : c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

std::string translate(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 8);
  int largest = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {  // a quoted literal or identifier, '' and "" escapes included
      const std::size_t end = sql.find(c, i + 1);
      const std::size_t stop = end == std::string_view::npos ? sql.size() : end + 1;
      out.append(sql.substr(i, stop - i));
      i = stop - 1;
      continue;
    }
    if (c != '?') {
      out.push_back(c);
      continue;
    }
    std::size_t j = i + 1;
    int n = 0;
    while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9') n = n * 10 + (sql[j++] - '0');
    if (j == i + 1) n = largest + 1;
    if (n > largest) largest = n;
    out += fmt::format("${}", n);
    i = j - 1;
  }
  return out;
}

std::string display_name(std::string_view conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(std::string(conninfo).c_str(), &err);
  if (err != nullptr) PQfreemem(err);
  if (opts == nullptr) return "a PostgreSQL database (its connection string does not parse)";
  std::string user, host, port, dbname, service;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    const std::string_view k = o->keyword;
    if (k == "user") user = o->val;
    if (k == "host") host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") dbname = o->val;
    if (k == "service") service = o->val;
  }
  PQconninfoFree(opts);
  if (!service.empty() && host.empty()) return fmt::format("postgresql service {}", service);
  std::string s = "postgresql://";
  if (!user.empty()) s += user + "@";
  // A socket directory is shown as libpq's URIs write it, in the query part.
  const bool socket_dir = !host.empty() && host[0] == '/';
  if (!socket_dir) s += host;
  if (!port.empty() && !socket_dir) s += ":" + port;
  s += "/" + dbname;
  if (socket_dir) s += fmt::format("?host={}{}", host, port.empty() ? "" : "&port=" + port);
  return s;
}

bool holds_password(std::string_view conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(std::string(conninfo).c_str(), &err);
  if (err != nullptr) PQfreemem(err);
  if (opts == nullptr) return false;
  bool found = false;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0') {
      found = true;
    }
  }
  PQconninfoFree(opts);
  return found;
}

Conn::Conn(const std::string& conninfo) : name_(display_name(conninfo)) {
  conn_ = PQconnectdb(conninfo.c_str());
  if (conn_ == nullptr) throw Error(Code::failed, "out of memory connecting to PostgreSQL");
  if (PQstatus(conn_) != CONNECTION_OK) {
    const std::string why = one_line(PQerrorMessage(conn_));
    PQfinish(conn_);
    conn_ = nullptr;
    fail_to_connect(why);
  }
  set_up_session();
}

void Conn::fail_to_connect(const std::string& why) const {
  throw Error(Code::unavailable,
              fmt::format("cannot connect to the vault's database {}: {}", name_, why),
              "check that the server runs and that the connection string, its password file "
              "(PGPASSFILE) and its TLS settings are right");
}

void Conn::set_up_session() {
  // The server's notices (a table that exists already, say) are not for kmsctl's user: libpq
  // would print them on stderr.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  // Times are kept as text in UTC; bytea and text travel in binary form, so the session's
  // output settings matter only to the server's own messages.
  // A writer waits for the vault's writer lock at most as long as it waits for a file's (SQLite's
  // busy timeout), then fails as busy (55P03: Code::unavailable).
  exec("SET client_encoding = 'UTF8'; SET TimeZone = 'UTC'; SET lock_timeout = '30s'");
}

Conn::~Conn() {
  if (conn_ != nullptr) PQfinish(conn_);
}

bool Conn::alive() const noexcept { return PQstatus(conn_) == CONNECTION_OK; }

void Conn::revive() {
  // An idle connection has nothing to read: anything there (a server's last words as it shuts
  // down, the end of the stream) is seen without waiting, before a statement fails on it.
  pollfd p{PQsocket(conn_), POLLIN, 0};
  if (PQstatus(conn_) == CONNECTION_OK && p.fd >= 0 && ::poll(&p, 1, 0) == 0) return;
  PQreset(conn_);  // the same parameters, a new session
  if (PQstatus(conn_) != CONNECTION_OK) fail_to_connect(one_line(PQerrorMessage(conn_)));
  set_up_session();
}

void Conn::exec(const char* sql) {
  Result r(PQexec(conn_, sql));
  const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail(r.get(), "vault database error");
}

void Conn::commit() {
  Result r(PQexec(conn_, "COMMIT"));
  if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      // The server may have committed before the connection went: whether it did, its audit
      // record says (the change and its record are one transaction).
      throw Error(Code::unavailable,
                  fmt::format("the connection to the vault's database {} was lost while it "
                              "committed: {}",
                              name_, one_line(PQerrorMessage(conn_))),
                  "the request may have been done: `kmsctl audit list` shows whether it was; "
                  "retry once the server is back");
    }
    fail(r.get(), "cannot commit");
  }
  // COMMIT of a transaction that an error aborted answers ROLLBACK, without an error.
  if (std::string_view(PQcmdStatus(r.get())) != "COMMIT") {
    throw Error(Code::failed,
                fmt::format("the vault's database {} rolled the transaction back", name_),
                "retry; if it fails again, see the database server's log");
  }
}

void Conn::rollback() noexcept { PQclear(PQexec(conn_, "ROLLBACK")); }

void Conn::fail(pg_result* res, std::string_view what) const {
  const std::string why =
      one_line(res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn_));
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const std::string_view sqlstate = state != nullptr ? state : "";
  // No SQLSTATE: libpq's own error, not the server's (the connection closed under it, say).
  const bool lost = PQstatus(conn_) != CONNECTION_OK || sqlstate.empty() ||
                    sqlstate.starts_with("08") ||
                    sqlstate.starts_with("57P");  // admin shutdown, crash shutdown, cannot connect
  if (lost) {
    throw Error(Code::unavailable,
                fmt::format("the vault's database {} is unreachable: {}", name_, why),
                "check that the PostgreSQL server runs, then retry");
  }
  const char* table = res != nullptr ? PQresultErrorField(res, PG_DIAG_TABLE_NAME) : nullptr;
  if (sqlstate == "40001" || sqlstate == "40P01" ||
      (sqlstate == "23505" && table != nullptr && std::string_view(table) == "audit_log")) {
    throw Conflict(Code::unavailable,
                   fmt::format("the vault's database {} is busy: {}", name_, why),
                   Remedy::retry_when_free);
  }
  if (sqlstate == "55P03") {  // lock_timeout: waited long enough already
    throw Error(Code::unavailable, fmt::format("the vault's database {} is busy: {}", name_, why),
                Remedy::retry_when_free);
  }
  if (sqlstate == "XX001" || sqlstate == "XX002") {
    throw Error(Code::integrity, fmt::format("the vault's database {} is damaged: {}", name_, why),
                Remedy::restore_from_backup);
  }
  throw Error(Code::failed, fmt::format("{} ({}): {}", what, name_, why),
              "check the database server's state and this role's rights, then retry");
}

Query::Query(Conn& conn, const char* sql) : conn_(conn), sql_(translate(sql)) {}

Query::~Query() {
  if (res_ != nullptr) PQclear(res_);
}

Query::Param& Query::param(int i) {
  if (i < 1) throw Error(Code::failed, fmt::format("internal error: parameter {}", i));
  if (params_.size() < static_cast<std::size_t>(i)) params_.resize(static_cast<std::size_t>(i));
  return params_[static_cast<std::size_t>(i - 1)];
}

void Query::bind(int i, std::int64_t v) {
  Param& p = param(i);
  p = Param{kInt8, false, false, std::to_string(v)};
}

// As SQLite binds them: a view without data is NULL, an empty one with data is empty.
void Query::bind(int i, std::string_view v) {
  Param& p = param(i);
  if (v.data() == nullptr) {
    p = Param{0, true, false, {}};
    return;
  }
  p = Param{kText, false, true, std::string(v)};
}

void Query::bind(int i, ByteView v) {
  Param& p = param(i);
  if (v.data() == nullptr) {
    p = Param{0, true, false, {}};
    return;
  }
  p = Param{kBytea, false, true, std::string(reinterpret_cast<const char*>(v.data()), v.size())};
}

void Query::bind_null(int i) { param(i) = Param{0, true, false, {}}; }

void Query::execute() {
  const int n = static_cast<int>(params_.size());
  std::vector<Oid> types(params_.size());
  std::vector<const char*> values(params_.size());
  std::vector<int> lengths(params_.size());
  std::vector<int> formats(params_.size());
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const Param& p = params_[k];
    types[k] = p.type;
    // Not NULL: a pointer even for an empty value (a null pointer is libpq's NULL).
    values[k] = p.null ? nullptr : (p.value.empty() ? "" : p.value.data());
    lengths[k] = static_cast<int>(p.value.size());
    formats[k] = p.binary ? 1 : 0;
  }
  res_ = PQexecParams(conn_.raw(), sql_.c_str(), n, types.data(), values.data(), lengths.data(),
                      formats.data(), 1);
  const ExecStatusType st = res_ != nullptr ? PQresultStatus(res_) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    Result r(res_);
    res_ = nullptr;
    conn_.fail(r.get(), "vault database error");
  }
  rows_ = PQntuples(res_);
  row_ = -1;
}

bool Query::step() {
  if (res_ == nullptr) execute();
  if (row_ < rows_) ++row_;
  return row_ < rows_;
}

void Query::reset() {
  if (res_ != nullptr) PQclear(res_);
  res_ = nullptr;
  row_ = -1;
  rows_ = 0;
  params_.clear();
}

std::int64_t Query::col_int(int i) const {
  if (col_null(i)) return 0;
  const char* p = PQgetvalue(res_, row_, i);
  const int len = PQgetlength(res_, row_, i);
  switch (PQftype(res_, i)) {
    case kInt8:
    case kInt4:
    case kInt2:
    case kOid:
    case kBool: {
      // Signed big-endian of the column's width.
      const std::uint64_t v = big_endian(p, len);
      const int shift = 64 - 8 * len;
      return shift > 0 ? static_cast<std::int64_t>(v << shift) >> shift
                       : static_cast<std::int64_t>(v);
    }
    default:
      throw Error(Code::failed,
                  fmt::format("internal error: column {} of type {} read as an integer", i,
                              PQftype(res_, i)));
  }
}

std::string_view Query::col_text(int i) const {
  if (col_null(i)) return {};
  return {PQgetvalue(res_, row_, i), static_cast<std::size_t>(PQgetlength(res_, row_, i))};
}

ByteView Query::col_blob(int i) const {
  if (col_null(i)) return {};
  return {reinterpret_cast<const std::uint8_t*>(PQgetvalue(res_, row_, i)),
          static_cast<std::size_t>(PQgetlength(res_, row_, i))};
}

// As SQLite's columns read without a row (or beyond the last column): NULL.
bool Query::col_null(int i) const {
  return res_ == nullptr || row_ < 0 || row_ >= rows_ || i < 0 || i >= PQnfields(res_) ||
         PQgetisnull(res_, row_, i) != 0;
}

int Query::columns() const { return res_ != nullptr ? PQnfields(res_) : 0; }

std::string_view Query::col_name(int i) const {
  const char* name = res_ != nullptr ? PQfname(res_, i) : nullptr;
  return name != nullptr ? name : "";
}

Stmt::ColType Query::col_type(int i) const {
  if (col_null(i)) return Stmt::ColType::null;
  switch (PQftype(res_, i)) {
    case kInt8:
    case kInt4:
    case kInt2:
    case kOid:
    case kBool:
      return Stmt::ColType::integer;
    case kFloat8:
      return Stmt::ColType::real;
    case kBytea:
      return Stmt::ColType::blob;
    case kText:
    case kVarchar:
    case kName:
    default:
      return Stmt::ColType::text;
  }
}

}  // namespace kms::store::pg
