// Unit tests of the private token's file guard: SoftHSM2's object file parser, and the copy of
// token.object that mends a file a killed process left empty or cut short.
#include <filesystem>
#include <string>

#include "support.hpp"
#include <doctest/doctest.h>

#include "kms/error.hpp"
#include "vault/token_files.hpp"

using namespace kms;
using kms::test::error_of;
using kms::test::read_file;
using kms::test::TempDir;
using kms::test::write_file;
namespace fs = std::filesystem;
namespace tf = kms::token_files;

namespace {

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}

void put_bytes_attr(std::string& out, std::uint64_t type, std::string_view value) {
  put_u64(out, type);
  put_u64(out, 3);  // a byte string
  put_u64(out, value.size());
  out.append(value);
}

// A token.object as SoftHSM2 2.6 writes it: generation, then the five token attributes.
std::string token_object(std::string_view user_pin_blob, std::uint64_t gen = 7,
                         std::uint64_t flags = 0x42d) {
  std::string f;
  put_u64(f, gen);
  put_bytes_attr(f, tf::kTokenLabel, "kmsctl-0123abcd                 ");
  put_bytes_attr(f, tf::kTokenSerial, "b7ac28d51ccd82a6");
  put_u64(f, tf::kTokenFlags);
  put_u64(f, 2);  // an unsigned long
  put_u64(f, flags);
  put_bytes_attr(f, tf::kSoPin, std::string(72, 'S'));
  put_bytes_attr(f, tf::kUserPin, user_pin_blob);
  return f;
}

ByteView view(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct Token {
  TempDir tmp;
  fs::path live = tmp.path() / "tokens" / "c4fddaea-5161-6a3c-b7ac-28d51ccd82a6" / "token.object";
  fs::path copy = tmp.path() / "token-copy" / "c4fddaea-5161-6a3c-b7ac-28d51ccd82a6.token.object";
  explicit Token(const std::string& content) {
    fs::create_directories(live.parent_path());
    write_file(live, content);
  }
};

}  // namespace

TEST_CASE("parse_object reads a whole token.object and finds every token attribute") {
  const std::string f = token_object(std::string(72, 'U'));
  const auto a = tf::parse_object(view(f));
  REQUIRE(a.has_value());
  CHECK(a->size() == 5);
  CHECK(tf::is_complete_token_object(*a));
}

TEST_CASE("parse_object refuses a token.object cut short at any byte") {
  const std::string f = token_object(std::string(72, 'U'));
  for (size_t n = 0; n < f.size(); ++n) {
    const auto a = tf::parse_object(view(f.substr(0, n)));
    // Cut at an attribute boundary it parses, but without the attributes that followed.
    CHECK_FALSE((a && tf::is_complete_token_object(*a)));
  }
}

TEST_CASE("parse_object refuses an unknown attribute kind and an overlong length") {
  std::string f;
  put_u64(f, 1);
  put_u64(f, tf::kTokenLabel);
  put_u64(f, 9);  // no such kind
  CHECK_FALSE(tf::parse_object(view(f)).has_value());
  std::string g;
  put_u64(g, 1);
  put_u64(g, tf::kTokenLabel);
  put_u64(g, 3);
  put_u64(g, ~std::uint64_t{0});  // a length past the end of the file
  CHECK_FALSE(tf::parse_object(view(g)).has_value());
}

TEST_CASE("TokenFiles keeps a copy of token.object and mends an emptied one from it") {
  const std::string original = token_object(std::string(72, 'U'));
  Token t(original);
  {
    tf::TokenFiles guard(t.tmp.path());
    CHECK(guard.mended().empty());
  }
  REQUIRE(fs::exists(t.copy));
  CHECK(read_file(t.copy) == original);

  write_file(t.live, "");  // what a kill between SoftHSM2's truncate and its write leaves
  {
    tf::TokenFiles guard(t.tmp.path());
    REQUIRE(guard.mended().size() == 1);
    CHECK(guard.mended()[0].token_object == t.live);
  }
  CHECK(read_file(t.live) == original);

  write_file(t.live, original.substr(0, original.size() - 5));  // cut short
  CHECK(tf::TokenFiles(t.tmp.path()).mended().size() == 1);
  CHECK(read_file(t.live) == original);
}

TEST_CASE("TokenFiles refreshes the copy when the PINs change, not when only the flags do") {
  Token t(token_object(std::string(72, 'U')));
  { tf::TokenFiles guard(t.tmp.path()); }
  const std::string first_copy = read_file(t.copy);

  write_file(t.live, token_object(std::string(72, 'U'), 8, 0x40d));  // a login: gen and flags
  { tf::TokenFiles guard(t.tmp.path()); }
  CHECK(read_file(t.copy) == first_copy);

  const std::string changed = token_object(std::string(72, 'N'), 9);  // C_SetPIN
  write_file(t.live, changed);
  { tf::TokenFiles guard(t.tmp.path()); }
  CHECK(read_file(t.copy) == changed);
}

TEST_CASE("TokenFiles without a valid copy says which file is damaged and what to do") {
  Token t("");
  const Error e = error_of([&] { tf::TokenFiles guard(t.tmp.path()); });
  CHECK(e.code() == Code::unavailable);
  CHECK(kms::test::contains(e.what(), t.live.string()));
  CHECK(kms::test::contains(e.hint(), "backup"));
  CHECK(read_file(t.live).empty());  // nothing was made up

  fs::create_directories(t.copy.parent_path());
  write_file(t.copy, "garbage");  // a copy that does not parse is never used
  CHECK(error_of([&] { tf::TokenFiles guard(t.tmp.path()); }).code() == Code::unavailable);
  CHECK(read_file(t.live).empty());
}
