// Keeping a private SoftHSM2 token's files whole through any interruption.
//
// SoftHSM2's file store rewrites an object file in place: it truncates the file, then writes the
// new content through a stdio buffer that reaches the disk only when the file is closed. It does
// so for the token's own file, `token.object` (label, serial, flags, SO and user PIN blobs), at
// every C_Login, whether the PIN is right or wrong, because the login updates the token's flags.
// A process killed between the truncate and the close leaves `token.object` empty, and SoftHSM2
// then reports no initialised token: the root key, and with it the vault, is unreachable.
//
// kmsctl therefore keeps a copy of `token.object` beside the token (VAULT.token/token-copy/),
// verified before it is written, refreshed whenever the live file holds other PINs, label or
// serial, and restores the live file from it when it is found damaged. Every kmsctl process that
// loads the token holds TokenFiles (a shared lock) until its login is done; a repair takes the
// lock exclusively, so it never races a live login, only mends what a dead process left.
// docs/SECURITY.md §12 describes the whole scheme.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "kms/secure.hpp"

namespace kms::token_files {

// SoftHSM2's vendor attributes of token.object (CKA_VENDOR_SOFTHSM + 1..5).
inline constexpr unsigned long kTokenLabel = 0x80005349;
inline constexpr unsigned long kTokenSerial = 0x8000534A;
inline constexpr unsigned long kTokenFlags = 0x8000534B;
inline constexpr unsigned long kSoPin = 0x8000534C;
inline constexpr unsigned long kUserPin = 0x8000534D;

// An object file's attributes, each value as its encoded bytes (kind and value).
using Attributes = std::map<unsigned long, Bytes>;

// Parses SoftHSM2's object file encoding: a u64be generation, then (u64be type, u64be kind,
// value) to the end of the file. Nothing when any part is cut short or malformed.
std::optional<Attributes> parse_object(ByteView file);

// A complete token.object: it parses and holds the label, serial, flags and both PIN blobs.
bool is_complete_token_object(const Attributes& a);

// What a repair or a refresh did, for the caller to report.
struct Mended {
  std::filesystem::path token_object;  // the token.object that was restored from the copy
};

// Held by a process from before it loads a private SoftHSM2 token until its login is done (and
// around any other call that rewrites token.object: C_SetPIN). On construction it checks every
// token.object under DIR/tokens and repairs a damaged one from its copy (taking the lock
// exclusively for that); it then refreshes a copy that is missing or holds other PINs.
class TokenFiles {
 public:
  // `dir` is the private token directory (VAULT.token). Code::unavailable when a token.object is
  // damaged and no valid copy exists (the message names the file and the next step).
  explicit TokenFiles(std::filesystem::path dir);
  ~TokenFiles();
  TokenFiles(const TokenFiles&) = delete;
  TokenFiles& operator=(const TokenFiles&) = delete;

  // Makes each copy match its live token.object (after the PINs changed: init, change-pin).
  void save_copies();
  const std::vector<Mended>& mended() const noexcept { return mended_; }

 private:
  void lock(int how);
  bool all_complete() const;
  void repair();

  std::filesystem::path dir_;
  int fd_ = -1;
  std::vector<Mended> mended_;
};

}  // namespace kms::token_files
