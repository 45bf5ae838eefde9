#include "agent/protocol.hpp"

#include <algorithm>
#include <atomic>

namespace kms::agent {
namespace {

std::atomic<std::string (*)(const Error&)> hint_words{nullptr};

wire::Writer frame_with(Status status, const Error* e) {
  return frame(kReplyMagic, [&](wire::Writer& w) {
    w.u8(static_cast<std::uint8_t>(status));
    if (e == nullptr) return;
    w.u8(static_cast<std::uint8_t>(e->code()));
    w.bytes(as_bytes(e->what()));
    const auto words = hint_words.load();
    w.bytes(as_bytes(words != nullptr ? words(*e) : e->hint()));
  });
}

bool magic(wire::Reader& in, const std::uint8_t (&expected)[4]) {
  for (std::uint8_t b : expected) {
    if (in.u8() != b) return false;
  }
  return in.u8() == kWireVersion;
}

}  // namespace

wire::Writer error_frame(const Error& e) { return frame_with(Status::error, &e); }
wire::Writer local_frame() { return frame_with(Status::local, nullptr); }
void set_hint_words(std::string (*words)(const Error&)) noexcept { hint_words = words; }

std::optional<RequestHead> parse_request_head(wire::Reader& in) {
  if (!magic(in, kRequestMagic)) return std::nullopt;
  RequestHead h;
  const auto op = in.u16();
  const auto vault = in.bytes();
  if (!op || !vault) return std::nullopt;
  h.op = *op;
  h.vault.assign(as_chars(*vault));
  return h;
}

Status parse_reply_head(wire::Reader& in) {
  const Error lost(Code::unavailable, "the agent's answer could not be read (another version?)",
                   "stop the agent and start it with this kmsctl");
  if (!magic(in, kReplyMagic)) throw lost;
  const auto status = in.u8();
  if (!status || *status > 2) throw lost;
  if (*status == static_cast<std::uint8_t>(Status::local)) {
    if (!in.at_end()) throw lost;
    return Status::local;
  }
  if (*status == static_cast<std::uint8_t>(Status::ok)) return Status::ok;
  const auto code = in.u8();
  const auto what = in.bytes();
  const auto hint = in.bytes();
  if (!code || *code < 1 || *code > 6 || !what || !hint || !in.at_end()) throw lost;
  throw Error(static_cast<Code>(*code), std::string(as_chars(*what)), std::string(as_chars(*hint)));
}

}  // namespace kms::agent
