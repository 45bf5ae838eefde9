// The body of the file envelope (docs/FORMAT.md §11.5-11.6): frames sealed and opened in constant
// memory. Three stages overlap on a ring of kSlots frame buffers allocated once: a reader thread
// fills slots from the input, two crypto threads (the caller's and one more, each with its own
// cipher context) seal or open them, several frames at once, and a writer thread writes them out
// strictly in order. The writer takes a frame only after it was sealed, or opened and its tag
// verified, and stops at the first frame that failed, so no unauthenticated plaintext is ever
// written and what was written is a prefix of the plaintext.
//
// Every input is read into the slot buffers, a regular file with pread(): a mapping would save
// copying each byte once, but a file cut short while it is mapped kills the process with SIGBUS
// wherever the mapping is touched, which no check beforehand can rule out.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "kms/crypto.hpp"
#include "kms/envelope.hpp"
#include "kms/error.hpp"
#include "kms/signals.hpp"

namespace kms::envelope {
namespace {

// Frames in flight: one being read, two being sealed or opened (one per core), one
// being written, and two of slack so that no stage waits on a neighbour's jitter.
constexpr std::size_t kSlots = 6;
constexpr int kCryptoThreads = 2;  // the calling thread and one more

Error damaged(std::string what) {
  return Error(
      Code::integrity, fmt::format("the encrypted file is damaged: {}", what),
      "nothing unauthenticated was released; treat the file as tampered with or cut short");
}

struct Slot {
  Bytes buf;                          // the frame's input, then its output
  const std::uint8_t* src = nullptr;  // the frame's input (in buf)
  std::size_t len = 0;                // input bytes of this frame
  bool last = false;                  // the input ended with this slot
  std::size_t out = 0;                // bytes of buf to write, set by the crypto stage
  std::uint64_t index = 0;            // the frame counter
  bool ready = false;                 // sealed or opened (or failed): the writer may take it
  std::exception_ptr error;           // why the crypto stage failed on this frame
};

// The input of the body: an fd, first serving bytes already read past the header (pipes), or a
// regular file read with pread() from the current offset.
class Input {
 public:
  Input(int fd, Bytes pending) : fd_(fd), pending_(std::move(pending)) {
    struct stat st {};
    const off_t pos = ::lseek(fd, 0, SEEK_CUR);
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && pos >= 0 &&
        static_cast<std::uint64_t>(pos) >= pending_.size()) {
      regular_ = true;
      offset_ = static_cast<std::uint64_t>(pos) - pending_.size();  // the pending bytes come first
      size_ = static_cast<std::uint64_t>(st.st_size);
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
  }

  // Points the slot at up to n input bytes; fewer only at end of input.
  void fill(Slot& s, std::size_t n) {
    signals::check();  // a caught SIGINT, SIGTERM or SIGHUP stops the stream between frames
    s.src = s.buf.data();
    if (!regular_) {
      s.len = read_full(s.buf.data(), n);
      return;
    }
    // pread, not a mapping: a file cut short while mapped kills the process with SIGBUS.
    s.len = offset_ >= size_
                ? 0
                : static_cast<std::size_t>(std::min<std::uint64_t>(n, size_ - offset_));
    std::size_t got = 0;
    while (got < s.len) {
      const ssize_t r =
          ::pread(fd_, s.buf.data() + got, s.len - got, static_cast<off_t>(offset_ + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        throw Error(Code::failed, fmt::format("cannot read the input: {}", std::strerror(errno)));
      }
      if (r == 0) {
        throw Error(Code::failed, "the input file shrank while it was being read",
                    "run again once nothing else writes to it");
      }
      got += static_cast<std::size_t>(r);
    }
    offset_ += s.len;
  }

 private:
  std::size_t read_full(std::uint8_t* out, std::size_t n) {
    std::size_t got = 0;
    if (pos_ < pending_.size()) {
      got = std::min(n, pending_.size() - pos_);
      std::memcpy(out, pending_.data() + pos_, got);
      pos_ += got;
    }
    while (got < n) {
      signals::await(fd_, POLLIN);  // a pipe may keep us waiting: a caught signal ends the wait
      const ssize_t r = ::read(fd_, out + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0)
        throw Error(Code::failed, fmt::format("cannot read the input: {}", std::strerror(errno)));
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

  int fd_;
  Bytes pending_;
  std::size_t pos_ = 0;
  bool regular_ = false;
  std::uint64_t offset_ = 0, size_ = 0;
};

void write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    signals::await(fd, POLLOUT);  // as for reading: a pipe nobody drains ends with a signal
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      throw Error(Code::failed, fmt::format("cannot write the output: {}", std::strerror(errno)),
                  "check free space where the output goes (and that a reading pipe is still open)");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// The ring. Slot k (frame k) passes reader -> one crypto thread -> writer; the counters only
// grow, and slot k % kSlots is refilled once the writer is done with frame k.
class Ring {
 public:
  using Fill = std::function<void(Slot&)>;
  // Seals or opens one slot in place (sets out); throws Error when the frame is damaged.
  using Crypt = std::function<void(Slot&, crypto::Aes256Gcm&)>;
  // Called by the writer, in order, after a frame is written; returns false to stop after it.
  using Written = std::function<bool(const Slot&)>;

  Ring(std::size_t slot_size, int out_fd, Fill fill) : out_fd_(out_fd), fill_(std::move(fill)) {
    for (Slot& s : slots_) s.buf.resize(slot_size);
  }
  ~Ring() {
    stop();
    if (reader_.joinable()) reader_.join();
    if (writer_.joinable()) writer_.join();
    for (std::thread& t : workers_) t.join();
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Runs the stages until the last frame is written or one fails; rethrows the first failure in
  // frame order (a read error, a damaged frame, a write error).
  void run(ByteView key, const Crypt& crypt, const Written& written) {
    reader_ = std::thread([this] { read_loop(); });
    writer_ = std::thread([this, &written] { write_loop(written); });
    for (int i = 1; i < kCryptoThreads; ++i) {
      workers_.emplace_back([this, key, &crypt] { crypt_loop(key, crypt); });
    }
    crypt_loop(key, crypt);
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    writer_.join();
    stop();
    reader_.join();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void stop() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    reader_cv_.notify_all();
    crypto_cv_.notify_all();
    writer_cv_.notify_all();
  }

  void read_loop() {
    try {
      for (;;) {
        std::unique_lock lk(m_);
        reader_cv_.wait(lk, [&] { return read_ - written_ < kSlots || stop_; });
        if (stop_) return;
        Slot& s = slots_[read_ % kSlots];
        s.index = read_;
        s.ready = false;
        s.error = nullptr;
        lk.unlock();
        fill_(s);
        lk.lock();
        ++read_;
        crypto_cv_.notify_one();
        if (s.last) break;
      }
    } catch (...) {
      std::lock_guard lk(m_);
      reader_error_ = std::current_exception();
    }
    std::lock_guard lk(m_);
    reader_done_ = true;
    crypto_cv_.notify_all();
    writer_cv_.notify_one();
  }

  void crypt_loop(ByteView key, const Crypt& crypt) {
    std::optional<crypto::Aes256Gcm> gcm;
    try {
      gcm.emplace(key);
    } catch (...) {
      std::lock_guard lk(m_);
      if (!error_) error_ = std::current_exception();
      stop_ = true;
      writer_cv_.notify_one();
      return;
    }
    for (;;) {
      std::unique_lock lk(m_);
      crypto_cv_.wait(lk, [&] { return claimed_ < read_ || reader_done_ || stop_; });
      if (stop_ || claimed_ == read_) return;  // stopped, or nothing more will be read
      Slot& s = slots_[claimed_++ % kSlots];
      lk.unlock();
      try {
        crypt(s, *gcm);
      } catch (...) {
        s.error = std::current_exception();
      }
      lk.lock();
      s.ready = true;
      writer_cv_.notify_one();
    }
  }

  void write_loop(const Written& written) {
    for (;;) {
      std::unique_lock lk(m_);
      writer_cv_.wait(lk, [&] {
        return (written_ < read_ && slots_[written_ % kSlots].ready) ||
               (reader_done_ && written_ == read_) || stop_;
      });
      if (written_ < read_ && slots_[written_ % kSlots].ready) {
        Slot& s = slots_[written_ % kSlots];
        if (s.error) {
          fail(s.error);
          return;
        }
        lk.unlock();
        bool more = true;
        try {
          write_all(out_fd_, s.buf.data(), s.out);
          more = written(s);
        } catch (...) {
          lk.lock();
          fail(std::current_exception());
          return;
        }
        lk.lock();
        ++written_;
        reader_cv_.notify_one();
        if (!more || s.last) {
          finish_locked();
          return;
        }
        continue;
      }
      if (stop_) return;
      // Everything read was written: the input ended (or failed) before a last slot.
      if (reader_error_) {
        fail(reader_error_);
      } else {
        finish_locked();
      }
      return;
    }
  }

  // With m_ held: the first failure in frame order wins; every stage stops.
  void fail(std::exception_ptr e) {
    if (!error_) error_ = std::move(e);
    finish_locked();
  }
  void finish_locked() {
    stop_ = true;
    reader_cv_.notify_all();
    crypto_cv_.notify_all();
  }

  std::array<Slot, kSlots> slots_;
  int out_fd_;
  Fill fill_;
  std::mutex m_;
  std::condition_variable reader_cv_, crypto_cv_, writer_cv_;  // one per kind of waiting stage
  std::uint64_t read_ = 0, claimed_ = 0, written_ = 0;
  bool reader_done_ = false, stop_ = false;
  std::exception_ptr reader_error_, error_;
  std::thread reader_, writer_;
  std::vector<std::thread> workers_;
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
  check_context_size(context);  // before any key is used: no header that read_header refuses
  const SecureBytes data_key = crypto::random_secret(kDataKeySize);
  Header h;
  h.frame_size = frame_size;
  h.salt = crypto::random_bytes(kSaltSize);
  h.context = context;
  h.recipients = wrapper.wrap(data_key.view(), context);
  const Bytes header = encode_header(h, data_key.view());
  write_all(out_fd, header.data(), header.size());

  const SecureBytes key = frame_key(data_key.view(), h.salt);
  Input in(in_fd, {});
  Ring ring(frame_size + kFrameTagSize, out_fd, [&](Slot& s) {
    in.fill(s, frame_size);
    s.last = s.len < frame_size;  // a full frame is never final (§11.5)
  });
  EncryptResult r;
  ring.run(
      key.view(),
      [](Slot& s, crypto::Aes256Gcm& gcm) {
        gcm.seal(frame_nonce(s.index, s.last), {}, s.src, s.len, s.buf.data(),
                 s.buf.data() + s.len);
        s.out = s.len + kFrameTagSize;
      },
      [&](const Slot& s) {
        r.plaintext_bytes += s.len;
        ++r.frames;
        if (progress) progress(r.plaintext_bytes);
        return true;
      });
  return r;
}

EncryptResult decrypt(int in_fd, int out_fd, DataKeyWrapper& wrapper, const Context& context,
                      const Progress& progress) {
  Bytes rest;
  const Header h = read_header(in_fd, &rest);
  check_context(h, context);
  const SecureBytes data_key = wrapper.unwrap(h);
  if (data_key.size() != kDataKeySize) {
    throw Error(Code::integrity, "the file's wrapped data key has the wrong size",
                "treat the file as tampered with");
  }
  verify_header(h, data_key.view());

  const SecureBytes key = frame_key(data_key.view(), h.salt);
  const std::size_t full = h.frame_size + kFrameTagSize;
  Input in(in_fd, std::move(rest));
  Ring ring(full, out_fd, [&](Slot& s) {
    in.fill(s, full);
    s.last = s.len < full;  // fill stops short only at end of input
  });
  EncryptResult r;
  bool seen_final = false;
  ring.run(
      key.view(),
      [](Slot& s, crypto::Aes256Gcm& gcm) {
        s.out = 0;
        if (s.last && s.len == 0) return;  // end of input at a frame boundary: checked below
        if (s.len < kFrameTagSize) throw damaged(fmt::format("frame {} is cut short", s.index));
        const std::size_t n = s.len - kFrameTagSize;
        if (!gcm.open(frame_nonce(s.index, s.last), {}, s.src, n, s.src + n, s.buf.data())) {
          throw damaged(
              fmt::format("frame {} does not verify (altered, reordered, or cut)", s.index));
        }
        s.out = n;
      },
      [&](const Slot& s) {
        if (s.last && s.len == 0) return false;
        r.plaintext_bytes += s.out;
        ++r.frames;
        seen_final = s.last;
        if (progress) progress(r.plaintext_bytes);
        return true;
      });
  if (!seen_final) throw damaged("the final frame is missing (the file was cut short)");
  return r;
}

}  // namespace kms::envelope
