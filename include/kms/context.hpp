// The encryption context: K=V pairs that are authenticated but not encrypted, and their one
// canonical encoding (docs/FORMAT.md §11.2), shared by the ciphertext blob and the file envelope.
#pragma once

#include <map>
#include <string>

#include "kms/secure.hpp"

namespace kms {

// Ordered bytewise by key, which is the order the encoding requires.
using Context = std::map<std::string, std::string>;

// u32be count || for each pair in bytewise key order: u32be len || key || u32be len || value
Bytes encode_context(const Context& context);

// The longest encoded context a ciphertext may carry (the file envelope's header field, §11.3).
inline constexpr std::size_t kMaxContextBytes = 64 * 1024;
// Code::usage, naming the limit, when the encoded context is longer than kMaxContextBytes.
// Every writer of a new ciphertext checks it first: `encrypt`, `data-key generate`, `re-encrypt`
// and the file envelope.
void check_context_size(const Context& context);

}  // namespace kms
