// The audit log: one record per operation, hash-chained, each record MACed with a vault subkey,
// and the head anchored outside the SQLite file (in the token) so that editing, deleting,
// reordering, truncating or rolling back the log is detected. docs/FORMAT.md §Audit specifies it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/json.hpp"
#include "kms/actions.hpp"
#include "kms/audit.hpp"
#include "kms/caller.hpp"
#include "kms/clock.hpp"
#include "kms/context.hpp"
#include "kms/crypto.hpp"
#include "store/store.hpp"

namespace kms::audit {

// Names as the spec names them.
inline constexpr std::string_view kRecordMagic = "KMSA";
inline constexpr std::uint8_t kRecordVersion = 1;
// A record that carries the state digest (its transaction changed an authenticated row).
inline constexpr std::uint8_t kStateRecordVersion = 2;
inline constexpr std::string_view kGenesisLabel = "kmsctl-audit-genesis-v1";
inline constexpr std::string_view kAnchorMagic = "KANC";
inline constexpr std::uint8_t kAnchorVersion = 1;

struct Event {
  Action action;
  std::string resource;                              // "vault/<id>", "key/<id>", ...
  nlohmann::json params = nlohmann::json::object();  // never secret values
  Context context = {};  // a cryptographic operation's encryption context, for authorisation
};

// A key as the caller named it, into a record's parameters: `key_alias` for an alias/NAME,
// else `key_id`. Once the key is resolved, its id goes into `key_id` (the one name a key id
// has in every record and every JSON output). `to_` names a destination key.
inline void name_key(nlohmann::json& params, std::string_view ref, std::string_view prefix = "") {
  params[std::string(prefix) + (ref.starts_with("alias/") ? "key_alias" : "key_id")] =
      std::string(ref);
}

// Canonical encoding of a record's fields (everything but prev_hash/hash/mac).
Bytes encode(const store::AuditRow& row);
void encode_into(const store::AuditRow& row, Bytes& out);  // reuses out's capacity
void encode_into(const store::AuditRowView& row, Bytes& out);
void encode_append(const store::AuditRowView& row, Bytes& out);  // after what out holds
crypto::Digest genesis_hash(std::string_view vault_id);
crypto::Digest chain_hash(ByteView prev_hash, ByteView encoding);

// The seq of a well-formed anchor value (its MAC unchecked: only for choosing which copy to
// overwrite), -1 otherwise.
std::int64_t anchor_seq(ByteView value) noexcept;
class AnchorStore {
 public:
  virtual ~AnchorStore() = default;
  // Every anchor value found (none when there is no anchor; two after an interrupted update).
  virtual std::vector<Bytes> load() = 0;
  // Moves the anchor forward to `value` (keeping the previous value until it is written).
  virtual void store(ByteView value) = 0;
  // Makes `value` the only anchor, even if older than the current one (`vault restore`).
  virtual void replace(ByteView value) = 0;
};

class Log {
 public:
  Log(store::Db& db, std::string vault_id, ByteView mac_key, AnchorStore& anchor);

  // Refuses (Code::integrity) when the vault's chain is behind or beside the token anchor: the
  // file was rolled back, replaced, or its newest records deleted. Call under the writer lock.
  void check_anchor();
  // A `vault restore` killed after it replaced the vault's content and before it moved the
  // anchor leaves a log whose head is its vault.restore record, naming as the anchor it replaced
  // the one the token still holds. That record is MACed, so a token holder wrote it: the restore
  // is finished by moving the anchor to it. A token with no anchor at all finishes nothing. Returns
  // whether it did; check_anchor() tries it before refusing, callers that only read (audit verify)
  // call it under the writer lock.
  bool finish_interrupted_restore();
  // Appends a record inside the caller's write transaction and returns it; `who` is its
  // principal (user name and uid).
  store::AuditRow append(const Event& event, std::string_view outcome, std::string_view error_code,
                         const Caller& who, TimePoint when);
  // After the commit: moves the token anchor to this record.
  void publish(const store::AuditRow& row);
  // The same, allowed to move the anchor back (after `vault restore` replaced the log).
  void republish(const store::AuditRow& row);
  // Walks the whole chain in constant memory. Without the anchor check, a copy of the log
  // (a backup) is judged on its own: every record present, linked and MACed.
  VerifyReport verify(bool check_anchor = true);
  // The newest valid anchor in the token (Code::integrity if one is damaged).
  std::optional<Anchor> read_anchor();
  // The state of the vault's rows as the newest record holds it (docs/FORMAT.md §14.3), after
  // checking that record: its hash recomputed from its contents, and its MAC (Code::integrity
  // naming it otherwise). No state: the log of an older kmsctl, whose rows have no MAC yet.
  // Call after check_anchor(), under the writer lock, so that the newest record is the head.
  struct HeadState {
    std::int64_t seq = 0;
    std::optional<crypto::Digest> state;
  };
  HeadState head_state();

 private:
  Bytes encode_anchor(const Anchor& a) const;
  std::optional<store::AuditRow> newest_record();
  // The record's hash matches its contents and its prev_hash, and its MAC is valid.
  bool is_genuine(const store::AuditRow& r) const;
  bool finish_interrupted_restore(const std::optional<Anchor>& anchor);
  store::Db& db_;
  std::string vault_id_;
  crypto::HmacSha256 mac_;
  AnchorStore& anchor_;
};

// One record as a JSON object (the JSON Lines export and `audit list --json`).
nlohmann::json to_json(const store::AuditRow& row);

}  // namespace kms::audit
