// POSIX descriptor plumbing the modules share: a descriptor that closes itself, and reads and
// writes that go on after EINTR and short transfers. Internal (src/), not part of the SDK.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "kms/secure.hpp"

namespace kms::posix {

// Owns one descriptor (-1: none) and closes it when destroyed or reset. Move-only.
class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held, if any, and holds `fd` instead.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Reads until `out` is full or the input ends, retrying after EINTR and short reads. Returns
// how many bytes it read: fewer than out.size() at the end of the input or on an error. Then
// `error`, when given, is the errno of the read that failed, or 0 at the end of the input.
std::size_t read_full(int fd, std::span<std::uint8_t> out, int* error = nullptr) noexcept;

// Writes all of `data`, retrying after EINTR and short writes. False on an error, with errno
// set (EIO for a write that wrote nothing).
bool write_all(int fd, ByteView data) noexcept;

// Copies `in` from offset `from` to its end onto `out` (in the kernel where it can:
// copy_file_range). False on an error, with errno set.
bool copy_to_end(int in, off_t from, int out) noexcept;

}  // namespace kms::posix
