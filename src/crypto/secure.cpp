#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "kms/crypto.hpp"
#include "kms/secure.hpp"

namespace kms {

SecureBytes::SecureBytes(std::size_t size) : size_(size), capacity_(size) {
  crypto::init();
  data_ = static_cast<std::uint8_t*>(sodium_malloc(size == 0 ? 1 : size));
  if (data_ == nullptr) throw std::bad_alloc();
}

SecureBytes::SecureBytes(ByteView src) : SecureBytes(src.size()) {
  if (!src.empty()) std::memcpy(data_, src.data(), src.size());
}

SecureBytes::~SecureBytes() { release(); }

SecureBytes::SecureBytes(SecureBytes&& o) noexcept
    : data_(o.data_), size_(o.size_), capacity_(o.capacity_) {
  o.data_ = nullptr;
  o.size_ = o.capacity_ = 0;
}

SecureBytes& SecureBytes::operator=(SecureBytes&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    capacity_ = o.capacity_;
    o.data_ = nullptr;
    o.size_ = o.capacity_ = 0;
  }
  return *this;
}

void SecureBytes::truncate(std::size_t n) noexcept {
  if (n < size_) {
    sodium_memzero(data_ + n, size_ - n);
    size_ = n;
  }
}

void SecureBytes::release() noexcept {
  if (data_ != nullptr) sodium_free(data_);  // sodium_free wipes before unmapping
  data_ = nullptr;
  size_ = capacity_ = 0;
}

}  // namespace kms
