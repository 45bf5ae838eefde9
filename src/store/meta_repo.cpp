#include <fmt/format.h>

#include "store/due.hpp"
#include "store/rows.hpp"
#include "store/store.hpp"

namespace kms::store {

std::optional<VaultMeta> read_meta(Db& db) {
  Stmt s(db,
         "SELECT vault_id, created, pkcs11_module, token_label, token_serial, softhsm_conf, "
         "root_key_gen, sealed_master FROM vault_meta WHERE singleton = 1");
  if (!s.step()) return std::nullopt;
  VaultMeta m;
  m.vault_id = s.col_text(0);
  m.created = s.col_text(1);
  m.pkcs11_module = s.col_text(2);
  m.token_label = s.col_text(3);
  m.token_serial = s.col_text(4);
  m.softhsm_conf = s.col_text(5);
  m.root_key_gen = s.col_int(6);
  const ByteView sealed = s.col_blob(7);
  m.sealed_master.assign(sealed.begin(), sealed.end());
  return m;
}

bool check_meta(Db& db, bool allow_missing) {
  Stmt s(db,
         fmt::format("SELECT {} FROM vault_meta", rows::columns(rows::Table::vault_meta)).c_str());
  if (!s.step()) return true;
  if (allow_missing && s.col_null(8)) return false;  // the 8 MACed columns, then the MAC
  rows::check(db, rows::Table::vault_meta, s);
  return true;
}

void insert_meta(Db& db, const VaultMeta& m) {
  Stmt s(db,
         "INSERT INTO vault_meta (singleton, vault_id, created, pkcs11_module, token_label, "
         "token_serial, softhsm_conf, root_key_gen, sealed_master) "
         "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)");
  s.bind(1, m.vault_id).bind(2, m.created).bind(3, m.pkcs11_module).bind(4, m.token_label);
  s.bind(5, m.token_serial).bind(6, m.softhsm_conf).bind(7, m.root_key_gen);
  s.bind(8, ByteView(m.sealed_master));
  s.step();
  rows::seal(db, rows::Table::vault_meta, {std::int64_t{1}});
}

void update_root_key(Db& db, std::int64_t gen, ByteView sealed_master) {
  Stmt s(db, "UPDATE vault_meta SET root_key_gen = ?, sealed_master = ? WHERE singleton = 1");
  s.bind(1, gen).bind(2, sealed_master);
  s.step();
  rows::seal(db, rows::Table::vault_meta, {std::int64_t{1}});
}

void update_softhsm_conf(Db& db, std::string_view path) {
  Stmt s(db, "UPDATE vault_meta SET softhsm_conf = ? WHERE singleton = 1");
  s.bind(1, path);
  s.step();
}

VaultCounts vault_counts(Db& db, std::string_view now) {
  Stmt s(db, fmt::format("SELECT (SELECT n FROM row_counts WHERE name = 'keys'), "
                         "(SELECT count(*) FROM {} WHERE {}), (SELECT count(*) FROM {} WHERE {}), "
                         "(SELECT n FROM row_counts WHERE name = 'secrets'), "
                         "(SELECT count(*) FROM {} WHERE {}), (SELECT count(*) FROM {} WHERE {})",
                         due::from(db, due::kKeyRotation), due::where(db, due::kKeyRotation),
                         due::from(db, due::kKeyDeletion), due::where(db, due::kKeyDeletion),
                         due::from(db, due::kSecretRotation), due::where(db, due::kSecretRotation),
                         due::from(db, due::kSecretDeletion), due::where(db, due::kSecretDeletion))
                 .c_str());
  s.bind(1, now);
  s.step();
  return {s.col_int(0), s.col_int(1), s.col_int(2), s.col_int(3), s.col_int(4), s.col_int(5)};
}

}  // namespace kms::store
