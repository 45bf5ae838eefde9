// Authenticated rows, for the repositories (docs/FORMAT.md §14). Each table whose rows decide
// what the vault does has a `mac` column: HMAC-SHA256 under K_row of the row as SQLite stores it
// (its table, then every other column in schema order), so a row edited, moved to another
// primary key or copied from another vault fails its check. A repository selects
// `columns(table)` (the MACed columns, then mac) and calls check() on every row it returns, calls
// seal() after every INSERT or UPDATE, and forget() with the MAC of every row it deletes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <variant>

#include "kms/crypto.hpp"
#include "store/store.hpp"

namespace kms::store {

// The keys of an unsealed vault and the state change of the open transaction (kept by Db).
struct RowAuth {
  RowAuth(ByteView row_key, ByteView state_key) : row(row_key), state(state_key) {}
  crypto::HmacSha256 row;    // K_row: row MACs
  crypto::HmacSha256 state;  // K_state: state elements and masks
  crypto::Digest pending{};  // the sum of elements added minus those removed, mod 2^256
  bool dirty = false;        // the transaction changed authenticated rows
  bool legacy = false;       // rows without a MAC are accepted (Db::set_legacy_rows)
};

}  // namespace kms::store

namespace kms::store::rows {

enum class Table {
  vault_meta,
  keys,
  key_versions,
  key_aliases,
  key_tags,
  secrets,
  secret_versions,
  secret_tags,
  grants,
  key_policies,
  secret_policies,
  key_import_params,
};

// "col, col, ..., mac": the MACed columns in schema order (the primary key first), then the MAC.
const char* columns(Table t);

// Throws Code::integrity naming the row when the row that `s` holds, as `columns(t)` from
// column `first` on, does not match its MAC (or has none, in a vault whose rows were
// authenticated).
void check(Db& db, Table t, const Stmt& s, int first = 0);

// A column holding the name of one of the vocabularies of kms/vocab.hpp, read through its table
// (`parse`, e.g. parse_key_state). A name the table does not know is Code::integrity naming the
// row, the column, the table and the value (unknown_name): its MAC held, so only a bug or a newer
// kmsctl wrote it. `s` holds the row as `columns(t)` from column 0 on, already check()ed.
[[noreturn]] void unknown_name(Table t, const Stmt& s, int column);
template <class Parse>
auto name_column(Table t, const Stmt& s, int column, Parse parse) {
  if (const auto v = parse(s.col_text_view(column))) return *v;
  unknown_name(t, s, column);
}

// MACs the row with this primary key again after an INSERT or UPDATE, and notes in the
// transaction's state change that its previous MAC (none after an INSERT) gave way to the new.
using KeyPart = std::variant<std::int64_t, std::string_view>;
void seal(Db& db, Table t, std::initializer_list<KeyPart> key);

// A row was deleted: `mac` (from DELETE ... RETURNING mac) leaves the state.
void forget(Db& db, ByteView mac);

}  // namespace kms::store::rows
