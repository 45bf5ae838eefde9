#include "vault/token_files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/posix.hpp"
#include "kms/error.hpp"
#include "kms/files.hpp"
#include "kms/signals.hpp"

namespace kms::token_files {
namespace fs = std::filesystem;

namespace {

// SoftHSM2's attribute kinds in an object file (ObjectFile.h).
constexpr std::uint64_t kBoolean = 1, kUlong = 2, kBytes = 3, kMechSet = 4, kAttrMap = 5;
constexpr std::string_view kLockName = "token-files.lock";
constexpr std::string_view kCopyDir = "token-copy";

class Reader {
 public:
  explicit Reader(ByteView b) : b_(b) {}
  bool done() const { return pos_ == b_.size(); }
  std::optional<std::uint64_t> u64() {
    if (b_.size() - pos_ < 8) return std::nullopt;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | b_[pos_++];
    return v;
  }
  bool skip(std::uint64_t n) {
    if (b_.size() - pos_ < n) return false;
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }

 private:
  ByteView b_;
  size_t pos_ = 0;
};

// The length of one value of `kind`, read past; nothing when malformed or cut short.
bool skip_value(Reader& r, std::uint64_t kind) {
  switch (kind) {
    case kBoolean:
      return r.skip(1);
    case kUlong:
      return r.skip(8);
    case kBytes:
    case kAttrMap: {  // a byte string, or a map encoded behind its total length
      const auto len = r.u64();
      return len && r.skip(*len);
    }
    case kMechSet: {
      const auto n = r.u64();
      return n && *n <= (1u << 20) && r.skip(*n * 8);
    }
    default:
      return false;
  }
}

std::optional<Bytes> read_file(const fs::path& p) {
  const posix::Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  Bytes out;
  std::uint8_t buf[4096];
  for (std::size_t n = sizeof buf; n == sizeof buf;) {
    n = posix::read_full(fd.get(), buf);
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

// What identifies a token.object's state: everything but the generation and the flags, which
// every login rewrites.
Attributes identity(Attributes a) {
  a.erase(kTokenFlags);
  return a;
}

struct TokenPaths {
  fs::path live;  // tokens/UUID/token.object
  fs::path copy;  // token-copy/UUID.token.object
};

std::vector<TokenPaths> token_paths(const fs::path& dir) {
  std::vector<TokenPaths> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir / "tokens", ec)) {
    if (!e.is_directory(ec)) continue;
    const std::string uuid = e.path().filename().string();
    out.push_back({e.path() / "token.object", dir / kCopyDir / (uuid + ".token.object")});
  }
  return out;
}

std::optional<Attributes> complete(const std::optional<Bytes>& file) {
  if (!file) return std::nullopt;
  auto a = parse_object(*file);
  if (!a || !is_complete_token_object(*a)) return std::nullopt;
  return a;
}

void write_atomically(const fs::path& target, ByteView data) {
  files::AtomicFile f(target, true);
  f.write(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  f.commit();
}

}  // namespace

std::optional<Attributes> parse_object(ByteView file) {
  Reader r(file);
  if (!r.u64()) return std::nullopt;  // the generation
  Attributes out;
  while (!r.done()) {
    const auto type = r.u64();
    const auto kind = r.u64();
    if (!type || !kind) return std::nullopt;
    const size_t start = r.pos() - 8;
    if (!skip_value(r, *kind)) return std::nullopt;
    out[*type] = Bytes(file.begin() + static_cast<std::ptrdiff_t>(start),
                       file.begin() + static_cast<std::ptrdiff_t>(r.pos()));
  }
  return out;
}

bool is_complete_token_object(const Attributes& a) {
  for (unsigned long t : {kTokenLabel, kTokenSerial, kTokenFlags, kSoPin, kUserPin}) {
    if (!a.contains(t)) return false;
  }
  return true;
}

TokenFiles::TokenFiles(fs::path dir) : dir_(std::move(dir)) {
  fd_ = ::open((dir_ / kLockName).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    throw Error(
        Code::unavailable,
        fmt::format("cannot open {}: {}", (dir_ / kLockName).string(), std::strerror(errno)),
        fmt::format("check that the token directory {} is yours and writable", dir_.string()));
  }
  try {
    lock(LOCK_SH);
    if (!all_complete()) {
      lock(LOCK_EX);  // no kmsctl process is between its load of the token and its login now
      repair();
      lock(LOCK_SH);
    }
    save_copies();
  } catch (...) {
    ::close(fd_);  // no destructor runs for a constructor that throws: release the lock here
    throw;
  }
}

TokenFiles::~TokenFiles() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

void TokenFiles::lock(int how) {
  while (::flock(fd_, how) != 0) {
    if (errno != EINTR) {
      throw Error(Code::unavailable, fmt::format("cannot lock {}: {}", (dir_ / kLockName).string(),
                                                 std::strerror(errno)));
    }
  }
}

bool TokenFiles::all_complete() const {
  for (const TokenPaths& t : token_paths(dir_)) {
    if (!complete(read_file(t.live))) return false;
  }
  return true;
}

void TokenFiles::repair() {
  const signals::Deferred hold;
  for (const TokenPaths& t : token_paths(dir_)) {
    if (complete(read_file(t.live))) continue;
    const std::optional<Bytes> copy = read_file(t.copy);
    if (!complete(copy)) {
      throw Error(Code::unavailable,
                  fmt::format("the token file {} is damaged (a command was interrupted while "
                              "SoftHSM2 rewrote it) and there is no valid copy of it in {}",
                              t.live.string(), (dir_ / kCopyDir).string()),
                  fmt::format("restore the directory {} from a backup of it", dir_.string()));
    }
    write_atomically(t.live, *copy);
    mended_.push_back({t.live});
  }
}

void TokenFiles::save_copies() {
  for (const TokenPaths& t : token_paths(dir_)) {
    const std::optional<Bytes> live = read_file(t.live);
    const auto live_attrs = complete(live);
    if (!live_attrs) continue;  // being rewritten by a live process: the next one refreshes
    const auto copy_attrs = complete(read_file(t.copy));
    if (copy_attrs && identity(*copy_attrs) == identity(*live_attrs)) continue;
    files::make_private_dir(dir_ / kCopyDir);
    write_atomically(t.copy, *live);
  }
}

}  // namespace kms::token_files
