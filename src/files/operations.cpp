// Envelope encryption of files on a vault: vault keys wrap each file's data key; each wrap or
// unwrap is one audited transaction of the runner, whose record a second one ends.
#include "files/operations.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "base/json.hpp"
#include "base/posix.hpp"
#include "keys/key_store.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "kms/signals.hpp"
#include "runner/runner.hpp"

namespace kms {
namespace fs = std::filesystem;
namespace {

nlohmann::json keys_json(const std::vector<std::pair<std::string, std::int64_t>>& keys) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [id, v] : keys) j.push_back({{"key_id", id}, {"version", v}});
  return j;
}

// Decides the use of one key by a file operation (Code::refused when it may not).
using KeyCheck = std::function<void(const std::string& key_id)>;

// Each key a file operation uses is authorised on its own, as "key/ID" with the file's context
// (the operation's own resource is the file): the file's record names the rule, and the grant,
// that allowed the key, or the rule that refused it.
KeyCheck key_check(Runner& runner, Action action, const Context& context, audit::Event& record) {
  return [&runner, action, &context, &record](const std::string& key_id) {
    audit::Event use{action, key_resource(key_id), {}, context};
    auto name_rule = [&] {
      for (const char* field : {"rule", "grant_id"}) {
        if (use.params.contains(field)) record.params[field] = use.params[field];
      }
    };
    try {
      runner.authorize(use);
    } catch (const Error&) {
      name_rule();
      throw;
    }
    name_rule();
  };
}

// Wraps a data key under each key's primary version.
std::vector<envelope::Recipient> wrap_for(keys::KeyStore& ks,
                                          const std::vector<store::KeyRow>& keys, ByteView data_key,
                                          const Context& context, FileResult& result,
                                          const KeyCheck& check) {
  std::vector<envelope::Recipient> out;
  for (const store::KeyRow& key : keys) {
    check(key.id);
    out.push_back({envelope::kRecipientVaultKey, ks.encrypt(key, data_key, context)});
    result.keys.emplace_back(key.id, key.primary_version);
  }
  return out;
}

constexpr KeySpec kRsaSpecs[] = {KeySpec::rsa_2048, KeySpec::rsa_3072, KeySpec::rsa_4096};
constexpr KeySpec kX25519Specs[] = {KeySpec::x25519};

// Opens the data key of a public-key recipient with the vault's key of that public key.
keys::Decrypted open_public_key_recipient(keys::KeyStore& ks, const envelope::PublicKeyRecipient& r,
                                          const Context& context, const KeyCheck& check) {
  const bool x25519 = r.type == envelope::kRecipientX25519;
  const auto found =
      ks.find_by_public_key(r.fingerprint, x25519 ? std::span<const KeySpec>(kX25519Specs)
                                                  : std::span<const KeySpec>(kRsaSpecs));
  if (!found) {
    throw Error(Code::not_found,
                fmt::format("no {} key of this vault has the public key {} that the file names",
                            x25519 ? "X25519" : "RSA", crypto::to_hex(r.fingerprint)),
                Remedy::list_file_keys, {},
                "the file was made for another vault's key, or for a key deleted from this one");
  }
  const auto& [key, version] = *found;
  check(key.id);
  keys::KeyStore::require_enabled(key, key.id);
  std::optional<SecureBytes> secret;
  if (x25519) {
    secret = ks.agree(key, version, r.encapsulation);
  } else {
    secret = ks.decrypt_with(key, EncryptionAlgorithm::rsaes_oaep_sha_256, r.encapsulation, version)
                 .plaintext;
  }
  std::optional<SecureBytes> dk;
  if (secret) dk = envelope::unwrap_public_key_recipient(r, secret->view(), context);
  if (!dk) {
    throw Error(Code::integrity,
                fmt::format("the data key wrapped for key {} version {} does not open: the file's "
                            "header was altered",
                            key.id, version),
                "treat the file as tampered with");
  }
  return {std::move(*dk), key.id, static_cast<std::uint32_t>(version)};
}

// Opens the data key with the first recipient whose key is usable: a vault key, or a public key
// whose private key the vault holds. Failures rank: a key that opens nothing (integrity) over a
// key refused by state over a missing key.
SecureBytes unwrap_with(keys::KeyStore& ks, const envelope::Header& h, FileResult& result,
                        const KeyCheck& check) {
  std::optional<Error> best;
  auto rank = [](Code c) { return c == Code::integrity ? 3 : c == Code::refused ? 2 : 1; };
  for (const envelope::Recipient& r : h.recipients) {
    const auto public_key = envelope::parse_public_key_recipient(r);
    if (r.type != envelope::kRecipientVaultKey && !public_key) continue;
    try {
      keys::Decrypted d;
      if (public_key) {
        d = open_public_key_recipient(ks, *public_key, h.context, check);
      } else {
        if (const auto id = keys::KeyStore::blob_key_id(r.body)) check(*id);
        d = ks.decrypt(r.body, h.context);
      }
      if (d.plaintext.size() != envelope::kDataKeySize) {
        throw Error(Code::integrity, "a wrapped data key has the wrong size");
      }
      result.keys.emplace_back(d.key_id, d.key_version);
      return std::move(d.plaintext);
    } catch (const Error& e) {
      if (!best || rank(e.code()) > rank(best->code())) best = e;
    }
  }
  if (!best) {
    throw Error(Code::integrity, "the file has no recipient that a vault key can open",
                Remedy::decrypt_with_newer, {}, "treat the file as tampered with");
  }
  if (best->code() == Code::not_found) {
    // Without the data key, a key id or version altered in the header cannot be told from a file
    // made for another vault's key, or under a version this vault lost to a restore; each is a
    // file this vault cannot authenticate (docs/ARCHITECTURE.md §6, README "Files": exit 5). The
    // message still says which key or version is missing, and why it may be.
    // The cause's hint, and where the file's keys are listed.
    throw Error(Code::integrity, fmt::format("{}; or the file's header was altered", best->what()),
                best->remedy() == Remedy::list_restores ? Remedy::list_restores_and_file_keys
                                                        : Remedy::list_file_keys,
                best->subject(), best->hint());
  }
  throw Error(best->code(), fmt::format("no key of this file can open it: {}", best->what()),
              best->remedy(), best->subject(), best->hint());
}

// Creates VAULT.ops/<seq>.lock (the directory 0700 on demand, the file 0600) and holds an
// flock on it for as long as this process runs the operation: a lock file that another process
// can lock belongs to a process that died (Runner, before each write).
class OpLock {
 public:
  OpLock(const fs::path& dir, std::int64_t seq) : path_(dir / fmt::format("{}.lock", seq)) {
    bool made = ::mkdir(dir.c_str(), 0700) == 0;
    if (!made && errno == ENOENT) {  // a vault in PostgreSQL: the per-user directory is new
      files::make_private_dir(dir.parent_path());
      made = ::mkdir(dir.c_str(), 0700) == 0;
    }
    if (!made && errno != EEXIST) {
      throw Error(Code::failed,
                  fmt::format("cannot create {}: {}", dir.string(), std::strerror(errno)),
                  "check the permissions of the vault's directory");
    }
    if (made) files::fsync_dir(dir.parent_path());
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0 || ::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      throw Error(Code::failed,
                  fmt::format("cannot lock {}: {}", path_.string(), std::strerror(err)),
                  "check the permissions of the vault's directory");
    }
    // Durable before the record that names it: after a power cut, the next command still finds
    // the operation that a started record without its end belongs to.
    try {
      files::fsync_dir(dir);
    } catch (...) {
      remove();
      throw;
    }
  }
  ~OpLock() {
    if (fd_ >= 0) ::close(fd_);  // the file stays: the next command ends the record if need be
  }
  OpLock(const OpLock&) = delete;
  OpLock& operator=(const OpLock&) = delete;

  // Once the end is recorded (or the start rolled back): removed while still locked.
  void remove() noexcept {
    if (fd_ < 0) return;
    ::unlink(path_.c_str());
    ::close(fd_);
    fd_ = -1;
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// A header that came as a request rather than from envelope::parse_header gets its limits here
// (FORMAT.md §11.3): each recipient is a decryption attempt under the vault's lock.
void check_recipients(const envelope::Header& h) {
  if (h.recipients.size() > envelope::kMaxRecipients) {
    throw Error(Code::integrity, fmt::format("a file header with {} recipients (at most {})",
                                             h.recipients.size(), envelope::kMaxRecipients));
  }
  for (const envelope::Recipient& r : h.recipients) {
    if (r.body.size() > envelope::kMaxRecipientBody) {
      throw Error(Code::integrity, "a file header's recipient is larger than a wrapped key");
    }
  }
}

std::string_view outcome_for(Code c) { return c == Code::refused ? "denied" : "error"; }

// A failure of a file stream while a caught signal stops the command is that interruption: the
// writer of a pipe ended by the same Ctrl-C ends the input early, and the file looks cut short.
// (Not a failed key use: its own record already tells that failure.)
std::optional<signals::Interrupted> interruption(const Error& e, bool key_use_failed) {
  const int sig = signals::caught();
  if (sig == 0 || key_use_failed || dynamic_cast<const signals::Interrupted*>(&e) != nullptr) {
    return std::nullopt;
  }
  return signals::Interrupted(sig);
}

// The new header of a file rewrap (FileSession::rewrap), inside its key use's transaction: the
// data key opened with one of the file's keys, then wrapped for to_ref's primary version or for
// the newest version of each of the file's vault keys; every other recipient (a public key's, a
// type this kmsctl does not know) stays as it was, byte for byte.
Bytes rewrapped_header(Runner& runner, keys::KeyStore& ks, envelope::Header& h,
                       const std::optional<std::string>& to_ref, FileResult& result,
                       audit::Event& e) {
  FileResult opened;
  const KeyCheck check = key_check(runner, Action::file_rewrap, h.context, e);
  const SecureBytes dk = unwrap_with(ks, h, opened, check);
  envelope::verify_header(h, dk.view());
  e.params["from_keys"] = keys_json(opened.keys);
  std::vector<store::KeyRow> targets;
  if (to_ref) {
    targets.push_back(ks.resolve(*to_ref));
  } else {
    for (const envelope::Recipient& r : h.recipients) {
      if (r.type != envelope::kRecipientVaultKey) continue;
      if (const auto id = keys::KeyStore::blob_key_id(r.body)) {
        if (auto key = store::key_get(runner.vault().db(), *id)) targets.push_back(*key);
      }
    }
  }
  if (targets.empty()) {
    throw Error(Code::not_found, "none of the file's keys is left in this vault to rewrap it",
                Remedy::pass_target_key);
  }
  for (const store::KeyRow& k : targets) keys::KeyStore::require_enabled(k, k.id);
  std::vector<envelope::Recipient> recipients =
      wrap_for(ks, targets, dk.view(), h.context, result, check);
  for (envelope::Recipient& r : h.recipients) {
    if (r.type != envelope::kRecipientVaultKey) recipients.push_back(std::move(r));
  }
  if (recipients.size() > envelope::kMaxRecipients) {
    throw Error(Code::usage, fmt::format("the rewrapped file would have {} recipients (at most {})",
                                         recipients.size(), envelope::kMaxRecipients));
  }
  h.recipients = std::move(recipients);
  e.params["to_keys"] = keys_json(result.keys);
  return envelope::encode_header(h, dk.view());
}

// A FileSession on this vault: the key use recorded as `started` together with its lock file,
// then one end record, `ok` once the output is published or `error` with the failure's code.
class FileOperation final : public FileSession {
 public:
  // refs: the keys to wrap for (encrypt); none to decrypt.
  FileOperation(FileOperations& files, Runner& runner, Action action, std::string name,
                std::vector<std::string> refs)
      : files_(files),
        runner_(runner),
        ks_(runner.vault()),
        action_(action),
        name_(std::move(name)),
        refs_(std::move(refs)) {
    result.name = name_;
  }
  ~FileOperation() override {
    // Dropped while running (an agent's client went away): ended as interrupted.
    if (running()) fail(signals::Interrupted(0));
  }

  std::vector<envelope::Recipient> wrap(ByteView data_key, const Context& context) override {
    if (data_key.size() != envelope::kDataKeySize) {
      throw Error(Code::usage, fmt::format("a file's data key has {} bytes, not {}",
                                           data_key.size(), envelope::kDataKeySize));
    }
    std::vector<envelope::Recipient> out;
    start(
        {action_, "file/" + name_, {{"file", name_}, {"context", context_json(context)}}, context},
        [&](audit::Event& ev) {
          std::vector<store::KeyRow> keys;
          for (const std::string& ref : refs_) {
            keys.push_back(ks_.resolve(ref));
            keys::KeyStore::require_enabled(keys.back(), ref);
          }
          out = wrap_for(ks_, keys, data_key, context, result,
                         key_check(runner_, action_, context, ev));
          ev.params["keys"] = keys_json(result.keys);
        });
    return out;
  }

  SecureBytes unwrap(const envelope::Header& h) override {
    check_recipients(h);
    SecureBytes dk;
    start({action_,
           "file/" + name_,
           {{"file", name_}, {"context", context_json(h.context)}},
           h.context},
          [&](audit::Event& ev) {
            dk = unwrap_with(ks_, h, result, key_check(runner_, action_, h.context, ev));
            ev.params["keys"] = keys_json(result.keys);
          });
    return dk;
  }

  Bytes rewrap(envelope::Header& h, const std::optional<std::string>& to_ref) override {
    if (action_ != Action::file_rewrap) {
      throw Error(Code::usage, "this file operation does not rewrap a file");
    }
    check_recipients(h);
    audit::Event ev{action_, "file/" + name_, {{"file", name_}}};
    if (to_ref) audit::name_key(ev.params, *to_ref, "to_");
    Bytes header;
    start(std::move(ev),
          [&](audit::Event& e) { header = rewrapped_header(runner_, ks_, h, to_ref, result, e); });
    return header;
  }

  // The key use: run as one audited transaction whose record says `started`; the lock file is
  // made in that transaction, so that a start that commits always has one.
  void start(audit::Event event, const std::function<void(audit::Event&)>& op) {
    if (attempted_) throw Error(Code::usage, "this file operation has used its key already");
    attempted_ = true;
    event.params["step"] = "start";
    Runner::Hooks hooks;
    hooks.appended = [&](const store::AuditRow& row) {
      lock_.emplace(runner_.ops_dir(), row.seq);
      started_seq_ = row.seq;
    };
    hooks.rolled_back = [&] {
      if (lock_) lock_->remove();
      lock_.reset();
      started_seq_ = 0;
    };
    runner_.run(std::move(event), op, hooks, "started");
    started_ = true;
  }

  // Publishes the output, then records `ok`. A signal caught before the publication stops it
  // (Interrupted). If the end record was committed and only the token anchor could not follow,
  // the operation is complete (the anchor lags, as after a crash: FORMAT.md §8.4).
  void finish(const FileResult& r, const FileOutput& output) override {
    if (!running()) throw Error(Code::usage, "this file operation is not running");
    signals::check();
    if (output.publish) output.publish();
    result.bytes = r.bytes;
    result.frames = r.frames;
    audit::Event ev = end_event("done");
    if (action_ != Action::file_rewrap) {  // a rewrap copies the body as it is
      ev.params["bytes"] = r.bytes;
      ev.params["frames"] = r.frames;
    }
    std::optional<store::AuditRow> row;
    Runner::Hooks hooks;
    hooks.appended = [&](const store::AuditRow& appended) { row = appended; };
    hooks.committed = [&] { remove_lock(); };
    hooks.failing = [&](audit::Event& failed) {
      ended_ = true;  // run() records the failure, with the params of an end that failed
      failed = end_event("end");
    };
    try {
      runner_.run(
          std::move(ev), [](audit::Event&) {}, hooks, "ok");
    } catch (...) {
      if (row && committed(*row)) {
        ended_ = true;
        remove_lock();
        return;
      }
      if (output.take_back) output.take_back();
      throw;
    }
    ended_ = true;
  }

  void fail(const Error& e) noexcept override {
    if (!running()) return;
    ended_ = true;
    try {
      Runner::Hooks hooks;
      hooks.committed = [&] { remove_lock(); };
      runner_.run(
          end_event("end"), [](audit::Event&) {}, hooks, outcome_for(e.code()),
          Runner::failure_code(e));
    } catch (...) {
      // run() recorded it another way, or could not; the lock file then stays for the next
      // command to end the record.
    }
  }

  void fail_before_start(const Error& e) noexcept override {
    if (attempted_) return;
    attempted_ = true;
    try {
      files_.failed(action_, name_, e);
    } catch (...) {
      // run() recorded it another way (a refusal), or could not; the caller rethrows the
      // original error.
    }
  }

 private:
  audit::Event end_event(const char* step) const {
    return {
        action_, "file/" + name_, {{"file", name_}, {"step", step}, {"started_seq", started_seq_}}};
  }
  bool committed(const store::AuditRow& row) const {
    try {
      const std::optional<Bytes> h = store::audit_hash_at(runner_.vault().db(), row.seq);
      return h && *h == row.hash;
    } catch (...) {
      return false;
    }
  }
  void remove_lock() noexcept {
    if (lock_) lock_->remove();
  }

  FileOperations& files_;
  Runner& runner_;
  keys::KeyStore ks_;
  Action action_;
  std::string name_;
  std::vector<std::string> refs_;
  std::optional<OpLock> lock_;
  std::int64_t started_seq_ = 0;
};

// A file encrypt that also wraps the data key for public keys, after the vault keys of an inner
// session (if any). Without one it needs no vault, and records nothing: there is no vault.
class PublicKeySession final : public FileSession {
 public:
  PublicKeySession(std::unique_ptr<FileSession> inner, std::vector<Bytes> public_keys)
      : inner_(std::move(inner)), public_keys_(std::move(public_keys)) {}

  std::vector<envelope::Recipient> wrap(ByteView data_key, const Context& context) override {
    attempted_ = true;
    std::vector<envelope::Recipient> out;
    if (inner_) {
      out = inner_->wrap(data_key, context);
      result = inner_->result;
    }
    started_ = true;
    for (const Bytes& spki : public_keys_) {
      out.push_back(envelope::wrap_for_public_key(spki, data_key, context));
    }
    return out;
  }
  SecureBytes unwrap(const envelope::Header&) override {
    throw Error(Code::usage, "public keys only encrypt: a file's data key opens in the vault");
  }
  void finish(const FileResult& r, const FileOutput& output) override {
    if (inner_) {
      inner_->finish(r, output);
    } else if (output.publish) {
      output.publish();
    }
    ended_ = true;
    result.bytes = r.bytes;
    result.frames = r.frames;
  }
  void fail(const Error& e) noexcept override {
    ended_ = true;
    if (inner_) inner_->fail(e);
  }
  void fail_before_start(const Error& e) noexcept override {
    if (inner_) inner_->fail_before_start(e);
  }

 private:
  std::unique_ptr<FileSession> inner_;
  std::vector<Bytes> public_keys_;
};

}  // namespace

std::unique_ptr<FileSession> with_public_key_recipients(std::unique_ptr<FileSession> inner,
                                                        std::vector<Bytes> public_keys) {
  return std::make_unique<PublicKeySession>(std::move(inner), std::move(public_keys));
}

namespace {
// Runs a file operation's body, which ends with op.finish; if it throws, ends the session with
// the failure (a caught signal as Interrupted) and rethrows. A failure before any key use is
// recorded with fail_before_start when `header_first` (a decrypt or rewrap reads the header
// first; an encrypt's failure to wrap is recorded by the wrap itself).
template <class Body>
FileResult in_session(FileSession& op, bool header_first, const Body& body) {
  try {
    body();
  } catch (const Error& e) {
    const std::optional<signals::Interrupted> stopped = interruption(e, op.key_use_failed());
    const Error& cause = stopped ? *stopped : e;
    if (header_first && !op.attempted()) op.fail_before_start(cause);
    if (op.running()) op.fail(cause);
    if (stopped) throw *stopped;
    throw;
  } catch (const std::exception& e) {
    if (op.running()) op.fail(Error(Code::failed, e.what()));
    throw;
  }
  return op.result;
}
}  // namespace

FileResult encrypt_file(FileSession& op, int in_fd, int out_fd, const Context& context,
                        std::uint32_t frame_size, const envelope::Progress& progress,
                        const FileOutput& output) {
  return in_session(op, false, [&] {
    const envelope::EncryptResult r =
        envelope::encrypt(in_fd, out_fd, op, context, frame_size, progress);
    FileResult done = op.result;
    done.bytes = r.plaintext_bytes;
    done.frames = r.frames;
    op.finish(done, output);
  });
}

FileResult decrypt_file(FileSession& op, int in_fd, int out_fd, const Context& context,
                        const envelope::Progress& progress, const FileOutput& output) {
  return in_session(op, true, [&] {
    const envelope::EncryptResult r = envelope::decrypt(in_fd, out_fd, op, context, progress);
    FileResult done = op.result;
    done.bytes = r.plaintext_bytes;
    done.frames = r.frames;
    op.finish(done, output);
  });
}

Bytes FileSession::rewrap(envelope::Header&, const std::optional<std::string>&) {
  throw Error(Code::usage, "this file session does not rewrap a file");
}

FileResult rewrap_file(FileSession& op, const std::string& path,
                       const std::optional<std::string>& to_key) {
  const posix::Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) {
    throw Error(Code::not_found, fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  }
  return in_session(op, true, [&] {
    envelope::Header h = envelope::read_header(in.get());
    const std::size_t body = h.encoded_size;
    files::AtomicFile out(path, /*overwrite=*/true);
    const Bytes header = op.rewrap(h, to_key);
    out.write(as_chars(header));
    if (!posix::copy_to_end(in.get(), static_cast<off_t>(body), out.fd())) {
      throw Error(Code::failed,
                  fmt::format("cannot copy the body of {}: {}", path, std::strerror(errno)),
                  "check free space on that file system; the file is unchanged");
    }
    op.finish(op.result, {[&] { out.commit(); }, [&] { out.take_back(); }});
  });
}

void FileOperations::failed(Action action, const std::string& name, const Error& e) {
  runner_.run(
      {action, "file/" + name, {{"file", name}, {"stage", "header"}}}, [](audit::Event&) {}, {},
      outcome_for(e.code()), Runner::failure_code(e));
}

FileOperations::FileOperations(Runner& runner) : runner_(runner), vault_(runner.vault()) {}

std::unique_ptr<FileSession> FileOperations::session(Action action, std::string name,
                                                     std::vector<std::string> key_refs) {
  if (action == Action::file_encrypt && key_refs.empty()) {
    throw Error(Code::usage, "a file encrypt needs at least one key", Remedy::name_file_key);
  }
  return std::make_unique<FileOperation>(*this, runner_, action, std::move(name),
                                         std::move(key_refs));
}

FileResult FileOperations::encrypt(int in_fd, int out_fd, const std::vector<std::string>& key_refs,
                                   const Context& context, std::uint32_t frame_size,
                                   std::string_view name, const envelope::Progress& progress,
                                   const FileOutput& output) {
  const auto op = session(Action::file_encrypt, std::string(name), key_refs);
  return kms::encrypt_file(*op, in_fd, out_fd, context, frame_size, progress, output);
}

FileResult FileOperations::decrypt(int in_fd, int out_fd, const Context& context,
                                   std::string_view name, const envelope::Progress& progress,
                                   const FileOutput& output) {
  const auto op = session(Action::file_decrypt, std::string(name));
  return kms::decrypt_file(*op, in_fd, out_fd, context, progress, output);
}

}  // namespace kms
