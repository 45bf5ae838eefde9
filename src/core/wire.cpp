#include "core/wire.hpp"

#include <algorithm>
#include <cstring>

namespace kms::wire {

void Writer::put(const void* p, std::size_t n) {
  if (size_ + n > buf_.size()) {
    SecureBytes bigger(std::max<std::size_t>(256, std::max(size_ + n, buf_.size() * 2)));
    if (size_ > 0) std::memcpy(bigger.data(), buf_.data(), size_);
    buf_ = std::move(bigger);
  }
  if (n > 0) std::memcpy(buf_.data() + size_, p, n);
  size_ += n;
}

void Writer::u16(std::uint16_t v) {
  const std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
  put(b, 2);
}

void Writer::u32(std::uint32_t v) {
  std::uint8_t b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
  put(b, 4);
}

void Writer::u64(std::uint64_t v) {
  std::uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
  put(b, 8);
}

void Writer::bytes(ByteView b) {
  u32(static_cast<std::uint32_t>(b.size()));
  put(b.data(), b.size());
}

void Writer::patch_u32(std::size_t at, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) buf_.data()[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

bool Reader::take(std::size_t n, const std::uint8_t** out) {
  if (!ok_ || in_.size() - pos_ < n) {
    ok_ = false;
    return false;
  }
  *out = in_.data() + pos_;
  pos_ += n;
  return true;
}

std::optional<std::uint8_t> Reader::u8() {
  const std::uint8_t* p = nullptr;
  if (!take(1, &p)) return std::nullopt;
  return p[0];
}

template <class T>
std::optional<T> Reader::big_endian() {
  const std::uint8_t* p = nullptr;
  if (!take(sizeof(T), &p)) return std::nullopt;
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v << 8 | p[i]);
  return v;
}

std::optional<std::uint16_t> Reader::u16() { return big_endian<std::uint16_t>(); }
std::optional<std::uint32_t> Reader::u32() { return big_endian<std::uint32_t>(); }
std::optional<std::uint64_t> Reader::u64() { return big_endian<std::uint64_t>(); }

std::optional<ByteView> Reader::bytes() {
  const auto n = u32();
  const std::uint8_t* p = nullptr;
  if (!n || !take(*n, &p)) return std::nullopt;
  return ByteView(p, *n);
}

}  // namespace kms::wire
