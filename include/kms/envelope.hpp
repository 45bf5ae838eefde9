// Envelope encryption of files and streams (docs/FORMAT.md §11): a fresh data key per
// file, wrapped for one or more recipients; a header committed to the data key and authenticated
// by it; a body of fixed-size AES-256-GCM frames whose nonces carry the frame counter and a
// final-frame flag. This module knows nothing of SQLite or PKCS#11: recipients come from a
// DataKeyWrapper.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kms/context.hpp"
#include "kms/secure.hpp"

namespace kms::envelope {

// Names as the spec names them.
inline constexpr std::string_view kFileMagic = "KENC";
inline constexpr std::uint8_t kFileVersion = 1;
inline constexpr std::uint8_t kSuiteAes256GcmHkdfSha256 = 1;
inline constexpr std::uint8_t kRecipientVaultKey = 1;  // body: a KMSC blob of the data key
// Public-key recipients (§11.3): body = fingerprint ‖ encapsulation ‖ wrapped data key.
inline constexpr std::uint8_t kRecipientX25519 = 2;   // encapsulation: an ephemeral public key
inline constexpr std::uint8_t kRecipientRsaOaep = 3;  // encapsulation: RSA-OAEP of a seed
// Every other recipient type (0, 4..255) is reserved; readers skip the ones they do not know.
inline constexpr std::size_t kDataKeySize = 32;
inline constexpr std::size_t kSaltSize = 32;
inline constexpr std::size_t kCommitmentSize = 32;
inline constexpr std::size_t kHeaderTagSize = 32;
inline constexpr std::size_t kFrameTagSize = 16;
inline constexpr std::size_t kFrameNonceSize = 12;
inline constexpr std::uint32_t kMinFrameSize = 1024;
inline constexpr std::uint32_t kMaxFrameSize = 64u << 20;
inline constexpr std::uint32_t kDefaultFrameSize = 1u << 20;
inline constexpr std::size_t kMaxRecipients = 64;
inline constexpr std::size_t kMaxRecipientBody = 4096;
inline constexpr std::size_t kMaxContextBytes = kms::kMaxContextBytes;  // check_context_size
inline constexpr std::string_view kInfoCommitment = "kmsctl/v1/file-commitment";
inline constexpr std::string_view kInfoHeader = "kmsctl/v1/file-header";
inline constexpr std::string_view kInfoFrame = "kmsctl/v1/file-frame";
inline constexpr std::size_t kFingerprintSize = 32;  // SHA-256 of the SubjectPublicKeyInfo
inline constexpr std::size_t kX25519KeySize = 32;    // a raw X25519 public key
inline constexpr std::size_t kSeedSize = 32;         // what RSA-OAEP encrypts
inline constexpr std::size_t kWrappedKeySize = 48;   // AES-256-GCM of the data key, and its tag
inline constexpr std::string_view kInfoX25519 = "kmsctl/v1/file-x25519";
inline constexpr std::string_view kInfoRsaOaep = "kmsctl/v1/file-rsa-oaep";

struct Recipient {
  std::uint8_t type = kRecipientVaultKey;
  Bytes body;
};

// The parsed header (§11.3). encoded_size is where the body starts.
struct Header {
  std::uint8_t version = kFileVersion;
  std::uint8_t suite = kSuiteAes256GcmHkdfSha256;
  std::uint32_t frame_size = kDefaultFrameSize;
  Bytes salt;
  Context context;
  std::vector<Recipient> recipients;
  Bytes commitment;
  Bytes tag;
  std::size_t encoded_size = 0;  // bytes the header occupies in the file
};

// Wraps and unwraps the data key for a set of recipients: the envelope's only view of keys. The
// service implements it with vault keys (auditing each call); tests and the SDK example with
// in-memory keys.
class DataKeyWrapper {
 public:
  virtual ~DataKeyWrapper() = default;
  // One recipient per key, each binding the wrapped key to `context`.
  virtual std::vector<Recipient> wrap(ByteView data_key, const Context& context) = 0;
  // The data key from whichever recipient opens. Code::refused when no recipient's key is
  // usable (disabled, say); Code::integrity when none opens. Not yet checked against the
  // commitment: the envelope does that.
  virtual SecureBytes unwrap(const Header& header) = 0;
};

// ---- public-key recipients (§11.3) ----

// How a public-key recipient names its key: SHA-256 of the SubjectPublicKeyInfo DER.
Bytes public_key_fingerprint(ByteView spki);

// A public-key recipient's fields; views into the recipient's body.
struct PublicKeyRecipient {
  std::uint8_t type = kRecipientX25519;
  ByteView fingerprint, encapsulation, wrapped;
};
// nullopt for a recipient of another type, or whose body has the wrong shape.
std::optional<PublicKeyRecipient> parse_public_key_recipient(const Recipient& r);

// Code::usage, naming `what`, for a public key that cannot be a recipient (not X25519 or RSA).
void check_recipient_key(ByteView spki, std::string_view what);
// The data key wrapped for a public key (SubjectPublicKeyInfo DER): an X25519 key, or an RSA key
// of 2048 to 4096 bits. Needs no vault. Code::usage for any other key.
Recipient wrap_for_public_key(ByteView spki, ByteView data_key, const Context& context);
// The data key of a public-key recipient, given the secret that the recipient's private key
// recovers from its encapsulation: the X25519 shared secret, or the RSA-OAEP-decrypted seed.
// nullopt when it does not open (another key, or altered).
[[nodiscard]] std::optional<SecureBytes> unwrap_public_key_recipient(const PublicKeyRecipient& r,
                                                                     ByteView secret,
                                                                     const Context& context);

// The nonce of frame `counter` (§11.5).
std::array<std::uint8_t, kFrameNonceSize> frame_nonce(std::uint64_t counter, bool final) noexcept;

using Progress = std::function<void(std::uint64_t bytes_done)>;

// Parses a header from the start of a buffer; nullopt when more bytes are needed; Code::integrity
// when it is malformed (wrong magic, version, suite, sizes out of range).
std::optional<Header> parse_header(ByteView data);
// Reads and parses the header from a file descriptor (Code::integrity when malformed or cut).
// Bytes read past the header go to `rest` (for pipes); without `rest` the fd is seeked back.
Header read_header(int fd, Bytes* rest = nullptr);
// Encodes a header, computing commitment and tag from the data key.
Bytes encode_header(Header& header, ByteView data_key);
// Checks the commitment and the header tag against a data key (Code::integrity on mismatch).
void verify_header(const Header& header, ByteView data_key);
// The context a reader expects must equal the header's (Code::integrity otherwise, §11.6 step 2).
void check_context(const Header& header, const Context& expected);
// The plaintext size implied by the envelope's total size (§11.6), when it is consistent.
std::optional<std::uint64_t> plaintext_size(const Header& header, std::uint64_t file_size) noexcept;

struct EncryptResult {
  std::uint64_t plaintext_bytes = 0;
  std::uint64_t frames = 0;
};

// Streams in_fd to out_fd. The data key is made here and wrapped through `wrapper` before any
// output is written.
EncryptResult encrypt(int in_fd, int out_fd, DataKeyWrapper& wrapper, const Context& context,
                      std::uint32_t frame_size, const Progress& progress = {});
// Streams in_fd (positioned at the start of the file) to out_fd, releasing each frame only after
// its tag verifies; Code::integrity for any damage (truncation, reordering, trailing bytes), and
// for a context other than the header's, before any key is used or byte written.
EncryptResult decrypt(int in_fd, int out_fd, DataKeyWrapper& wrapper, const Context& context,
                      const Progress& progress = {});

}  // namespace kms::envelope
