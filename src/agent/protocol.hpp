// The messages between kmsctl and `kmsctl agent` over its Unix socket (docs/FORMAT.md §13 Agent
// protocol). One request and one reply per connection, each one SOCK_SEQPACKET message.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kms/secure.hpp"

namespace kms::agent {

inline constexpr std::uint8_t kRequestMagic[4] = {'K', 'M', 'A', 'Q'};
inline constexpr std::uint8_t kReplyMagic[4] = {'K', 'M', 'A', 'R'};
inline constexpr std::uint8_t kWireVersion = 1;
inline constexpr std::size_t kMaxMessage = 64 * 1024;
inline constexpr std::size_t kMaxArgs = 1024;

enum class Kind : std::uint8_t {
  run = 1,     // args: the vault's absolute path, then argv[1..]; with four descriptors
  status = 2,  // no args
  stop = 3,    // no args
  exec = 4,  // args: the vault's path, the stage, the command, then NAME, ENV pairs; one descriptor
};

struct Request {
  Kind kind = Kind::run;
  std::vector<std::string> args;
};

enum class Answer : std::uint8_t {
  done = 0,     // the command ran; code is its exit code
  local = 1,    // not this agent's to run (another vault, a command it does not serve)
  refused = 2,  // code is the exit code, text and hint the error
  info = 3,     // text is a JSON document (status)
};

struct Reply {
  Answer answer = Answer::done;
  std::int32_t code = 0;
  std::string text;
  std::string hint;
};

// Encodings are at most kMaxMessage bytes; encode returns nothing for a request beyond that.
std::optional<Bytes> encode(const Request& r);
Bytes encode(const Reply& r);
// Nothing unless the bytes are exactly one well-formed message of this version.
std::optional<Request> parse_request(ByteView msg);
std::optional<Reply> parse_reply(ByteView msg);

// Whether an agent runs the command `path` for a client (kmsctl exec, which replaces the
// client's process, has the agent read its secrets instead: Kind::exec). `path` is the command
// as parsed, {"secret", "get"}, never words picked from argv by their places.
bool serves(const std::vector<std::string>& path);

}  // namespace kms::agent
