// The body of the file envelope: frames sealed and opened in constant memory, with reading
// overlapped with sealing/writing on a second thread.
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "kms/crypto.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"

namespace kms::envelope {
namespace {

constexpr std::size_t kSlots = 4;

std::array<std::uint8_t, crypto::kGcmNonceSize> frame_nonce(std::uint64_t counter, bool final) {
  std::array<std::uint8_t, crypto::kGcmNonceSize> n{};
  for (int i = 0; i < 8; ++i) n[3 + i] = static_cast<std::uint8_t>(counter >> (8 * (7 - i)));
  n[11] = final ? 1 : 0;
  return n;
}

Error damaged(std::string what) {
  return Error(Code::integrity, fmt::format("the encrypted file is damaged: {}", what),
               "nothing unauthenticated was released; treat the file as tampered with or cut short");
}

// Reads from an fd, first serving bytes already read past the header.
class Input {
 public:
  Input(int fd, Bytes pending) : fd_(fd), pending_(std::move(pending)) {}
  // Fills up to n bytes; fewer only at end of input.
  std::size_t read_full(std::uint8_t* out, std::size_t n) {
    std::size_t got = 0;
    if (pos_ < pending_.size()) {
      got = std::min(n, pending_.size() - pos_);
      std::memcpy(out, pending_.data() + pos_, got);
      pos_ += got;
    }
    while (got < n) {
      const ssize_t r = ::read(fd_, out + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw Error(Code::failed, fmt::format("cannot read the input: {}", std::strerror(errno)));
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

 private:
  int fd_;
  Bytes pending_;
  std::size_t pos_ = 0;
};

void write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      throw Error(Code::failed, fmt::format("cannot write the output: {}", std::strerror(errno)),
                  "check free space where the output goes");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

struct Slot {
  Bytes buf;
  std::size_t len = 0;
  bool final = false;
};

// A bounded ring: one producer thread fills slots with chunks of the input, the caller's
// thread consumes them in order. Memory: kSlots buffers of one frame each.
class Pipeline {
 public:
  using Fill = std::function<bool(Slot&)>;  // returns false after the last chunk
  Pipeline(std::size_t slot_size, Fill fill) : slots_(kSlots) {
    for (Slot& s : slots_) s.buf.resize(slot_size);
    producer_ = std::thread([this, fill = std::move(fill)] { produce(fill); });
  }
  ~Pipeline() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    producer_.join();
  }
  // The next chunk, or nullptr after the last; rethrows the producer's error.
  Slot* next() {
    std::unique_lock lk(m_);
    if (consumed_ > 0) {
      ++released_;  // the previous slot is free again
      cv_.notify_all();
    }
    cv_.wait(lk, [&] { return produced_ > consumed_ || done_; });
    if (produced_ > consumed_) return &slots_[consumed_++ % kSlots];
    if (error_) std::rethrow_exception(error_);
    return nullptr;
  }

 private:
  void produce(const Fill& fill) {
    try {
      for (;;) {
        std::unique_lock lk(m_);
        cv_.wait(lk, [&] { return produced_ - released_ < kSlots || stop_; });
        if (stop_) return;
        Slot& s = slots_[produced_ % kSlots];
        lk.unlock();
        const bool more = fill(s);
        lk.lock();
        ++produced_;
        cv_.notify_all();
        if (!more) break;
      }
    } catch (...) {
      std::lock_guard lk(m_);
      error_ = std::current_exception();
    }
    std::lock_guard lk(m_);
    done_ = true;
    cv_.notify_all();
  }

  std::vector<Slot> slots_;
  std::mutex m_;
  std::condition_variable cv_;
  std::size_t produced_ = 0, consumed_ = 0, released_ = 0;
  bool done_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread producer_;
};

SecureBytes frame_key(ByteView data_key, ByteView salt) {
  return crypto::hkdf_sha256(data_key, salt, as_bytes(kInfoFrame), 32);
}

}  // namespace

EncryptResult encrypt(int in_fd, int out_fd, DataKeyWrapper& wrapper, const Context& context,
                      std::uint32_t frame_size, const Progress& progress) {
  if (frame_size < kMinFrameSize || frame_size > kMaxFrameSize) {
    throw Error(Code::usage, fmt::format("frame size {} is out of range", frame_size),
                "choose between 1KiB and 64MiB");
  }
  const SecureBytes data_key = crypto::random_secret(kDataKeySize);
  Header h;
  h.frame_size = frame_size;
  h.salt = crypto::random_bytes(kSaltSize);
  h.context = context;
  h.recipients = wrapper.wrap(data_key.view(), context);
  const Bytes header = encode_header(h, data_key.view());
  write_all(out_fd, header.data(), header.size());

  crypto::Aes256Gcm gcm(frame_key(data_key.view(), h.salt).view());
  Input in(in_fd, {});
  Pipeline pipe(frame_size + kFrameTagSize, [&](Slot& s) {
    s.len = in.read_full(s.buf.data(), frame_size);
    s.final = s.len < frame_size;
    return !s.final;
  });
  EncryptResult r;
  while (Slot* s = pipe.next()) {
    const auto nonce = frame_nonce(r.frames, s->final);
    gcm.seal(nonce, {}, s->buf.data(), s->len, s->buf.data(), s->buf.data() + s->len);
    write_all(out_fd, s->buf.data(), s->len + kFrameTagSize);
    r.plaintext_bytes += s->len;
    ++r.frames;
    if (progress) progress(r.plaintext_bytes);
  }
  return r;
}

EncryptResult decrypt(int in_fd, int out_fd, DataKeyWrapper& wrapper, const Context& context,
                      const Progress& progress) {
  Bytes rest;
  const Header h = read_header(in_fd, &rest);
  if (h.context != context) {
    throw Error(Code::integrity, "the encryption context given does not match the file's",
                "pass exactly the --context pairs used to encrypt (see `kmsctl file inspect`)");
  }
  const SecureBytes data_key = wrapper.unwrap(h);
  verify_header(h, data_key.view());

  crypto::Aes256Gcm gcm(frame_key(data_key.view(), h.salt).view());
  const std::size_t full = h.frame_size + kFrameTagSize;
  Input in(in_fd, std::move(rest));
  bool seen_final = false;
  Pipeline pipe(full, [&](Slot& s) {
    s.len = in.read_full(s.buf.data(), full);
    s.final = s.len < full;
    if (s.final && s.len > 0) {
      std::uint8_t extra;
      if (in.read_full(&extra, 1) != 0) throw damaged("bytes follow the final frame");
    }
    return !s.final;
  });
  EncryptResult r;
  while (Slot* s = pipe.next()) {
    if (s->final && s->len == 0) throw damaged("the final frame is missing (the file was cut short)");
    if (s->len < kFrameTagSize) throw damaged(fmt::format("frame {} is cut short", r.frames));
    const std::size_t n = s->len - kFrameTagSize;
    const auto nonce = frame_nonce(r.frames, s->final);
    if (!gcm.open(nonce, {}, s->buf.data(), n, s->buf.data() + n, s->buf.data())) {
      throw damaged(fmt::format("frame {} does not verify (altered, reordered, or cut)", r.frames));
    }
    write_all(out_fd, s->buf.data(), n);
    r.plaintext_bytes += n;
    ++r.frames;
    seen_final = s->final;
    if (progress) progress(r.plaintext_bytes);
  }
  if (!seen_final) throw damaged("the final frame is missing (the file was cut short)");
  return r;
}

}  // namespace kms::envelope
