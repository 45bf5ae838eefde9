// Unit tests of kms::secrets (value generation, names, the name tables of stages and rotation
// statuses) and of the secret repository in kms::store (stages, the 100-version purge, migration
// of a version 2 vault).
#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/vocab.hpp"
#include "secrets/secret_store.hpp"
#include "store/store.hpp"

using namespace kms;
using kms::test::TempDir;

namespace {

Code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("no kms::Error thrown");
  return Code::failed;
}

store::SecretRow sample_secret(std::string id, std::string name) {
  store::SecretRow s;
  s.id = std::move(id);
  s.name = std::move(name);
  s.key_id = "key-1";
  s.created = s.updated = "2026-01-01T00:00:00.000Z";
  return s;
}

void add(store::Db& db, const std::string& id, std::int64_t version,
         std::optional<SecretStage> stage) {
  store::secret_version_insert(db, {id, version, "2026-01-01T00:00:00.000Z", stage, {1, 2, 3}});
}

}  // namespace

TEST_CASE("generate draws length characters from the charset minus the exclusions") {
  secrets::Generator g;
  g.length = 4096;
  g.charset = "hex";
  g.exclude = "0f";
  const SecureBytes v = secrets::generate(g);
  REQUIRE(v.size() == 4096);
  std::set<char> seen(v.chars().begin(), v.chars().end());
  CHECK(seen ==
        std::set<char>{'1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e'});
}

TEST_CASE("generate is roughly uniform over a 62-character alphabet") {
  secrets::Generator g;
  g.length = 4096;
  std::map<char, int> counts;
  for (int i = 0; i < 16; ++i) {
    const SecureBytes v = secrets::generate(g);
    for (char c : v.chars()) ++counts[c];
  }
  CHECK(counts.size() == 62);
  // 65536 draws, expectation 1057 per character: every count within ±25 % (about 8 sigma).
  for (const auto& count : counts) {
    const auto& [c, n] = count;
    CAPTURE(count.first);
    CHECK(n > 790);
    CHECK(n < 1320);
  }
}

TEST_CASE(
    "alphabet rejects an unknown charset, a bad length and exclusions that leave too little") {
  CHECK(code_of([] { secrets::alphabet({32, "emoji", ""}); }) == Code::usage);
  CHECK(code_of([] { secrets::alphabet({3, "alnum", ""}); }) == Code::usage);
  CHECK(code_of([] { secrets::alphabet({4097, "alnum", ""}); }) == Code::usage);
  CHECK(code_of([] { secrets::alphabet({32, "hex", "0123456789abcde"}); }) == Code::usage);
  CHECK(secrets::alphabet({32, "base64", ""}).size() == 64);
  CHECK(secrets::alphabet({32, "alnum-symbols", ""}).size() == 62 + 28);
}

TEST_CASE("generate_like keeps a JSON object's fields and replaces only its password") {
  secrets::Generator g;
  const std::string current = R"({"host":"db","port":5432,"user":"app","password":"old"})";
  const SecureBytes next = secrets::generate_like(g, as_bytes(current));
  const auto j = nlohmann::json::parse(next.chars());
  CHECK(j["host"] == "db");
  CHECK(j["port"] == 5432);
  CHECK(j["user"] == "app");
  CHECK(j["password"].get<std::string>().size() == 32);
  CHECK(j["password"] != "old");
  CHECK(secrets::generate_like(g, as_bytes("plain-old-value")).size() == 32);
  const SecureBytes not_string = secrets::generate_like(g, as_bytes(R"({"password": 5})"));
  CHECK(not_string.chars().find('{') == std::string_view::npos);
}

TEST_CASE("check_name accepts AWS-style names and rejects others") {
  secrets::check_name("prod/db_app+ro=1.x@example-2");
  CHECK(code_of([] { secrets::check_name(""); }) == Code::usage);
  CHECK(code_of([] { secrets::check_name("has space"); }) == Code::usage);
  CHECK(code_of([] { secrets::check_name(std::string(257, 'a')); }) == Code::usage);
}

TEST_CASE("every secret stage has one name that parses back to it, case-sensitively") {
  REQUIRE(secret_stages().size() == 3);
  for (std::size_t i = 0; i < secret_stages().size(); ++i) {
    const SecretStageInfo& info = secret_stages()[i];
    CHECK(static_cast<std::size_t>(info.stage) == i);
    CHECK(secret_stage_name(info.stage) == info.name);
    CHECK(parse_secret_stage(info.name) == info.stage);
    CHECK_FALSE(info.summary.empty());
  }
  // The names are the text of the secret_versions table's stage column (MACed as stored).
  CHECK(secret_stage_name(SecretStage::current) == "current");
  CHECK(secret_stage_name(SecretStage::previous) == "previous");
  CHECK(secret_stage_name(SecretStage::pending) == "pending");
  for (std::string_view bad : {"", "Current", "CURRENT", "AWSCURRENT", "current ", "latest"}) {
    CHECK_FALSE(parse_secret_stage(bad).has_value());
  }
}

TEST_CASE("every rotation status has one name that parses back to it, case-sensitively") {
  REQUIRE(rotation_statuses().size() == 4);
  for (std::size_t i = 0; i < rotation_statuses().size(); ++i) {
    const RotationStatusInfo& info = rotation_statuses()[i];
    CHECK(static_cast<std::size_t>(info.status) == i);
    CHECK(rotation_status_name(info.status) == info.name);
    CHECK(parse_rotation_status(info.name) == info.status);
    CHECK_FALSE(info.summary.empty());
  }
  CHECK(rotation_status_name(RotationStatus::never) == "never");
  CHECK(rotation_status_name(RotationStatus::in_progress) == "in_progress");
  CHECK(rotation_status_name(RotationStatus::succeeded) == "succeeded");
  CHECK(rotation_status_name(RotationStatus::failed) == "failed");
  for (std::string_view bad : {"", "Failed", "SUCCEEDED", "in-progress", "ok", "never "}) {
    CHECK_FALSE(parse_rotation_status(bad).has_value());
  }
  CHECK(store::SecretRow{}.rotation_status == RotationStatus::never);
}

TEST_CASE("a stage names at most one version of a secret") {
  TempDir dir;
  store::Db db(dir / "vault.db", store::Db::Mode::create_new);
  kms::test::with_row_keys(db);
  store::secret_insert(db, sample_secret("s1", "one"));
  add(db, "s1", 1, SecretStage::current);
  CHECK_THROWS(add(db, "s1", 2, SecretStage::current));
  add(db, "s1", 2, std::nullopt);
  store::secret_stage_clear(db, "s1", SecretStage::current);
  store::secret_stage_set(db, "s1", 2, SecretStage::current);
  CHECK(store::secret_version_at_stage(db, "s1", SecretStage::current)->version == 2);
}

TEST_CASE("secret_versions_purge drops only the oldest unstaged versions beyond the limit") {
  TempDir dir;
  store::Db db(dir / "vault.db", store::Db::Mode::create_new);
  kms::test::with_row_keys(db);
  store::secret_insert(db, sample_secret("s1", "one"));
  add(db, "s1", 1, SecretStage::previous);  // the oldest, but staged: kept
  for (int v = 2; v <= 6; ++v) add(db, "s1", v, std::nullopt);
  add(db, "s1", 7, SecretStage::current);
  CHECK(store::secret_versions_purge(db, "s1", 10) == 0);
  CHECK(store::secret_versions_purge(db, "s1", 4) == 3);
  std::vector<std::int64_t> left;
  for (const auto& v : store::secret_versions(db, "s1")) left.push_back(v.version);
  CHECK(left == std::vector<std::int64_t>{1, 5, 6, 7});
  CHECK(store::secret_versions_purge(db, "s1", 1) == 2);  // staged versions are never purged
  CHECK(store::secret_versions(db, "s1").size() == 2);
}

TEST_CASE("deleting a secret deletes its versions and tags") {
  TempDir dir;
  store::Db db(dir / "vault.db", store::Db::Mode::create_new);
  kms::test::with_row_keys(db);
  store::secret_insert(db, sample_secret("s1", "one"));
  add(db, "s1", 1, SecretStage::current);
  store::secret_tag_set(db, "s1", "team", "core");
  store::secret_delete(db, "s1");
  CHECK_FALSE(store::secret_by_name(db, "one"));
  CHECK(store::secret_versions(db, "s1").empty());
  CHECK(store::secret_tags_of(db, "s1").empty());
}

TEST_CASE("Db open_existing migrates a version 2 vault to the current version and keeps its keys") {
  TempDir dir;
  {
    store::Db db(dir / "vault.db", store::Db::Mode::create_new);
    kms::test::with_row_keys(db);
    store::KeyRow k;
    k.id = "k1";
    k.spec = KeySpec::aes_256;
    k.usage = KeyUsage::encrypt;
    k.state = KeyState::enabled;
    k.protection = Protection::software;
    k.created = k.last_rotated = "2026-01-01T00:00:00.000Z";
    store::key_insert(db, k);
    db.discard_state_change();
    kms::test::drop_schema_4(db);
    db.exec(
        "DROP TABLE secret_tags; DROP TABLE secret_versions; DROP TABLE secrets; "
        "PRAGMA user_version = 2;");
  }
  store::Db db(dir / "vault.db", store::Db::Mode::open_existing);
  kms::test::with_row_keys(db);
  db.set_legacy_rows(true);  // rows of schema 2, without a MAC
  CHECK(db.schema_version() == store::kSchemaVersion);
  CHECK(store::key_get(db, "k1"));
  CHECK(store::vault_counts(db, "2026-01-01T00:00:00.000Z").secrets == 0);
}
