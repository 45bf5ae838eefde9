#include "base/posix.hpp"

#include <unistd.h>

#include <cerrno>

namespace kms::posix {

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

std::size_t read_full(int fd, std::span<std::uint8_t> out, int* error) noexcept {
  std::size_t done = 0;
  int err = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (error != nullptr) *error = err;
  return done;
}

bool write_all(int fd, ByteView data) noexcept {
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool copy_to_end(int in, off_t from, int out) noexcept {
  for (;;) {
    const ssize_t n = ::copy_file_range(in, &from, out, nullptr, 1 << 30, 0);
    if (n == 0) return true;
    if (n > 0 || errno == EINTR) continue;
    if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL) return false;
    break;  // no in-kernel copy here: read and write
  }
  std::uint8_t buf[1 << 16];
  for (;;) {
    const ssize_t r = ::pread(in, buf, sizeof buf, from);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) return true;
    from += r;
    if (!write_all(out, ByteView(buf, static_cast<std::size_t>(r)))) return false;
  }
}

}  // namespace kms::posix
