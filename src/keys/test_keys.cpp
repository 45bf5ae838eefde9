// Unit tests of the ciphertext blob (keys/blob.hpp) against docs/FORMAT.md §12: the context
// encoding, the header, the AAD and the §12.4 test vector; and of the name tables of key states
// and protection levels (kms/vocab.hpp).
#include <string>

#include "support.hpp"
#include <doctest/doctest.h>

#include "keys/blob.hpp"
#include "kms/crypto.hpp"
#include "kms/vocab.hpp"

using namespace kms;
using kms::test::bytes_of;

namespace {

constexpr std::string_view kKeyHex =
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
constexpr std::string_view kKeyId = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
constexpr std::string_view kBlob64 =
    "S01TQwEbTii6L6FB0og/ABbTzKQnAAAAAwABAgMEBQYHCAkKCzQ3McslGcuH0Yr63RWzfcRtaXKpXhaxfCt3";

std::optional<SecureBytes> open_vector(ByteView blob, const Context& ctx) {
  const auto p = blob::parse(blob);
  const auto key = crypto::from_hex(kKeyHex);
  if (!p || !key) return std::nullopt;
  return crypto::aes_gcm_open(*key, p->nonce, blob::aad(p->header_bytes, ctx), p->sealed);
}

}  // namespace

TEST_CASE("encode_context sorts pairs by key bytes whatever the insertion order") {
  Context a{{"env", "prod"}, {"app", "web"}};
  CHECK(crypto::to_hex(encode_context(a)) ==
        "0000000200000003617070000000037765620000000365"
        "6e760000000470726f64");
  CHECK(crypto::to_hex(encode_context({})) == "00000000");
  // Bytes moved between key and value do not collide.
  CHECK(encode_context({{"ab", "c"}}) != encode_context({{"a", "bc"}}));
}

TEST_CASE("encode_header writes magic, version, the UUID bytes and the version big-endian") {
  CHECK(crypto::to_hex(blob::encode_header({std::string(kKeyId), 3})) ==
        "4b4d5343011b4e28ba2fa141d2883f0016d3cca42700000003");
  CHECK_THROWS((void)blob::encode_header({"not-a-uuid", 1}));
}

TEST_CASE("the FORMAT.md §12.4 blob parses and opens with its key and context only") {
  const auto blob = crypto::from_base64(kBlob64);
  REQUIRE(blob.has_value());
  CHECK(blob->size() == 63);
  const auto p = blob::parse(*blob);
  REQUIRE(p.has_value());
  CHECK(p->header.key_id == kKeyId);
  CHECK(p->header.key_version == 3);
  CHECK(crypto::to_hex(p->nonce) == "000102030405060708090a0b");
  const auto pt = open_vector(*blob, {{"app", "web"}, {"env", "prod"}});
  REQUIRE(pt.has_value());
  CHECK(pt->chars() == "hello, kms");
  CHECK_FALSE(open_vector(*blob, {{"app", "web"}}).has_value());
  CHECK_FALSE(open_vector(*blob, {{"app", "web"}, {"env", "dev"}}).has_value());
  CHECK_FALSE(open_vector(*blob, {{"app", "web"}, {"env", "prod"}, {"x", ""}}).has_value());
}

TEST_CASE("every flipped bit of the §12.4 blob fails to parse or to open") {
  const auto blob = crypto::from_base64(kBlob64);
  REQUIRE(blob.has_value());
  const Context ctx{{"app", "web"}, {"env", "prod"}};
  int opened = 0;
  for (size_t i = 0; i < blob->size() * 8; ++i) {
    Bytes b = *blob;
    b[i / 8] ^= static_cast<std::uint8_t>(1u << (i % 8));
    if (open_vector(b, ctx)) ++opened;
  }
  CHECK(opened == 0);
}

TEST_CASE("parse rejects short input, another magic or version, and key version 0") {
  const auto blob = crypto::from_base64(kBlob64);
  REQUIRE(blob.has_value());
  CHECK_FALSE(blob::parse(ByteView(*blob).first(blob::kMinSize - 1)).has_value());
  CHECK(blob::parse(ByteView(*blob).first(blob::kMinSize)).has_value());  // empty plaintext
  Bytes b = *blob;
  b[4] = 2;
  CHECK_FALSE(blob::parse(b).has_value());
  b = *blob;
  b[0] = 'X';
  CHECK_FALSE(blob::parse(b).has_value());
  b = *blob;
  for (size_t i = 21; i < 25; ++i) b[i] = 0;
  CHECK_FALSE(blob::parse(b).has_value());
  CHECK_FALSE(blob::parse(bytes_of("")).has_value());
}

TEST_CASE("every key state has one name and one option spelling, and they parse back to it") {
  REQUIRE(key_states().size() == 4);
  for (std::size_t i = 0; i < key_states().size(); ++i) {
    const KeyStateInfo& info = key_states()[i];
    CHECK(static_cast<std::size_t>(info.state) == i);
    CHECK(key_state_name(info.state) == info.name);
    CHECK(parse_key_state(info.name) == info.state);
    CHECK(parse_key_state_option(info.option) == info.state);
    CHECK_FALSE(info.summary.empty());
  }
  // The names are the text of the keys table's state column (and so the bytes its MAC covers).
  CHECK(key_state_name(KeyState::enabled) == "Enabled");
  CHECK(key_state_name(KeyState::disabled) == "Disabled");
  CHECK(key_state_name(KeyState::pending_deletion) == "PendingDeletion");
  CHECK(key_states()[2].option == "pending-deletion");
}

TEST_CASE("a key state parses only from its exact name, an option only from its exact spelling") {
  for (std::string_view bad :
       {"", "enabled", "ENABLED", "Enabled ", "pending-deletion", "Pending_Deletion", "Frozen"}) {
    CHECK_FALSE(parse_key_state(bad).has_value());
  }
  for (std::string_view bad :
       {"", "Enabled", "Disabled", "PendingDeletion", "pending_deletion", "DISABLED", "deleted"}) {
    CHECK_FALSE(parse_key_state_option(bad).has_value());
  }
}

TEST_CASE("every protection level has one name that parses back to it, case-sensitively") {
  REQUIRE(protections().size() == 2);
  for (std::size_t i = 0; i < protections().size(); ++i) {
    const ProtectionInfo& info = protections()[i];
    CHECK(static_cast<std::size_t>(info.protection) == i);
    CHECK(protection_name(info.protection) == info.name);
    CHECK(parse_protection(info.name) == info.protection);
    CHECK_FALSE(info.summary.empty());
  }
  CHECK(protection_name(Protection::software) == "software");
  CHECK(protection_name(Protection::hsm) == "hsm");
  for (std::string_view bad : {"", "HSM", "Software", "cloud", "hsm "}) {
    CHECK_FALSE(parse_protection(bad).has_value());
  }
  // A value outside the enum (only a cast makes one) has no name to store.
  CHECK(protection_name(static_cast<Protection>(7)) == "?");
  CHECK(key_state_name(static_cast<KeyState>(7)) == "?");
}
