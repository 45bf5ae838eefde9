// Unit tests of kms::Vault and kms::Service against a REAL SoftHSM2 token: each test case makes a
// fresh private token in its own temporary directory with Vault::create / Service::init.
//
// PKCS#11 state is per process: the SoftHSM2 library is loaded once, reads SOFTHSM2_CONF in
// C_Initialize, and every hsm::Module of it shares that state. The tests therefore keep one live
// Vault at a time unless the test is about having two.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "service_support.hpp"
#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "audit/log.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/service.hpp"
#include "runner/runner.hpp"
#include "store/store.hpp"
#include "vault/sealed.hpp"
#include "vault/vault.hpp"

using namespace kms;
using kms::test::audit_rows;
using kms::test::bytes_of;
using kms::test::contains;
using kms::test::error_of;
using kms::test::init_service;
using kms::test::kPin;
using kms::test::mode_of;
using kms::test::pin_of;
using kms::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Vault> create_vault(const fs::path& path, InitReport* report_out = nullptr) {
  InitOptions opts;
  opts.vault = path;
  InitReport report;
  auto v = Vault::create(opts, pin_of(kPin), report);
  v->publish();
  if (report_out) *report_out = std::move(report);
  return v;
}

// The token objects directories SoftHSM2 made under a private token directory.
int token_count(const fs::path& vault) {
  const fs::path tokens = private_token_dir(vault) / "tokens";
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(tokens, ec)) n += e.is_directory() ? 1 : 0;
  return n;
}

const RecordRef kRef{"keys", "key-0001", 3};

bool same(ByteView a, ByteView b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

}  // namespace

TEST_CASE("SoftHSM2 is installed (the vault tests need a real token)") {
  REQUIRE_MESSAGE(find_softhsm_module().has_value(),
                  "libsofthsm2.so not found: apt-get install softhsm2");
}

// ---------------------------------------------------------------------------------------------
// Creating and opening
// ---------------------------------------------------------------------------------------------

TEST_CASE("Vault::create makes a private token and publish moves a private vault into place") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  InitReport report;
  InitOptions opts;
  opts.vault = path;
  auto v = Vault::create(opts, pin_of(kPin), report);
  CHECK_FALSE(fs::exists(path));  // not before publish()
  CHECK(v->final_path() == fs::absolute(path));
  v->publish();
  CHECK(fs::exists(path));
  CHECK(v->path() == v->final_path());
  CHECK(mode_of(path) == 0600);
  CHECK(mode_of(private_token_dir(path)) == 0700);
  // No init markers or temporary vault files are left beside it.
  for (const auto& e : fs::directory_iterator(dir.path())) {
    const std::string name = e.path().filename().string();
    CAPTURE(name);
    CHECK((name == "vault.db" || name == "vault.db.token" || name == "vault.db-wal" ||
           name == "vault.db-shm"));
  }
  CHECK_FALSE(fs::exists(private_token_dir(path) / "INIT-INCOMPLETE"));

  const store::VaultMeta& m = v->meta();
  CHECK(report.vault_id == m.vault_id);
  CHECK(m.vault_id.size() == 36);
  REQUIRE(report.so_pin.has_value());
  CHECK(report.so_pin->size() >= 16);
  CHECK(m.root_key_gen == 1);
  CHECK(m.sealed_master.size() == 4 + 1 + 12 + 32 + 16);
  CHECK(m.softhsm_conf == (private_token_dir(fs::absolute(path)) / "softhsm2.conf").string());
  CHECK(std::string(std::getenv("SOFTHSM2_CONF")) == m.softhsm_conf);
  CHECK(m.token_label == v->token_info().label);
  CHECK(m.token_serial == v->token_info().serial);
  CHECK(v->token_info().initialized);
  CHECK(v->audit_key().size() == 32);
  CHECK(token_count(path) == 1);
  // The header on disk is the one in memory.
  const auto on_disk = store::read_meta(v->db());
  REQUIRE(on_disk.has_value());
  CHECK(on_disk->vault_id == m.vault_id);
  CHECK(on_disk->sealed_master == m.sealed_master);
}

TEST_CASE("the PIN and the master key do not appear in the vault file") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  Bytes audit_key;
  {
    auto v = create_vault(path);
    audit_key.assign(v->audit_key().begin(), v->audit_key().end());
  }
  const std::string file = kms::test::read_file(path);
  CHECK_FALSE(contains(file, kPin));
  CHECK_FALSE(contains(file, as_chars(audit_key)));
}

TEST_CASE("Vault::create refuses a path where a vault already exists") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  { auto v = create_vault(path); }
  const Error e = error_of([&] { (void)create_vault(path); });
  CHECK(e.code() == Code::refused);
  CHECK(token_count(path) == 1);
}

TEST_CASE("Vault::create does not change the mode of an existing parent directory") {
  TempDir dir;
  const fs::path shared = dir / "shared";
  fs::create_directory(shared);
  fs::permissions(shared, fs::perms(0755));
  { auto v = create_vault(shared / "vault.db"); }
  CHECK(mode_of(shared) == 0755);
}

TEST_CASE("Vault::open with the right PIN unseals the same keys") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  Bytes sealed, audit_key;
  std::string id;
  {
    auto v = create_vault(path);
    sealed = v->seal(kRef, bytes_of("secret value"));
    audit_key.assign(v->audit_key().begin(), v->audit_key().end());
    id = v->meta().vault_id;
  }
  auto v = Vault::open(path, pin_of(kPin));
  CHECK(v->meta().vault_id == id);
  CHECK(v->path() == path);
  CHECK(same(v->audit_key(), audit_key));
  CHECK(v->open_sealed(kRef, sealed).chars() == "secret value");
}

TEST_CASE("Vault::open with a wrong PIN is Code::unavailable naming CKR_PIN_INCORRECT") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  { auto v = create_vault(path); }
  const Error e = error_of([&] { (void)Vault::open(path, pin_of("wrong-pin-0000")); });
  CHECK(e.code() == Code::unavailable);
  CHECK(contains(e.what(), "CKR_PIN_INCORRECT"));
  CHECK_FALSE(contains(e.what(), "wrong-pin-0000"));
  CHECK(e.remedy() == Remedy::check_pin);
  CHECK_FALSE(e.hint().empty());
  // The right PIN still works afterwards.
  CHECK_NOTHROW((void)Vault::open(path, pin_of(kPin)));
}

TEST_CASE("Vault::open of a missing vault is Code::unavailable") {
  TempDir dir;
  CHECK(error_of([&] { (void)Vault::open(dir / "none.db", pin_of(kPin)); }).code() ==
        Code::unavailable);
}

TEST_CASE("Vault::open without the vault's private token directory is Code::unavailable") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  { auto v = create_vault(path); }
  fs::rename(private_token_dir(path), dir / "moved.token");
  const Error e = error_of([&] { (void)Vault::open(path, pin_of(kPin)); });
  CHECK(e.code() == Code::unavailable);
  CHECK(contains(e.hint(), "vault.db.token"));
}

TEST_CASE("Vault::open of a vault whose sealed master key was altered is Code::integrity") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  { auto v = create_vault(path); }
  {
    store::Db db(path, store::Db::Mode::open_existing);
    kms::test::with_row_keys(db);
    store::VaultMeta m = *store::read_meta(db);
    m.sealed_master[30] ^= 0x01;
    store::update_root_key(db, m.root_key_gen, m.sealed_master);
  }
  const Error e = error_of([&] { (void)Vault::open(path, pin_of(kPin)); });
  CAPTURE(std::string(e.what()));
  CHECK(e.code() == Code::integrity);
}

// ---------------------------------------------------------------------------------------------
// Sealed records
// ---------------------------------------------------------------------------------------------

TEST_CASE("seal and open_sealed round-trip values of any size") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  for (size_t n : {size_t{0}, size_t{1}, size_t{32}, size_t{1000}, size_t{1} << 20}) {
    CAPTURE(n);
    const Bytes value = crypto::random_bytes(n);
    const Bytes blob = v->seal(kRef, value);
    CHECK(blob.size() == 4 + 1 + 12 + n + 16);
    CHECK(as_chars(ByteView(blob).first(4)) == kSealedMagic);
    CHECK(blob[4] == kSealedVersion);
    CHECK(same(v->open_sealed(kRef, blob).view(), value));
  }
  // A fresh nonce each time: the same value seals differently.
  CHECK(v->seal(kRef, bytes_of("x")) != v->seal(kRef, bytes_of("x")));
}

TEST_CASE("open_sealed in a different table, row or version is Code::integrity") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  const Bytes blob = v->seal(kRef, bytes_of("key material"));
  for (const RecordRef& other :
       {RecordRef{"secrets", kRef.row_id, kRef.version},
        RecordRef{kRef.table, "key-0002", kRef.version},
        RecordRef{kRef.table, kRef.row_id, kRef.version + 1}, RecordRef{kRef.table, kRef.row_id, 0},
        RecordRef{"", kRef.row_id, kRef.version},
        // Bytes moved between the length-prefixed fields do not collide.
        RecordRef{"keyskey-0001", "", kRef.version}, RecordRef{"key", "skey-0001", kRef.version}}) {
    CAPTURE(other.table);
    CAPTURE(other.row_id);
    CAPTURE(other.version);
    const Error e = error_of([&] { (void)v->open_sealed(other, blob); });
    CHECK(e.code() == Code::integrity);
    CHECK_FALSE(contains(e.what(), "key material"));
  }
}

TEST_CASE("open_sealed rejects any flipped byte, truncation or extension with Code::integrity") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  const Bytes blob = v->seal(kRef, bytes_of("0123456789abcdef"));
  for (size_t i = 0; i < blob.size(); ++i) {
    for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}}) {
      Bytes bad = blob;
      bad[i] ^= mask;
      CAPTURE(i);
      CHECK(error_of([&] { (void)v->open_sealed(kRef, bad); }).code() == Code::integrity);
    }
  }
  for (size_t n = 0; n < blob.size(); ++n) {
    CAPTURE(n);
    CHECK(error_of([&] { (void)v->open_sealed(kRef, ByteView(blob).first(n)); }).code() ==
          Code::integrity);
  }
  Bytes longer = blob;
  longer.push_back(0);
  CHECK(error_of([&] { (void)v->open_sealed(kRef, longer); }).code() == Code::integrity);
}

TEST_CASE("a blob sealed by one vault does not open in another") {
  TempDir dir;
  Bytes blob;
  { blob = create_vault(dir / "a.db")->seal(kRef, bytes_of("belongs to a")); }
  auto b = create_vault(dir / "b.db");
  CHECK(error_of([&] { (void)b->open_sealed(kRef, blob); }).code() == Code::integrity);
}

TEST_CASE("open_record opens the FORMAT.md §10.6 sealed record only in its place") {
  const auto k_record =
      crypto::from_hex("d939199739af2e273709520c9897b434568d6347983ef82cf687ad09f5853f7d");
  const auto blob = crypto::from_hex(
      "4b4d5352"
      "01"
      "000102030405060708090a0b"
      "0eccbd2aef55"
      "b85658444d201d3e50b14c6b6ef4c401");
  REQUIRE(k_record.has_value());
  REQUIRE(blob.has_value());
  const std::string vault_id = "8d5a6c1e-3f2b-4a7d-9e01-23456789abcd";
  const RecordRef where{"key_versions", "k-1", 1};
  const auto opened = open_record(*k_record, vault_id, where, *blob);
  REQUIRE(opened.has_value());
  CHECK(opened->chars() == "secret");
  CHECK_FALSE(open_record(*k_record, vault_id, {"key_versions", "k-2", 1}, *blob).has_value());
  CHECK_FALSE(open_record(*k_record, vault_id, {"key_versions", "k-1", 2}, *blob).has_value());
  CHECK_FALSE(open_record(*k_record, vault_id, {"secrets", "k-1", 1}, *blob).has_value());
  CHECK_FALSE(
      open_record(*k_record, "8d5a6c1e-3f2b-4a7d-9e01-23456789abce", where, *blob).has_value());
}

TEST_CASE("seal_record writes magic, version, a fresh nonce and AES-GCM under the spec's AAD") {
  const Bytes key = crypto::random_bytes(32);
  const RecordRef where{"key_versions", "k-1", -7};
  const Bytes blob = seal_record(key, "vault-id", where, bytes_of("payload"));
  REQUIRE(blob.size() == 33 + 7);
  CHECK(as_chars(ByteView(blob).first(4)) == "KMSR");
  CHECK(blob[4] == 1);
  // An independent AAD: "KMSR" || 1 || lp(vault id) || lp(table) || lp(row id) || u64be(version).
  const auto aad = crypto::from_hex(
      "4b4d535201"
      "00000008" +
      crypto::to_hex(bytes_of("vault-id")) + "0000000c" + crypto::to_hex(bytes_of("key_versions")) +
      "00000003" + crypto::to_hex(bytes_of("k-1")) + "fffffffffffffff9");
  REQUIRE(aad.has_value());
  const auto plain =
      crypto::aes_gcm_open(key, ByteView(blob).subspan(5, 12), *aad, ByteView(blob).subspan(17));
  REQUIRE(plain.has_value());
  CHECK(plain->chars() == "payload");
  CHECK(seal_record(key, "vault-id", where, bytes_of("payload")) != blob);
}

TEST_CASE("the root key in the token is sensitive: its value cannot be read") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  const auto keys = v->token().find_keys(std::string(kRootKeyLabelPrefix) + v->meta().vault_id);
  REQUIRE(keys.size() == 1);
  CHECK_THROWS_AS((void)v->token().get_value(keys[0]), kms::Error);
  CHECK(v->token().get_id(keys[0]) == Bytes{0, 0, 0, 0, 0, 0, 0, 1});
}

// ---------------------------------------------------------------------------------------------
// hsm::Session on the vault's logged-in SoftHSM2 token
// ---------------------------------------------------------------------------------------------

namespace {

// `n` bytes that differ from position to position (a cut or shifted read cannot match).
Bytes pattern(size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((i * 131 + seed) & 0xff);
  return b;
}

}  // namespace

TEST_CASE("Session::read_data returns the CKA_VALUE and CKA_LABEL of a data object") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  hsm::Session& t = v->token();
  const hsm::ObjectHandle a = t.create_data("unit-data-a", bytes_of("value of a"));
  const hsm::ObjectHandle b = t.create_data("unit-data-b, another label", bytes_of("b"));
  const hsm::DataObject da = t.read_data(a);
  CHECK(da.value == bytes_of("value of a"));
  CHECK(da.label == "unit-data-a");
  const hsm::DataObject db = t.read_data(b);
  CHECK(db.value == bytes_of("b"));
  CHECK(db.label == "unit-data-b, another label");
  // The same as the one-attribute reads.
  CHECK(t.get_value(a) == da.value);
  CHECK(t.get_label(a) == da.label);
  // A label changed afterwards is what the next read returns.
  t.set_label(a, "unit-data-a renamed");
  CHECK(t.read_data(a).label == "unit-data-a renamed");
  CHECK(t.read_data(a).value == bytes_of("value of a"));
}

TEST_CASE("data objects larger than get_attrs' first guess read back exactly (sizes asked again)") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  hsm::Session& t = v->token();
  // Around the 512-byte first guess, and well beyond it.
  for (const size_t n : {size_t{1}, size_t{511}, size_t{512}, size_t{513}, size_t{2000}}) {
    CAPTURE(n);
    const Bytes value = pattern(n, static_cast<std::uint8_t>(n));
    const std::string label = "unit-big-" + std::to_string(n);
    const hsm::ObjectHandle h = t.create_data(label, value);
    CHECK(t.get_value(h) == value);
    const hsm::DataObject d = t.read_data(h);
    CHECK(d.value == value);
    CHECK(d.label == label);
  }
  // A long label beside a long value: both attributes need the second round.
  const std::string long_label(700, 'L');
  const Bytes value = pattern(2000, 7);
  const hsm::ObjectHandle h = t.create_data(long_label, value);
  const hsm::DataObject d = t.read_data(h);
  CHECK(d.value == value);
  CHECK(d.label == long_label);
  CHECK(t.get_label(h) == long_label);
  // A long label beside a short value.
  const hsm::ObjectHandle s = t.create_data(long_label + "-short", bytes_of("short"));
  CHECK(t.read_data(s).value == bytes_of("short"));
  CHECK(t.read_data(s).label == long_label + "-short");
}

TEST_CASE("Session::find_keys(label, id) returns only the key whose CKA_ID matches") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  hsm::Session& t = v->token();
  const Bytes id1{0, 0, 0, 0, 0, 0, 0, 1}, id2{0, 0, 0, 0, 0, 0, 0, 2};
  const hsm::ObjectHandle k1 = t.generate_aes256("unit-same-label", id1);
  const hsm::ObjectHandle k2 = t.generate_aes256("unit-same-label", id2);
  REQUIRE(k1 != k2);
  CHECK(t.find_keys("unit-same-label").size() == 2);
  CHECK(t.find_keys("unit-same-label", id1) == std::vector<hsm::ObjectHandle>{k1});
  CHECK(t.find_keys("unit-same-label", id2) == std::vector<hsm::ObjectHandle>{k2});
  CHECK(t.get_id(t.find_keys("unit-same-label", id2).at(0)) == id2);
  // An id no key has, a prefix of one, and the right id under another label: nothing.
  CHECK(t.find_keys("unit-same-label", Bytes{0, 0, 0, 0, 0, 0, 0, 3}).empty());
  CHECK(t.find_keys("unit-same-label", Bytes{0, 0, 0, 0, 0, 0, 0}).empty());
  CHECK(t.find_keys("unit-other-label", id1).empty());
  // The vault's own root key is found by its label and generation id, and only by that.
  const std::string root = std::string(kRootKeyLabelPrefix) + v->meta().vault_id;
  CHECK(t.find_keys(root, id1).size() == 1);
  CHECK(t.find_keys(root, id2).empty());
}

TEST_CASE("Vault::open finds the root key by its generation's CKA_ID, not by its label alone") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  const Bytes gen2{0, 0, 0, 0, 0, 0, 0, 2};
  Bytes blob;
  {
    auto v = create_vault(path);
    blob = v->seal(kRef, bytes_of("opens with generation 1"));
    // A stray key of another generation under the root label (an interrupted rekey).
    (void)v->token().generate_aes256(std::string(kRootKeyLabelPrefix) + v->meta().vault_id, gen2);
  }
  {
    auto v = Vault::open(path, pin_of(kPin));
    CHECK(v->open_sealed(kRef, blob).chars() == "opens with generation 1");
    // Without the generation-1 key, the stray does not count as the vault's root key.
    const std::string root = std::string(kRootKeyLabelPrefix) + v->meta().vault_id;
    for (const hsm::ObjectHandle h : v->token().find_keys(root, Bytes{0, 0, 0, 0, 0, 0, 0, 1})) {
      v->token().destroy(h);
    }
    REQUIRE(v->token().find_keys(root).size() == 1);
  }
  const Error e = error_of([&] { (void)Vault::open(path, pin_of(kPin)); });
  CHECK(e.code() == Code::unavailable);
  CHECK(contains(e.what(), "holds no root key"));
  CHECK(contains(e.what(), "generation 1"));
}

// ---------------------------------------------------------------------------------------------
// Rekey and anchor
// ---------------------------------------------------------------------------------------------

TEST_CASE("prepare_rekey and finish_rekey move to a new root key and old blobs still open") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  Bytes blob, sealed_before;
  {
    auto v = create_vault(path);
    blob = v->seal(kRef, bytes_of("survives rekey"));
    sealed_before = v->meta().sealed_master;
    store::Tx tx(v->db(), store::Tx::Kind::write);
    CHECK(v->prepare_rekey() == 2);
    tx.commit();
    v->finish_rekey();
    CHECK(v->meta().root_key_gen == 2);
    CHECK(v->open_sealed(kRef, blob).chars() == "survives rekey");
  }
  auto v = Vault::open(path, pin_of(kPin));
  CHECK(v->meta().root_key_gen == 2);
  CHECK(v->meta().sealed_master != sealed_before);
  CHECK(v->open_sealed(kRef, blob).chars() == "survives rekey");
  // A second rekey works on the reopened vault too.
  {
    store::Tx tx(v->db(), store::Tx::Kind::write);
    CHECK(v->prepare_rekey() == 3);
    tx.commit();
    v->finish_rekey();
  }
  v.reset();
  CHECK(Vault::open(path, pin_of(kPin))->meta().root_key_gen == 3);
}

TEST_CASE("the old sealed master key no longer opens after finish_rekey destroyed the old root") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  Bytes old_header;
  {
    auto v = create_vault(path);
    old_header = v->meta().sealed_master;
    store::Tx tx(v->db(), store::Tx::Kind::write);
    (void)v->prepare_rekey();
    tx.commit();
    v->finish_rekey();
  }
  // Put the generation-1 header back: its root key is gone from the token.
  {
    store::Db db(path, store::Db::Mode::open_existing);
    kms::test::with_row_keys(db);
    store::update_root_key(db, 1, old_header);
  }
  CHECK(error_of([&] { (void)Vault::open(path, pin_of(kPin)); }).code() == Code::unavailable);
}

TEST_CASE("abort_rekey after a rolled-back transaction keeps the old root key working") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  Bytes blob;
  {
    auto v = create_vault(path);
    blob = v->seal(kRef, bytes_of("still here"));
    {
      store::Tx tx(v->db(), store::Tx::Kind::write);
      CHECK(v->prepare_rekey() == 2);
    }  // rolled back
    v->abort_rekey();
    CHECK(v->meta().root_key_gen == 1);
    CHECK(store::read_meta(v->db())->root_key_gen == 1);
  }
  auto v = Vault::open(path, pin_of(kPin));
  CHECK(v->meta().root_key_gen == 1);
  CHECK(v->open_sealed(kRef, blob).chars() == "still here");
}

namespace {

// Test anchor values: the seq is the first byte ("1 ...", "2 ...").
std::int64_t test_seq(ByteView v) { return v.empty() ? -1 : v[0] - '0'; }

// A new vault whose two anchor slots hold "1 one" and "2 two".
std::unique_ptr<Vault> vault_with_both_slots(const fs::path& path) {
  auto v = create_vault(path);
  v->store_anchor(bytes_of("1 one"), test_seq);
  v->store_anchor(bytes_of("2 two"), test_seq);
  return v;
}

// The newest of a slot's values, by test_seq.
Bytes newest(const std::vector<Bytes>& values) {
  Bytes best;
  for (const Bytes& v : values) {
    if (test_seq(v) > test_seq(best)) best = v;
  }
  return best;
}

bool same_pair(const Bytes& x, const Bytes& y, const Bytes& a, const Bytes& b) {
  return (x == a && y == b) || (x == b && y == a);
}

}  // namespace

TEST_CASE("store_anchor makes two slots, then overwrites the one holding the older value") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  {
    auto v = create_vault(path);
    CHECK(v->load_anchor().empty());
    v->store_anchor(bytes_of("1 anchor one"), test_seq);
    auto slots = v->anchor_slots();
    REQUIRE(slots.size() == 2);
    for (const auto& slot : slots) {
      CHECK_FALSE(slot.legacy);
      CHECK(newest(slot.values) == bytes_of("1 anchor one"));
    }
    v->store_anchor(bytes_of("2 anchor two, longer"), test_seq);
    v->store_anchor(bytes_of("3 anchor three"), test_seq);
    slots = v->anchor_slots();
    REQUIRE(slots.size() == 2);
    // One slot holds the newest value, the other the one before: never both overwritten.
    CHECK(same_pair(newest(slots[0].values), newest(slots[1].values),
                    bytes_of("2 anchor two, longer"), bytes_of("3 anchor three")));
    v->store_anchor(bytes_of("4 anchor four"), test_seq);
    slots = v->anchor_slots();
    CHECK(same_pair(newest(slots[0].values), newest(slots[1].values), bytes_of("3 anchor three"),
                    bytes_of("4 anchor four")));
  }
  auto v = Vault::open(path, pin_of(kPin));
  CHECK(newest(v->load_anchor()) == bytes_of("4 anchor four"));
  CHECK(v->anchor_slots().size() == 2);
}

TEST_CASE("kept anchor slot handles: a slot another process replaced is searched for again") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  auto v = create_vault(path);
  v->store_anchor(bytes_of("1 anchor one"), test_seq);
  CHECK(newest(v->load_anchor()) == bytes_of("1 anchor one"));  // both slots found and kept
  v->store_anchor(bytes_of("2 anchor two"), test_seq);
  {
    // Another process writes through its own session: the kept handles read its value.
    auto other = Vault::open(path, pin_of(kPin));
    other->store_anchor(bytes_of("3 anchor three"), test_seq);
    CHECK(newest(v->load_anchor()) == bytes_of("3 anchor three"));
    // It destroys both slots and makes new ones: the kept handles are gone, found again.
    const std::string app = "kmsctl-audit-anchor:" + other->meta().vault_id;
    for (hsm::ObjectHandle h : other->token().find_data_by_application(app)) {
      other->token().destroy(h);
    }
    other->reset_anchor(bytes_of("4 anchor four"));
  }
  CHECK(newest(v->load_anchor()) == bytes_of("4 anchor four"));
  v->store_anchor(bytes_of("5 anchor five"), test_seq);
  const auto slots = v->anchor_slots();
  REQUIRE(slots.size() == 2);
  CHECK(same_pair(newest(slots[0].values), newest(slots[1].values), bytes_of("4 anchor four"),
                  bytes_of("5 anchor five")));
}

TEST_CASE("anchor slots carry the FORMAT.md §4.2 attributes and the §10.4 label") {
  TempDir dir;
  auto v = create_vault(dir / "vault.db");
  const Bytes value = *crypto::from_hex(
      "4b414e43010000000000000002"
      "2cfee7360447ad4f93ba191f9c89261a4f7395013c339ba54c040dee899441f0"
      "2b693078bdc55b26dd860c0016d5750476a4b5435f6af98624183178fc3bda09");
  v->store_anchor(value, audit::anchor_seq);
  const auto slots =
      v->token().find_data_by_application("kmsctl-audit-anchor:" + v->meta().vault_id);
  REQUIRE(slots.size() == 2);
  for (const hsm::ObjectHandle h : slots) {
    CHECK(v->token().get_label(h) ==
          "kmsctl-audit-anchor-value:S0FOQwEAAAAAAAAAAiz+"
          "5zYER61Pk7oZH5yJJhpPc5UBPDObpUwEDe6JlEHwK2kweL3F"
          "WybdhgwAFtV1BHaktUNfavmGJBgxePw72gk=");
    CHECK(v->token().get_value(h) == value);
  }
  CHECK(audit::anchor_seq(value) == 2);
}

TEST_CASE("a single-object anchor of an older vault is read, then converted into two slots") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  auto v = create_vault(path);
  // What kmsctl wrote before the slots: one object labelled with the vault id.
  const hsm::ObjectHandle old = v->token().create_data(
      std::string(kLegacyAnchorLabelPrefix) + v->meta().vault_id, bytes_of("1 legacy"));
  auto slots = v->anchor_slots();
  REQUIRE(slots.size() == 1);
  CHECK(slots[0].legacy);
  CHECK(v->load_anchor() == std::vector<Bytes>{bytes_of("1 legacy")});
  v->store_anchor(bytes_of("2 converted"), test_seq);
  slots = v->anchor_slots();
  REQUIRE(slots.size() == 2);
  for (const auto& slot : slots) {
    CHECK_FALSE(slot.legacy);
    CHECK(slot.handle != old);
  }
  for (const Bytes& value : v->load_anchor()) CHECK(value == bytes_of("2 converted"));
}

TEST_CASE("a slot that is missing is made again by the next store_anchor") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  auto v = vault_with_both_slots(path);
  auto slots = v->anchor_slots();
  REQUIRE(slots.size() == 2);
  v->token().destroy(slots[0].handle);
  v->store_anchor(bytes_of("3 three"), test_seq);
  slots = v->anchor_slots();
  REQUIRE(slots.size() == 2);
}

namespace {

// The value with the highest test_seq.
Bytes newest_value(const std::vector<Bytes>& values) {
  Bytes best;
  for (const Bytes& v : values) {
    if (test_seq(v) > test_seq(best)) best = v;
  }
  return best;
}

bool has_value(const std::vector<Bytes>& values, const Bytes& v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

}  // namespace

TEST_CASE(
    "after load_anchor, two store_anchor calls leave the two newest values in the two slots") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  {
    auto v = vault_with_both_slots(path);
    CHECK(newest_value(v->load_anchor()) == bytes_of("2 two"));
    // The first store uses the slots load_anchor found; the second must look at the token again
    // (the cached slots no longer say which one holds the older value).
    v->store_anchor(bytes_of("3 three"), test_seq);
    v->store_anchor(bytes_of("4 four"), test_seq);
    auto slots = v->anchor_slots();
    REQUIRE(slots.size() == 2);
    CHECK(same_pair(newest_value(slots[0].values), newest_value(slots[1].values),
                    bytes_of("3 three"), bytes_of("4 four")));
    // And once more after a load: still the newest two, still two slots.
    CHECK(newest_value(v->load_anchor()) == bytes_of("4 four"));
    v->store_anchor(bytes_of("5 five"), test_seq);
    v->store_anchor(bytes_of("6 six"), test_seq);
    v->store_anchor(bytes_of("7 seven"), test_seq);
    slots = v->anchor_slots();
    REQUIRE(slots.size() == 2);
    CHECK(same_pair(newest_value(slots[0].values), newest_value(slots[1].values), bytes_of("6 six"),
                    bytes_of("7 seven")));
  }
  auto v = Vault::open(path, pin_of(kPin));
  const auto values = v->load_anchor();
  CHECK(newest_value(values) == bytes_of("7 seven"));
  CHECK(has_value(values, bytes_of("6 six")));
  CHECK(v->anchor_slots().size() == 2);
}

TEST_CASE("a single-object anchor found beside both slots is ignored (an interrupted conversion)") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  auto v = vault_with_both_slots(path);
  REQUIRE(v->anchor_slots().size() == 2);
  // An older kmsctl's object under the vault id, left after both slots were made. Its value
  // sorts newest, so reading it would show.
  const Bytes legacy = bytes_of("9 single object");
  (void)v->token().create_data(std::string(kLegacyAnchorLabelPrefix) + v->meta().vault_id, legacy);
  auto values = v->load_anchor();
  CHECK_FALSE(has_value(values, legacy));
  CHECK(newest_value(values) == bytes_of("2 two"));
  auto slots = v->anchor_slots();
  REQUIRE(slots.size() == 2);
  for (const auto& slot : slots) {
    CHECK_FALSE(slot.legacy);
    CHECK_FALSE(has_value(slot.values, legacy));
  }
  // Publishing goes on in the two slots.
  v->store_anchor(bytes_of("3 three"), test_seq);
  values = v->load_anchor();
  CHECK_FALSE(has_value(values, legacy));
  CHECK(newest_value(values) == bytes_of("3 three"));
  CHECK(has_value(values, bytes_of("2 two")));
  CHECK(v->anchor_slots().size() == 2);
}

// ---------------------------------------------------------------------------------------------
// Several vaults in one process
// ---------------------------------------------------------------------------------------------

TEST_CASE("two vaults created one after the other each get their own token and reopen") {
  TempDir dir;
  { auto a = create_vault(dir / "a.db"); }
  { auto b = create_vault(dir / "b.db"); }
  CHECK(token_count(dir / "a.db") == 1);
  CHECK(token_count(dir / "b.db") == 1);
  CHECK_NOTHROW((void)Vault::open(dir / "a.db", pin_of(kPin)));
  CHECK_NOTHROW((void)Vault::open(dir / "b.db", pin_of(kPin)));
}

TEST_CASE("a second private-token vault cannot be created while the first is open") {
  // SoftHSM2 reads its configuration once per process: a second private token (another
  // SOFTHSM2_CONF) in the same process is refused rather than silently put in the first one.
  TempDir dir;
  auto a = create_vault(dir / "a.db");
  CHECK_THROWS_AS((void)create_vault(dir / "b.db"), kms::Error);
  CHECK(token_count(dir / "a.db") == 1);
}

TEST_CASE("closing one of two open handles of a vault leaves the other usable") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  { auto v = create_vault(path); }
  auto first = Vault::open(path, pin_of(kPin));
  {
    auto second = Vault::open(path, pin_of(kPin));
    second->store_anchor(bytes_of("from second"), test_seq);
  }  // its hsm::Module is destroyed here
  std::vector<Bytes> values;
  CHECK_NOTHROW(values = first->load_anchor());
  CHECK(values == std::vector<Bytes>(4, bytes_of("from second")));  // 2 slots x value + label
}

TEST_CASE("a failed token lookup for one vault leaves another open vault of the module usable") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  { auto v = create_vault(path); }
  auto first = Vault::open(path, pin_of(kPin));
  first->store_anchor(bytes_of("kept"), test_seq);
  // A copy of the vault whose header names a token that is not there (same private token
  // configuration, so the same shared PKCS#11 library).
  first->db().backup_to(dir / "copy.db");
  {
    store::Db copy(dir / "copy.db", store::Db::Mode::open_existing);
    kms::test::with_row_keys(copy);
    copy.exec("UPDATE vault_meta SET token_serial = '0000000000000000'");
  }
  CHECK(error_of([&] { (void)Vault::open(dir / "copy.db", pin_of(kPin)); }).code() ==
        Code::unavailable);
  std::vector<Bytes> values;
  CHECK_NOTHROW(values = first->load_anchor());
  CHECK(values == std::vector<Bytes>(4, bytes_of("kept")));
}

// ---------------------------------------------------------------------------------------------
// Service: authorise -> do -> audit, in one transaction
// ---------------------------------------------------------------------------------------------

namespace {

// The newest anchor value's seq (both slots hold well-formed values).
std::int64_t anchor_seq(Vault& v) {
  const auto values = v.load_anchor();
  REQUIRE(values.size() >= 2);
  std::int64_t seq = -1;
  for (const Bytes& value : values) {
    REQUIRE(value.size() == 77);
    seq = std::max(seq, audit::anchor_seq(value));
  }
  return seq;
}

}  // namespace

TEST_CASE("Service::init writes one vault.init record and anchors it") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].action == "vault.init");
  CHECK(rows[0].resource == "vault/" + s->vault().meta().vault_id);
  CHECK(rows[0].outcome == "ok");
  CHECK(anchor_seq(s->vault()) == 1);
  const audit::VerifyReport rep = s->audit().verify();
  CHECK(rep.ok);
  CHECK(rep.records == 1);
}

TEST_CASE("Service opens a vault anchored by one object (older kmsctl) and converts it to slots") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  {
    auto s = init_service(path);
    s->runner().run({Action::vault_status, "vault/x", {}}, [](audit::Event&) {});
    // Make the anchor what an older kmsctl left: one object labelled with the vault id.
    Vault& v = s->vault();
    Bytes head;
    for (const Bytes& value : v.load_anchor()) {
      if (audit::anchor_seq(value) > audit::anchor_seq(head)) head = value;
    }
    for (const auto& slot : v.anchor_slots()) v.token().destroy(slot.handle);
    (void)v.token().create_data(std::string(kLegacyAnchorLabelPrefix) + v.meta().vault_id, head);
    REQUIRE(v.anchor_slots().size() == 1);
  }
  auto s = Service::open(path, pin_of(kPin));
  CHECK(s->audit().verify().ok);  // read from the old object, then recorded and converted
  const auto slots = s->vault().anchor_slots();
  REQUIRE(slots.size() == 2);
  for (const auto& slot : slots) CHECK_FALSE(slot.legacy);
  CHECK(anchor_seq(s->vault()) == 3);
  CHECK(s->audit().verify().ok);
}

TEST_CASE("Runner::run writes exactly one audit record per call and moves the anchor") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  for (int i = 1; i <= 5; ++i) {
    const std::int64_t before = store::audit_count(s->vault().db());
    bool committed = false, rolled_back = false;
    s->runner().run({Action::vault_status, "key/k" + std::to_string(i), {{"given", i}}},
                    [&](audit::Event& ev) { ev.params["added_by_op"] = true; },
                    {[&] { committed = true; }, [&] { rolled_back = true; }});
    CHECK(store::audit_count(s->vault().db()) == before + 1);
    CHECK(committed);
    CHECK_FALSE(rolled_back);
    const store::AuditRow last = audit_rows(s->vault()).back();
    CHECK(last.action == "vault.status");
    CHECK(last.resource == "key/k" + std::to_string(i));
    CHECK(last.outcome == "ok");
    CHECK(last.error_code == "");
    CHECK(kms::test::params_of(last) == nlohmann::json{{"added_by_op", true}, {"given", i}});
    CHECK(anchor_seq(s->vault()) == last.seq);
  }
  CHECK(s->audit().verify().ok);
}

TEST_CASE("a refused op leaves no change and writes one denied record") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  Vault& v = s->vault();
  const std::int64_t before = store::audit_count(v.db());
  bool committed = false, rolled_back = false;
  const Error e = error_of([&] {
    s->runner().run({Action::key_disable, "key/k1", {}},
                    [&](audit::Event&) {
                      store::update_root_key(v.db(), 99, bytes_of("not a sealed key"));
                      throw Error(Code::refused, "key k1 is pending deletion");
                    },
                    {[&] { committed = true; }, [&] { rolled_back = true; }});
  });
  CHECK(e.code() == Code::refused);
  CHECK(std::string(e.what()) == "key k1 is pending deletion");
  CHECK(rolled_back);
  CHECK_FALSE(committed);
  CHECK(store::read_meta(v.db())->root_key_gen == 1);  // the change was rolled back
  CHECK(store::read_meta(v.db())->sealed_master == v.meta().sealed_master);
  const auto rows = audit_rows(v);
  REQUIRE(rows.size() == size_t(before + 1));
  CHECK(rows.back().action == "key.disable");
  CHECK(rows.back().resource == "key/k1");
  CHECK(rows.back().outcome == "denied");
  CHECK(rows.back().error_code == "refused");
  CHECK(anchor_seq(v) == rows.back().seq);
  CHECK(s->audit().verify().ok);
}

TEST_CASE(
    "a failing op writes one error record with its code, and non-kms errors count as failed") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  Vault& v = s->vault();
  CHECK(error_of([&] {
          s->runner().run({Action::key_enable, "key/k", {}},
                          [](audit::Event&) { throw Error(Code::integrity, "tampered"); });
        }).code() == Code::integrity);
  CHECK(audit_rows(v).back().outcome == "error");
  CHECK(audit_rows(v).back().error_code == "integrity");
  CHECK_THROWS_AS(s->runner().run({Action::key_disable, "key/k", {}},
                                  [](audit::Event&) { throw std::runtime_error("boom"); }),
                  std::runtime_error);
  CHECK(audit_rows(v).back().action == "key.disable");
  CHECK(audit_rows(v).back().outcome == "error");
  CHECK(audit_rows(v).back().error_code == "failed");
  CHECK(store::audit_count(v.db()) == 3);
  CHECK(s->audit().verify().ok);
}

TEST_CASE("Service::open reopens the vault and continues its chain") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  { auto s = init_service(path); }
  auto s = Service::open(path, pin_of(kPin));
  s->runner().run({Action::vault_status, "vault/x", {}}, [](audit::Event&) {});
  CHECK(store::audit_count(s->vault().db()) == 2);
  const audit::VerifyReport rep = s->audit().verify();
  CHECK(rep.ok);
  CHECK(rep.records == 2);
  CHECK(store::audit_count(s->vault().db()) == 3);  // the verification is recorded
}

TEST_CASE("Service refuses to run on a vault file rolled back behind its token anchor") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  {
    auto s = init_service(path);
    s->vault().db().backup_to(dir / "old.db");
    s->runner().run({Action::vault_status, "vault/x", {}}, [](audit::Event&) {});
  }
  // The attacker puts the old file back and removes the WAL that would replay the newer state.
  fs::copy_file(dir / "old.db", path, fs::copy_options::overwrite_existing);
  fs::remove(path.string() + "-wal");
  fs::remove(path.string() + "-shm");
  auto s = Service::open(path, pin_of(kPin));
  bool ran = false;
  const Error e = error_of([&] {
    s->runner().run({Action::vault_status, "vault/x", {}}, [&](audit::Event&) { ran = true; });
  });
  CHECK(e.code() == Code::integrity);
  CHECK_FALSE(ran);
  CHECK(store::audit_count(s->vault().db()) == 1);
  CHECK_FALSE(s->audit().verify().ok);
}

TEST_CASE("serve_client names the client and its channel in every record, a failure's included") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  // The caller's own process: no channel parameter (direct).
  CHECK_FALSE(nlohmann::json::parse(audit_rows(s->vault()).back().params).contains("channel"));
  Caller client = Caller::current();  // the owner, through an agent
  client.user = "alice";
  client.pid = 8;
  client.channel = Channel::agent;
  s->serve_client(client);
  s->runner().run({Action::vault_status, "vault/x", {{"given", 1}}}, [](audit::Event&) {});
  CHECK_THROWS(s->runner().run({Action::key_describe, "vault/x", {}},
                               [](audit::Event&) { throw Error(Code::refused, "no"); }));
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() == 3);
  for (const auto* r : {&rows[1], &rows[2]}) {
    CHECK(r->principal == "alice");
    CHECK(r->uid == client.uid);
    const auto p = nlohmann::json::parse(r->params);
    CHECK(p["channel"] == "agent");
    CHECK(p["agent"] == nlohmann::json{{"pid", ::getpid()}, {"client_pid", 8}});
  }
  CHECK(rows[2].outcome == "denied");
  CHECK(s->audit().verify().ok);
}

TEST_CASE(
    "a caller who is not the vault's owner is refused before the operation runs, and audited") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  Caller stranger = Caller::current();
  stranger.uid += 4242;
  stranger.user = "mallory";
  stranger.channel = Channel::agent;
  s->serve_client(stranger);
  bool ran = false;
  const Error e = error_of([&] {
    s->runner().run({Action::secret_get, "secret/app/db", {{"name", "app/db"}}},
                    [&](audit::Event&) { ran = true; });
  });
  CHECK_FALSE(ran);
  CHECK(e.code() == Code::refused);
  CHECK(std::string(e.what()).find("mallory") != std::string::npos);
  CHECK(std::string(e.what()).find("secret.get secret/app/db") != std::string::npos);
  // Every domain's operations go through the same runner.
  CHECK(error_of([&] { (void)s->keys().random(16); }).code() == Code::refused);
  CHECK(error_of([&] { (void)s->vault_ops().status(); }).code() == Code::refused);
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() == 4);
  for (const auto* r : {&rows[1], &rows[2], &rows[3]}) {
    CHECK(r->outcome == "denied");
    CHECK(r->error_code == "refused");
    CHECK(r->principal == "mallory");
    CHECK(r->uid == stranger.uid);
    CHECK(nlohmann::json::parse(r->params)["rule"] == "not-owner");
  }
  CHECK(rows[1].action == "secret.get");
  CHECK(rows[2].action == "random.generate");
  CHECK(rows[3].action == "vault.status");
  s->serve_client(Caller::current());
  CHECK(s->audit().verify().ok);
}

TEST_CASE(
    "a Service whose vault file was replaced or removed refuses to write and moves no anchor") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  init_service(path).reset();
  auto s = Service::open(path, pin_of(kPin));
  s->runner().run({Action::vault_status, "vault/x", {}}, [](audit::Event&) {});
  const std::int64_t records = store::audit_count(s->vault().db());
  const std::int64_t anchored = anchor_seq(s->vault());
  fs::rename(path, dir / "vault.db.aside");
  for (bool another_file : {false, true}) {
    if (another_file) kms::test::write_file(path, "not the vault that was opened");
    const Error e = error_of([&] {
      s->runner().run({Action::vault_status, "vault/x", {}}, [](audit::Event&) {});
    });
    CHECK(e.code() == Code::unavailable);
    CHECK(contains(e.what(), "was replaced or removed after this process opened it"));
    CHECK(e.remedy() == Remedy::reopen_vault);
    CHECK(e.hint() == "run the command again");
    CHECK(store::audit_count(s->vault().db()) == records);
    CHECK(anchor_seq(s->vault()) == anchored);
  }
  CHECK(kms::test::read_file(path) == "not the vault that was opened");
}

// ---------------------------------------------------------------------------------------------
// Errors: what to do next is a Remedy, never a command line
// ---------------------------------------------------------------------------------------------

namespace {

// True when the advice names a command, option or environment variable of the CLI. The token's
// own tools (pkcs11-tool) take options of their own; no failure below reaches them.
bool names_the_cli(std::string_view hint) {
  return contains(hint, "kmsctl") || contains(hint, "KMSCTL_") || contains(hint, "--") ||
         contains(hint, "-o ");
}

}  // namespace

TEST_CASE("library errors name their next step as a Remedy, and no hint names the CLI") {
  TempDir dir;
  const fs::path path = dir / "vault.db";
  const auto expect = [&](const Error& e, Remedy remedy, std::string_view subject = {}) {
    CAPTURE(e.what());
    CHECK(e.remedy() == remedy);
    CHECK(e.subject() == subject);
    CHECK_FALSE(names_the_cli(e.hint()));
  };
  expect(error_of([&] { (void)Service::open(path, pin_of(kPin)); }), Remedy::create_vault);
  init_service(path).reset();
  {
    const Error e = error_of([&] { (void)Service::open(path, pin_of("wrong-pin-0000")); });
    expect(e, Remedy::check_pin);
    CHECK(contains(e.hint(), "SoftHSM2 counts no wrong PINs"));
  }
  auto s = Service::open(path, pin_of(kPin));
  keys::CreateSpec spec;
  spec.alias = "alias/app";
  const std::string id = s->keys().create(spec).key.id;
  const Bytes blob = s->keys().encrypt(id, as_bytes("hello"), {{"app", "a"}});

  expect(error_of([&] { (void)s->keys().describe("no-such-key"); }), Remedy::list_keys);
  expect(error_of([&] { (void)s->keys().describe("alias/none"); }), Remedy::list_aliases);
  expect(error_of([&] { s->keys().alias_create("alias/app", id); }), Remedy::move_alias,
         "alias/app");
  expect(error_of([&] { s->keys().alias_update("alias/new", id); }), Remedy::create_alias,
         "alias/new");
  expect(error_of([&] { (void)s->keys().untag(id, {"none"}); }), Remedy::list_key_tags, id);
  keys::CreateSpec sm2;
  sm2.spec = KeySpec::ec_sm2;
  sm2.protection = Protection::hsm;
  expect(error_of([&] { (void)s->keys().create(sm2); }), Remedy::use_software_protection);
  keys::CreateSpec ec;
  ec.spec = KeySpec::ec_p256;
  const std::string ec_id = s->keys().create(ec).key.id;
  expect(error_of([&] { (void)s->keys().encrypt(ec_id, Bytes(3), {}); }),
         Remedy::use_key_for_operation, ec_id);
  expect(error_of([&] { (void)s->keys().sign(ec_id, SigningAlgorithm::ed25519, Bytes(3), false); }),
         Remedy::choose_algorithm, ec_id);
  expect(error_of([&] { (void)s->keys().encrypt(id, Bytes(keys::kMaxEncryptPlaintext + 1), {}); }),
         Remedy::encrypt_as_file);
  expect(error_of([&] { (void)s->keys().decrypt(as_bytes("not a blob"), {}); }),
         Remedy::pass_ciphertext);
  expect(error_of([&] {
           (void)s->keys().decrypt(blob, {{"app", "b"}});
         }),
         Remedy::pass_encryption_context);
  (void)s->keys().disable("alias/app");
  expect(error_of([&] { (void)s->keys().encrypt("alias/app", as_bytes("x"), {}); }),
         Remedy::enable_key, "alias/app");
  (void)s->keys().schedule_deletion(id, 7);
  {
    const Error e = error_of([&] { (void)s->keys().decrypt(blob, {{"app", "a"}}); });
    expect(e, Remedy::cancel_key_deletion, id);
    CHECK(e.hint() == "then enable it");
  }
  expect(error_of([&] { (void)s->keys().enable(id); }), Remedy::cancel_key_deletion_before_enable,
         id);
  expect(error_of([&] { (void)s->keys().disable(id); }), Remedy::cancel_key_deletion, id);
  expect(error_of([&] { (void)s->keys().schedule_deletion(id, 7); }),
         Remedy::cancel_existing_key_deletion, id);

  expect(error_of([&] { (void)s->secrets().get("app/none", std::nullopt, std::nullopt); }),
         Remedy::list_secrets);
  secrets::CreateSpec secret;
  secret.name = "app/db";
  (void)s->secrets().create(secret, {SecureBytes(as_bytes("v1")), {}});
  expect(error_of([&] {
           (void)s->secrets().create(secret, {SecureBytes(as_bytes("v")), {}});
         }),
         Remedy::put_secret_version, "app/db");
  expect(error_of([&] { (void)s->secrets().get("app/db", std::nullopt, 9); }),
         Remedy::list_secret_versions, "app/db");
  (void)s->secrets().remove("app/db", 7);
  expect(error_of([&] { (void)s->secrets().get("app/db", std::nullopt, std::nullopt); }),
         Remedy::restore_secret, "app/db");
  expect(error_of([&] { (void)s->secrets().remove("app/db", 7); }),
         Remedy::restore_or_purge_secret_now, "app/db");

  kms::test::write_file(dir / "exists", "kept");
  expect(error_of([&] { s->vault_ops().backup(dir / "exists", false); }), Remedy::overwrite_output);
  expect(error_of([&] { (void)s->audit().export_to(dir / "exists", false); }),
         Remedy::overwrite_output);
  s->set_authorizer([](const AccessRequest&) { return Decision{false, "test", "not you"}; });
  expect(error_of([&] { (void)s->vault_ops().status(); }), Remedy::act_as_owner);

  // Advice that needs no front end's words stays a hint, with no remedy.
  s->set_authorizer([](const AccessRequest&) { return Decision{true, "test", {}}; });
  (void)s->secrets().restore("app/db");
  {
    const Error e = error_of([&] { (void)s->secrets().restore("app/db"); });
    expect(e, Remedy::none);
    CHECK(e.hint() == "nothing to restore");
  }
}
