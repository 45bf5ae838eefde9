// What a client sends the agent: a request payload (docs/FORMAT.md §13.2, without the frame's
// length prefix). Its head and the fields of every request type parse without crashing, and
// fields that parse encode back to the same bytes: one value, one encoding. The same input is
// also read as a reply, as the client reads the agent's answer.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "agent/protocol.hpp"
#include "core/fields.hpp"
#include "kms/error.hpp"

namespace {

// The fields of request type R: when they parse, they encode to `body` again.
template <class R>
void check_fields(kms::wire::Reader& in, kms::ByteView body) {
  const std::optional<R> r = kms::wire::decode<R>(in);
  if (!r) return;
  kms::wire::Writer again;
  kms::wire::encode(again, *r);
  if (!std::ranges::equal(again.view(), body)) std::abort();
}

// Checks the fields as the request type of `op` in the list, if one has that op.
template <class... R>
bool check_op(kms::RequestList<R...>, std::uint16_t op, kms::wire::Reader& in, kms::ByteView body) {
  return ((op == static_cast<std::uint16_t>(R::op) ? (check_fields<R>(in, body), true) : false) ||
          ...);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kms;
  const ByteView input(data, size);
  {
    wire::Reader in(input);
    if (const auto head = agent::parse_request_head(in)) {
      const ByteView body = input.subspan(size - in.remaining());
      if (!check_op(CallRequests{}, head->op, in, body)) {
        check_op(SessionRequests{}, head->op, in, body);
      }
    }
  }
  try {
    wire::Reader in(input);
    agent::parse_reply_head(in);
  } catch (const Error&) {
  }
  return 0;
}
