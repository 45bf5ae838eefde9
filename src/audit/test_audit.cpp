// Unit tests of kms::audit: the record encoding, the hash chain with per-record MACs, the anchor,
// and verify() against each attack of docs/ARCHITECTURE.md §4.5 by someone who can write the
// vault file but does not hold the vault's key.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"
#include <doctest/doctest.h>

#include "audit/log.hpp"
#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "store/store.hpp"

using namespace kms;
using kms::test::bytes_of;
using kms::test::error_of;
using kms::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kVaultId = "0b9d7c1e-4a2f-4c3d-8e5f-6a7b8c9d0e1f";

// The anchor kept in memory instead of a token.
class MemoryAnchor final : public audit::AnchorStore {
 public:
  std::vector<Bytes> load() override { return values; }
  void store(ByteView value) override { values = {Bytes(value.begin(), value.end())}; }
  void replace(ByteView value) override { store(value); }
  std::vector<Bytes> values;
};

std::string hex(ByteView b) { return crypto::to_hex(b); }

Caller alice() {
  Caller c;
  c.uid = 1000;
  c.user = "alice";
  return c;
}

// A vault database with an audit log of `n` records, appended and published one by one as the
// service does.
struct Fixture {
  TempDir dir;
  fs::path path = dir / "vault.db";
  std::unique_ptr<store::Db> db = std::make_unique<store::Db>(path, store::Db::Mode::create_new);
  SecureBytes key = crypto::random_secret(32);
  MemoryAnchor anchor;
  std::unique_ptr<audit::Log> log = make_log();
  Caller who = alice();
  TimePoint t0 = *parse_rfc3339("2026-11-28T09:00:00Z");
  std::int64_t appended = 0;

  std::unique_ptr<audit::Log> make_log() {
    kms::test::with_row_keys(*db);
    return std::make_unique<audit::Log>(*db, std::string(kVaultId), key.view(), anchor);
  }

  store::AuditRow append(std::string outcome = "ok", bool publish = true) {
    ++appended;
    audit::Event ev{Action::key_describe, "key/k" + std::to_string(appended), {{"n", appended}}};
    store::Tx tx(*db, store::Tx::Kind::write);
    const store::AuditRow r = log->append(ev, outcome, outcome == "ok" ? "" : "refused", who,
                                          t0 + std::chrono::seconds(appended));
    tx.commit();
    if (publish) log->publish(r);
    return r;
  }
  void append_n(int n) {
    for (int i = 0; i < n; ++i) append();
  }

  void reopen() {
    log.reset();
    db.reset();
    db = std::make_unique<store::Db>(path, store::Db::Mode::open_existing);
    log = make_log();
  }

  std::vector<store::AuditRow> rows() {
    std::vector<store::AuditRow> out;
    store::audit_scan(*db, [&](const store::AuditRow& r) { out.push_back(r); });
    return out;
  }

  void sql(const std::string& s) { db->exec(s.c_str()); }

  void set_blob(std::int64_t seq, const char* column, ByteView value) {
    store::Stmt s(*db,
                  (std::string("UPDATE audit_log SET ") + column + " = ? WHERE seq = ?").c_str());
    s.bind(1, value).bind(2, seq);
    s.step();
  }
};

void check_fails_at(const audit::VerifyReport& rep, std::int64_t seq) {
  CAPTURE(rep.problem);
  CHECK_FALSE(rep.ok);
  REQUIRE(rep.first_bad_seq.has_value());
  CHECK(*rep.first_bad_seq == seq);
  CHECK_FALSE(rep.problem.empty());
}

// Rewrites the chain from `from` on with the public rule (SHA-256 of prev_hash || encoding),
// as an attacker without the MAC key can; macs are left alone or replaced by `mac_for`.
void rechain_without_key(Fixture& f, std::int64_t from,
                         const std::function<Bytes(const store::AuditRow&)>& mac_for = {}) {
  std::vector<store::AuditRow> all = f.rows();
  Bytes prev;
  for (store::AuditRow& r : all) {
    if (r.seq < from) {
      prev = r.hash;
      continue;
    }
    r.prev_hash = prev;
    const crypto::Digest h = audit::chain_hash(r.prev_hash, audit::encode(r));
    r.hash.assign(h.begin(), h.end());
    prev = r.hash;
    f.set_blob(r.seq, "prev_hash", r.prev_hash);
    f.set_blob(r.seq, "hash", r.hash);
    if (mac_for) f.set_blob(r.seq, "mac", mac_for(r));
  }
}

store::AuditRow fixed_row() {
  store::AuditRow r;
  r.seq = 42;
  r.time = "2026-11-28T09:31:02.123Z";
  r.principal = "alice";
  r.uid = 1000;
  r.action = "key.create";
  r.resource = "key/1234";
  r.params = R"({"alias":"alias/app"})";
  r.outcome = "ok";
  r.error_code = "";
  r.prev_hash = Bytes(32, 0xaa);
  r.hash = Bytes(32, 0xbb);
  r.mac = Bytes(32, 0xcc);
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

TEST_CASE("encode is stable: the digest of a fixed row is pinned") {
  const store::AuditRow r = fixed_row();
  const Bytes enc = audit::encode(r);
  // "KMSA" || 0x01 || u64be seq || lp32(time) || lp32(principal) || u64be uid || lp32(action) ||
  // lp32(resource) || lp32(params) || lp32(outcome) || lp32(error_code)
  CHECK(hex(enc) ==
        "4b4d534101000000000000002a00000018323032362d31312d32385430393a33313a30322e3132335a0000"
        "0005616c69636500000000000003e80000000a6b65792e637265617465000000086b65792f313233340000"
        "00157b22616c696173223a22616c6961732f617070227d000000026f6b00000000");
  CHECK(hex(crypto::sha256(enc)) ==
        "ffabb967328b5b4b0b5ac1de58c1d8e6cf035b231336a8ccec643a930dad9800");
}

TEST_CASE("genesis_hash and chain_hash follow the public rule") {
  const crypto::Digest g = audit::genesis_hash("test-vault");
  CHECK(hex(g) == "98274c3f084546c4ec9d0340d9733168f0cc05de44c47f8f9ae89529968409b6");
  CHECK(hex(crypto::sha256(bytes_of(std::string(audit::kGenesisLabel) + "test-vault"))) == hex(g));
  const Bytes enc = audit::encode(fixed_row());
  CHECK(hex(audit::chain_hash(g, enc)) ==
        "2cf0847a6deed56275c1a8eccbfb334cb696d0880410418bf6aa5499e56e76b9");
  CHECK(audit::genesis_hash("vault-a") != audit::genesis_hash("vault-b"));
}

TEST_CASE("encode covers every field but prev_hash, hash and mac") {
  const store::AuditRow base = fixed_row();
  const Bytes enc = audit::encode(base);
  const std::vector<std::pair<const char*, std::function<void(store::AuditRow&)>>> edits = {
      {"seq", [](store::AuditRow& r) { r.seq = 43; }},
      {"time", [](store::AuditRow& r) { r.time = "2026-11-28T09:31:02.124Z"; }},
      {"principal", [](store::AuditRow& r) { r.principal = "mallory"; }},
      {"uid", [](store::AuditRow& r) { r.uid = 0; }},
      {"action", [](store::AuditRow& r) { r.action = "key.delete"; }},
      {"resource", [](store::AuditRow& r) { r.resource = "key/1235"; }},
      {"params", [](store::AuditRow& r) { r.params = "{}"; }},
      {"outcome", [](store::AuditRow& r) { r.outcome = "error"; }},
      {"error_code", [](store::AuditRow& r) { r.error_code = "failed"; }},
  };
  for (const auto& [field, edit] : edits) {
    store::AuditRow r = base;
    edit(r);
    const auto& name = field;  // CAPTURE takes no structured binding (clang 14)
    CAPTURE(name);
    CHECK(audit::encode(r) != enc);
  }
  store::AuditRow r = base;
  r.prev_hash.assign(32, 0);
  r.hash.clear();
  r.mac.clear();
  CHECK(audit::encode(r) == enc);
}

TEST_CASE("a record with a state is encoded as version 2 with the state appended") {
  const store::AuditRow base = fixed_row();
  store::AuditRow r = base;
  r.state.assign(32, 0xab);
  Bytes want = audit::encode(base);
  want[4] = audit::kStateRecordVersion;
  for (std::uint8_t b : {0, 0, 0, 32}) want.push_back(b);
  want.insert(want.end(), r.state.begin(), r.state.end());
  CHECK(audit::encode(r) == want);
  // Removing the state, or giving one to a record that had none, changes the encoding.
  CHECK(audit::encode(base) != audit::encode(r));
  r.state.assign(32, 0xac);
  CHECK(audit::encode(r) != want);
  CHECK(audit::to_json(r).at("state") == hex(r.state));
  CHECK_FALSE(audit::to_json(base).contains("state"));
}

TEST_CASE("encode keeps field boundaries: moving bytes between fields changes it") {
  store::AuditRow a = fixed_row(), b = fixed_row();
  a.action = "key.create";
  a.resource = "key/1";
  b.action = "key.createkey/";
  b.resource = "1";
  CHECK(audit::encode(a) != audit::encode(b));
}

TEST_CASE("encode_into reuses its buffer and equals encode") {
  Bytes buf(1000, 0x55);
  audit::encode_into(fixed_row(), buf);
  CHECK(buf == audit::encode(fixed_row()));
}

TEST_CASE("to_json exports every field with hex hashes and parsed params") {
  const nlohmann::json j = audit::to_json(fixed_row());
  CHECK(j.at("seq") == 42);
  CHECK(j.at("time") == "2026-11-28T09:31:02.123Z");
  CHECK(j.at("principal") == "alice");
  CHECK(j.at("uid") == 1000);
  CHECK(j.at("action") == "key.create");
  CHECK(j.at("resource") == "key/1234");
  CHECK(j.at("params").at("alias") == "alias/app");
  CHECK(j.at("outcome") == "ok");
  CHECK(j.at("error_code") == "");
  CHECK(j.at("prev_hash") == std::string(64, 'a'));
  CHECK(j.at("hash") == std::string(64, 'b'));
  CHECK(j.at("mac") == std::string(64, 'c'));
}

// ---------------------------------------------------------------------------------------------
// Appending and verifying
// ---------------------------------------------------------------------------------------------

TEST_CASE("Log::append builds a chain from the genesis hash that verify accepts") {
  Fixture f;
  f.append_n(6);
  const auto rows = f.rows();
  REQUIRE(rows.size() == 6);
  const crypto::Digest g = audit::genesis_hash(kVaultId);
  CHECK(rows[0].prev_hash == Bytes(g.begin(), g.end()));
  const crypto::HmacSha256 mac(f.key.view());
  for (size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(i);
    CHECK(rows[i].seq == std::int64_t(i + 1));
    if (i > 0) CHECK(rows[i].prev_hash == rows[i - 1].hash);
    const crypto::Digest h = audit::chain_hash(rows[i].prev_hash, audit::encode(rows[i]));
    CHECK(rows[i].hash == Bytes(h.begin(), h.end()));
    CHECK(mac.verify(rows[i].hash, rows[i].mac));
    CHECK(rows[i].time == format_rfc3339(f.t0 + std::chrono::seconds(i + 1)));
    CHECK(rows[i].principal == "alice");
    CHECK(rows[i].params == R"({"n":)" + std::to_string(i + 1) + "}");
  }
  const audit::VerifyReport rep = f.log->verify();
  CAPTURE(rep.problem);
  CHECK(rep.ok);
  CHECK(rep.records == 6);
  CHECK_FALSE(rep.first_bad_seq.has_value());
  REQUIRE(rep.anchor.has_value());
  CHECK(rep.anchor->seq == 6);
  CHECK(rep.anchor->hash == rows[5].hash);
  REQUIRE(rep.head.has_value());
  CHECK(rep.head->seq == 6);
  CHECK_NOTHROW(f.log->check_anchor());
}

TEST_CASE("Log::append names the caller's host in the params, when it is known") {
  Fixture f;
  CHECK(f.append().params == R"({"n":1})");  // a Caller made by hand: no host
  f.who.host = "build-07";
  CHECK(f.append().params == R"({"host":"build-07","n":2})");
  CHECK(Caller::current().host != "");  // gethostname
  const audit::VerifyReport rep = f.log->verify();
  CHECK(rep.ok);
}

TEST_CASE("Log::append records text that is not UTF-8 escaped, and the chain still verifies") {
  Fixture f;
  f.append();
  // A file name may be any bytes; JSON (the params) holds only UTF-8.
  const std::string name = "/tmp/caf\xe9\n.txt";
  audit::Event ev{
      Action::file_encrypt, "file/" + name, {{"file", name}, {"context", {{"\xff", "v"}}}}};
  store::AuditRow r;
  {
    store::Tx tx(*f.db, store::Tx::Kind::write);
    r = f.log->append(ev, "ok", "", f.who, f.t0 + std::chrono::seconds(2));
    tx.commit();
  }
  f.log->publish(r);
  CHECK(r.resource == "file//tmp/caf\\xe9\\n.txt");
  CHECK(r.params == R"({"context":{"\\xff":"v"},"file":"/tmp/caf\\xe9\\n.txt"})");
  CHECK(f.rows().back().params == r.params);
  // Valid UTF-8 is recorded as it is, control characters included (JSON escapes them).
  CHECK(f.append().params == R"({"n":2})");
  const audit::VerifyReport rep = f.log->verify();
  CAPTURE(rep.problem);
  CHECK(rep.ok);
  CHECK(rep.records == 3);
}

TEST_CASE("verify and check_anchor accept a log that reopens from disk") {
  Fixture f;
  f.append_n(3);
  f.reopen();
  CHECK(f.log->verify().ok);
  CHECK_NOTHROW(f.log->check_anchor());
  f.append_n(2);
  CHECK(f.log->verify().ok);
  CHECK(f.log->verify().records == 5);
}

TEST_CASE(
    "verify accepts a log one record ahead of its anchor (crash between commit and publish)") {
  Fixture f;
  f.append_n(4);
  f.append("ok", /*publish=*/false);
  const audit::VerifyReport rep = f.log->verify();
  CHECK(rep.ok);
  CHECK(rep.records == 5);
  CHECK(rep.anchor->seq == 4);
  CHECK_NOTHROW(f.log->check_anchor());
}

TEST_CASE("verify uses the newest of two anchors left by an interrupted anchor update") {
  Fixture f;
  f.append_n(4);
  const Bytes at4 = f.anchor.values.at(0);
  f.append();
  f.anchor.values.push_back(at4);  // the old object was not destroyed yet
  const audit::VerifyReport rep = f.log->verify();
  CHECK(rep.ok);
  REQUIRE(rep.anchor.has_value());
  CHECK(rep.anchor->seq == 5);
}

TEST_CASE(
    "verify fails after the last record when the token holds no anchor, and check_anchor refuses") {
  Fixture f;
  f.append_n(3);
  f.anchor.values.clear();
  const audit::VerifyReport rep = f.log->verify();
  check_fails_at(rep, 4);
  CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
}

TEST_CASE("verify of an empty log without an anchor fails at seq 1") {
  Fixture f;
  check_fails_at(f.log->verify(), 1);
}

// ---------------------------------------------------------------------------------------------
// Attacks on the vault file
// ---------------------------------------------------------------------------------------------

TEST_CASE("editing any field of a middle record makes verify fail at that record") {
  Fixture f;
  f.append_n(6);
  std::string column, value;
  SUBCASE("time") { column = "time", value = "'2026-11-28T09:00:03.001Z'"; }
  SUBCASE("principal") { column = "principal", value = "'mallory'"; }
  SUBCASE("uid") { column = "uid", value = "0"; }
  SUBCASE("action") { column = "action", value = "'key.get'"; }
  SUBCASE("resource") { column = "resource", value = "'key/other'"; }
  SUBCASE("params") { column = "params", value = "'{\"n\":33}'"; }
  SUBCASE("outcome") { column = "outcome", value = "'denied'"; }
  SUBCASE("error_code") { column = "error_code", value = "'refused'"; }
  SUBCASE("prev_hash") { column = "prev_hash", value = "randomblob(32)"; }
  SUBCASE("hash") { column = "hash", value = "randomblob(32)"; }
  SUBCASE("mac") { column = "mac", value = "randomblob(32)"; }
  SUBCASE("mac truncated") { column = "mac", value = "substr(mac, 1, 16)"; }
  SUBCASE("hash emptied") { column = "hash", value = "x''"; }
  CAPTURE(column);
  REQUIRE_FALSE(column.empty());
  f.sql("UPDATE audit_log SET " + column + " = " + value + " WHERE seq = 3");
  check_fails_at(f.log->verify(), 3);
}

// More records than one batch of the checker (src/audit/chain_check.cpp): their hashes and MACs
// are checked on a second thread while verify reads on.
TEST_CASE("a log of several batches verifies, and the first bad record is the one reported") {
  Fixture f;
  {
    store::Tx tx(*f.db, store::Tx::Kind::write);
    store::AuditRow last;
    for (int i = 0; i < 7000; ++i) {
      ++f.appended;
      last = f.log->append({Action::key_describe, "key/k", {{"n", f.appended}}}, "ok", "", f.who,
                           f.t0 + std::chrono::seconds(f.appended));
    }
    tx.commit();
    f.log->publish(last);
  }
  const audit::VerifyReport good = f.log->verify();
  CHECK(good.ok);
  CHECK(good.records == 7000);
  std::int64_t expected = 0;
  SUBCASE("an edit, then a broken link: the edit") {
    f.sql("UPDATE audit_log SET params = '{\"n\":1}' WHERE seq = 5000");
    f.sql("UPDATE audit_log SET prev_hash = randomblob(32) WHERE seq = 6500");
    expected = 5000;
  }
  SUBCASE("a broken link, then an edit: the link") {
    f.sql("UPDATE audit_log SET prev_hash = randomblob(32) WHERE seq = 3000");
    f.sql("UPDATE audit_log SET outcome = 'denied' WHERE seq = 6000");
    expected = 3000;
  }
  SUBCASE("a hash replaced: the record, not the next one's link to it") {
    f.sql("UPDATE audit_log SET hash = randomblob(32) WHERE seq = 4097");
    expected = 4097;
  }
  SUBCASE("a MAC in the first batch, an edit in the last") {
    f.sql("UPDATE audit_log SET mac = randomblob(32) WHERE seq = 10");
    f.sql("UPDATE audit_log SET uid = 0 WHERE seq = 6999");
    expected = 10;
  }
  SUBCASE("an edit in the last, partial batch") {
    f.sql("UPDATE audit_log SET uid = 0 WHERE seq = 6999");
    expected = 6999;
  }
  SUBCASE("a missing record after an edit: the edit") {
    f.sql("UPDATE audit_log SET time = '2026-11-28T09:00:00.000Z' WHERE seq = 2500");
    f.sql("DELETE FROM audit_log WHERE seq = 2600");
    expected = 2500;
  }
  if (expected != 0) {
    const audit::VerifyReport rep = f.log->verify();
    check_fails_at(rep, expected);
    CHECK(rep.records >= 6999);
  }
}

TEST_CASE("editing the newest record makes verify fail at it and check_anchor refuse") {
  Fixture f;
  f.append_n(4);
  f.sql("UPDATE audit_log SET outcome = 'error' WHERE seq = 4");
  check_fails_at(f.log->verify(), 4);
}

TEST_CASE("deleting a middle record makes verify fail at the missing seq") {
  Fixture f;
  f.append_n(6);
  f.sql("DELETE FROM audit_log WHERE seq = 3");
  const audit::VerifyReport rep = f.log->verify();
  check_fails_at(rep, 3);
  CHECK(rep.records == 5);
}

TEST_CASE("deleting the first record makes verify fail at seq 1") {
  Fixture f;
  f.append_n(3);
  f.sql("DELETE FROM audit_log WHERE seq = 1");
  check_fails_at(f.log->verify(), 1);
}

TEST_CASE("deleting a record and renumbering the rest makes verify fail at the gap") {
  Fixture f;
  f.append_n(6);
  f.sql("DELETE FROM audit_log WHERE seq = 3");
  f.sql("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3");
  check_fails_at(f.log->verify(), 3);
}

TEST_CASE("swapping two records' positions makes verify fail at the first of them") {
  Fixture f;
  f.append_n(6);
  f.sql("UPDATE audit_log SET seq = 1000 WHERE seq = 2");
  f.sql("UPDATE audit_log SET seq = 2 WHERE seq = 4");
  f.sql("UPDATE audit_log SET seq = 4 WHERE seq = 1000");
  check_fails_at(f.log->verify(), 2);
}

TEST_CASE("swapping two records' contents, hashes and macs included, fails at the first of them") {
  Fixture f;
  f.append_n(6);
  // Swap every column but seq between rows 2 and 5 (through a parking row to satisfy UNIQUE).
  f.sql("UPDATE audit_log SET seq = -5 WHERE seq = 5");
  f.sql("UPDATE audit_log SET seq = 5 WHERE seq = 2");
  f.sql("UPDATE audit_log SET seq = 2 WHERE seq = -5");
  check_fails_at(f.log->verify(), 2);
}

TEST_CASE("swapping only the event fields of two records fails at the first of them") {
  Fixture f;
  f.append_n(6);
  f.sql(
      "UPDATE audit_log SET action = (SELECT action FROM audit_log a WHERE a.seq = 5), "
      "resource = (SELECT resource FROM audit_log a WHERE a.seq = 5), "
      "params = (SELECT params FROM audit_log a WHERE a.seq = 5) WHERE seq = 2");
  check_fails_at(f.log->verify(), 2);
}

TEST_CASE("deleting the newest records makes verify fail after the last one left") {
  Fixture f;
  f.append_n(6);
  f.sql("DELETE FROM audit_log WHERE seq >= 4");
  const audit::VerifyReport rep = f.log->verify();
  check_fails_at(rep, 4);
  CHECK(rep.records == 3);
  const Error e = error_of([&] { f.log->check_anchor(); });
  CHECK(e.code() == Code::integrity);
  CHECK(e.remedy() == Remedy::verify_against_anchor);
}

TEST_CASE("deleting every record is detected by the anchor") {
  Fixture f;
  f.append_n(3);
  f.sql("DELETE FROM audit_log");
  check_fails_at(f.log->verify(), 1);
  CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
}

TEST_CASE("replacing the vault with an older copy makes verify fail and check_anchor refuse") {
  Fixture f;
  f.append_n(3);
  f.db->backup_to(f.dir / "old.db");
  f.append_n(3);
  REQUIRE(f.log->verify().ok);
  // The attacker puts the old file back (the anchor stays in the token).
  f.log.reset();
  f.db.reset();
  fs::copy_file(f.dir / "old.db", f.path, fs::copy_options::overwrite_existing);
  fs::remove(f.path.string() + "-wal");
  fs::remove(f.path.string() + "-shm");
  f.reopen();
  REQUIRE(store::audit_count(*f.db) == 3);
  check_fails_at(f.log->verify(), 4);
  const Error e = error_of([&] { f.log->check_anchor(); });
  CHECK(e.code() == Code::integrity);
  CHECK(std::string(e.what()).find("rolled back") != std::string::npos);
}

TEST_CASE("replacing the vault with an older copy that was then extended is still refused") {
  Fixture f;
  f.append_n(3);
  f.db->backup_to(f.dir / "old.db");
  f.append_n(3);
  // The old copy, extended to the same length by someone holding the key but without
  // publishing (e.g. a second vault process on a stale file): same seq, different head.
  MemoryAnchor scratch;
  {
    store::Db old(f.dir / "old.db", store::Db::Mode::open_existing);
    kms::test::with_row_keys(old);
    audit::Log other(old, std::string(kVaultId), f.key.view(), scratch);
    for (int i = 0; i < 3; ++i) {
      store::Tx tx(old, store::Tx::Kind::write);
      (void)other.append({Action::key_create, "key/x", {}}, "ok", "", f.who, f.t0);
      tx.commit();
    }
    old.checkpoint();  // the extension is in old.db itself, not only in its WAL
  }
  f.log.reset();
  f.db.reset();
  fs::copy_file(f.dir / "old.db", f.path, fs::copy_options::overwrite_existing);
  fs::remove(f.path.string() + "-wal");
  fs::remove(f.path.string() + "-shm");
  f.reopen();
  check_fails_at(f.log->verify(), 6);
  CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
}

TEST_CASE(
    "recomputing the chain without the key keeps old macs and fails the MAC at the first edit") {
  Fixture f;
  f.append_n(6);
  f.sql("UPDATE audit_log SET outcome = 'denied', error_code = 'refused' WHERE seq = 3");
  rechain_without_key(f, 3);
  const audit::VerifyReport rep = f.log->verify();
  check_fails_at(rep, 3);
  CHECK(rep.problem.find("MAC") != std::string::npos);
}

TEST_CASE(
    "recomputing the chain without the key with random macs fails the MAC at the first edit") {
  Fixture f;
  f.append_n(6);
  f.sql("UPDATE audit_log SET principal = 'mallory' WHERE seq = 4");
  rechain_without_key(f, 4, [](const store::AuditRow&) { return crypto::random_bytes(32); });
  const audit::VerifyReport rep = f.log->verify();
  check_fails_at(rep, 4);
  CHECK(rep.problem.find("MAC") != std::string::npos);
}

TEST_CASE(
    "recomputing the chain with keyless MACs (plain SHA-256 or a guessed key) fails the MAC") {
  Fixture f;
  f.append_n(5);
  f.sql("DELETE FROM audit_log WHERE seq = 2");
  f.sql("UPDATE audit_log SET seq = seq - 1 WHERE seq > 2");
  const crypto::HmacSha256 guessed(Bytes(32, 0));
  SUBCASE("sha256 of the hash") {
    rechain_without_key(f, 2, [](const store::AuditRow& r) {
      const crypto::Digest d = crypto::sha256(r.hash);
      return Bytes(d.begin(), d.end());
    });
  }
  SUBCASE("HMAC with a guessed key") {
    rechain_without_key(f, 2, [&](const store::AuditRow& r) {
      const crypto::Digest d = guessed.mac(r.hash);
      return Bytes(d.begin(), d.end());
    });
  }
  const audit::VerifyReport rep = f.log->verify();
  check_fails_at(rep, 2);
  CHECK(rep.problem.find("MAC") != std::string::npos);
}

TEST_CASE("a chain recomputed from genesis without the key fails the MAC at seq 1") {
  Fixture f;
  f.append_n(4);
  f.sql("UPDATE audit_log SET action = 'vault.status' WHERE seq = 1");
  // Rechain from the genesis hash.
  std::vector<store::AuditRow> all = f.rows();
  const crypto::Digest g = audit::genesis_hash(kVaultId);
  Bytes prev(g.begin(), g.end());
  for (store::AuditRow& r : all) {
    const crypto::Digest h = audit::chain_hash(prev, audit::encode(r));
    f.set_blob(r.seq, "prev_hash", prev);
    f.set_blob(r.seq, "hash", Bytes(h.begin(), h.end()));
    prev.assign(h.begin(), h.end());
  }
  check_fails_at(f.log->verify(), 1);
}

TEST_CASE("a log verified under another vault id fails at seq 1") {
  Fixture f;
  f.append_n(2);
  audit::Log other(*f.db, "another-vault", f.key.view(), f.anchor);
  check_fails_at(other.verify(), 1);
}

// ---------------------------------------------------------------------------------------------
// The anchor
// ---------------------------------------------------------------------------------------------

TEST_CASE("the anchor value is KANC, version, u64be seq, the head hash and its MAC") {
  Fixture f;
  f.append_n(3);
  REQUIRE(f.anchor.values.size() == 1);
  const Bytes& v = f.anchor.values[0];
  REQUIRE(v.size() == 4 + 1 + 8 + 32 + 32);
  CHECK(as_chars(ByteView(v).first(4)) == audit::kAnchorMagic);
  CHECK(v[4] == audit::kAnchorVersion);
  CHECK(hex(ByteView(v).subspan(5, 8)) == "0000000000000003");
  CHECK(Bytes(v.begin() + 13, v.begin() + 45) == store::audit_last(*f.db)->hash);
  const crypto::HmacSha256 mac(f.key.view());
  CHECK(mac.verify(ByteView(v).first(45), ByteView(v).subspan(45)));
}

TEST_CASE("a damaged anchor makes verify and check_anchor throw Code::integrity") {
  Fixture f;
  f.append_n(3);
  const Bytes good = f.anchor.values.at(0);
  SUBCASE("every single-byte change is caught") {
    for (size_t i = 0; i < good.size(); ++i) {
      CAPTURE(i);
      f.anchor.values = {good};
      f.anchor.values[0][i] ^= 0x01;
      CHECK(error_of([&] { (void)f.log->verify(); }).code() == Code::integrity);
      CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
    }
  }
  SUBCASE("truncated") {
    f.anchor.values[0].pop_back();
    CHECK(error_of([&] { (void)f.log->verify(); }).code() == Code::integrity);
  }
  SUBCASE("extended") {
    f.anchor.values[0].push_back(0);
    CHECK(error_of([&] { (void)f.log->verify(); }).code() == Code::integrity);
  }
  SUBCASE("empty") {
    f.anchor.values = {Bytes{}};
    CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
  }
  SUBCASE("a second, damaged anchor beside a good one") {
    Bytes bad = good;
    bad[50] ^= 0xff;
    f.anchor.values.push_back(bad);
    CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
  }
}

TEST_CASE("an anchor forged ahead without the key is refused") {
  Fixture f;
  f.append_n(3);
  // Claim seq 2 (to hide record 3) and recompute the MAC with a key the attacker guessed.
  Bytes v = f.anchor.values.at(0);
  v[12] = 2;
  const Bytes h2 = *store::audit_hash_at(*f.db, 2);
  std::copy(h2.begin(), h2.end(), v.begin() + 13);
  const crypto::Digest m = crypto::HmacSha256(Bytes(32, 0)).mac(ByteView(v).first(45));
  std::copy(m.begin(), m.end(), v.begin() + 45);
  f.anchor.values = {v};
  CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
}

TEST_CASE("check_anchor refuses when the record at the anchor's seq has another hash") {
  Fixture f;
  f.append_n(3);
  // A valid anchor whose hash is not the stored record's (the file was replaced by another
  // chain of the same length): made with the key, as the vault would have.
  const crypto::HmacSha256 mac(f.key.view());
  Bytes v = f.anchor.values.at(0);
  v[13] ^= 0x01;
  const crypto::Digest m = mac.mac(ByteView(v).first(45));
  std::copy(m.begin(), m.end(), v.begin() + 45);
  f.anchor.values = {v};
  const Error e = error_of([&] { f.log->check_anchor(); });
  CHECK(e.code() == Code::integrity);
  check_fails_at(f.log->verify(), 3);
}

TEST_CASE("check_anchor passes on a healthy log and refuses a rolled-back one") {
  Fixture f;
  f.append_n(2);
  CHECK_NOTHROW(f.log->check_anchor());
  f.append();
  CHECK_NOTHROW(f.log->check_anchor());
  f.sql("DELETE FROM audit_log WHERE seq = 3");
  CHECK(error_of([&] { f.log->check_anchor(); }).code() == Code::integrity);
}

TEST_CASE("an anchor made with another vault's key is refused") {
  Fixture f;
  f.append_n(2);
  const SecureBytes other_key = crypto::random_secret(32);
  audit::Log wrong(*f.db, std::string(kVaultId), other_key.view(), f.anchor);
  CHECK(error_of([&] { (void)wrong.verify(); }).code() == Code::integrity);
  CHECK(error_of([&] { wrong.check_anchor(); }).code() == Code::integrity);
}

// ---------------------------------------------------------------------------------------------
// docs/FORMAT.md §10 test vectors
// ---------------------------------------------------------------------------------------------

namespace {

constexpr std::string_view kSpecVaultId = "8d5a6c1e-3f2b-4a7d-9e01-23456789abcd";
constexpr std::string_view kSpecAuditKey =
    "2908e9f9797ac072d815a4e01dac4e40b460909d3f1466493604da968a7dbc9a";

Bytes spec_hex(std::string_view h) {
  std::string clean;
  for (char c : h) {
    if (c != ' ' && c != '\n') clean.push_back(c);
  }
  const auto b = crypto::from_hex(clean);
  REQUIRE(b.has_value());
  return *b;
}

store::AuditRow spec_record(int n) {
  store::AuditRow r;
  r.principal = "alice";
  r.uid = 1000;
  r.resource = "vault/" + std::string(kSpecVaultId);
  if (n == 1) {
    r.seq = 1;
    r.time = "2026-11-28T09:31:02.123Z";
    r.action = "vault.init";
    r.params = R"({"private_token":true})";
    r.outcome = "ok";
    r.error_code = "";
  } else {
    r.seq = 2;
    r.time = "2026-11-28T09:31:05.456Z";
    r.action = "audit.export";
    r.params = R"({"output":"/tmp/a.jsonl"})";
    r.outcome = "denied";
    r.error_code = "refused";
  }
  return r;
}

}  // namespace

TEST_CASE("audit encoding, chain and MACs reproduce the FORMAT.md §10.3 vectors") {
  const Bytes k_audit = spec_hex(kSpecAuditKey);
  const crypto::HmacSha256 mac(k_audit);
  const store::AuditRow r1 = spec_record(1), r2 = spec_record(2);
  const Bytes enc1 = audit::encode(r1);
  CHECK(enc1.size() == 154);
  CHECK(hex(enc1) ==
        hex(spec_hex("4b4d5341 01 0000000000000001"
                     "00000018 323032362d31312d32385430393a33313a30322e3132335a"
                     "00000005 616c696365 00000000000003e8"
                     "0000000a 7661756c742e696e6974"
                     "0000002a 7661756c742f38643561366331652d336632622d346137642d396530312d323334"
                     "353637383961626364"
                     "00000016 7b22707269766174655f746f6b656e223a747275657d"
                     "00000002 6f6b 00000000")));
  const crypto::Digest genesis = audit::genesis_hash(kSpecVaultId);
  CHECK(hex(genesis) == "f3580af7700c04ca0bc62a654576ff8a69b1b3f31d5e9cfb983f5f7adb203728");
  const crypto::Digest h1 = audit::chain_hash(genesis, enc1);
  CHECK(hex(h1) == "61ba1e7c4ae71abc6f5a3e26f78e15bc09b306af90c91151dc4fc4dd9caa45f5");
  CHECK(hex(mac.mac(h1)) == "e24947b18a0debd27cdbeebd86be0b7dd601008f7edba5af7f00751a4dae7dfe");
  const Bytes enc2 = audit::encode(r2);
  CHECK(enc2.size() == 170);
  CHECK(hex(enc2) ==
        hex(spec_hex(
            "4b4d534101000000000000000200000018323032362d31312d32385430393a33313a30352e3435365a"
            "00000005616c69636500000000000003e80000000c61756469742e6578706f72740000002a7661756c"
            "742f38643561366331652d336632622d346137642d396530312d3233343536373839616263640000"
            "00197b226f7574707574223a222f746d702f612e6a736f6e6c227d0000000664656e69656400000007"
            "72656675736564")));
  const crypto::Digest h2 = audit::chain_hash(h1, enc2);
  CHECK(hex(h2) == "2cfee7360447ad4f93ba191f9c89261a4f7395013c339ba54c040dee899441f0");
  CHECK(hex(mac.mac(h2)) == "c4105d950f32f380bb64e9d12566e433868a2525edafc6593402481661c418c9");
}

TEST_CASE("Log::publish writes the FORMAT.md §10.4 anchor and verify accepts the §10 log") {
  TempDir dir;
  store::Db db(dir / "vault.db", store::Db::Mode::create_new);
  kms::test::with_row_keys(db);
  const Bytes k_audit = spec_hex(kSpecAuditKey);
  store::AuditRow r1 = spec_record(1), r2 = spec_record(2);
  const crypto::Digest g = audit::genesis_hash(kSpecVaultId);
  r1.prev_hash.assign(g.begin(), g.end());
  r1.hash = spec_hex("61ba1e7c4ae71abc6f5a3e26f78e15bc09b306af90c91151dc4fc4dd9caa45f5");
  r1.mac = spec_hex("e24947b18a0debd27cdbeebd86be0b7dd601008f7edba5af7f00751a4dae7dfe");
  r2.prev_hash = r1.hash;
  r2.hash = spec_hex("2cfee7360447ad4f93ba191f9c89261a4f7395013c339ba54c040dee899441f0");
  r2.mac = spec_hex("c4105d950f32f380bb64e9d12566e433868a2525edafc6593402481661c418c9");
  store::audit_insert(db, r1);
  store::audit_insert(db, r2);
  MemoryAnchor anchor;
  audit::Log log(db, std::string(kSpecVaultId), k_audit, anchor);
  log.publish(r2);
  REQUIRE(anchor.values.size() == 1);
  CHECK(hex(anchor.values[0]) ==
        hex(spec_hex("4b414e43 01 0000000000000002"
                     "2cfee7360447ad4f93ba191f9c89261a4f7395013c339ba54c040dee899441f0"
                     "2b693078bdc55b26dd860c0016d5750476a4b5435f6af98624183178fc3bda09")));
  const audit::VerifyReport rep = log.verify();
  CAPTURE(rep.problem);
  CHECK(rep.ok);
  CHECK(rep.records == 2);
  // Log::append reproduces record 2's hash and MAC from record 1.
  db.exec("DELETE FROM audit_log WHERE seq = 2");
  const store::AuditRow again =
      log.append({Action::audit_export, r2.resource, {{"output", "/tmp/a.jsonl"}}}, "denied",
                 "refused", alice(), *parse_rfc3339("2026-11-28T09:31:05.456Z"));
  CHECK(hex(again.hash) == hex(r2.hash));
  CHECK(hex(again.mac) == hex(r2.mac));
}
