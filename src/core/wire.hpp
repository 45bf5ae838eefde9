// The binary encoding of requests and responses (docs/FORMAT.md §13.3): each type lists its
// fields in order with a `fields(V&, T&)` function found by argument-dependent lookup, and one
// Writer and one Reader encode and parse every type from that list. Internal (src/).
#pragma once

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kms/secure.hpp"

namespace kms::wire {

// Grows in memory that is wiped when freed: a message may hold a secret value or a data key.
class Writer {
 public:
  void u8(std::uint8_t v) { put(&v, 1); }
  void u16(std::uint16_t v);
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);
  void bytes(ByteView b);  // u32be length ‖ bytes
  void raw(ByteView b) { put(b.data(), b.size()); }
  std::size_t size() const noexcept { return size_; }
  ByteView view() const noexcept { return buf_.view().first(size_); }
  // Overwrites 4 bytes at `at` with v (the frame length once the payload is known).
  void patch_u32(std::size_t at, std::uint32_t v) noexcept;

 private:
  void put(const void* p, std::size_t n);
  SecureBytes buf_;
  std::size_t size_ = 0;
};

// Reads fields from a message; every read fails (nullopt / false) once anything was malformed.
class Reader {
 public:
  explicit Reader(ByteView in) : in_(in) {}
  std::optional<std::uint8_t> u8();
  std::optional<std::uint16_t> u16();
  std::optional<std::uint32_t> u32();
  std::optional<std::uint64_t> u64();
  // A length-prefixed field, as a view into the message (valid while the message is).
  std::optional<ByteView> bytes();
  bool ok() const noexcept { return ok_; }
  bool at_end() const noexcept { return ok_ && pos_ == in_.size(); }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  void fail() noexcept { ok_ = false; }

 private:
  bool take(std::size_t n, const std::uint8_t** out);
  template <class T>
  std::optional<T> big_endian();
  ByteView in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// An enum travels as its underlying value (one byte); each enum that travels has an overload of
// enum_valid(E, value), found by argument-dependent lookup, that accepts only its values.

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};
template <class T>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};
template <class T>
struct is_map : std::false_type {};
template <class K, class V>
struct is_map<std::map<K, V>> : std::true_type {};

// Visits fields to encode them.
struct Encoder {
  Writer& w;
  template <class... T>
  void operator()(const T&... v) {
    (one(v), ...);
  }
  template <class T>
  void one(const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      w.u8(v ? 1 : 0);
    } else if constexpr (std::is_enum_v<T>) {
      w.u8(static_cast<std::uint8_t>(v));
    } else if constexpr (std::is_integral_v<T> && sizeof(T) <= 4) {
      w.u32(static_cast<std::uint32_t>(v));
    } else if constexpr (std::is_integral_v<T>) {
      w.u64(static_cast<std::uint64_t>(v));
    } else if constexpr (std::is_same_v<T, std::string>) {
      w.bytes(as_bytes(v));
    } else if constexpr (std::is_same_v<T, Bytes>) {
      w.bytes(v);
    } else if constexpr (std::is_same_v<T, SecureBytes>) {
      w.bytes(v.view());
    } else if constexpr (is_optional<T>::value) {
      w.u8(v ? 1 : 0);
      if (v) one(*v);
    } else if constexpr (is_vector<T>::value || is_map<T>::value) {
      w.u32(static_cast<std::uint32_t>(v.size()));
      for (const auto& item : v) one(item);
    } else if constexpr (is_pair<T>::value) {
      one(v.first);
      one(v.second);
    } else {
      fields(*this, const_cast<T&>(v));  // the visitor only reads
    }
  }
};

// Visits fields to parse them; a malformed field fails the reader.
struct Decoder {
  Reader& r;
  template <class... T>
  void operator()(T&... v) {
    (one(v), ...);
  }
  template <class T>
  void one(T& v) {
    if (!r.ok()) return;
    if constexpr (std::is_same_v<T, bool>) {
      const auto b = r.u8();
      if (b && *b > 1) r.fail();
      v = b.value_or(0) == 1;
    } else if constexpr (std::is_enum_v<T>) {
      const auto b = r.u8();
      if (b && !enum_valid(T{}, *b)) r.fail();
      v = static_cast<T>(b.value_or(0));
    } else if constexpr (std::is_integral_v<T> && sizeof(T) <= 4) {
      // Narrower than the u32 it travels as: a value out of T's range would not encode back to
      // the same bytes.
      using Wide = std::conditional_t<std::is_signed_v<T>, std::int32_t, std::uint32_t>;
      const auto n = static_cast<Wide>(r.u32().value_or(0));
      if (!std::in_range<T>(n)) r.fail();
      v = static_cast<T>(n);
    } else if constexpr (std::is_integral_v<T>) {
      v = static_cast<T>(r.u64().value_or(0));
    } else if constexpr (std::is_same_v<T, std::string>) {
      const auto b = r.bytes();
      if (b) v.assign(as_chars(*b));
    } else if constexpr (std::is_same_v<T, Bytes>) {
      const auto b = r.bytes();
      if (b) v.assign(b->begin(), b->end());
    } else if constexpr (std::is_same_v<T, SecureBytes>) {
      const auto b = r.bytes();
      if (b) v = SecureBytes(*b);
    } else if constexpr (is_optional<T>::value) {
      bool present = false;
      one(present);
      if (!present || !r.ok()) {
        v.reset();
        return;
      }
      v.emplace();
      one(*v);
    } else if constexpr (is_vector<T>::value) {
      const auto n = r.u32();
      // Each item takes at least one byte: a count beyond what is left is malformed.
      if (!n || *n > r.remaining()) return r.fail();
      v.clear();
      for (std::uint32_t i = 0; i < *n && r.ok(); ++i) one(v.emplace_back());
    } else if constexpr (is_map<T>::value) {
      const auto n = r.u32();
      if (!n || *n > r.remaining()) return r.fail();
      v.clear();
      // Keys strictly ascending, the order the encoder writes: one encoding per map, and no key
      // twice.
      for (std::uint32_t i = 0; i < *n && r.ok(); ++i) {
        std::pair<typename T::key_type, typename T::mapped_type> item;
        one(item);
        if (!r.ok()) break;
        if (!v.empty() && !v.key_comp()(std::prev(v.end())->first, item.first)) return r.fail();
        v.emplace_hint(v.end(), std::move(item));
      }
    } else if constexpr (is_pair<T>::value) {
      one(v.first);
      one(v.second);
    } else {
      fields(*this, v);
    }
  }
};

template <class T>
void encode(Writer& w, const T& value) {
  Encoder{w}.one(value);
}
// Parses a whole T from r; nothing when it is malformed or bytes are left over.
template <class T>
std::optional<T> decode(Reader& r) {
  T value{};
  Decoder{r}.one(value);
  if (!r.at_end()) return std::nullopt;
  return value;
}

}  // namespace kms::wire
