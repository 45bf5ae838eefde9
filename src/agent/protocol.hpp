// The messages between kmsctl and `kmsctl agent` over its Unix socket (docs/FORMAT.md §13):
// length-prefixed frames on a stream socket, each a request or a reply of wire version 7. A
// request names the operation (kms::Op, or one of the agent's own below), the vault it is for,
// and the request's fields; a reply says ok (the response's fields), error, or local (not this
// agent's to serve: the client runs it itself).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/wire.hpp"
#include "kms/error.hpp"
#include "kms/secure.hpp"

namespace kms::agent {

inline constexpr std::uint8_t kRequestMagic[4] = {'K', 'M', 'A', 'Q'};
inline constexpr std::uint8_t kReplyMagic[4] = {'K', 'M', 'A', 'R'};
inline constexpr std::uint8_t kWireVersion = 7;
// The largest payload of one frame: a request carries at most a secret value or a blob, a
// reply at most a page of the audit log.
inline constexpr std::size_t kMaxRequest = 1u << 20;
inline constexpr std::size_t kMaxReply = 64u << 20;

// The agent's own operations, beside the vault's (kms::Op).
inline constexpr std::uint16_t kOpAgentStatus = 0xF000;  // no fields; reply: lp(JSON object)
inline constexpr std::uint16_t kOpAgentStop = 0xF001;    // no fields; reply once it stopped
inline constexpr std::uint16_t kOpAgentHello = 0xF002;   // no fields; ok, or local: another vault
inline constexpr std::uint16_t kOpServeReload = 0xF003;  // no fields; reply: lp(JSON object)

enum class Status : std::uint8_t {
  ok = 0,     // the response's fields follow
  error = 1,  // u8 code ‖ lp(message) ‖ lp(hint)
  local = 2,  // not this agent's to serve (another vault): the client runs it itself
};

// A frame (length prefix included): the magic, the version, then what `body` writes.
template <class Body>
wire::Writer frame(const std::uint8_t (&magic)[4], Body&& body) {
  wire::Writer w;
  w.u32(0);
  w.raw(ByteView(magic, 4));
  w.u8(kWireVersion);
  body(w);
  w.patch_u32(0, static_cast<std::uint32_t>(w.size() - 4));
  return w;
}
// A request frame of operation `op` for `vault` (absolute), with its fields written by `body`.
template <class Body>
wire::Writer request_frame(std::uint16_t op, const std::string& vault, Body&& body) {
  return frame(kRequestMagic, [&](wire::Writer& w) {
    w.u16(op);
    w.bytes(as_bytes(vault));
    body(w);
  });
}
// A reply frame: ok with the fields `body` writes (error_frame and local_frame: the others).
template <class Body>
wire::Writer reply_frame(Body&& body) {
  return frame(kReplyMagic, [&](wire::Writer& w) {
    w.u8(static_cast<std::uint8_t>(Status::ok));
    body(w);
  });
}
wire::Writer error_frame(const Error& e);
wire::Writer local_frame();
// The hint line an error reply carries: the error's hint, or what `words` makes of the error.
// The front end the agent runs in sets it once, before the agent starts: the CLI words the
// error's remedy (kms::Remedy) as for an error of its own process, so the reply needs no field
// for it and the client prints the line it gets.
void set_hint_words(std::string (*words)(const Error&)) noexcept;

// The head of a request payload; `fields` reads the rest.
struct RequestHead {
  std::uint16_t op = 0;
  std::string vault;
};
// Nothing when the payload does not start as a request of this version.
std::optional<RequestHead> parse_request_head(wire::Reader& in);
// The reply's status, with `in` at its fields; an error reply is thrown as the Error it
// carries. Code::unavailable for a payload that is not a reply of this version.
Status parse_reply_head(wire::Reader& in);

}  // namespace kms::agent
