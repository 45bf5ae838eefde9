// Unit tests of the kmsctl agent's messages (src/agent/protocol.hpp, docs/FORMAT.md §Agent
// protocol): what encodes parses back, and anything else is refused.
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "agent/protocol.hpp"

using namespace kms;
using namespace kms::agent;

TEST_CASE("a run request parses back to its kind and arguments, empty ones included") {
  const Request r{Kind::run, {"/v/vault.db", "secret", "get", "", "db"}};
  const auto bytes = encode(r);
  REQUIRE(bytes);
  CHECK(bytes->size() == 4 + 1 + 1 + 4 + (4 + 11) + (4 + 6) + (4 + 3) + 4 + (4 + 2));
  const auto back = parse_request(*bytes);
  REQUIRE(back);
  CHECK(back->kind == Kind::run);
  CHECK(back->args == r.args);
}

TEST_CASE("status and stop carry no arguments; a run without a vault path is malformed") {
  for (Kind k : {Kind::status, Kind::stop}) {
    const auto bytes = encode(Request{k, {}});
    REQUIRE(bytes);
    CHECK(parse_request(*bytes)->kind == k);
    CHECK_FALSE(parse_request(*encode(Request{k, {"x"}})));
  }
  CHECK_FALSE(parse_request(*encode(Request{Kind::run, {}})));
}

TEST_CASE("an exec request names the vault, stage, command and whole name/variable pairs") {
  const Request r{Kind::exec, {"/v", "current", "app", "db/password", "DB_PASSWORD"}};
  const auto back = parse_request(*encode(r));
  REQUIRE(back);
  CHECK(back->kind == Kind::exec);
  CHECK(back->args == r.args);
  std::vector<std::string> two_pairs = r.args;
  two_pairs.insert(two_pairs.end(), {"api", "API"});
  CHECK(parse_request(*encode(Request{Kind::exec, two_pairs})));
  const std::vector<std::vector<std::string>> malformed = {
      {},
      {"/v"},
      {"/v", "current", "app"},
      {"/v", "current", "app", "a"},
      {"/v", "current", "app", "a", "A", "b"}};  // no pair, or one half of one
  for (const auto& args : malformed) CHECK_FALSE(parse_request(*encode(Request{Kind::exec, args})));
}

TEST_CASE(
    "parse_request refuses every truncation, a trailing byte, another magic or version, a bad "
    "kind") {
  const Bytes good = *encode(Request{Kind::run, {"/v", "status"}});
  for (size_t n = 0; n < good.size(); ++n) {
    CHECK_FALSE(parse_request(ByteView(good.data(), n)));
  }
  Bytes longer = good;
  longer.push_back(0);
  CHECK_FALSE(parse_request(longer));
  for (size_t i : {0u, 3u, 4u}) {  // magic, last magic byte, version
    Bytes b = good;
    b[i] ^= 1;
    CHECK_FALSE(parse_request(b));
  }
  for (std::uint8_t kind : {0, 5, 255}) {
    Bytes b = good;
    b[5] = kind;
    CHECK_FALSE(parse_request(b));
  }
  Bytes huge_len = good;  // the first argument claims more bytes than the message has
  huge_len[10] = 0x7f;
  CHECK_FALSE(parse_request(huge_len));
}

TEST_CASE("a request beyond the message or argument limits is not encoded, and not parsed") {
  CHECK_FALSE(encode(Request{Kind::run, {"/v", std::string(kMaxMessage, 'a')}}));
  CHECK_FALSE(encode(Request{Kind::run, std::vector<std::string>(kMaxArgs + 1, "a")}));
  CHECK(encode(Request{Kind::run, std::vector<std::string>(kMaxArgs, "a")}));
  Bytes too_many = *encode(Request{Kind::run, {"/v"}});
  too_many[9] = static_cast<std::uint8_t>(kMaxArgs + 1);  // low byte of the count
  too_many[8] = static_cast<std::uint8_t>((kMaxArgs + 1) >> 8);
  CHECK_FALSE(parse_request(too_many));
}

TEST_CASE("a reply parses back; its texts are cut to fit one message") {
  const Reply r{Answer::refused, 6, "the vault file was replaced", "start it again"};
  const auto back = parse_reply(encode(r));
  REQUIRE(back);
  CHECK(back->answer == Answer::refused);
  CHECK(back->code == 6);
  CHECK(back->text == r.text);
  CHECK(back->hint == r.hint);
  const Bytes big = encode(Reply{Answer::info, -1, std::string(2 * kMaxMessage, 'x'), "h"});
  CHECK(big.size() <= kMaxMessage);
  const auto cut = parse_reply(big);
  REQUIRE(cut);
  CHECK(cut->code == -1);
  CHECK(cut->text.size() + cut->hint.size() == kMaxMessage - 18);
}

TEST_CASE("parse_reply refuses a request, an unknown answer and any truncation") {
  CHECK_FALSE(parse_reply(*encode(Request{Kind::stop, {}})));
  Bytes b = encode(Reply{Answer::done, 0, "", ""});
  for (size_t n = 0; n < b.size(); ++n) CHECK_FALSE(parse_reply(ByteView(b.data(), n)));
  b[5] = 4;
  CHECK_FALSE(parse_reply(b));
}

TEST_CASE("an agent serves the key, file and secret reading commands, not init, vault or rotate") {
  using Path = std::vector<std::string>;
  CHECK(serves(Path{"status"}));
  CHECK(serves(Path{"key", "create"}));
  CHECK(serves(Path{"file", "encrypt"}));
  CHECK(serves(Path{"secret", "get"}));
  CHECK_FALSE(serves(Path{}));
  CHECK_FALSE(serves(Path{"init"}));
  CHECK_FALSE(serves(Path{"vault", "backup"}));
  CHECK_FALSE(serves(Path{"maintain"}));
  CHECK_FALSE(serves(Path{"exec"}));
  CHECK_FALSE(serves(Path{"agent", "status"}));
  CHECK_FALSE(serves(Path{"secret", "rotate"}));
  CHECK_FALSE(serves(Path{"secret"}));
}
