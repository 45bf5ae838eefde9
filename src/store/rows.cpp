// Authenticated rows and the state digest (docs/FORMAT.md §14).
#include "store/rows.hpp"

#include <array>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/text.hpp"

namespace kms::store {

namespace rows {
namespace {

constexpr std::string_view kRowMagic = "KMSR";
constexpr std::uint8_t kRowVersion = 1;
constexpr std::string_view kMaskMagic = "KMSS";

struct Spec {
  const char* table;
  const char* label;                 // how a message names a row of it
  std::vector<const char*> columns;  // MAC order: the primary key first
  size_t key_columns;
  size_t shown_columns;   // leading columns a message shows
  bool in_state;          // part of the state digest (the header is not: FORMAT.md §14.3)
  std::string select;     // "c1, c2, ..., mac"
  std::string where_key;  // "c1 = ?1 AND c2 = ?2"
  // Columns added to the table later (keys, schema 8), from this one on: in a row's encoding
  // only when the first of them is not `tail_default` or another is not NULL, so that the rows
  // written before keep their MACs. 0: none.
  size_t tail_from = 0;
  const char* tail_default = nullptr;
};

Spec make(const char* table, const char* label, std::vector<const char*> cols, size_t key,
          size_t shown, bool in_state) {
  Spec s{table, label, std::move(cols), key, shown, in_state, {}, {}};
  for (const char* c : s.columns) s.select += std::string(c) + ", ";
  s.select += "mac";
  for (size_t i = 0; i < key; ++i) {
    if (i) s.where_key += " AND ";
    s.where_key += fmt::format("{} = ?{}", s.columns[i], i + 1);
  }
  return s;
}

Spec with_tail(Spec s, size_t from, const char* dflt) {
  s.tail_from = from;
  s.tail_default = dflt;
  return s;
}

const std::array<Spec, 12>& specs() {
  static const std::array<Spec, 12> all = {
      make("vault_meta", "the vault header",
           {"singleton", "vault_id", "created", "pkcs11_module", "token_label", "token_serial",
            "root_key_gen", "sealed_master"},
           1, 0, false),
      with_tail(make("keys", "key",
                     {"id", "spec", "usage", "description", "state", "protection", "created",
                      "rotation_period_days", "last_rotated", "deletion_date", "primary_version",
                      "highest_lost_version", "origin", "material_expires", "material_commitment"},
                     1, 1, true),
                12, "kms"),
      make("key_versions", "key version", {"key_id", "version", "created", "material"}, 2, 2, true),
      make("key_aliases", "alias", {"alias", "key_id", "created"}, 1, 1, true),
      make("key_tags", "key tag", {"key_id", "name", "value"}, 2, 2, true),
      make("secrets", "secret",
           {"id", "name", "key_id", "description", "created", "updated", "next_version",
            "gen_length", "gen_charset", "gen_exclude", "rotation_period_days", "rotation_command",
            "last_rotated", "rotation_status", "rotation_error", "deletion_date"},
           1, 2, true),
      make("secret_versions", "secret version",
           {"secret_id", "version", "created", "stage", "value"}, 2, 2, true),
      make("secret_tags", "secret tag", {"secret_id", "name", "value"}, 2, 2, true),
      make("grants", "grant",
           {"id", "key_id", "grantee_uid", "grantee", "operations", "context_equals",
            "context_subset", "retiring_uid", "retiring", "name", "created_at", "created_by_uid",
            "expires_at", "state", "ended_at"},
           1, 1, true),
      make("key_policies", "key policy",
           {"key_id", "text", "sha256", "updated_at", "updated_by_uid"}, 1, 1, true),
      make("secret_policies", "secret policy",
           {"secret_id", "text", "sha256", "updated_at", "updated_by_uid"}, 1, 1, true),
      make("key_import_params", "import parameters",
           {"token_id", "key_id", "wrapping_algorithm", "created", "expires", "used_at",
            "private_key"},
           1, 2, true),
  };
  return all;
}

const Spec& spec(Table t) { return specs()[static_cast<size_t>(t)]; }

void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_u64(Bytes& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_bytes(Bytes& out, ByteView b) {
  put_u32(out, static_cast<std::uint32_t>(b.size()));
  out.insert(out.end(), b.begin(), b.end());
}

// "KMSR" || 0x01 || str(table) || per column (a tail left out: tail_present): 0x00 (NULL) | 0x01
// u64be (integer) | 0x02 str (text) | 0x03 str (blob). Whether the row's tail columns
// (Spec::tail_from) are in its encoding.
bool tail_present(const Spec& sp, const Stmt& s, int first) {
  if (sp.tail_from == 0) return true;
  const int c0 = first + static_cast<int>(sp.tail_from);
  if (s.col_type(c0) != Stmt::ColType::text || s.col_text_view(c0) != sp.tail_default) {
    return true;
  }
  for (size_t i = sp.tail_from + 1; i < sp.columns.size(); ++i) {
    if (!s.col_null(first + static_cast<int>(i))) return true;
  }
  return false;
}

Bytes encode(const Spec& sp, const Stmt& s, int first) {
  Bytes out(kRowMagic.begin(), kRowMagic.end());
  out.push_back(kRowVersion);
  put_bytes(out, as_bytes(sp.table));
  const size_t n =
      sp.tail_from != 0 && !tail_present(sp, s, first) ? sp.tail_from : sp.columns.size();
  for (size_t i = 0; i < n; ++i) {
    const int c = first + static_cast<int>(i);
    switch (s.col_type(c)) {
      case Stmt::ColType::null:
        out.push_back(0);
        break;
      case Stmt::ColType::integer:
        out.push_back(1);
        put_u64(out, static_cast<std::uint64_t>(s.col_int(c)));
        break;
      case Stmt::ColType::text:
        out.push_back(2);
        put_bytes(out, as_bytes(s.col_text_view(c)));
        break;
      default:  // blob (no column holds a real)
        out.push_back(3);
        put_bytes(out, s.col_blob(c));
        break;
    }
  }
  return out;
}

std::string describe(const Spec& sp, const Stmt& s, int first) {
  if (sp.shown_columns == 0) return sp.label;
  std::string out = fmt::format("{} (", sp.label);
  for (size_t i = 0; i < sp.shown_columns; ++i) {
    const int c = first + static_cast<int>(i);
    if (i) out += ", ";
    out += sp.columns[i];
    out += ' ';
    out += s.col_type(c) == Stmt::ColType::integer ? std::to_string(s.col_int(c))
                                                   : escape_text(s.col_text(c));
  }
  return out + ")";
}

// Big-endian 256-bit arithmetic modulo 2^256.
void add_to(crypto::Digest& acc, const crypto::Digest& x) {
  unsigned carry = 0;
  for (int i = 31; i >= 0; --i) {
    const unsigned v = acc[i] + x[i] + carry;
    acc[i] = static_cast<std::uint8_t>(v);
    carry = v >> 8;
  }
}
void sub_from(crypto::Digest& acc, const crypto::Digest& x) {
  int borrow = 0;
  for (int i = 31; i >= 0; --i) {
    const int v = int(acc[i]) - int(x[i]) - borrow;
    acc[i] = static_cast<std::uint8_t>(v & 0xff);
    borrow = v < 0 ? 1 : 0;
  }
}

// A row's element: HMAC(K_state, its MAC). Secret, unlike the MAC the file shows.
crypto::Digest element(const RowAuth& a, ByteView mac) { return a.state.mac(mac); }

// The mask of the state field of record `seq`: HMAC(K_state, "KMSS" || u64be(seq)).
crypto::Digest mask(const RowAuth& a, std::int64_t seq) {
  Bytes in(kMaskMagic.begin(), kMaskMagic.end());
  put_u64(in, static_cast<std::uint64_t>(seq));
  return a.state.mac(in);
}

void bind_key(Stmt& s, std::span<const KeyPart> key) {
  int i = 1;
  for (const KeyPart& k : key) {
    if (const auto* n = std::get_if<std::int64_t>(&k)) {
      s.bind(i++, *n);
    } else {
      s.bind(i++, std::get<std::string_view>(k));
    }
  }
}

void seal_key(Db& db, Table t, std::span<const KeyPart> key) {
  const Spec& sp = spec(t);
  RowAuth& a = db.row_auth();
  Bytes mac;
  {
    Stmt s(db,
           fmt::format("SELECT {} FROM {} WHERE {}", sp.select, sp.table, sp.where_key).c_str());
    bind_key(s, key);
    if (!s.step()) {
      throw Error(Code::failed,
                  fmt::format("internal error: a {} row to MAC is not there", sp.label));
    }
    const crypto::Digest m = a.row.mac(encode(sp, s, 0));
    mac.assign(m.begin(), m.end());
    if (sp.in_state) {
      const int mac_col = static_cast<int>(sp.columns.size());
      if (!s.col_null(mac_col)) sub_from(a.pending, element(a, s.col_blob(mac_col)));
      add_to(a.pending, element(a, mac));
      a.dirty = true;
    }
  }
  Stmt u(db,
         fmt::format("UPDATE {} SET mac = ?{} WHERE {}", sp.table, sp.key_columns + 1, sp.where_key)
             .c_str());
  bind_key(u, key);
  u.bind(static_cast<int>(sp.key_columns) + 1, ByteView(mac));
  u.step();
}

}  // namespace

const char* columns(Table t) { return spec(t).select.c_str(); }

void check(Db& db, Table t, const Stmt& s, int first) {
  const Spec& sp = spec(t);
  const RowAuth& a = db.row_auth();
  const int mac_col = first + static_cast<int>(sp.columns.size());
  if (s.col_null(mac_col)) {
    if (a.legacy) return;
  } else if (a.row.verify(encode(sp, s, first), s.col_blob(mac_col))) {
    return;
  }
  throw Error(Code::integrity,
              fmt::format("{} was altered outside kmsctl: its row in the vault does not match its "
                          "MAC (edited, moved or copied from elsewhere)",
                          describe(sp, s, first)),
              Remedy::verify_then_restore_vault, {},
              "do not use this vault until you know who changed it");
}

void unknown_name(Table t, const Stmt& s, int column) {
  const Spec& sp = spec(t);
  throw Error(
      Code::integrity,
      fmt::format("{}: column {} of table {} holds \"{}\", a name this kmsctl does not know",
                  describe(sp, s, 0), sp.columns[static_cast<size_t>(column)], sp.table,
                  escape_text(s.col_text_view(column))),
      Remedy::verify_audit_log_or_upgrade);
}

void seal(Db& db, Table t, std::initializer_list<KeyPart> key) {
  seal_key(db, t, std::span(key.begin(), key.size()));
}

void forget(Db& db, ByteView mac) {
  if (mac.empty()) return;
  RowAuth& a = db.row_auth();
  sub_from(a.pending, element(a, mac));
  a.dirty = true;
}

}  // namespace rows

// ---- Db's side ----

void Db::set_row_keys(ByteView row_key, ByteView state_key) {
  rows_ = std::make_unique<RowAuth>(row_key, state_key);
}

RowAuth& Db::row_auth() {
  if (!rows_) {
    throw Error(Code::failed, "internal error: vault rows used before the vault was unsealed");
  }
  return *rows_;
}

void Db::discard_state_change() noexcept {
  if (!rows_) return;
  rows_->pending = {};
  rows_->dirty = false;
}

bool Db::state_change_pending() const noexcept { return rows_ && rows_->dirty; }

bool Db::legacy_rows() const noexcept { return rows_ && rows_->legacy; }

void Db::set_legacy_rows(bool legacy) { row_auth().legacy = legacy; }

// ---- the state digest ----

void note_state_change(Db& db) { db.row_auth().dirty = true; }

crypto::Digest unmask_state(Db& db, ByteView field, std::int64_t seq) {
  crypto::Digest sum{};
  if (field.size() != sum.size()) {
    throw Error(Code::integrity, fmt::format("audit record {} holds a malformed state digest", seq),
                Remedy::verify_audit_log);
  }
  std::copy(field.begin(), field.end(), sum.begin());
  rows::sub_from(sum, rows::mask(db.row_auth(), seq));
  return sum;
}

Bytes next_state_field(Db& db, const std::optional<crypto::Digest>& current, std::int64_t seq) {
  RowAuth& a = db.row_auth();
  if (!current && !a.dirty) return {};  // a vault of an older kmsctl, not upgraded yet
  crypto::Digest sum = current.value_or(crypto::Digest{});
  rows::add_to(sum, a.pending);
  rows::add_to(sum, rows::mask(a, seq));
  a.pending = {};
  a.dirty = false;
  return Bytes(sum.begin(), sum.end());
}

StateReport check_state(Db& db, const crypto::Digest& recorded, std::int64_t recorded_at) {
  StateReport rep;
  rep.recorded_at = recorded_at;
  RowAuth& a = db.row_auth();
  crypto::Digest sum{};
  for (size_t i = 0; i < rows::specs().size(); ++i) {
    const rows::Spec& sp = rows::specs()[i];
    if (!sp.in_state) continue;
    Stmt s(db, fmt::format("SELECT {} FROM {}", sp.select, sp.table).c_str());
    const int mac_col = static_cast<int>(sp.columns.size());
    std::int64_t in_table = 0;
    while (s.step()) {
      ++in_table;
      try {
        rows::check(db, static_cast<rows::Table>(i), s);
      } catch (const Error& e) {
        rep.ok = false;
        rep.problem = e.what();
        return rep;
      }
      ++rep.rows;
      if (!s.col_null(mac_col)) rows::add_to(sum, rows::element(a, s.col_blob(mac_col)));
    }
    // `status` shows the counts that the schema's triggers keep, not counted rows.
    const std::string_view table = sp.table;
    if (table == "keys" || table == "secrets") {
      Stmt c(db, "SELECT n FROM row_counts WHERE name = ?");
      c.bind(1, table);
      const std::optional<std::int64_t> counted =
          c.step() ? std::optional(c.col_int(0)) : std::nullopt;
      if (counted != in_table) {
        rep.ok = false;
        rep.problem = fmt::format(
            "the vault holds {} {} but its row_counts table says {}: it was changed outside "
            "kmsctl",
            in_table, table, counted ? std::to_string(*counted) : std::string("nothing"));
        return rep;
      }
    }
  }
  if (!crypto::equal(sum, recorded)) {
    rep.ok = false;
    rep.problem = fmt::format(
        "the vault's keys and secrets are not the state that audit record {} recorded: a row "
        "was replaced by an older copy of itself, deleted or added outside kmsctl",
        recorded_at);
  }
  return rep;
}

std::int64_t authenticate_rows(Db& db) {
  std::int64_t n = 0;
  for (size_t i = 0; i < rows::specs().size(); ++i) {
    const rows::Spec& sp = rows::specs()[i];
    std::vector<std::vector<std::variant<std::int64_t, std::string>>> keys;
    {
      std::string cols;
      for (size_t k = 0; k < sp.key_columns; ++k)
        cols += (k ? ", " : "") + std::string(sp.columns[k]);
      Stmt s(db, fmt::format("SELECT {} FROM {} WHERE mac IS NULL", cols, sp.table).c_str());
      while (s.step()) {
        auto& key = keys.emplace_back();
        for (size_t k = 0; k < sp.key_columns; ++k) {
          const int c = static_cast<int>(k);
          if (s.col_type(c) == Stmt::ColType::integer) {
            key.emplace_back(s.col_int(c));
          } else {
            key.emplace_back(s.col_text(c));
          }
        }
      }
    }
    for (const auto& key : keys) {
      std::vector<rows::KeyPart> parts;
      for (const auto& k : key) {
        if (const auto* v = std::get_if<std::int64_t>(&k)) {
          parts.emplace_back(*v);
        } else {
          parts.emplace_back(std::string_view(std::get<std::string>(k)));
        }
      }
      rows::seal_key(db, static_cast<rows::Table>(i), parts);
      ++n;
    }
  }
  note_state_change(db);
  return n;
}

}  // namespace kms::store
