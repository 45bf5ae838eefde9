// Unit tests of kms::envelope, the file envelope of docs/FORMAT.md §11, through an in-memory
// DataKeyWrapper (no vault, no token): the committed vectors of tests/vectors/envelope/ (written
// by an independent implementation) open to their plaintext or fail as named, the header
// re-encodes to the same bytes, and encrypt/decrypt round-trip over files and pipes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "support.hpp"
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "kms/asymmetric.hpp"
#include "kms/crypto.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"
#include "kms/signals.hpp"

using namespace kms;
using kms::test::Fd;
using kms::test::read_file;
using kms::test::TempDir;
using kms::test::write_file;

namespace {

const std::filesystem::path kDir = KMS_ENVELOPE_VECTORS_DIR;

Bytes unhex(const std::string& h) {
  auto b = crypto::from_hex(h);
  if (!b) throw std::invalid_argument("bad hex in vectors.json");
  return *b;
}

// Vault-key recipients (§11.3) with key versions held in memory: id (16 bytes) -> material; and
// public-key recipients opened with private keys (PKCS#8) held in memory.
class MemoryWrapper final : public envelope::DataKeyWrapper {
 public:
  void add_private(Bytes pkcs8) { private_keys_.push_back(std::move(pkcs8)); }
  void add(const std::string& key_id, std::uint32_t version, Bytes material) {
    std::string hex;
    for (char c : key_id) {
      if (c != '-') hex.push_back(c);
    }
    keys_.push_back({unhex(hex), version, std::move(material)});
  }
  std::vector<envelope::Recipient> wrap(ByteView dk, const Context& ctx) override {
    ++wraps;
    std::vector<envelope::Recipient> out;
    for (const Key& k : keys_) {
      Bytes blob = {'K', 'M', 'S', 'C', 1};
      blob.insert(blob.end(), k.id.begin(), k.id.end());
      for (int i = 3; i >= 0; --i) blob.push_back(static_cast<std::uint8_t>(k.version >> (8 * i)));
      Bytes aad = blob;
      const Bytes c = encode_context(ctx);
      aad.insert(aad.end(), c.begin(), c.end());
      const Bytes nonce = crypto::random_bytes(12);
      const Bytes sealed = crypto::aes_gcm_seal(k.material, nonce, aad, dk);
      blob.insert(blob.end(), nonce.begin(), nonce.end());
      blob.insert(blob.end(), sealed.begin(), sealed.end());
      out.push_back({envelope::kRecipientVaultKey, std::move(blob)});
    }
    return out;
  }
  SecureBytes unwrap(const envelope::Header& h) override {
    ++unwraps;
    for (const envelope::Recipient& r : h.recipients) {
      if (const auto pk = envelope::parse_public_key_recipient(r)) {
        if (auto dk = open_public_key(*pk, h.context)) return std::move(*dk);
        continue;
      }
      if (r.type != envelope::kRecipientVaultKey || r.body.size() < 25 + 12 + 16) continue;
      for (const Key& k : keys_) {
        if (!std::equal(k.id.begin(), k.id.end(), r.body.begin() + 5)) continue;
        Bytes aad(r.body.begin(), r.body.begin() + 25);
        const Bytes c = encode_context(h.context);
        aad.insert(aad.end(), c.begin(), c.end());
        const ByteView body(r.body);
        if (auto dk =
                crypto::aes_gcm_open(k.material, body.subspan(25, 12), aad, body.subspan(37))) {
          return std::move(*dk);
        }
      }
    }
    throw Error(Code::integrity, "no recipient opens");
  }
  int wraps = 0, unwraps = 0;

 private:
  std::optional<SecureBytes> open_public_key(const envelope::PublicKeyRecipient& r,
                                             const Context& ctx) {
    for (const Bytes& pkcs8 : private_keys_) {
      const Bytes spki = crypto::public_key_of(pkcs8);
      if (!crypto::equal(envelope::public_key_fingerprint(spki), r.fingerprint)) continue;
      const auto secret =
          r.type == envelope::kRecipientX25519
              ? crypto::x25519_shared(pkcs8, r.encapsulation)
              : crypto::private_decrypt(pkcs8, EncryptionAlgorithm::rsaes_oaep_sha_256,
                                        r.encapsulation);
      if (secret) return envelope::unwrap_public_key_recipient(r, secret->view(), ctx);
    }
    return std::nullopt;
  }
  struct Key {
    Bytes id;
    std::uint32_t version;
    Bytes material;
  };
  std::vector<Key> keys_;
  std::vector<Bytes> private_keys_;
};

nlohmann::json manifest() { return nlohmann::json::parse(read_file(kDir / "vectors.json")); }

MemoryWrapper vector_keys(const nlohmann::json& m) {
  MemoryWrapper w;
  for (const auto& k : m["keys"]) {
    w.add(k["key_id"], k["key_version"], unhex(k["material"]));
  }
  for (const auto& k : m["private_keys"]) w.add_private(unhex(k));
  return w;
}

Context context_of(const nlohmann::json& j) {
  Context c;
  for (const auto& [k, v] : j.items()) c[k] = v.get<std::string>();
  return c;
}

// Decrypts `file` into `out_path`; returns the error code, or nullopt on success.
std::optional<Code> try_decrypt(const std::filesystem::path& file,
                                const std::filesystem::path& out_path, envelope::DataKeyWrapper& w,
                                const Context& ctx) {
  Fd in(::open(file.c_str(), O_RDONLY));
  Fd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
  try {
    (void)envelope::decrypt(in.fd, out.fd, w, ctx);
    return std::nullopt;
  } catch (const Error& e) {
    return e.code();
  }
}

std::string encrypt_bytes(const std::string& pt, envelope::DataKeyWrapper& w, const Context& ctx,
                          std::uint32_t frame, const TempDir& dir) {
  write_file(dir / "pt", pt);
  {
    Fd in(::open((dir / "pt").c_str(), O_RDONLY));
    Fd out(::open((dir / "ct").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
    const auto r = envelope::encrypt(in.fd, out.fd, w, ctx, frame);
    CHECK(r.plaintext_bytes == pt.size());
    CHECK(r.frames == pt.size() / frame + 1);
  }
  return read_file(dir / "ct");
}

}  // namespace

TEST_CASE("every committed vector opens to its plaintext or fails as its name says") {
  crypto::init();
  const auto m = manifest();
  TempDir dir;
  int ok = 0, bad = 0;
  for (const auto& v : m["vectors"]) {
    const std::string name = v["file"];
    CAPTURE(name);
    MemoryWrapper w = vector_keys(m);
    const auto code = try_decrypt(kDir / name, dir / "out", w, context_of(v["context"]));
    if (v["expect"] == "ok") {
      CHECK(!code.has_value());
      CHECK(read_file(dir / "out") == read_file(kDir / v["plaintext"].get<std::string>()));
      ++ok;
    } else {
      REQUIRE(code.has_value());
      CHECK(*code == Code::integrity);
      ++bad;
    }
  }
  CHECK(ok >= 13);
  CHECK(bad >= 43);
}

TEST_CASE("a wrong or missing context fails before any key is used or byte released") {
  crypto::init();
  const auto m = manifest();
  TempDir dir;
  for (const char* name : {"wrong_context_expected.kenc", "no_context_expected.kenc"}) {
    MemoryWrapper w = vector_keys(m);
    const Context ctx =
        std::string(name).starts_with("wrong") ? Context{{"purpose", "backup"}} : Context{};
    CHECK(try_decrypt(kDir / name, dir / "out", w, ctx) == Code::integrity);
    CHECK(w.unwraps == 0);
    CHECK(std::filesystem::file_size(dir / "out") == 0);
  }
}

TEST_CASE("a file whose data key does not match its commitment is refused before any frame") {
  crypto::init();
  const auto m = manifest();
  TempDir dir;
  MemoryWrapper w = vector_keys(m);
  Fd in(::open((kDir / "commitment_mismatch.kenc").c_str(), O_RDONLY));
  Fd out(::open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
  try {
    (void)envelope::decrypt(in.fd, out.fd, w, {});
    FAIL("decrypt accepted a commitment mismatch");
  } catch (const Error& e) {
    CHECK(e.code() == Code::integrity);
    CHECK(std::string(e.what()).find("commitment") != std::string::npos);
  }
  CHECK(std::filesystem::file_size(dir / "out") == 0);
}

TEST_CASE("the header parses and re-encodes to the same bytes, with the spec's derived keys") {
  crypto::init();
  const auto m = manifest();
  const Bytes dk = unhex(m["data_key"]);
  for (const auto& v : m["vectors"]) {
    if (v["expect"] != "ok") continue;
    const std::string name = v["file"];
    CAPTURE(name);
    const std::string file = read_file(kDir / name);
    const auto h = envelope::parse_header(as_bytes(file));
    REQUIRE(h.has_value());
    CHECK(h->encoded_size == v["header_bytes"].get<std::size_t>());
    CHECK(h->frame_size == v["frame_size"].get<std::uint32_t>());
    CHECK(h->context == context_of(v["context"]));
    CHECK(crypto::to_hex(h->salt) == m["salt"].get<std::string>());
    CHECK(crypto::to_hex(h->commitment) == m["k_commit"].get<std::string>());
    envelope::verify_header(*h, dk);
    envelope::Header copy = *h;
    const Bytes again = envelope::encode_header(copy, dk);
    CHECK(crypto::to_hex(again) == crypto::to_hex(as_bytes(file).first(h->encoded_size)));
    CHECK(envelope::plaintext_size(*h, file.size()) ==
          read_file(kDir / v["plaintext"].get<std::string>()).size());
  }
  CHECK(crypto::to_hex(
            crypto::hkdf_sha256(dk, unhex(m["salt"]), as_bytes(envelope::kInfoFrame), 32).view()) ==
        m["k_frame"].get<std::string>());
  CHECK(
      crypto::to_hex(
          crypto::hkdf_sha256(dk, unhex(m["salt"]), as_bytes(envelope::kInfoHeader), 32).view()) ==
      m["k_header"].get<std::string>());
}

TEST_CASE(
    "parse_header asks for more bytes on every prefix of a header and rejects bad magic at once") {
  crypto::init();
  const std::string file = read_file(kDir / "two_recipients.kenc");
  const auto full = envelope::parse_header(as_bytes(file));
  REQUIRE(full.has_value());
  for (std::size_t n = 0; n < full->encoded_size; ++n) {
    CAPTURE(n);
    CHECK(!envelope::parse_header(as_bytes(file).first(n)).has_value());
  }
  CHECK_THROWS_AS((void)envelope::parse_header(as_bytes(std::string_view("KENX"))), Error);
}

TEST_CASE("frame nonces carry the counter big-endian and the final flag in the last byte") {
  const auto n = envelope::frame_nonce(0x0102030405060708ull, true);
  CHECK(crypto::to_hex(n) == "000000010203040506070801");
  CHECK(crypto::to_hex(envelope::frame_nonce(0, false)) == "000000000000000000000000");
}

TEST_CASE("encrypt then decrypt round-trips at every size around the frame boundaries") {
  crypto::init();
  TempDir dir;
  MemoryWrapper w;
  w.add("6b6d7363-746c-4000-8000-0000000000aa", 3, crypto::random_bytes(32));
  const std::uint32_t frame = 1024;
  for (std::size_t size : {0u, 1u, 1023u, 1024u, 1025u, 2048u, 5000u}) {
    CAPTURE(size);
    const Bytes r = crypto::random_bytes(size);
    const std::string pt(r.begin(), r.end());
    const std::string ct = encrypt_bytes(pt, w, {{"k", "v"}}, frame, dir);
    const auto h = envelope::parse_header(as_bytes(ct));
    REQUIRE(h.has_value());
    CHECK(envelope::plaintext_size(*h, ct.size()) == size);
    write_file(dir / "ct", ct);
    CHECK(!try_decrypt(dir / "ct", dir / "back", w, {{"k", "v"}}).has_value());
    CHECK(read_file(dir / "back") == pt);
  }
}

TEST_CASE("two files of the same plaintext share no data key, salt or ciphertext") {
  crypto::init();
  TempDir dir;
  MemoryWrapper w;
  w.add("6b6d7363-746c-4000-8000-0000000000aa", 1, crypto::random_bytes(32));
  const std::string pt(3000, 'x');
  const std::string a = encrypt_bytes(pt, w, {}, 1024, dir);
  const std::string b = encrypt_bytes(pt, w, {}, 1024, dir);
  const auto ha = envelope::parse_header(as_bytes(a)), hb = envelope::parse_header(as_bytes(b));
  CHECK(ha->salt != hb->salt);
  CHECK(ha->commitment != hb->commitment);
  CHECK(a.substr(ha->encoded_size) != b.substr(hb->encoded_size));
}

TEST_CASE("decrypting from a pipe releases only verified frames and fails on a cut stream") {
  crypto::init();
  TempDir dir;
  MemoryWrapper w;
  w.add("6b6d7363-746c-4000-8000-0000000000aa", 1, crypto::random_bytes(32));
  const Bytes r = crypto::random_bytes(4 * 1024 + 10);
  const std::string pt(r.begin(), r.end());
  const std::string ct = encrypt_bytes(pt, w, {}, 1024, dir);
  const auto h = envelope::parse_header(as_bytes(ct));
  for (const bool cut : {false, true}) {
    CAPTURE(cut);
    const std::string input = cut ? ct.substr(0, h->encoded_size + 2 * (1024 + 16)) : ct;
    int p[2];
    REQUIRE(::pipe(p) == 0);
    std::thread feeder([&] {
      std::size_t off = 0;
      while (off < input.size()) {
        const ssize_t n =
            ::write(p[1], input.data() + off, std::min<std::size_t>(777, input.size() - off));
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
      ::close(p[1]);
    });
    Fd out(::open((dir / "pipe-out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
    std::optional<Code> code;
    try {
      (void)envelope::decrypt(p[0], out.fd, w, {});
    } catch (const Error& e) {
      code = e.code();
    }
    feeder.join();
    ::close(p[0]);
    if (cut) {
      CHECK(code == Code::integrity);
      // Exactly the two verified frames were released, nothing of the rest.
      CHECK(read_file(dir / "pipe-out") == pt.substr(0, 2048));
    } else {
      CHECK(!code.has_value());
      CHECK(read_file(dir / "pipe-out") == pt);
    }
  }
}

TEST_CASE("a signal caught while a pipe keeps the stream waiting stops it with Interrupted") {
  crypto::init();
  TempDir dir;
  MemoryWrapper w;
  w.add("6b6d7363-746c-4000-8000-0000000000aa", 1, crypto::random_bytes(32));
  const Bytes r = crypto::random_bytes(8 * 1024);
  const std::string pt(r.begin(), r.end());
  const std::string ct = encrypt_bytes(pt, w, {}, 1024, dir);
  for (const bool decrypting : {false, true}) {
    CAPTURE(decrypting);
    const std::string& input = decrypting ? ct : pt;
    signals::Catch catching;
    int p[2];
    REQUIRE(::pipe(p) == 0);
    // Half the input, then the pipe stays open and silent until the signal has come.
    REQUIRE(::write(p[1], input.data(), input.size() / 2) ==
            static_cast<ssize_t>(input.size() / 2));
    std::thread stopper([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ::kill(::getpid(), SIGINT);
    });
    Fd out(::open((dir / "stopped").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
    std::optional<int> sig;
    try {
      if (decrypting) {
        (void)envelope::decrypt(p[0], out.fd, w, {});
      } else {
        (void)envelope::encrypt(p[0], out.fd, w, {}, 1024);
      }
    } catch (const signals::Interrupted& e) {
      sig = e.signal();
    }
    stopper.join();
    ::close(p[0]);
    ::close(p[1]);
    CHECK(sig == SIGINT);
    // What was written is whole frames of the input's first half, never more.
    const std::string written = read_file(dir / "stopped");
    if (decrypting) {
      CHECK(written.size() % 1024 == 0);
      CHECK(written == pt.substr(0, written.size()));
      CHECK(written.size() < pt.size() / 2 + 1024);
    } else {
      CHECK(written.size() < ct.size());
    }
  }
}

TEST_CASE("encrypt refuses frame sizes outside the spec's range") {
  crypto::init();
  TempDir dir;
  MemoryWrapper w;
  w.add("6b6d7363-746c-4000-8000-0000000000aa", 1, crypto::random_bytes(32));
  write_file(dir / "pt", "x");
  for (std::uint32_t bad : {0u, envelope::kMinFrameSize - 1, envelope::kMaxFrameSize + 1}) {
    Fd in(::open((dir / "pt").c_str(), O_RDONLY));
    Fd out(::open((dir / "ct").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
    CHECK_THROWS_AS((void)envelope::encrypt(in.fd, out.fd, w, {}, bad), Error);
  }
}

TEST_CASE("encrypt refuses a context longer than the reader accepts, before any key is used") {
  crypto::init();
  TempDir dir;
  MemoryWrapper w;
  w.add("6b6d7363-746c-4000-8000-0000000000aa", 1, crypto::random_bytes(32));
  // One pair: 4 (count) + 4 + 1 (key) + 4 + value = the encoded size.
  const std::size_t fits = kMaxContextBytes - 13;
  const Context at_limit{{"k", std::string(fits, 'v')}};
  REQUIRE(encode_context(at_limit).size() == kMaxContextBytes);
  const std::string ct = encrypt_bytes("hello", w, at_limit, envelope::kMinFrameSize, dir);
  CHECK(try_decrypt(dir / "ct", dir / "back", w, at_limit) == std::nullopt);
  CHECK(read_file(dir / "back") == "hello");

  const Context over{{"k", std::string(fits + 1, 'v')}};
  const int wraps = w.wraps;
  Fd in(::open((dir / "pt").c_str(), O_RDONLY));
  Fd out(::open((dir / "over").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
  try {
    (void)envelope::encrypt(in.fd, out.fd, w, over, envelope::kMinFrameSize);
    FAIL("a context over the limit was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == Code::usage);
    CHECK(std::string(e.what()).find("65536 bytes (64 KiB)") != std::string::npos);
  }
  CHECK(read_file(dir / "over").empty());
  CHECK(w.wraps == wraps);
}

TEST_CASE("with frames opened in parallel, output stops at the first damaged frame in file order") {
  crypto::init();
  TempDir dir;
  MemoryWrapper w;
  w.add("6b6d7363-746c-4000-8000-0000000000aa", 1, crypto::random_bytes(32));
  const Bytes r = crypto::random_bytes(40 * 1024 + 5);
  const std::string pt(r.begin(), r.end());
  const std::string ct = encrypt_bytes(pt, w, {}, 1024, dir);
  const std::size_t hdr = envelope::parse_header(as_bytes(ct))->encoded_size, full = 1024 + 16;
  for (int run = 0; run < 20; ++run) {  // scheduling differs from run to run
    std::string bad = ct;
    bad[hdr + 31 * full + 3] ^= 1;  // frame 31
    bad[hdr + 12 * full + 3] ^= 1;  // frame 12: the first in order
    write_file(dir / "bad", bad);
    Fd in(::open((dir / "bad").c_str(), O_RDONLY));
    Fd out(::open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
    try {
      (void)envelope::decrypt(in.fd, out.fd, w, {});
      FAIL("a damaged file decrypted");
    } catch (const Error& e) {
      CHECK(e.code() == Code::integrity);
      CHECK(std::string(e.what()).find("frame 12 ") != std::string::npos);
    }
    CHECK(read_file(dir / "out") == pt.substr(0, 12 * 1024));
  }
}

TEST_CASE("a data key wrapped for an X25519 or RSA public key opens only with its private key") {
  crypto::init();
  const SecureBytes dk = crypto::random_secret(envelope::kDataKeySize);
  const Context ctx{{"app", "billing"}};
  for (KeySpec spec : {KeySpec::x25519, KeySpec::rsa_2048}) {
    CAPTURE(key_spec_name(spec));
    const SecureBytes mine = crypto::generate_key_material(spec);
    const SecureBytes other = crypto::generate_key_material(spec);
    const Bytes spki = crypto::public_key_of(mine.view());
    const envelope::Recipient r = envelope::wrap_for_public_key(spki, dk.view(), ctx);
    CHECK(r.type ==
          (spec == KeySpec::x25519 ? envelope::kRecipientX25519 : envelope::kRecipientRsaOaep));
    const auto pk = envelope::parse_public_key_recipient(r);
    REQUIRE(pk.has_value());
    CHECK(crypto::equal(pk->fingerprint, envelope::public_key_fingerprint(spki)));
    auto secret_of = [&](const SecureBytes& pkcs8) {
      return spec == KeySpec::x25519
                 ? crypto::x25519_shared(pkcs8.view(), pk->encapsulation)
                 : crypto::private_decrypt(pkcs8.view(), EncryptionAlgorithm::rsaes_oaep_sha_256,
                                           pk->encapsulation);
    };
    const auto secret = secret_of(mine);
    REQUIRE(secret.has_value());
    const auto opened = envelope::unwrap_public_key_recipient(*pk, secret->view(), ctx);
    REQUIRE(opened.has_value());
    CHECK(crypto::equal(opened->view(), dk.view()));
    // Another context, or another key's secret: nothing opens.
    CHECK(!envelope::unwrap_public_key_recipient(*pk, secret->view(), {{"app", "other"}}));
    if (const auto wrong = secret_of(other)) {
      CHECK(!envelope::unwrap_public_key_recipient(*pk, wrong->view(), ctx));
    }
    // Two wraps for the same key differ (a fresh ephemeral key or seed each time).
    CHECK(envelope::wrap_for_public_key(spki, dk.view(), ctx).body != r.body);
  }
}

TEST_CASE("only X25519 and RSA public keys can be a file's recipient") {
  crypto::init();
  const SecureBytes dk = crypto::random_secret(envelope::kDataKeySize);
  for (KeySpec spec : {KeySpec::ec_p256, KeySpec::ed25519, KeySpec::ec_sm2}) {
    CAPTURE(key_spec_name(spec));
    const Bytes spki = crypto::public_key_of(crypto::generate_key_material(spec).view());
    try {
      (void)envelope::wrap_for_public_key(spki, dk.view(), {});
      FAIL("wrapped for a key that cannot be a recipient");
    } catch (const Error& e) {
      CHECK(e.code() == Code::usage);
      CHECK(std::string(e.what()).find(std::string(key_spec_name(spec))) != std::string::npos);
    }
  }
  // A body of the wrong shape is no public-key recipient (and a vault-key one never is).
  CHECK(!envelope::parse_public_key_recipient({envelope::kRecipientX25519, Bytes(32 + 31 + 48)}));
  CHECK(!envelope::parse_public_key_recipient({envelope::kRecipientRsaOaep, Bytes(80)}));
  CHECK(!envelope::parse_public_key_recipient({envelope::kRecipientVaultKey, Bytes(200)}));
  CHECK(envelope::parse_public_key_recipient({envelope::kRecipientRsaOaep, Bytes(81)}));
}

TEST_CASE("an X25519 recipient refuses a peer key of small order") {
  crypto::init();
  // The all-zero point: every agreement with it is zero, which X25519 users must reject.
  CHECK_THROWS_AS((void)crypto::x25519_agree_ephemeral(Bytes(32, 0)), Error);
  const SecureBytes mine = crypto::generate_key_material(KeySpec::x25519);
  CHECK(!crypto::x25519_shared(mine.view(), Bytes(32, 0)));
  CHECK(!crypto::x25519_shared(mine.view(), Bytes(31, 9)));
}
