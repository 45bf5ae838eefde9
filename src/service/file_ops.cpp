// Envelope encryption of files through the facade: vault keys wrap each file's data key, and
// each wrap or unwrap is one audited transaction.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <sys/stat.h>

#include "kms/error.hpp"
#include "kms/files.hpp"
#include "kms/service.hpp"

namespace kms {
namespace {

nlohmann::json context_json(const Context& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : c) j[k] = v;
  return j;
}

nlohmann::json keys_json(const std::vector<std::pair<std::string, std::int64_t>>& keys) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [id, v] : keys) j.push_back({{"key", id}, {"version", v}});
  return j;
}

// Wraps a data key under each key's primary version.
std::vector<envelope::Recipient> wrap_for(keys::KeyStore& ks,
                                          const std::vector<store::KeyRow>& keys, ByteView data_key,
                                          const Context& context, FileResult& result) {
  std::vector<envelope::Recipient> out;
  for (const store::KeyRow& key : keys) {
    out.push_back({envelope::kRecipientVaultKey, ks.encrypt(key, data_key, context)});
    result.keys.emplace_back(key.id, key.primary_version);
  }
  return out;
}

// Opens the data key with the first recipient whose key is usable. Failures rank: a key that
// opens nothing (integrity) over a key refused by state over a missing key.
SecureBytes unwrap_with(keys::KeyStore& ks, const envelope::Header& h, FileResult& result) {
  std::optional<Error> best;
  auto rank = [](Code c) { return c == Code::integrity ? 3 : c == Code::refused ? 2 : 1; };
  for (const envelope::Recipient& r : h.recipients) {
    if (r.type != envelope::kRecipientVaultKey) continue;
    try {
      keys::Decrypted d = ks.decrypt(r.body, h.context);
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
    throw Error(
        Code::integrity, "the file has no recipient that a vault key can open",
        "treat the file as tampered with, or decrypt it with a kmsctl that knows its recipients");
  }
  if (best->code() == Code::not_found) {
    // Without the data key, a key id or version altered in the header cannot be told from a file
    // made for another vault's key, or under a version this vault lost to a restore; each is a
    // file this vault cannot authenticate (docs/ARCHITECTURE.md §6, README "Files": exit 5). The
    // message still says which key or version is missing, and why it may be.
    throw Error(Code::integrity, fmt::format("{}; or the file's header was altered", best->what()),
                fmt::format("{}; `kmsctl file inspect` lists the file's keys", best->hint()));
  }
  throw Error(best->code(), fmt::format("no key of this file can open it: {}", best->what()),
              best->hint());
}

class Wrapper final : public envelope::DataKeyWrapper {
 public:
  using Run = std::function<void(audit::Event, const std::function<void(audit::Event&)>&)>;
  Wrapper(Vault& v, Run run, std::string name, std::vector<std::string> refs, FileResult& result)
      : ks_(v),
        run_(std::move(run)),
        name_(std::move(name)),
        refs_(std::move(refs)),
        result_(result) {}

  std::vector<envelope::Recipient> wrap(ByteView data_key, const Context& context) override {
    std::vector<envelope::Recipient> out;
    attempted_ = true;
    run_({"file.encrypt", "file/" + name_, {{"file", name_}, {"context", context_json(context)}}},
         [&](audit::Event& ev) {
           std::vector<store::KeyRow> keys;
           for (const std::string& ref : refs_) {
             keys.push_back(ks_.resolve(ref));
             keys::KeyStore::require_enabled(keys.back(), ref);
           }
           out = wrap_for(ks_, keys, data_key, context, result_);
           ev.params["keys"] = keys_json(result_.keys);
         });
    used_ = true;
    return out;
  }

  SecureBytes unwrap(const envelope::Header& h) override {
    SecureBytes dk;
    attempted_ = true;
    run_({"file.decrypt", "file/" + name_, {{"file", name_}, {"context", context_json(h.context)}}},
         [&](audit::Event& ev) {
           dk = unwrap_with(ks_, h, result_);
           ev.params["keys"] = keys_json(result_.keys);
         });
    used_ = true;
    return dk;
  }

  // Whether wrap/unwrap ran (and so wrote its own audit record), and whether it succeeded.
  bool attempted() const noexcept { return attempted_; }
  bool used() const noexcept { return used_; }

 private:
  keys::KeyStore ks_;
  Run run_;
  std::string name_;
  std::vector<std::string> refs_;
  FileResult& result_;
  bool attempted_ = false, used_ = false;
};

// Records a failure that happened outside an audited key use: before it (a damaged header, a
// wrong context: nothing was unwrapped) or after it (a damaged frame, a read or write error: the
// key-use record says "ok", this one says how the file ended). `stage` tells which.
void audit_failure(Service& svc, std::string action, const std::string& name, const char* stage,
                   const Error& error) noexcept {
  try {
    svc.run({std::move(action), "file/" + name, {{"file", name}, {"stage", stage}}},
            [&](audit::Event&) { throw error; });
  } catch (...) {
    // run() recorded it (or could not); the caller rethrows the original error.
  }
}

void copy_range(int in, off_t from, int out) {
  for (;;) {
    const ssize_t n = ::copy_file_range(in, &from, out, nullptr, 1 << 30, 0);
    if (n == 0) return;
    if (n > 0) continue;
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL) {
      throw Error(Code::failed, fmt::format("cannot copy the file body: {}", std::strerror(errno)));
    }
    // No in-kernel copy here: read and write.
    std::vector<std::uint8_t> buf(1 << 20);
    for (;;) {
      const ssize_t r = ::pread(in, buf.data(), buf.size(), from);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw Error(Code::failed, fmt::format("cannot read: {}", std::strerror(errno)));
      if (r == 0) return;
      from += r;
      for (ssize_t done = 0; done < r;) {
        const ssize_t w = ::write(out, buf.data() + done, static_cast<size_t>(r - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw Error(Code::failed, fmt::format("cannot write: {}", std::strerror(errno)));
        done += w;
      }
    }
  }
}

}  // namespace

FileResult Service::encrypt_file(int in_fd, int out_fd, const std::vector<std::string>& key_refs,
                                 const Context& context, std::uint32_t frame_size,
                                 std::string_view name, const envelope::Progress& progress) {
  if (key_refs.empty()) throw Error(Code::usage, "file encrypt needs at least one --key");
  FileResult result;
  result.name = name;
  Wrapper w(
      *vault_, [this](audit::Event e, const auto& op) { run(std::move(e), op); }, std::string(name),
      key_refs, result);
  try {
    const envelope::EncryptResult r =
        envelope::encrypt(in_fd, out_fd, w, context, frame_size, progress);
    result.bytes = r.plaintext_bytes;
    result.frames = r.frames;
  } catch (const Error& e) {
    if (w.used()) audit_failure(*this, "file.encrypt", std::string(name), "body", e);
    throw;
  }
  return result;
}

FileResult Service::decrypt_file(int in_fd, int out_fd, const Context& context,
                                 std::string_view name, const envelope::Progress& progress) {
  FileResult result;
  result.name = name;
  Wrapper w(
      *vault_, [this](audit::Event e, const auto& op) { run(std::move(e), op); }, std::string(name),
      {}, result);
  try {
    const envelope::EncryptResult r = envelope::decrypt(in_fd, out_fd, w, context, progress);
    result.bytes = r.plaintext_bytes;
    result.frames = r.frames;
  } catch (const Error& e) {
    if (!w.attempted()) audit_failure(*this, "file.decrypt", std::string(name), "header", e);
    if (w.used()) audit_failure(*this, "file.decrypt", std::string(name), "body", e);
    throw;
  }
  return result;
}

FileResult Service::rewrap_file(const std::filesystem::path& path,
                                const std::optional<std::string>& to_ref) {
  FileResult result;
  result.name = path.string();
  const int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    throw Error(Code::not_found,
                fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{in};
  envelope::Header h;
  try {
    h = envelope::read_header(in);
  } catch (const Error& e) {
    audit_failure(*this, "file.rewrap", path.string(), "header", e);
    throw;
  }
  files::AtomicFile out(path, /*overwrite=*/true);
  keys::KeyStore ks(*vault_);
  audit::Event ev{"file.rewrap", "file/" + path.string(), {{"file", path.string()}}};
  if (to_ref) ev.params["to_key"] = *to_ref;
  run(std::move(ev), [&](audit::Event& e) {
    FileResult opened;
    const SecureBytes dk = unwrap_with(ks, h, opened);
    envelope::verify_header(h, dk.view());
    e.params["from_keys"] = keys_json(opened.keys);
    std::vector<store::KeyRow> targets;
    if (to_ref) {
      targets.push_back(ks.resolve(*to_ref));
    } else {
      for (const envelope::Recipient& r : h.recipients) {
        if (const auto id = keys::KeyStore::blob_key_id(r.body)) {
          if (auto key = store::key_get(vault_->db(), *id)) targets.push_back(*key);
        }
      }
    }
    if (targets.empty()) {
      throw Error(Code::not_found, "none of the file's keys is left in this vault to rewrap it",
                  "pass --to-key KEY");
    }
    for (const store::KeyRow& k : targets) keys::KeyStore::require_enabled(k, k.id);
    h.recipients = wrap_for(ks, targets, dk.view(), h.context, result);
    e.params["to_keys"] = keys_json(result.keys);
    const std::size_t old_size = h.encoded_size;
    const Bytes header = envelope::encode_header(h, dk.view());
    out.write(as_chars(header));
    copy_range(in, static_cast<off_t>(old_size), out.fd());
  });
  out.commit();
  return result;
}

}  // namespace kms
