// Unit tests of the request path: each typed request (include/kms/requests.hpp) handed to
// kms::handle on a Service over a real vault and SoftHSM2 token, checked as a caller sees it: the
// response, and the audit record the operation appended, read back through req::AuditList. One
// test case per domain (keys, cryptography, secrets, files, vault and audit), and one for a
// caller of another uid, whom every request refuses.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "service_support.hpp"
#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "kms/clock.hpp"
#include "kms/crypto.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"
#include "kms/requests.hpp"
#include "kms/service.hpp"

using namespace kms;
using kms::test::contains;
using kms::test::error_of;
using kms::test::Fd;
using kms::test::init_service;
using kms::test::kPin;
using kms::test::mode_of;
using kms::test::pin_of;
using kms::test::read_file;
using kms::test::TempDir;
using kms::test::write_file;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Pairs = std::vector<std::pair<std::string, std::string>>;

namespace {

// The log as a caller reads it, through req::AuditList: take() returns the records appended
// since the previous take(), oldest first. The audit.list record of each read is left out: it is
// appended right after the newest record the read returned.
class Log {
 public:
  explicit Log(Service& s) : s_(s) { (void)take(); }

  std::vector<store::AuditRow> take() {
    req::AuditList r;
    r.filter.after_seq = seen_;
    r.filter.newest_first = false;
    r.filter.limit = 1000;
    std::vector<store::AuditRow> rows = handle(s_, r);
    seen_ = (rows.empty() ? seen_ : rows.back().seq) + 1;
    return rows;
  }

  // The one record appended since the previous take().
  store::AuditRow one() {
    std::vector<store::AuditRow> rows = take();
    CAPTURE(rows.size());
    REQUIRE(rows.size() == 1);
    return rows.front();
  }

  // The seq of the newest record: the audit.list record of the last take().
  std::int64_t head() const { return seen_; }

 private:
  Service& s_;
  std::int64_t seen_ = 0;
};

json params(const store::AuditRow& r) { return kms::test::params_of(r); }

// The record says `action` on `resource` with `outcome` (and error_code), by this process.
void check_record(const store::AuditRow& r, std::string_view action, std::string_view resource,
                  std::string_view outcome = "ok", std::string_view error_code = "") {
  CAPTURE(r.seq);
  CAPTURE(r.params);
  CHECK(r.action == action);
  CHECK(r.resource == resource);
  CHECK(r.outcome == outcome);
  CHECK(r.error_code == error_code);
  CHECK(r.uid == static_cast<std::int64_t>(::getuid()));
  CHECK(r.principal == Caller::current().user);
}

SecureBytes secure(std::string_view s) { return SecureBytes(as_bytes(s)); }

std::string key_res(const std::string& id) { return "key/" + id; }

keys::KeyInfo new_key(Service& s, std::optional<std::string> alias = std::nullopt) {
  req::KeyCreate r;
  r.spec.alias = std::move(alias);
  return handle(s, r);
}

req::SecretCreate secret_request(std::string name, std::optional<std::string> value,
                                 std::optional<std::string> key = std::nullopt) {
  req::SecretCreate r;
  r.spec.name = std::move(name);
  r.spec.key = std::move(key);
  if (value) r.input.value = secure(*value);
  return r;
}

req::SecretGet get_request(std::string name, std::optional<SecretStage> stage = std::nullopt,
                           std::optional<std::int64_t> version = std::nullopt) {
  req::SecretGet r;
  r.name = std::move(name);
  r.stage = stage;
  r.version = version;
  return r;
}

// `n` bytes that differ from position to position.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return s;
}

// Encrypts the file `in` to `out` through a vault FileSession, as `kmsctl file encrypt` does.
FileResult encrypt_path(Service& s, const fs::path& in, const fs::path& out,
                        const std::vector<std::string>& keys, const Context& ctx) {
  auto session = s.files().session(Action::file_encrypt, in.filename().string(), keys);
  Fd i(::open(in.c_str(), O_RDONLY | O_CLOEXEC));
  Fd o(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  return kms::encrypt_file(*session, i.fd, o.fd, ctx, envelope::kMinFrameSize, {}, {});
}

FileResult decrypt_path(Service& s, const fs::path& in, const fs::path& out, const Context& ctx) {
  auto session = s.files().session(Action::file_decrypt, in.filename().string());
  Fd i(::open(in.c_str(), O_RDONLY | O_CLOEXEC));
  Fd o(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  return kms::decrypt_file(*session, i.fd, o.fd, ctx, {}, {});
}

using KeyVersions = std::vector<std::pair<std::string, std::int64_t>>;

json keys_json(const KeyVersions& kv) {
  json j = json::array();
  for (const auto& [id, v] : kv) j.push_back({{"key_id", id}, {"version", v}});
  return j;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

TEST_CASE("key requests: create, list, describe, states, rotation, deletion, tags and aliases") {
  TempDir dir;
  auto svc = init_service(dir / "vault.db");
  Service& s = *svc;
  Log log(s);

  req::KeyCreate create;
  create.spec.description = "payments";
  create.spec.alias = "alias/app";
  create.spec.tags = {{"team", "pay"}, {"env", "prod"}};
  create.spec.rotation_days = 90;
  const keys::KeyInfo k1 = handle(s, create);
  const std::string id = k1.key.id;
  CHECK(id.size() == 36);
  CHECK(k1.key.state == KeyState::enabled);
  CHECK(k1.key.spec == KeySpec::aes_256);
  CHECK(k1.key.protection == Protection::software);
  CHECK(k1.key.description == "payments");
  CHECK(k1.key.primary_version == 1);
  CHECK(k1.key.rotation_period_days == 90);
  CHECK(k1.next_rotation == add_days(k1.key.last_rotated, 90));
  CHECK(k1.aliases == std::vector<std::string>{"alias/app"});
  CHECK(k1.tags == Pairs{{"env", "prod"}, {"team", "pay"}});
  REQUIRE(k1.versions.size() == 1);
  CHECK(k1.versions[0].version == 1);
  {
    const store::AuditRow r = log.one();
    check_record(r, "key.create", key_res(id));
    const json p = params(r);
    CHECK(p["alias"] == "alias/app");
    CHECK(p["rotation_period_days"] == 90);
    CHECK(p["spec"] == "AES_256");
    CHECK(p["protection"] == "software");
    CHECK_FALSE(p.contains("channel"));  // this process opened the vault itself
  }
  const std::string id2 = new_key(s).key.id;
  const std::string id3 = new_key(s).key.id;
  CHECK(log.take().size() == 2);

  SUBCASE("list: pages with after and limit, and a state filter") {
    req::KeyList first;
    first.limit = 2;
    const KeyPage p1 = handle(s, first);
    REQUIRE(p1.keys.size() == 2);
    REQUIRE(p1.next.has_value());
    CHECK(*p1.next == p1.keys.back().key.id);
    req::KeyList second;
    second.limit = 2;
    second.after = p1.next;
    const KeyPage p2 = handle(s, second);
    REQUIRE(p2.keys.size() == 1);
    CHECK_FALSE(p2.next.has_value());
    const std::set<std::string> seen{p1.keys[0].key.id, p1.keys[1].key.id, p2.keys[0].key.id};
    CHECK(seen == std::set<std::string>{id, id2, id3});
    // A page exactly as long as what is left has no next.
    req::KeyList all;
    all.limit = 3;
    const KeyPage p3 = handle(s, all);
    CHECK(p3.keys.size() == 3);
    CHECK_FALSE(p3.next.has_value());
    {
      const auto rows = log.take();
      REQUIRE(rows.size() == 3);
      for (const auto& r : rows) check_record(r, "key.list", "vault/" + s.vault().meta().vault_id);
      CHECK(params(rows[0]) == json{{"limit", 2}});
      CHECK(params(rows[1]) == json{{"after", *p1.next}, {"limit", 2}});
    }
    // A page of fewer than one key, or of more than a page may hold, is a usage error.
    for (const std::int64_t limit : {std::int64_t{0}, std::int64_t{-1}, keys::kMaxListLimit + 1,
                                     std::numeric_limits<std::int64_t>::max()}) {
      CAPTURE(limit);
      req::KeyList wrong;
      wrong.limit = limit;
      CHECK(error_of([&] { (void)handle(s, wrong); }).code() == Code::usage);
      check_record(log.one(), "key.list", "vault/" + s.vault().meta().vault_id, "error", "usage");
    }
    req::KeyList most;
    most.limit = keys::kMaxListLimit;
    CHECK(handle(s, most).keys.size() == 3);
    (void)log.take();
    // An unknown `after` is not_found, and recorded as an error.
    req::KeyList bad;
    bad.after = "no-such-key";
    CHECK(error_of([&] { (void)handle(s, bad); }).code() == Code::not_found);
    check_record(log.one(), "key.list", "vault/" + s.vault().meta().vault_id, "error", "not_found");

    const keys::KeyInfo off = handle(s, req::KeyDisable{id3});
    CHECK(off.key.state == KeyState::disabled);
    check_record(log.one(), "key.disable", key_res(id3));
    req::KeyList disabled;
    disabled.state = KeyState::disabled;
    const KeyPage d = handle(s, disabled);
    REQUIRE(d.keys.size() == 1);
    CHECK(d.keys[0].key.id == id3);
    req::KeyList enabled;
    enabled.state = KeyState::enabled;
    std::set<std::string> on;
    for (const auto& k : handle(s, enabled).keys) on.insert(k.key.id);
    CHECK(on == std::set<std::string>{id, id2});
    const auto rows = log.take();
    REQUIRE(rows.size() == 2);
    CHECK(params(rows[0])["state"] == "Disabled");
    CHECK(params(rows[1])["state"] == "Enabled");
  }

  SUBCASE("describe by id and by alias names the key in the record") {
    const keys::KeyInfo by_id = handle(s, req::KeyDescribe{id});
    const keys::KeyInfo by_alias = handle(s, req::KeyDescribe{"alias/app"});
    CHECK(by_id.key.id == id);
    CHECK(by_alias.key.id == id);
    CHECK(by_alias.tags == k1.tags);
    const auto rows = log.take();
    REQUIRE(rows.size() == 2);
    check_record(rows[0], "key.describe", key_res(id));
    check_record(rows[1], "key.describe", key_res(id));
    // The id resolved, and the alias the caller named it by.
    CHECK(params(rows[0]) == json{{"key_id", id}});
    CHECK(params(rows[1]) == json{{"key_alias", "alias/app"}, {"key_id", id}});
    // A key that is not there: not_found, recorded on the name asked for.
    CHECK(error_of([&] { (void)handle(s, req::KeyDescribe{"alias/none"}); }).code() ==
          Code::not_found);
    const store::AuditRow none = log.one();
    check_record(none, "key.describe", "key/alias/none", "error", "not_found");
    CHECK(params(none) == json{{"key_alias", "alias/none"}});
  }

  SUBCASE("a disabled key refuses to encrypt or decrypt, and the refusal is recorded") {
    const Bytes blob = handle(s, req::Encrypt{id, secure("before"), {}});
    (void)log.take();
    CHECK(handle(s, req::KeyDisable{"alias/app"}).key.state == KeyState::disabled);
    check_record(log.one(), "key.disable", key_res(id));

    const Error e = error_of([&] { (void)handle(s, req::Encrypt{"alias/app", secure("x"), {}}); });
    CHECK(e.code() == Code::refused);
    CHECK(contains(e.what(), "is disabled"));
    // A refusal by the key's state is recorded like any refusal: denied, code refused; it has no
    // `rule` (the authoriser allowed it).
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.encrypt", key_res(id), "denied", "refused");
      CHECK_FALSE(params(r).contains("rule"));
      CHECK_FALSE(params(r).contains("version"));
    }
    CHECK(error_of([&] {
            (void)handle(s, req::Decrypt{blob, {}, {}, {}, {}});
          }).code() == Code::refused);
    check_record(log.one(), "key.decrypt", key_res(id), "denied", "refused");

    CHECK(handle(s, req::KeyEnable{id}).key.state == KeyState::enabled);
    check_record(log.one(), "key.enable", key_res(id));
    CHECK(handle(s, req::Decrypt{blob, {}, {}, {}, {}}).plaintext.chars() == "before");
    check_record(log.one(), "key.decrypt", key_res(id));
  }

  SUBCASE("rotate: primary version 2, and what version 1 encrypted still decrypts") {
    const Bytes old_blob = handle(s, req::Encrypt{id, secure("made under v1"), {}});
    (void)log.take();
    const keys::KeyInfo rotated = handle(s, req::KeyRotate{"alias/app"});
    CHECK(rotated.key.primary_version == 2);
    REQUIRE(rotated.versions.size() == 2);
    CHECK(rotated.versions[1].version == 2);
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.rotate", key_res(id));
      CHECK(params(r)["version"] == 2);
    }
    const keys::Decrypted old_pt = handle(s, req::Decrypt{old_blob, {}, {}, {}, {}});
    CHECK(old_pt.plaintext.chars() == "made under v1");
    CHECK(old_pt.key_version == 1);
    const Bytes new_blob = handle(s, req::Encrypt{id, secure("made under v2"), {}});
    CHECK(handle(s, req::Decrypt{new_blob, {}, {}, {}, {}}).key_version == 2);
    const auto rows = log.take();
    REQUIRE(rows.size() == 3);
    CHECK(params(rows[0])["version"] == 1);  // the decrypt names the version that opened it
    CHECK(params(rows[1])["version"] == 2);  // the encrypt, the primary version
  }

  SUBCASE("set-rotation sets and clears the period, within 7 to 730 days") {
    const keys::KeyInfo on = handle(s, req::KeySetRotation{id, 30});
    CHECK(on.key.rotation_period_days == 30);
    CHECK(on.next_rotation == add_days(on.key.last_rotated, 30));
    CHECK(params(log.one())["rotation_period_days"] == 30);
    const keys::KeyInfo off = handle(s, req::KeySetRotation{id, std::nullopt});
    CHECK_FALSE(off.key.rotation_period_days.has_value());
    CHECK_FALSE(off.next_rotation.has_value());
    const store::AuditRow r = log.one();
    check_record(r, "key.set_rotation", key_res(id));
    CHECK(params(r)["rotation_period_days"].is_null());
    for (const std::int64_t days : {-1, 0, 6, 731}) {
      CAPTURE(days);
      CHECK(error_of([&] {
              (void)handle(s, req::KeySetRotation{id, days});
            }).code() == Code::usage);
      check_record(log.one(), "key.set_rotation", key_res(id), "error", "usage");
    }
    CHECK_FALSE(handle(s, req::KeyDescribe{id}).key.rotation_period_days.has_value());
    // The same range at create; no key is made.
    req::KeyCreate too_often;
    too_often.spec.rotation_days = 1;
    CHECK(error_of([&] { (void)handle(s, too_often); }).code() == Code::usage);
    (void)log.take();
    CHECK(handle(s, req::KeyList{}).keys.size() == 3);
  }

  SUBCASE("schedule-deletion, then cancel-deletion leaves the key disabled") {
    // The waiting period is 7 to 30 days: a request cannot make a key due for deletion now.
    for (const std::int64_t days : {-30, 0, 6, 31}) {
      CAPTURE(days);
      CHECK(error_of([&] {
              (void)handle(s, req::KeyScheduleDeletion{id2, days});
            }).code() == Code::usage);
      check_record(log.one(), "key.schedule_deletion", key_res(id2), "error", "usage");
    }
    CHECK(handle(s, req::KeyDescribe{id2}).key.state == KeyState::enabled);
    (void)log.take();
    const keys::KeyInfo pending = handle(s, req::KeyScheduleDeletion{id2, 7});
    CHECK(pending.key.state == KeyState::pending_deletion);
    REQUIRE(pending.key.deletion_date.has_value());
    CHECK_FALSE(pending.next_rotation.has_value());
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.schedule_deletion", key_res(id2));
      CHECK(params(r)["pending_days"] == 7);
      CHECK(params(r)["deletion_date"] == *pending.key.deletion_date);
      const auto when = parse_rfc3339(*pending.key.deletion_date);
      REQUIRE(when.has_value());
      CHECK(*when > now() + std::chrono::days(6));
    }
    CHECK(error_of([&] {
            (void)handle(s, req::Encrypt{id2, secure("x"), {}});
          }).code() == Code::refused);
    check_record(log.one(), "key.encrypt", key_res(id2), "denied", "refused");
    // Scheduling it twice is refused.
    CHECK(error_of([&] {
            (void)handle(s, req::KeyScheduleDeletion{id2, 7});
          }).code() == Code::refused);
    check_record(log.one(), "key.schedule_deletion", key_res(id2), "denied", "refused");

    const keys::KeyInfo cancelled = handle(s, req::KeyCancelDeletion{id2});
    CHECK(cancelled.key.state == KeyState::disabled);
    CHECK_FALSE(cancelled.key.deletion_date.has_value());
    check_record(log.one(), "key.cancel_deletion", key_res(id2));
    CHECK(error_of([&] { (void)handle(s, req::KeyCancelDeletion{id2}); }).code() == Code::refused);
    check_record(log.one(), "key.cancel_deletion", key_res(id2), "denied", "refused");
  }

  SUBCASE("tag and untag") {
    const keys::KeyInfo tagged =
        handle(s, req::KeyTag{"alias/app", {{"owner", "alice"}, {"team", "payments"}}});
    CHECK(tagged.tags == Pairs{{"env", "prod"}, {"owner", "alice"}, {"team", "payments"}});
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.tag", key_res(id));
      CHECK(params(r)["tags"] == json{{"owner", "alice"}, {"team", "payments"}});
    }
    const keys::KeyInfo untagged = handle(s, req::KeyUntag{id, {"env", "team"}});
    CHECK(untagged.tags == Pairs{{"owner", "alice"}});
    CHECK(params(log.one())["names"] == json::array({"env", "team"}));
    // A tag the key does not have: not_found, and nothing removed.
    CHECK(error_of([&] {
            (void)handle(s, req::KeyUntag{id, {"owner", "nope"}});
          }).code() == Code::not_found);
    check_record(log.one(), "key.untag", key_res(id), "error", "not_found");
    CHECK(handle(s, req::KeyDescribe{id}).tags == Pairs{{"owner", "alice"}});
  }

  SUBCASE("alias create, update, delete and list") {
    (void)handle(s, req::AliasCreate{"alias/other", id2});
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.alias_create", key_res(id2));
      CHECK(params(r) == json{{"alias", "alias/other"}, {"key_id", id2}});
    }
    CHECK(handle(s, req::AliasList{}) == Pairs{{"alias/app", id}, {"alias/other", id2}});
    check_record(log.one(), "key.alias_list", "vault/" + s.vault().meta().vault_id);
    CHECK(handle(s, req::KeyDescribe{"alias/other"}).key.id == id2);
    (void)log.take();

    // An alias that exists already is refused, and recorded as a refusal.
    CHECK(error_of([&] {
            (void)handle(s, req::AliasCreate{"alias/other", id3});
          }).code() == Code::refused);
    check_record(log.one(), "key.alias_create", key_res(id3), "denied", "refused");
    CHECK(error_of([&] {
            (void)handle(s, req::AliasCreate{"no-prefix", id3});
          }).code() == Code::usage);
    check_record(log.one(), "key.alias_create", key_res(id3), "error", "usage");

    (void)handle(s, req::AliasUpdate{"alias/other", id3});
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.alias_update", key_res(id3));
      CHECK(params(r)["previous_key"] == id2);
      CHECK(params(r)["alias"] == "alias/other");
    }
    CHECK(handle(s, req::KeyDescribe{"alias/other"}).key.id == id3);
    CHECK(handle(s, req::KeyDescribe{id2}).aliases.empty());
    (void)log.take();

    (void)handle(s, req::AliasDelete{"alias/other"});
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.alias_delete", key_res(id3));
      CHECK(params(r) == json{{"alias", "alias/other"}});
    }
    CHECK(handle(s, req::AliasList{}) == Pairs{{"alias/app", id}});
    (void)log.take();
    CHECK(error_of([&] { (void)handle(s, req::AliasDelete{"alias/other"}); }).code() ==
          Code::not_found);
    check_record(log.one(), "key.alias_delete", "alias/", "error", "not_found");
  }

  CHECK(handle(s, req::AuditVerify{}).ok);
}

// ---------------------------------------------------------------------------------------------
// Cryptography with keys
// ---------------------------------------------------------------------------------------------

TEST_CASE("crypto requests: encrypt, decrypt, re-encrypt, data keys and random bytes") {
  TempDir dir;
  auto svc = init_service(dir / "vault.db");
  Service& s = *svc;
  const std::string k1 = new_key(s, "alias/crypto").key.id;
  const std::string k2 = new_key(s).key.id;
  Log log(s);
  const Context ctx{{"purpose", "unit"}, {"tenant", "t1"}};
  const json ctx_json{{"purpose", "unit"}, {"tenant", "t1"}};

  const Bytes blob = handle(s, req::Encrypt{"alias/crypto", secure("hello world"), ctx});
  CHECK(keys::KeyStore::blob_key_id(blob) == k1);
  {
    const store::AuditRow r = log.one();
    check_record(r, "key.encrypt", key_res(k1));
    CHECK(params(r) == json{{"bytes", 11},
                            {"context", ctx_json},
                            {"key_alias", "alias/crypto"},
                            {"key_id", k1},
                            {"version", 1}});
  }

  SUBCASE("decrypt with the context round-trips; another context is integrity, recorded") {
    const keys::Decrypted d = handle(s, req::Decrypt{blob, ctx, {}, {}, {}});
    CHECK(d.plaintext.chars() == "hello world");
    CHECK(d.key_id == k1);
    CHECK(d.key_version == 1);
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.decrypt", key_res(k1));
      CHECK(params(r) == json{{"context", ctx_json}, {"version", 1}});
    }
    for (const Context& wrong : {Context{{"purpose", "unit"}, {"tenant", "t2"}}, Context{}}) {
      const Error e = error_of([&] { (void)handle(s, req::Decrypt{blob, wrong, {}, {}, {}}); });
      CHECK(e.code() == Code::integrity);
      const store::AuditRow r = log.one();
      check_record(r, "key.decrypt", key_res(k1), "error", "integrity");
      CHECK_FALSE(params(r).contains("version"));
    }
    // A damaged blob: integrity too.
    Bytes bad = blob;
    bad.back() ^= 1;
    CHECK(error_of([&] {
            (void)handle(s, req::Decrypt{bad, ctx, {}, {}, {}});
          }).code() == Code::integrity);
    check_record(log.one(), "key.decrypt", key_res(k1), "error", "integrity");
  }

  SUBCASE("re-encrypt to another key and context, without releasing the plaintext") {
    const Context to_ctx{{"tenant", "t9"}};
    const Bytes moved = handle(s, req::ReEncrypt{blob, ctx, k2, to_ctx});
    CHECK(keys::KeyStore::blob_key_id(moved) == k2);
    {
      const store::AuditRow r = log.one();
      check_record(r, "key.reencrypt", key_res(k1));
      const json p = params(r);
      CHECK(p["from_version"] == 1);
      CHECK(p["to_key_id"] == k2);
      CHECK(p["to_version"] == 1);
      CHECK(p["context"] == ctx_json);
      CHECK(p["to_context"] == json{{"tenant", "t9"}});
      CHECK_FALSE(contains(r.params, "hello world"));
    }
    const keys::Decrypted d = handle(s, req::Decrypt{moved, to_ctx, {}, {}, {}});
    CHECK(d.plaintext.chars() == "hello world");
    CHECK(d.key_id == k2);
    CHECK(error_of([&] {
            (void)handle(s, req::Decrypt{moved, ctx, {}, {}, {}});
          }).code() == Code::integrity);
    (void)log.take();
    // The source context must be the one it was made with.
    CHECK(error_of([&] {
            (void)handle(s, req::ReEncrypt{blob, to_ctx, k2, to_ctx});
          }).code() == Code::integrity);
    check_record(log.one(), "key.reencrypt", key_res(k1), "error", "integrity");
  }

  SUBCASE("generate-data-key: the plaintext is what its ciphertext blob decrypts to") {
    for (const std::uint32_t n : {32u, 16u}) {
      CAPTURE(n);
      const DataKey dk = handle(s, req::GenerateDataKey{"alias/crypto", n, ctx});
      CHECK(dk.plaintext.size() == n);
      CHECK(dk.key_id == k1);
      CHECK(dk.key_version == 1);
      {
        const store::AuditRow r = log.one();
        check_record(r, "key.generate_data_key", key_res(k1));
        CHECK(params(r)["bytes"] == n);
        CHECK(params(r)["version"] == 1);
        CHECK_FALSE(contains(r.params, crypto::to_hex(dk.plaintext.view())));
      }
      const keys::Decrypted d = handle(s, req::Decrypt{dk.ciphertext_blob, ctx, {}, {}, {}});
      CHECK(std::ranges::equal(d.plaintext.view(), dk.plaintext.view()));
      (void)log.take();
    }
  }

  SUBCASE("random returns the size asked for, fresh each time") {
    const Bytes a = handle(s, req::Random{24});
    const Bytes b = handle(s, req::Random{24});
    CHECK(a.size() == 24);
    CHECK(b.size() == 24);
    CHECK(a != b);
    const auto rows = log.take();
    REQUIRE(rows.size() == 2);
    check_record(rows[0], "random.generate", "vault/" + s.vault().meta().vault_id);
    CHECK(params(rows[0]) == json{{"bytes", 24}});
  }

  SUBCASE("sizes the command line refuses are refused in the library too") {
    const std::string key = handle(s, req::KeyCreate{}).key.id;
    (void)log.take();
    for (std::uint32_t n : {0u, 1025u, 0xFFFFFFFFu}) {
      CHECK(error_of([&] { (void)handle(s, req::Random{n}); }).code() == Code::usage);
    }
    for (std::uint32_t n : {0u, 1u, 24u, 64u}) {
      CHECK(error_of([&] {
              (void)handle(s, req::GenerateDataKey{key, n, {}});
            }).code() == Code::usage);
    }
    CHECK(log.take().empty());  // refused before anything ran: no record
  }
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

TEST_CASE("secret requests: create, put, get, list, describe, versions, delete, rotate") {
  TempDir dir;
  auto svc = init_service(dir / "vault.db");
  Service& s = *svc;
  Log log(s);

  // The first secret without a key makes the default secrets key.
  req::SecretCreate db = secret_request("app/db", "s3cret-v1");
  db.spec.description = "the database";
  db.spec.tags = {{"env", "prod"}};
  const secrets::SecretInfo created = handle(s, db);
  CHECK(created.secret.name == "app/db");
  CHECK(created.secret.description == "the database");
  CHECK(created.key_aliases == std::vector<std::string>{std::string(secrets::kDefaultKeyAlias)});
  CHECK(created.tags == Pairs{{"env", "prod"}});
  REQUIRE(created.versions.size() == 1);
  CHECK(created.versions[0].version == 1);
  CHECK(created.versions[0].stage == SecretStage::current);
  const std::string key_id = created.secret.key_id;
  {
    const store::AuditRow r = log.one();
    check_record(r, "secret.create", "secret/app/db");
    CHECK(params(r) == json{{"generated", false},
                            {"key_created", true},
                            {"key_id", key_id},
                            {"name", "app/db"},
                            {"rotation_command", false},
                            {"version", 1}});
  }

  // A generated value, with the generator of the request.
  req::SecretCreate token = secret_request("app/token", std::nullopt, key_id);
  token.input.generator = {24, "hex", ""};
  token.spec.generator = token.input.generator;
  CHECK(handle(s, token).secret.key_id == key_id);
  {
    const store::AuditRow r = log.one();
    check_record(r, "secret.create", "secret/app/token");
    CHECK(params(r)["generated"] == true);
    CHECK_FALSE(params(r).contains("key_created"));
    CHECK(params(r)["key_id"] == key_id);
  }
  const secrets::Value generated = handle(s, get_request("app/token"));
  CHECK(generated.value.size() == 24);
  CHECK(std::ranges::all_of(generated.value.chars(), [](char c) {
    return std::string_view("0123456789abcdef").find(c) != std::string_view::npos;
  }));
  (void)log.take();

  // put: version 2 is current, version 1 previous.
  const secrets::SecretInfo put = handle(s, req::SecretPut{"app/db", {secure("s3cret-v2"), {}}});
  REQUIRE(put.versions.size() == 2);
  CHECK(put.versions[0].stage == SecretStage::previous);
  CHECK(put.versions[1].stage == SecretStage::current);
  {
    const store::AuditRow r = log.one();
    check_record(r, "secret.put", "secret/app/db");
    CHECK(params(r) == json{{"generated", false}, {"name", "app/db"}, {"version", 2}});
  }

  SUBCASE("get by stage and by version; the record names the version, never the value") {
    const secrets::Value cur = handle(s, get_request("app/db"));
    CHECK(cur.value.chars() == "s3cret-v2");
    CHECK(cur.version == 2);
    CHECK(cur.stage == SecretStage::current);
    const secrets::Value prev = handle(s, get_request("app/db", SecretStage::previous));
    CHECK(prev.value.chars() == "s3cret-v1");
    CHECK(prev.version == 1);
    const secrets::Value v1 = handle(s, get_request("app/db", std::nullopt, 1));
    CHECK(v1.value.chars() == "s3cret-v1");
    CHECK(v1.stage == SecretStage::previous);
    {
      const auto rows = log.take();
      REQUIRE(rows.size() == 3);
      for (const auto& r : rows) {
        check_record(r, "secret.get", "secret/app/db");
        CHECK_FALSE(contains(r.params, "s3cret"));
        CHECK(params(r)["key_id"] == key_id);
      }
      CHECK(params(rows[0]) == json{{"key_id", key_id}, {"name", "app/db"}, {"version", 2}});
      CHECK(params(rows[1])["stage"] == "previous");
      CHECK(params(rows[1])["version"] == 1);
      CHECK(params(rows[2])["version"] == 1);
    }

    // For `kmsctl exec`: the record names the variable and the command.
    req::SecretGet exec = get_request("app/db");
    exec.exec = secrets::ExecUse{"DB_PASSWORD", "psql"};
    CHECK(handle(s, exec).value.chars() == "s3cret-v2");
    {
      const store::AuditRow r = log.one();
      check_record(r, "secret.get", "secret/app/db");
      CHECK(params(r)["exec"] == json{{"command", "psql"}, {"env", "DB_PASSWORD"}});
      CHECK(params(r)["version"] == 2);
      CHECK_FALSE(contains(r.params, "s3cret"));
    }

    // What is not there: not_found, recorded.
    CHECK(error_of([&] { (void)handle(s, get_request("app/db", SecretStage::pending)); }).code() ==
          Code::not_found);
    check_record(log.one(), "secret.get", "secret/app/db", "error", "not_found");
    CHECK(error_of([&] { (void)handle(s, get_request("app/db", std::nullopt, 9)); }).code() ==
          Code::not_found);
    check_record(log.one(), "secret.get", "secret/app/db", "error", "not_found");
    CHECK(error_of([&] { (void)handle(s, get_request("app/none")); }).code() == Code::not_found);
    check_record(log.one(), "secret.get", "secret/app/none", "error", "not_found");
  }

  SUBCASE("list, describe and versions") {
    const std::vector<secrets::SecretInfo> all = handle(s, req::SecretList{});
    REQUIRE(all.size() == 2);
    CHECK(all[0].secret.name == "app/db");
    CHECK(all[1].secret.name == "app/token");
    {
      const store::AuditRow r = log.one();
      check_record(r, "secret.list", "vault/" + s.vault().meta().vault_id);
      CHECK(params(r) == json{{"count", 2}});
    }
    const secrets::SecretInfo d = handle(s, req::SecretDescribe{"app/db"});
    CHECK(d.secret.description == "the database");
    CHECK(d.tags == Pairs{{"env", "prod"}});
    CHECK(d.versions.size() == 2);
    check_record(log.one(), "secret.describe", "secret/app/db");
    const secrets::SecretInfo v = handle(s, req::SecretVersions{"app/db"});
    REQUIRE(v.versions.size() == 2);
    CHECK(v.versions[0].version == 1);
    CHECK(v.versions[1].version == 2);
    const store::AuditRow r = log.one();
    check_record(r, "secret.versions", "secret/app/db");
    CHECK(params(r) == json{{"name", "app/db"}});
  }

  SUBCASE("delete with a recovery window, restore; delete without one purges") {
    // The recovery window is 7 to 30 days: a request cannot make a secret due for purging now.
    for (const std::int64_t days : {-1, 0, 6, 31}) {
      CAPTURE(days);
      CHECK(error_of([&] {
              (void)handle(s, req::SecretDelete{"app/db", days});
            }).code() == Code::usage);
      check_record(log.one(), "secret.delete", "secret/app/db", "error", "usage");
    }
    CHECK_FALSE(handle(s, req::SecretDescribe{"app/db"}).secret.deletion_date.has_value());
    (void)log.take();
    const secrets::SecretInfo scheduled = handle(s, req::SecretDelete{"app/db", 7});
    REQUIRE(scheduled.secret.deletion_date.has_value());
    {
      const store::AuditRow r = log.one();
      check_record(r, "secret.delete", "secret/app/db");
      CHECK(params(r) == json{{"deletion_date", *scheduled.secret.deletion_date},
                              {"force", false},
                              {"name", "app/db"},
                              {"recovery_days", 7}});
    }
    // Reads are refused meanwhile.
    CHECK(error_of([&] { (void)handle(s, get_request("app/db")); }).code() == Code::refused);
    check_record(log.one(), "secret.get", "secret/app/db", "denied", "refused");

    const secrets::SecretInfo restored = handle(s, req::SecretRestore{"app/db"});
    CHECK_FALSE(restored.secret.deletion_date.has_value());
    check_record(log.one(), "secret.restore", "secret/app/db");
    CHECK(handle(s, get_request("app/db")).value.chars() == "s3cret-v2");
    (void)log.take();

    const secrets::SecretInfo purged = handle(s, req::SecretDelete{"app/token", std::nullopt});
    CHECK(purged.secret.name == "app/token");
    {
      const store::AuditRow r = log.one();
      check_record(r, "secret.delete", "secret/app/token");
      CHECK(params(r)["force"] == true);
      CHECK(params(r)["purged_versions"] == 1);
    }
    CHECK(error_of([&] { (void)handle(s, req::SecretDescribe{"app/token"}); }).code() ==
          Code::not_found);
    (void)log.take();
    const std::vector<secrets::SecretInfo> left = handle(s, req::SecretList{});
    REQUIRE(left.size() == 1);
    CHECK(left[0].secret.name == "app/db");
  }

  SUBCASE("set-rotation: the record tells whether a command is set, never its text") {
    secrets::RotationChange period;
    period.set_period = true;
    period.period_days = 30;
    const secrets::SecretInfo p = handle(s, req::SecretSetRotation{"app/db", period});
    CHECK(p.secret.rotation_period_days == 30);
    CHECK(p.next_rotation.has_value());
    {
      const store::AuditRow r = log.one();
      check_record(r, "secret.set_rotation", "secret/app/db");
      CHECK(params(r) == json{{"name", "app/db"}, {"rotation_period_days", 30}});
    }
    secrets::RotationChange command;
    command.set_command = true;
    command.command = "echo never-run-here";
    const secrets::SecretInfo c = handle(s, req::SecretSetRotation{"app/db", command});
    CHECK(c.secret.rotation_command == "echo never-run-here");
    CHECK(c.secret.rotation_period_days == 30);  // kept
    {
      const store::AuditRow r = log.one();
      CHECK(params(r)["rotation_command"] == true);
      CHECK_FALSE(contains(r.params, "never-run-here"));
    }
    command.command.reset();
    CHECK_FALSE(handle(s, req::SecretSetRotation{"app/db", command}).secret.rotation_command);
    CHECK(params(log.one())["rotation_command"] == false);
    // A period is 1 to 365 days, here and at create.
    for (const std::int64_t days : {-1, 0, 366}) {
      CAPTURE(days);
      period.period_days = days;
      CHECK(error_of([&] {
              (void)handle(s, req::SecretSetRotation{"app/db", period});
            }).code() == Code::usage);
      check_record(log.one(), "secret.set_rotation", "secret/app/db", "error", "usage");
      req::SecretCreate create = secret_request("app/other", "v", key_id);
      create.spec.rotation_days = days;
      CHECK(error_of([&] { (void)handle(s, create); }).code() == Code::usage);
      check_record(log.one(), "secret.create", "secret/app/other", "error", "usage");
    }
    CHECK(handle(s, req::SecretDescribe{"app/db"}).secret.rotation_period_days == 30);
  }

  SUBCASE("rotate without a hook: a generated value becomes current, the old one previous") {
    const SecretRotation rot = handle(s, req::SecretRotate{"app/db"});
    CHECK(rot.name == "app/db");
    CHECK(rot.version == 3);
    CHECK(rot.previous_version == 2);
    CHECK_FALSE(rot.resumed);
    CHECK(rot.steps == std::vector<std::string>{"create", "finish"});
    {
      const auto rows = log.take();
      REQUIRE(rows.size() == 3);
      for (const auto& r : rows) check_record(r, "secret.rotate", "secret/app/db");
      CHECK(
          params(rows[0]) ==
          json{{"current_version", 2}, {"name", "app/db"}, {"resumed", false}, {"step", "start"}});
      CHECK(params(rows[1]) == json{{"name", "app/db"},
                                    {"step", "create"},
                                    {"supplied_by_hook", false},
                                    {"version", 3}});
      CHECK(params(rows[2]) ==
            json{{"name", "app/db"}, {"previous_version", 2}, {"step", "finish"}, {"version", 3}});
    }
    const secrets::Value cur = handle(s, get_request("app/db"));
    CHECK(cur.version == 3);
    CHECK(cur.value.size() == 32);  // the secret's generator: 32 alphanumerics
    CHECK(cur.value.chars() != "s3cret-v2");
    const secrets::Value prev = handle(s, get_request("app/db", SecretStage::previous));
    CHECK(prev.version == 2);
    CHECK(prev.value.chars() == "s3cret-v2");
    CHECK(handle(s, get_request("app/db", std::nullopt, 1)).value.chars() == "s3cret-v1");
    const secrets::SecretInfo d = handle(s, req::SecretDescribe{"app/db"});
    CHECK(d.secret.rotation_status == RotationStatus::succeeded);
    CHECK(d.secret.last_rotated.has_value());
    REQUIRE(d.versions.size() == 3);
    CHECK_FALSE(d.versions[0].stage.has_value());
  }

  CHECK(handle(s, req::AuditVerify{}).ok);
}

TEST_CASE("secret policy requests: set, get and remove a secret's own policy") {
  TempDir dir;
  auto svc = init_service(dir / "vault.db");
  Service& s = *svc;
  const std::string id = handle(s, secret_request("app/db", "s3cret-v1")).secret.id;
  Log log(s);
  const std::string text =
      "[[statements]]\nsid = \"reader\"\neffect = \"allow\"\nprincipals = [\"uid:4242\"]\n"
      "actions = [\"secrets:GetSecretValue\"]\nresources = [\"*\"]\n";

  const SecretPolicyInfo none = handle(s, req::SecretGetPolicy{"app/db"});
  CHECK(none.name == "app/db");
  CHECK(none.secret_id == id);
  CHECK_FALSE(none.text.has_value());
  check_record(log.one(), "secret.get_policy", "secret/app/db");

  const SecretPolicyInfo set = handle(s, req::SecretSetPolicy{"app/db", text});
  CHECK(set.text == text);
  REQUIRE(set.sha256.has_value());
  {
    const store::AuditRow r = log.one();
    check_record(r, "secret.set_policy", "secret/app/db");
    CHECK(params(r) == json{{"name", "app/db"}, {"sha256", *set.sha256}, {"statements", 1}});
  }
  const SecretPolicyInfo got = handle(s, req::SecretGetPolicy{"app/db"});
  CHECK(got.text == text);
  CHECK(got.updated_by_uid == static_cast<std::int64_t>(::getuid()));
  CHECK(params(log.one()) == json{{"name", "app/db"}, {"sha256", *set.sha256}});

  CHECK_FALSE(handle(s, req::SecretSetPolicy{"app/db", std::nullopt}).text.has_value());
  CHECK(params(log.one()) == json{{"name", "app/db"}, {"removed", true}});
  CHECK(error_of([&] {
          (void)handle(s, req::SecretSetPolicy{"app/none", text});
        }).code() == Code::not_found);
  check_record(log.one(), "secret.set_policy", "secret/app/none", "error", "not_found");
  CHECK(handle(s, req::AuditVerify{}).ok);
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

TEST_CASE("file requests: a file session round-trips with started and ok records; rewrap") {
  TempDir dir;
  auto svc = init_service(dir / "vault.db");
  Service& s = *svc;
  const std::string k1 = new_key(s, "alias/files").key.id;
  const std::string k2 = new_key(s).key.id;
  Log log(s);
  const Context ctx{{"app", "unit"}};
  const std::string plain = pattern(2500);  // frames of 1024, 1024 and 452 bytes
  write_file(dir / "plain.bin", plain);

  const FileResult enc =
      encrypt_path(s, dir / "plain.bin", dir / "plain.bin.kenc", {"alias/files"}, ctx);
  CHECK(enc.name == "plain.bin");
  CHECK(enc.keys == KeyVersions{{k1, 1}});
  CHECK(enc.bytes == 2500);
  CHECK(enc.frames == 3);
  CHECK(read_file(dir / "plain.bin.kenc").find(plain.substr(0, 64)) == std::string::npos);
  {
    const auto rows = log.take();
    REQUIRE(rows.size() == 2);
    check_record(rows[0], "file.encrypt", "file/plain.bin", "started");
    CHECK(params(rows[0]) == json{{"context", {{"app", "unit"}}},
                                  {"file", "plain.bin"},
                                  {"keys", keys_json({{k1, 1}})},
                                  {"step", "start"}});
    check_record(rows[1], "file.encrypt", "file/plain.bin", "ok");
    CHECK(params(rows[1]) == json{{"bytes", 2500},
                                  {"file", "plain.bin"},
                                  {"frames", 3},
                                  {"started_seq", rows[0].seq},
                                  {"step", "done"}});
  }
  // The operation's lock file is gone once its end is recorded.
  CHECK(fs::is_empty(dir / "vault.db.ops"));

  const FileResult dec = decrypt_path(s, dir / "plain.bin.kenc", dir / "plain.out", ctx);
  CHECK(read_file(dir / "plain.out") == plain);
  CHECK(dec.name == "plain.bin.kenc");
  CHECK(dec.keys == KeyVersions{{k1, 1}});
  CHECK(dec.bytes == 2500);
  CHECK(dec.frames == 3);
  {
    const auto rows = log.take();
    REQUIRE(rows.size() == 2);
    check_record(rows[0], "file.decrypt", "file/plain.bin.kenc", "started");
    CHECK(params(rows[0])["keys"] == keys_json({{k1, 1}}));
    CHECK(params(rows[0])["step"] == "start");
    check_record(rows[1], "file.decrypt", "file/plain.bin.kenc", "ok");
    CHECK(params(rows[1])["started_seq"] == rows[0].seq);
    CHECK(params(rows[1])["bytes"] == 2500);
    CHECK(params(rows[1])["frames"] == 3);
  }
  CHECK(fs::is_empty(dir / "vault.db.ops"));

  SUBCASE("a decrypt with another context fails before any key is used: one header record") {
    const Error e =
        error_of([&] { (void)decrypt_path(s, dir / "plain.bin.kenc", dir / "x.out", {}); });
    CHECK(e.code() == Code::integrity);
    const store::AuditRow r = log.one();
    check_record(r, "file.decrypt", "file/plain.bin.kenc", "error", "integrity");
    CHECK(params(r) == json{{"file", "plain.bin.kenc"}, {"stage", "header"}});
  }

  SUBCASE("rewrap to another key: started, ok once the file is replaced; it opens with k2 alone") {
    envelope::Header h;
    {
      Fd in(::open((dir / "plain.bin.kenc").c_str(), O_RDONLY | O_CLOEXEC));
      h = envelope::read_header(in.fd);
    }
    const std::size_t body = h.encoded_size;
    REQUIRE(h.recipients.size() == 1);
    CHECK(keys::KeyStore::blob_key_id(h.recipients[0].body) == k1);
    const std::string old_file = read_file(dir / "plain.bin.kenc");
    fs::copy_file(dir / "plain.bin.kenc", dir / "rewrapped.kenc");
    const FileResult rw = rewrap_file(*s.file_session(Action::file_rewrap, "rewrapped.kenc"),
                                      (dir / "rewrapped.kenc").string(), k2);
    CHECK(rw.name == "rewrapped.kenc");
    CHECK(rw.keys == KeyVersions{{k2, 1}});
    {
      const auto rows = log.take();
      REQUIRE(rows.size() == 2);
      check_record(rows[0], "file.rewrap", "file/rewrapped.kenc", "started");
      CHECK(params(rows[0]) == json{{"file", "rewrapped.kenc"},
                                    {"from_keys", keys_json({{k1, 1}})},
                                    {"step", "start"},
                                    {"to_key_id", k2},
                                    {"to_keys", keys_json({{k2, 1}})}});
      check_record(rows[1], "file.rewrap", "file/rewrapped.kenc", "ok");
      CHECK(params(rows[1]) ==
            json{{"file", "rewrapped.kenc"}, {"started_seq", rows[0].seq}, {"step", "done"}});
    }
    CHECK(fs::is_empty(dir / "vault.db.ops"));
    const std::string new_file = read_file(dir / "rewrapped.kenc");
    envelope::Header nh;
    {
      Fd in(::open((dir / "rewrapped.kenc").c_str(), O_RDONLY | O_CLOEXEC));
      nh = envelope::read_header(in.fd);
    }
    REQUIRE(nh.recipients.size() == 1);
    CHECK(keys::KeyStore::blob_key_id(nh.recipients[0].body) == k2);
    CHECK(nh.context == ctx);
    CHECK(nh.salt == h.salt);
    // The body is unchanged.
    CHECK(new_file.substr(nh.encoded_size) == old_file.substr(body));

    // Decrypted while the old key is disabled.
    (void)handle(s, req::KeyDisable{k1});
    (void)log.take();
    const FileResult d = decrypt_path(s, dir / "rewrapped.kenc", dir / "rewrapped.out", ctx);
    CHECK(read_file(dir / "rewrapped.out") == plain);
    CHECK(d.keys == KeyVersions{{k2, 1}});
    CHECK(log.take().size() == 2);
    // The old file names only the disabled key: its key use is refused, one denied record.
    CHECK(error_of([&] {
            (void)decrypt_path(s, dir / "plain.bin.kenc", dir / "old.out", ctx);
          }).code() == Code::refused);
    const store::AuditRow r = log.one();
    check_record(r, "file.decrypt", "file/plain.bin.kenc", "denied", "refused");
    CHECK(params(r)["step"] == "start");
  }

  SUBCASE("FileFailed records a failure before any key use; only for a file action") {
    (void)handle(s, req::FileFailed{Action::file_decrypt, "damaged.kenc", Code::integrity, 0});
    {
      const store::AuditRow r = log.one();
      check_record(r, "file.decrypt", "file/damaged.kenc", "error", "integrity");
      CHECK(params(r) == json{{"file", "damaged.kenc"}, {"stage", "header"}});
    }
    // Stopped by a signal while its header was read: interrupted.
    (void)handle(s, req::FileFailed{Action::file_encrypt, "-", Code::failed, 2});
    check_record(log.one(), "file.encrypt", "file/-", "error", "interrupted");

    const Error e = error_of([&] {
      (void)handle(s, req::FileFailed{Action::key_encrypt, "x", Code::integrity, 0});
    });
    CHECK(e.code() == Code::usage);
    CHECK(log.take().empty());  // nothing recorded
  }

  CHECK(handle(s, req::AuditVerify{}).ok);
}

// ---------------------------------------------------------------------------------------------
// The vault and its log
// ---------------------------------------------------------------------------------------------

TEST_CASE("vault and audit requests: status, verify, export, backup, rekey, check-token") {
  TempDir dir;
  auto svc = init_service(dir / "vault.db");
  Service& s = *svc;
  const std::string vault_res = "vault/" + s.vault().meta().vault_id;
  const std::string k1 = new_key(s).key.id;
  (void)new_key(s);
  (void)handle(s, secret_request("app/db", "value-1", k1));
  const Bytes blob = handle(s, req::Encrypt{k1, secure("kept across a rekey"), {}});
  Log log(s);

  const Status st = handle(s, req::Status{});
  CHECK(st.vault_id == s.vault().meta().vault_id);
  CHECK(st.vault_path == (dir / "vault.db").string());
  CHECK(st.private_token);
  CHECK(st.root_key_generation == 1);
  CHECK(st.counts.keys == 2);
  CHECK(st.counts.secrets == 1);
  CHECK(st.counts.keys_due_rotation == 0);
  CHECK(st.counts.keys_due_deletion == 0);
  CHECK(st.counts.secrets_due_rotation == 0);
  CHECK(st.counts.secrets_due_deletion == 0);
  {
    const store::AuditRow r = log.one();
    check_record(r, "vault.status", vault_res);
    // The status record is the head it reports.
    CHECK(st.audit_head.seq == r.seq);
    CHECK(st.audit_head.hash == r.hash);
    CHECK(st.audit_records == r.seq);
  }

  // audit.list records itself, with its filter.
  {
    req::AuditList last;
    last.filter.action = "vault.status";
    last.filter.limit = 1;
    const auto rows = handle(s, last);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].seq == st.audit_head.seq);
    const store::AuditRow r = log.one();
    check_record(r, "audit.list", vault_res);
    CHECK(params(r) == json{{"action", "vault.status"}, {"limit", 1}});
  }

  const audit::VerifyReport rep = handle(s, req::AuditVerify{});
  CHECK(rep.ok);
  CHECK(rep.problem.empty());
  CHECK(rep.records == log.head());
  {
    const store::AuditRow r = log.one();
    check_record(r, "audit.verify", vault_res);
    CHECK(params(r) == json{{"ok", true}, {"records", rep.records}});
  }

  SUBCASE("export writes one JSON line per record to an absolute path; a relative one is usage") {
    const fs::path out = dir / "log.jsonl";
    const std::int64_t n = handle(s, req::AuditExport{out.string(), false});
    CHECK(n == log.head());  // every record before the export's own
    CHECK(mode_of(out) == 0600);
    const std::string text = read_file(out);
    std::vector<json> lines;
    std::size_t start = 0;
    for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines.push_back(json::parse(text.substr(start, nl - start)));
    }
    CHECK(start == text.size());
    REQUIRE(lines.size() == static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < lines.size(); ++i) CHECK(lines[i].at("seq") == i + 1);
    CHECK(lines.front().at("action") == "vault.init");
    CHECK(lines.back().at("action") == "audit.list");  // the log's last read before the export
    {
      const store::AuditRow r = log.one();
      check_record(r, "audit.export", vault_res);
      CHECK(params(r) == json{{"output", out.string()}, {"records", n}});
    }
    // An existing file is refused (denied) and kept.
    CHECK(error_of([&] {
            (void)handle(s, req::AuditExport{out.string(), false});
          }).code() == Code::refused);
    check_record(log.one(), "audit.export", vault_res, "denied", "refused");
    CHECK(read_file(out) == text);
    // A relative path is refused before the vault is asked: nothing is recorded.
    const Error e = error_of([&] { (void)handle(s, req::AuditExport{"log.jsonl", false}); });
    CHECK(e.code() == Code::usage);
    CHECK(contains(e.what(), "not absolute"));
    CHECK(log.take().empty());
  }

  SUBCASE("backup: a copy whose log ends with its own record") {
    const fs::path out = dir / "backup.db";
    (void)handle(s, req::VaultBackup{out.string(), false});
    CHECK(mode_of(out) == 0600);
    const store::AuditRow r = log.one();
    check_record(r, "vault.backup", vault_res);
    CHECK(params(r) == json{{"output", out.string()}});
    {
      store::Db copy(out, store::Db::Mode::open_existing);
      const std::optional<store::AuditHead> head = store::audit_last(copy);
      REQUIRE(head.has_value());
      CHECK(head->seq == r.seq);
      CHECK(head->hash == r.hash);
    }
    CHECK(error_of([&] {
            (void)handle(s, req::VaultBackup{out.string(), false});
          }).code() == Code::refused);
    check_record(log.one(), "vault.backup", vault_res, "denied", "refused");
  }

  SUBCASE("rekey: the generation goes up, and what the vault holds still opens") {
    CHECK(handle(s, req::VaultRekey{}) == 2);
    {
      const store::AuditRow r = log.one();
      check_record(r, "vault.rekey", vault_res);
      CHECK(params(r) == json{{"root_key_generation", 2}});
    }
    CHECK(handle(s, req::Status{}).root_key_generation == 2);
    CHECK(handle(s, req::Decrypt{blob, {}, {}, {}, {}}).plaintext.chars() == "kept across a rekey");
    CHECK(handle(s, get_request("app/db")).value.chars() == "value-1");
    CHECK(handle(s, req::VaultRekey{}) == 3);
    CHECK(handle(s, req::Decrypt{blob, {}, {}, {}, {}}).plaintext.chars() == "kept across a rekey");
    (void)log.take();
    // The old root keys are gone from the token.
    const TokenCheck tc = handle(s, req::VaultCheckToken{false});
    CHECK(std::ranges::count_if(tc.objects,
                                [](const TokenObject& o) { return o.kind == "root key"; }) == 1);
    CHECK(tc.strays == 0);
  }

  SUBCASE("check-token on a clean vault: every object in use, none foreign or stray") {
    const TokenCheck tc = handle(s, req::VaultCheckToken{false});
    CHECK(tc.foreign == 0);
    CHECK(tc.strays == 0);
    CHECK(tc.duplicates == 0);
    CHECK(tc.removed == 0);
    REQUIRE_FALSE(tc.objects.empty());
    for (const TokenObject& o : tc.objects) {
      CAPTURE(o.label);
      CHECK(o.status == "in use");
      CHECK_FALSE(o.removed);
    }
    CHECK(std::ranges::count_if(tc.objects,
                                [](const TokenObject& o) { return o.kind == "root key"; }) == 1);
    const store::AuditRow r = log.one();
    check_record(r, "vault.check_token", vault_res);
    CHECK(params(r)["remove"] == false);
  }

  SUBCASE("maintain, dry run: nothing is due, nothing changes") {
    const MaintainReport m = handle(s, req::Maintain{true});
    CHECK(m.dry_run);
    CHECK(m.rotated.empty());
    CHECK(m.deleted.empty());
    CHECK(m.secrets_rotated.empty());
    CHECK(m.secrets_failed.empty());
    CHECK(m.secrets_purged.empty());
    const store::AuditRow r = log.one();
    check_record(r, "vault.maintain", vault_res);
    CHECK(params(r) == json{{"deleted", json::array()},
                            {"dry_run", true},
                            {"secrets_due_rotation", json::array()},
                            {"secrets_purged", json::array()}});
    CHECK(handle(s, req::KeyDescribe{k1}).key.primary_version == 1);
  }

  CHECK(handle(s, req::AuditVerify{}).ok);
}

// ---------------------------------------------------------------------------------------------
// Authorisation
// ---------------------------------------------------------------------------------------------

TEST_CASE("a caller of another uid is refused every request, nothing changes, each is audited") {
  TempDir dir;
  auto svc = init_service(dir / "vault.db");
  Service& s = *svc;
  const std::string vault_res = "vault/" + s.vault().meta().vault_id;
  const std::string key = new_key(s, "alias/guarded").key.id;
  const Bytes blob = handle(s, req::Encrypt{key, secure("guarded"), {}});
  (void)handle(s, secret_request("app/db", "the-value", key));
  write_file(dir / "plain.bin", "file content");
  (void)encrypt_path(s, dir / "plain.bin", dir / "plain.bin.kenc", {key}, {});
  Log log(s);
  const Status before = handle(s, req::Status{});
  const std::string encrypted = read_file(dir / "plain.bin.kenc");
  (void)log.take();

  const Caller stranger =
      Caller::peer(12345, static_cast<std::int64_t>(::getgid()), 4242, {}, Channel::agent);
  s.serve_client(stranger);
  std::vector<std::string> actions;  // of the requests tried, in order
  auto refused = [&](const auto& request, std::string_view action) {
    CAPTURE(action);
    const Error e = error_of([&] { (void)handle(s, request); });
    CHECK(e.code() == Code::refused);
    CHECK(contains(e.what(), "uid 12345"));
    actions.emplace_back(action);
  };

  refused(req::Status{}, "vault.status");
  refused(req::AuditList{}, "audit.list");
  refused(req::AuditVerify{}, "audit.verify");
  refused(req::AuditExport{(dir / "log.jsonl").string(), false}, "audit.export");
  refused(req::VaultBackup{(dir / "backup.db").string(), false}, "vault.backup");
  refused(req::VaultRekey{}, "vault.rekey");
  refused(req::VaultCheckToken{true}, "vault.check_token");
  refused(req::VaultChangePin{pin_of(kPin), pin_of("new-pin-99")}, "vault.change_pin");
  refused(req::Maintain{false}, "vault.maintain");

  req::KeyCreate create;
  create.spec.alias = "alias/planted";
  refused(create, "key.create");
  refused(req::KeyList{}, "key.list");
  refused(req::KeyDescribe{"alias/guarded"}, "key.describe");
  refused(req::KeyEnable{key}, "key.enable");
  refused(req::KeyDisable{key}, "key.disable");
  refused(req::KeyRotate{key}, "key.rotate");
  refused(req::KeySetRotation{key, 7}, "key.set_rotation");
  refused(req::KeyScheduleDeletion{key, 7}, "key.schedule_deletion");
  refused(req::KeyCancelDeletion{key}, "key.cancel_deletion");
  refused(req::KeyTag{key, {{"owner", "mallory"}}}, "key.tag");
  refused(req::KeyUntag{key, {"owner"}}, "key.untag");
  refused(req::AliasCreate{"alias/mine", key}, "key.alias_create");
  refused(req::AliasUpdate{"alias/guarded", key}, "key.alias_update");
  refused(req::AliasDelete{"alias/guarded"}, "key.alias_delete");
  refused(req::AliasList{}, "key.alias_list");

  refused(req::Encrypt{key, secure("x"), {}}, "key.encrypt");
  refused(req::Decrypt{blob, {}, {}, {}, {}}, "key.decrypt");
  refused(req::ReEncrypt{blob, {}, key, {}}, "key.reencrypt");
  refused(req::GenerateDataKey{"alias/guarded", 32, {}}, "key.generate_data_key");
  refused(req::Random{16}, "random.generate");

  refused(req::FileFailed{Action::file_decrypt, "plain.bin.kenc", Code::integrity, 0},
          "file.decrypt");
  // A file session: its key use is refused before any output.
  {
    const Error e = error_of(
        [&] { (void)encrypt_path(s, dir / "plain.bin", dir / "planted.kenc", {key}, {}); });
    CHECK(e.code() == Code::refused);
    CHECK(fs::file_size(dir / "planted.kenc") == 0);
    actions.emplace_back("file.encrypt");
    const Error d =
        error_of([&] { (void)decrypt_path(s, dir / "plain.bin.kenc", dir / "stolen.out", {}); });
    CHECK(d.code() == Code::refused);
    CHECK(fs::file_size(dir / "stolen.out") == 0);
    actions.emplace_back("file.decrypt");
    const std::string before = read_file(dir / "plain.bin.kenc");
    const Error w = error_of([&] {
      (void)rewrap_file(*s.file_session(Action::file_rewrap, "plain.bin.kenc"),
                        (dir / "plain.bin.kenc").string(), std::nullopt);
    });
    CHECK(w.code() == Code::refused);
    CHECK(read_file(dir / "plain.bin.kenc") == before);
    actions.emplace_back("file.rewrap");
  }

  req::SecretCreate planted = secret_request("app/planted", "x", key);
  refused(planted, "secret.create");
  refused(req::SecretPut{"app/db", {secure("overwritten"), {}}}, "secret.put");
  req::SecretGet exec = get_request("app/db");
  exec.exec = secrets::ExecUse{"DB", "sh"};
  refused(get_request("app/db"), "secret.get");
  refused(exec, "secret.get");
  refused(req::SecretList{}, "secret.list");
  refused(req::SecretDescribe{"app/db"}, "secret.describe");
  refused(req::SecretVersions{"app/db"}, "secret.versions");
  refused(req::SecretDelete{"app/db", std::nullopt}, "secret.delete");
  refused(req::SecretRestore{"app/db"}, "secret.restore");
  secrets::RotationChange hook;
  hook.set_command = true;
  hook.command = "touch " + (dir / "ran").string();
  refused(req::SecretSetRotation{"app/db", hook}, "secret.set_rotation");
  refused(req::SecretRotate{"app/db"}, "secret.rotate");
  const std::string open_to_all =
      "[[statements]]\neffect = \"allow\"\nprincipals = [\"*\"]\n"
      "actions = [\"secrets:GetSecretValue\"]\nresources = [\"*\"]\n";
  refused(req::SecretSetPolicy{"app/db", open_to_all}, "secret.set_policy");
  refused(req::SecretGetPolicy{"app/db"}, "secret.get_policy");

  // Back to the owner: one denied record per request, naming the stranger, and nothing else.
  s.serve_client(Caller::current());
  const auto rows = log.take();
  REQUIRE(rows.size() == actions.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const store::AuditRow& r = rows[i];
    CAPTURE(r.seq);
    CAPTURE(r.params);
    CHECK(r.action == actions[i]);
    CHECK(r.outcome == "denied");
    CHECK(r.error_code == "refused");
    CHECK(r.uid == 12345);
    CHECK(r.principal == stranger.user);
    const json p = params(r);
    CHECK(p["rule"] == "not-owner");
    CHECK(p["channel"] == "agent");
    CHECK(p["agent"] == json{{"client_pid", 4242}, {"pid", ::getpid()}});
    CHECK_FALSE(contains(r.params, "the-value"));
  }

  // Nothing changed.
  const Status after = handle(s, req::Status{});
  CHECK(after.counts.keys == before.counts.keys);
  CHECK(after.counts.secrets == before.counts.secrets);
  CHECK(after.root_key_generation == 1);
  const keys::KeyInfo k = handle(s, req::KeyDescribe{key});
  CHECK(k.key.state == KeyState::enabled);
  CHECK(k.key.primary_version == 1);
  CHECK_FALSE(k.key.rotation_period_days.has_value());
  CHECK(k.tags.empty());
  CHECK(k.aliases == std::vector<std::string>{"alias/guarded"});
  CHECK(handle(s, req::AliasList{}) == Pairs{{"alias/guarded", key}});
  const secrets::SecretInfo sec = handle(s, req::SecretDescribe{"app/db"});
  CHECK(sec.versions.size() == 1);
  CHECK_FALSE(sec.secret.rotation_command.has_value());
  CHECK_FALSE(sec.secret.deletion_date.has_value());
  CHECK(handle(s, get_request("app/db")).value.chars() == "the-value");
  CHECK_FALSE(handle(s, req::SecretGetPolicy{"app/db"}).text.has_value());
  CHECK(read_file(dir / "plain.bin.kenc") == encrypted);
  CHECK_FALSE(fs::exists(dir / "log.jsonl"));
  CHECK_FALSE(fs::exists(dir / "backup.db"));
  CHECK_FALSE(fs::exists(dir / "ran"));
  CHECK(handle(s, req::AuditVerify{}).ok);
}
