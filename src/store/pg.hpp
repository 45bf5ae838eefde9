// The PostgreSQL side of Db and Stmt (store.hpp), through libpq: one connection, statements
// executed with their parameters bound separately from their text (never a value in SQL text,
// so none reaches the server's logs or pg_stat_statements), results in binary form. Only
// db.cpp uses this header; it does not include libpq-fe.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kms/secure.hpp"
#include "store/store.hpp"

struct pg_conn;
struct pg_result;

namespace kms::store::pg {

// The statement text for PostgreSQL: SQLite's `?NNN` and `?` parameters become `$NNN` (a `?`
// takes the number after the largest one so far, as SQLite numbers them); quoted text and
// identifiers are left alone.
std::string translate(std::string_view sql);

// How a location names the database in messages: a libpq URI or key=value string without its
// password or any other option, e.g. `postgresql://kms@db.example:5432/kms`.
std::string display_name(std::string_view conninfo);

// The connection string carries a password (`password=`, or one in a URI's user part); false
// for one that does not parse.
bool holds_password(std::string_view conninfo);

class Conn {
 public:
  // Connects (Code::unavailable with the server's reason when it cannot), sets the session up
  // (UTF-8, UTC, no statement logging of parameters is needed: none are in the text).
  explicit Conn(const std::string& conninfo);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  const std::string& name() const noexcept { return name_; }
  // The connection still works (a failed statement may have been the server going away).
  bool alive() const noexcept;
  // Connects again when the server closed the connection meanwhile (read without waiting);
  // Code::unavailable while it cannot be reached.
  void revive();
  pg_conn* raw() const noexcept { return conn_; }
  // Runs one or more statements without parameters (schema, BEGIN).
  void exec(const char* sql);
  // COMMIT, which fails (Code::failed) when the server rolled the transaction back instead.
  void commit();
  // ROLLBACK; a failure is dropped (the connection may be gone, which rolls back too).
  void rollback() noexcept;
  // Throws the Error a failed result stands for (SQLSTATE classes: connection lost or server
  // down, serialisation failure or deadlock: Code::unavailable; data corrupted: Code::integrity;
  // otherwise Code::failed), naming the database and what was being done.
  [[noreturn]] void fail(pg_result* res, std::string_view what) const;

 private:
  [[noreturn]] void fail_to_connect(const std::string& why) const;
  void set_up_session();

  pg_conn* conn_ = nullptr;
  std::string name_;
};

// One statement of a Stmt: its text, the values bound, and the result once executed.
class Query {
 public:
  Query(Conn& conn, const char* sql);
  ~Query();
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  void bind(int i, std::int64_t v);
  void bind(int i, std::string_view v);
  void bind(int i, ByteView v);
  void bind_null(int i);
  bool step();
  void reset();
  std::int64_t col_int(int i) const;
  std::string_view col_text(int i) const;
  ByteView col_blob(int i) const;
  bool col_null(int i) const;
  Stmt::ColType col_type(int i) const;
  int columns() const;
  std::string_view col_name(int i) const;

 private:
  struct Param {
    // An OID. A NULL bound takes its type from where it is used (0); a parameter never bound,
    // which the text may not use (a filter left out), is text so that the server needs none.
    std::uint32_t type = 25;
    bool null = true;
    bool binary = false;
    std::string value;  // as SQLite's binding copies it: values bound are sealed or public
  };
  Param& param(int i);
  void execute();

  Conn& conn_;
  std::string sql_;
  std::vector<Param> params_;
  pg_result* res_ = nullptr;
  int row_ = -1;
  int rows_ = 0;
};

}  // namespace kms::store::pg
