#include "agent/protocol.hpp"

#include <algorithm>
#include <iterator>
#include <string_view>

namespace kms::agent {
namespace {

void put_u32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void put_str(Bytes& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

// Reads fields front to back; any read past the end fails the whole parse.
class Reader {
 public:
  explicit Reader(ByteView b) : b_(b) {}
  bool magic(const std::uint8_t (&m)[4]) {
    if (b_.size() - pos_ < 5 ||
        !std::equal(m, m + 4, b_.begin() + static_cast<std::ptrdiff_t>(pos_))) {
      return false;
    }
    pos_ += 4;
    return b_[pos_++] == kWireVersion;
  }
  std::optional<std::uint8_t> u8() {
    if (pos_ >= b_.size()) return std::nullopt;
    return b_[pos_++];
  }
  std::optional<std::uint32_t> u32() {
    if (b_.size() - pos_ < 4) return std::nullopt;
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | b_[pos_++];
    return v;
  }
  std::optional<std::string> str() {
    const auto n = u32();
    if (!n || b_.size() - pos_ < *n) return std::nullopt;
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), *n);
    pos_ += *n;
    return s;
  }
  bool at_end() const { return pos_ == b_.size(); }

 private:
  ByteView b_;
  std::size_t pos_ = 0;
};

// Groups an agent runs whole.
constexpr std::string_view kWholeGroups[] = {
    "status", "audit", "key", "encrypt", "decrypt", "re-encrypt", "data-key", "random", "file"};

}  // namespace

std::optional<Bytes> encode(const Request& r) {
  if (r.args.size() > kMaxArgs) return std::nullopt;
  Bytes out(kRequestMagic, kRequestMagic + 4);
  out.push_back(kWireVersion);
  out.push_back(static_cast<std::uint8_t>(r.kind));
  put_u32(out, static_cast<std::uint32_t>(r.args.size()));
  for (const std::string& a : r.args) {
    if (out.size() + 4 + a.size() > kMaxMessage) return std::nullopt;
    put_str(out, a);
  }
  return out;
}

Bytes encode(const Reply& r) {
  Bytes out(kReplyMagic, kReplyMagic + 4);
  out.push_back(kWireVersion);
  out.push_back(static_cast<std::uint8_t>(r.answer));
  put_u32(out, static_cast<std::uint32_t>(r.code));
  // Both texts together stay within one message.
  const std::size_t room = kMaxMessage - out.size() - 8;
  const std::string_view text = std::string_view(r.text).substr(0, room);
  put_str(out, text);
  put_str(out, std::string_view(r.hint).substr(0, room - text.size()));
  return out;
}

std::optional<Request> parse_request(ByteView msg) {
  if (msg.size() > kMaxMessage) return std::nullopt;
  Reader in(msg);
  if (!in.magic(kRequestMagic)) return std::nullopt;
  const auto kind = in.u8();
  const auto count = in.u32();
  if (!kind || *kind < 1 || *kind > 4 || !count || *count > kMaxArgs) return std::nullopt;
  Request r;
  r.kind = static_cast<Kind>(*kind);
  for (std::uint32_t i = 0; i < *count; ++i) {
    auto a = in.str();
    if (!a) return std::nullopt;
    r.args.push_back(std::move(*a));
  }
  if (!in.at_end()) return std::nullopt;
  // A run names at least the vault, an exec the vault, stage, command and pairs; status and
  // stop take nothing.
  const bool takes_args = r.kind == Kind::run || r.kind == Kind::exec;
  if (takes_args == r.args.empty()) return std::nullopt;
  if (r.kind == Kind::exec && (r.args.size() < 5 || (r.args.size() - 3) % 2 != 0))
    return std::nullopt;
  return r;
}

std::optional<Reply> parse_reply(ByteView msg) {
  if (msg.size() > kMaxMessage) return std::nullopt;
  Reader in(msg);
  if (!in.magic(kReplyMagic)) return std::nullopt;
  const auto answer = in.u8();
  const auto code = in.u32();
  auto text = in.str();
  auto hint = in.str();
  if (!answer || *answer > 3 || !code || !text || !hint || !in.at_end()) return std::nullopt;
  return Reply{static_cast<Answer>(*answer), static_cast<std::int32_t>(*code), std::move(*text),
               std::move(*hint)};
}

// Not: init and the vault group (token and file administration), and what runs rotation hooks
// (secret rotate, maintain): a hook would run with the agent's environment, not the caller's.
// `secret --vault V rotate` is `secret rotate`.
bool serves(const std::vector<std::string>& path) {
  if (path.empty()) return false;
  if (path[0] == "secret") return path.size() == 2 && path[1] != "rotate";
  return std::find(std::begin(kWholeGroups), std::end(kWholeGroups), path[0]) !=
         std::end(kWholeGroups);
}

}  // namespace kms::agent
