// copy_rows: a vault's rows into another database, as they are (store.hpp).
#include <optional>
#include <string>

#include <fmt/format.h>

#include "kms/error.hpp"
#include "store/store.hpp"

namespace kms::store {

std::int64_t copy_rows(Db& from, Db& to) {
  // Parents before the rows that refer to them; row_counts is the destination's triggers' work.
  static constexpr const char* kTables[] = {
      "vault_meta", "keys",         "key_versions",    "key_aliases",
      "key_tags",   "secrets",      "secret_versions", "secret_tags",
      "grants",     "key_policies", "secret_policies", "key_import_params",
      "audit_log"};
  // A zero-length blob is not NULL: bound with a pointer (a view without one binds NULL).
  static const std::uint8_t kNoBytes = 0;
  std::int64_t copied = 0;
  for (const char* table : kTables) {
    Stmt in(from, fmt::format("SELECT * FROM {}", table).c_str());
    std::optional<Stmt> out;
    while (in.step()) {
      const int n = in.columns();
      if (!out) {
        std::string names, values;
        for (int i = 0; i < n; ++i) {
          names += fmt::format("{}{}", i ? ", " : "", in.col_name(i));
          values += fmt::format("{}?{}", i ? ", " : "", i + 1);
        }
        out.emplace(to,
                    fmt::format("INSERT INTO {} ({}) VALUES ({})", table, names, values).c_str());
      } else {
        out->reset();
      }
      for (int i = 0; i < n; ++i) {
        switch (in.col_type(i)) {
          case Stmt::ColType::integer:
            out->bind(i + 1, in.col_int(i));
            break;
          case Stmt::ColType::text:
            out->bind(i + 1, in.col_text_view(i));
            break;
          case Stmt::ColType::blob: {
            const ByteView b = in.col_blob(i);
            out->bind(i + 1, b.empty() ? ByteView(&kNoBytes, 0) : b);
            break;
          }
          case Stmt::ColType::null:
            out->bind_null(i + 1);
            break;
          case Stmt::ColType::real:
            throw Error(Code::integrity,
                        fmt::format("table {} holds a floating-point value in column {}, which no "
                                    "kmsctl writes",
                                    table, in.col_name(i)),
                        Remedy::verify_audit_log);
        }
      }
      out->step();
      ++copied;
    }
  }
  return copied;
}

}  // namespace kms::store
