#include "kms/secure.hpp"

#include <sodium.h>

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "kms/crypto.hpp"

namespace kms {
namespace {

// Small secrets (PINs, keys) share slots of one libsodium guarded region: mlocked, fenced by
// guard pages, excluded from core dumps, and each slot wiped when it is given back. A
// sodium_malloc of their own cost nine system calls an allocation (map, guard, lock; unlock,
// unmap), more than a command's own work in the vault. Larger secrets, and small ones when every
// slot is taken, still get a sodium_malloc region of their own. The region lives as long as the
// process.
class SlotArena {
 public:
  static constexpr std::size_t kSlotSize = 512;
  static constexpr std::size_t kSlots = 64;

  std::uint8_t* take(std::size_t n) {
    if (n > kSlotSize) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    if (base_ == nullptr) {
      if (failed_) return nullptr;
      base_ = static_cast<std::uint8_t*>(sodium_malloc(kSlotSize * kSlots));
      failed_ = base_ == nullptr;
      if (failed_) return nullptr;
    }
    if (~used_ == 0) return nullptr;
    const int slot = std::countr_one(used_);  // the first free one
    used_ |= std::uint64_t{1} << slot;
    return base_ + static_cast<std::size_t>(slot) * kSlotSize;
  }

  // False when p is not one of the slots.
  bool give_back(std::uint8_t* p) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    const auto base = reinterpret_cast<std::uintptr_t>(base_);
    if (base_ == nullptr || at < base || at >= base + kSlotSize * kSlots) return false;
    sodium_memzero(p, kSlotSize);
    used_ &= ~(std::uint64_t{1} << ((at - base) / kSlotSize));
    return true;
  }

 private:
  std::mutex mutex_;
  std::uint8_t* base_ = nullptr;
  std::uint64_t used_ = 0;  // bit i: slot i is taken
  bool failed_ = false;
};
static_assert(SlotArena::kSlots == 64, "one bit of used_ a slot");

SlotArena& arena() {
  static SlotArena* a = new SlotArena();  // never destroyed: SecureBytes may outlive statics
  return *a;
}

std::uint8_t* allocate(std::size_t size) {
  crypto::init();
  if (std::uint8_t* p = arena().take(size)) return p;
  return static_cast<std::uint8_t*>(sodium_malloc(size));
}

void deallocate(std::uint8_t* p) noexcept {
  if (!arena().give_back(p)) sodium_free(p);  // sodium_free wipes before unmapping
}

}  // namespace

SecureBytes::SecureBytes(std::size_t size) : size_(size), capacity_(size) {
  data_ = allocate(size == 0 ? 1 : size);
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
  if (data_ != nullptr) deallocate(data_);
  data_ = nullptr;
  size_ = capacity_ = 0;
}

}  // namespace kms
