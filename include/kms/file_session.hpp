// Envelope encryption of files: a FileSession wraps or unwraps each file's data key under vault
// keys (each wrap or unwrap one audited operation, whose record a second one ends), while
// encrypt_file and decrypt_file stream the file in the calling process. A session comes from
// Service::file_session, or from an agent (src/agent/client.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kms/actions.hpp"
#include "kms/context.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"

namespace kms {

struct FileResult {
  std::string name;                                        // the input, as named in the audit
  std::vector<std::pair<std::string, std::int64_t>> keys;  // key id, version used
  std::uint64_t bytes = 0;                                 // plaintext bytes
  std::uint64_t frames = 0;
};

// How the output of a file encrypt or decrypt is made final: `publish` runs after the last
// frame is written and before the end record (link a file into place; nothing for a stream);
// `take_back` runs when the end record then cannot be written (remove the file just published),
// so that the command fails with no output and no `ok` record.
struct FileOutput {
  std::function<void()> publish;
  std::function<void()> take_back;
};

// One file encrypt or decrypt: its data key (wrap or unwrap, as envelope::encrypt and decrypt
// ask) and its two records (FileOperations::encrypt), wherever the bulk encryption runs:
// FileOperations::session in the process that holds the vault, or an agent client's stand-in
// that sends each call to the agent as a request (docs/FORMAT.md §13.5).
class FileSession : public envelope::DataKeyWrapper {
 public:
  // The last frame is written: publishes the output, then records `ok`. If that record cannot
  // be written, the output is taken back and the error thrown.
  virtual void finish(const FileResult& r, const FileOutput& output) = 0;
  // After the key use: the end record, `error` (or `denied`) with the failure's code name, or
  // `interrupted` for a caught signal. A failure to write it is dropped (the caller rethrows the
  // original error).
  virtual void fail(const Error& e) noexcept = 0;
  // A failure before any key was used (a damaged header, another context): one record.
  virtual void fail_before_start(const Error& e) noexcept = 0;
  // `file rewrap`: the file's header with its data key wrapped under to_key's primary version,
  // or (none) under the newest version of each of its vault keys; the key use, recorded
  // `started`. The caller writes the new header and the body, then calls finish (which
  // publishes the file) or fail. A session of another operation refuses (Code::usage).
  virtual Bytes rewrap(envelope::Header& header, const std::optional<std::string>& to_key);

  // Whether wrap or unwrap ran (and so wrote its own record, started or failed).
  bool attempted() const noexcept { return attempted_; }
  // It ran and failed: its record (error or denied, step start) tells the failure.
  bool key_use_failed() const noexcept { return attempted_ && !started_; }
  // Started and not ended yet: a failure now is recorded by fail().
  bool running() const noexcept { return started_ && !ended_; }

  FileResult result;  // the keys used, and (after finish) bytes and frames

 protected:
  bool attempted_ = false, started_ = false, ended_ = false;
};

// A file encrypt's session that also wraps the data key for each public key (SubjectPublicKeyInfo
// DER of an X25519 key or an RSA key, docs/FORMAT.md §11.3), after the vault keys of `inner`.
// With no inner session it needs no vault and records nothing.
std::unique_ptr<FileSession> with_public_key_recipients(std::unique_ptr<FileSession> inner,
                                                        std::vector<Bytes> public_keys);

// Streams a file through a session: encrypts in_fd to out_fd (the data key wrapped, and its use
// audited, before any output is written), or decrypts (the unwrap audited before any plaintext
// is released); then finish, or fail with the error (a caught signal: signals::Interrupted).
FileResult encrypt_file(FileSession& session, int in_fd, int out_fd, const Context& context,
                        std::uint32_t frame_size, const envelope::Progress& progress,
                        const FileOutput& output);
FileResult decrypt_file(FileSession& session, int in_fd, int out_fd, const Context& context,
                        const envelope::Progress& progress, const FileOutput& output);
// `file rewrap` of the file at `path`, through a session of Action::file_rewrap: its header read
// here (a header that does not parse: fail_before_start, then thrown), the data key rewrapped by
// the session, and the new header and the unchanged body written here into a new file that
// replaces the old one atomically; `ok` is recorded once it has.
FileResult rewrap_file(FileSession& session, const std::string& path,
                       const std::optional<std::string>& to_key);

}  // namespace kms
