// Unit tests of kms::FileOperations (Service::files()) on a vault with a private SoftHSM2 token
// per test case. File sessions are also tested through kms::handle and the agent's requests in
// src/core/test_requests.cpp.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "service_support.hpp"
#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "kms/crypto.hpp"
#include "kms/error.hpp"
#include "kms/service.hpp"
#include "store/store.hpp"

using namespace kms;
using kms::test::audit_rows;
using kms::test::error_of;
using kms::test::init_service;
using kms::test::read_file;
using kms::test::TempDir;
using kms::test::write_file;
namespace fs = std::filesystem;

namespace {

// A file descriptor closed on scope exit.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) { REQUIRE(fd >= 0); }
  ~Fd() { ::close(fd); }
};

Fd open_in(const fs::path& p) { return Fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC)); }
Fd open_out(const fs::path& p) {
  return Fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
}

}  // namespace

TEST_CASE("FileOperations: a file encrypt needs a key, refused before anything is recorded") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::size_t before = audit_rows(s->vault()).size();
  CHECK(error_of([&] { (void)s->files().session(Action::file_encrypt, "f", {}); }).code() ==
        Code::usage);
  CHECK(audit_rows(s->vault()).size() == before);
}

TEST_CASE("FileOperations::encrypt and decrypt round-trip a file, each recorded started then ok") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  const Context ctx{{"app", "unit"}};
  const std::string plain(3000, 'p');
  write_file(dir / "plain.bin", plain);
  {
    Fd in = open_in(dir / "plain.bin");
    Fd out = open_out(dir / "plain.kenc");
    const FileResult r =
        s->files().encrypt(in.fd, out.fd, {key}, ctx, envelope::kMinFrameSize, "plain.bin");
    CHECK(r.name == "plain.bin");
    CHECK(r.bytes == 3000);
    CHECK(r.frames == 3);
    REQUIRE(r.keys.size() == 1);
    CHECK(r.keys[0].first == key);
  }
  {
    Fd in = open_in(dir / "plain.kenc");
    Fd out = open_out(dir / "plain.out");
    const FileResult r = s->files().decrypt(in.fd, out.fd, ctx, "plain.kenc");
    CHECK(r.bytes == 3000);
  }
  CHECK(read_file(dir / "plain.out") == plain);
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() >= 4);
  const std::size_t n = rows.size();
  CHECK(rows[n - 4].action == "file.encrypt");
  CHECK(rows[n - 4].outcome == "started");
  CHECK(rows[n - 3].action == "file.encrypt");
  CHECK(rows[n - 3].outcome == "ok");
  CHECK(nlohmann::json::parse(rows[n - 3].params)["started_seq"] == rows[n - 4].seq);
  CHECK(rows[n - 2].action == "file.decrypt");
  CHECK(rows[n - 2].outcome == "started");
  CHECK(rows[n - 1].action == "file.decrypt");
  CHECK(rows[n - 1].outcome == "ok");
  CHECK(fs::is_empty(dir / "vault.db.ops"));
}

TEST_CASE("FileOperations: a session dropped while running ends its record as interrupted") {
  TempDir dir;
  auto s = init_service(dir / "vault.db");
  const std::string key = s->keys().create({}).key.id;
  {
    auto session = s->files().session(Action::file_encrypt, "dropped.bin", {key});
    const SecureBytes dk = crypto::random_secret(envelope::kDataKeySize);
    (void)session->wrap(dk.view(), {});
    CHECK(session->running());
    CHECK(audit_rows(s->vault()).back().outcome == "started");
  }
  const auto rows = audit_rows(s->vault());
  REQUIRE(rows.size() >= 2);
  const store::AuditRow& end = rows.back();
  CHECK(end.action == "file.encrypt");
  CHECK(end.resource == "file/dropped.bin");
  CHECK(end.outcome == "error");
  CHECK(end.error_code == "interrupted");
  const nlohmann::json p = nlohmann::json::parse(end.params);
  CHECK(p["step"] == "end");
  CHECK(p["started_seq"] == rows[rows.size() - 2].seq);
  CHECK(fs::is_empty(dir / "vault.db.ops"));
}
