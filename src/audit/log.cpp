#include "audit/log.hpp"

#include <fmt/format.h>

#include "audit/chain_check.hpp"
#include "kms/error.hpp"
#include "kms/text.hpp"

namespace kms::audit {
namespace {

std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// A record holds only UTF-8 (its params are JSON). Text that is not, a file name that is any
// bytes, say, is recorded as escape_text shows it: escaped, not refused, so that the command
// still gets its record.
std::string utf8_text(const std::string& s) {
  return utf8_error(s) == std::string::npos ? s : escape_text(s);
}

void make_utf8(nlohmann::json& j) {
  if (j.is_string()) {
    j = utf8_text(j.get_ref<const std::string&>());
  } else if (j.is_array()) {
    for (nlohmann::json& item : j) make_utf8(item);
  } else if (j.is_object()) {
    nlohmann::json fixed = nlohmann::json::object();
    for (auto& [k, v] : j.items()) {
      make_utf8(v);
      fixed[utf8_text(k)] = std::move(v);
    }
    j = std::move(fixed);
  }
}

// The record's params: the event's, and `host`, the caller's machine, when known.
std::string params_text(const nlohmann::json& params, const std::string& host) {
  nlohmann::json p = params.is_null() ? nlohmann::json::object() : params;
  if (!host.empty() && p.is_object()) p["host"] = host;
  try {
    return p.dump();
  } catch (const nlohmann::json::type_error&) {  // a string that is not UTF-8
    make_utf8(p);
    return p.dump();
  }
}

}  // namespace

std::int64_t anchor_seq(ByteView v) noexcept {
  constexpr size_t size = 4 + 1 + 8 + 32 + 32;
  if (v.size() != size || !std::equal(kAnchorMagic.begin(), kAnchorMagic.end(), v.begin()) ||
      v[4] != kAnchorVersion) {
    return -1;
  }
  return static_cast<std::int64_t>(get_u64(v.data() + 5) & 0x7fffffffffffffffu);
}

Log::Log(store::Db& db, std::string vault_id, ByteView mac_key, AnchorStore& anchor)
    : db_(db), vault_id_(std::move(vault_id)), mac_(mac_key), anchor_(anchor) {}

// Anchor value: "KANC" || version || u64be seq || hash[32] || HMAC(K_audit, all before).
Bytes Log::encode_anchor(const Anchor& a) const {
  Bytes v(kAnchorMagic.begin(), kAnchorMagic.end());
  v.push_back(kAnchorVersion);
  for (int i = 7; i >= 0; --i)
    v.push_back(static_cast<std::uint8_t>(std::uint64_t(a.seq) >> (8 * i)));
  v.insert(v.end(), a.hash.begin(), a.hash.end());
  const crypto::Digest tag = mac_.mac(v);
  v.insert(v.end(), tag.begin(), tag.end());
  return v;
}

std::optional<Anchor> Log::read_anchor() {
  std::optional<Anchor> newest;
  constexpr size_t body = 4 + 1 + 8 + 32;
  for (const Bytes& v : anchor_.load()) {
    if (v.size() != body + 32 || !std::equal(kAnchorMagic.begin(), kAnchorMagic.end(), v.begin()) ||
        v[4] != kAnchorVersion ||
        !mac_.verify(ByteView(v.data(), body), ByteView(v.data() + body, 32))) {
      throw Error(Code::integrity, "the audit anchor in the token is damaged or not this vault's",
                  Remedy::verify_against_anchor);
    }
    Anchor a;
    a.seq = static_cast<std::int64_t>(get_u64(v.data() + 5));
    a.hash.assign(v.begin() + 13, v.begin() + body);
    if (!newest || a.seq > newest->seq) newest = std::move(a);
  }
  return newest;
}

bool Log::finish_interrupted_restore(const std::optional<Anchor>& anchor) {
  // Only a restore that replaced an anchor the token still holds. With no anchor at all, anyone
  // who can delete the token's files could make an older log whose head is a restore record
  // pass as the live one.
  if (!anchor) return false;
  const std::optional<store::AuditRow> head = newest_record();
  if (!head || head->action != action_name(Action::vault_restore) || head->outcome != "ok")
    return false;
  // The record must be whole, MACed (written with K_audit: by a token holder), and linked.
  if (!is_genuine(*head)) return false;
  const std::optional<Bytes> prev = store::audit_hash_at(db_, head->seq - 1);
  const crypto::Digest g = genesis_hash(vault_id_);
  if (!crypto::equal(head->prev_hash, prev ? ByteView(*prev) : ByteView(g))) return false;
  // It must name, as the anchor it replaced, the one the token still holds.
  const nlohmann::json p = nlohmann::json::parse(head->params, nullptr, false);
  if (!p.is_object()) return false;
  if (p.value("replaced_anchor_seq", nlohmann::json()) != nlohmann::json(anchor->seq) ||
      p.value("replaced_anchor_hash", nlohmann::json()) !=
          nlohmann::json(crypto::to_hex(anchor->hash))) {
    return false;
  }
  republish(*head);
  return true;
}

bool Log::finish_interrupted_restore() {
  const std::optional<Anchor> a = read_anchor();
  if (a) {
    const std::optional<Bytes> h = store::audit_hash_at(db_, a->seq);
    if (h && crypto::equal(*h, a->hash)) return false;  // the log reaches its anchor
  }
  return finish_interrupted_restore(a);
}

void Log::check_anchor() {
  const std::optional<Anchor> a = read_anchor();
  if (!a) {
    throw Error(Code::integrity,
                "the token holds no audit anchor for this vault, so the log cannot be trusted",
                Remedy::verify_against_anchor);
  }
  const std::optional<Bytes> h = store::audit_hash_at(db_, a->seq);
  if ((!h || !crypto::equal(*h, a->hash)) && finish_interrupted_restore(a)) return;
  if (!h && db_.dialect() == store::Dialect::postgresql) {
    const auto head = store::audit_last(db_);
    throw Error(Code::integrity,
                fmt::format("the vault's audit log ends at seq {} but the token anchor is at seq "
                            "{}: the database was put back from an older copy or its newest "
                            "records deleted",
                            head ? head->seq : 0, a->seq),
                "run `kmsctl audit verify`; if the database was restored on purpose, "
                "`kmsctl vault restore --force` accepts it and moves the token anchor with an "
                "audited record");
  }
  if (!h) {
    const auto head = store::audit_last(db_);
    throw Error(Code::integrity,
                fmt::format("the vault's audit log ends at seq {} but the token anchor is at seq "
                            "{}: the vault file was rolled back or its newest records deleted",
                            head ? head->seq : 0, a->seq),
                Remedy::verify_against_anchor);
  }
  if (!crypto::equal(*h, a->hash)) {
    throw Error(Code::integrity,
                fmt::format("audit record {} differs from the token anchor: the vault file was "
                            "replaced or its log rewritten",
                            a->seq),
                Remedy::verify_against_anchor);
  }
}

std::optional<store::AuditRow> Log::newest_record() {
  std::optional<store::AuditRow> head;
  store::AuditFilter newest;
  newest.limit = 1;
  store::audit_query(db_, newest, [&](const store::AuditRow& r) { head = r; });
  return head;
}

bool Log::is_genuine(const store::AuditRow& r) const {
  const crypto::Digest h = chain_hash(r.prev_hash, encode(r));
  return crypto::equal(h, r.hash) && mac_.verify(h, r.mac);
}

Log::HeadState Log::head_state() {
  HeadState out;
  const std::optional<store::AuditRow> head = newest_record();
  if (!head) return out;
  if (!is_genuine(*head)) {
    throw Error(Code::integrity,
                fmt::format("audit record {}, the newest, was altered (its hash or MAC does not "
                            "match its contents)",
                            head->seq),
                Remedy::verify_against_anchor);
  }
  out.seq = head->seq;
  if (!head->state.empty()) out.state = store::unmask_state(db_, head->state, head->seq);
  return out;
}

store::AuditRow Log::append(const Event& ev, std::string_view outcome, std::string_view error_code,
                            const Caller& who, TimePoint when) {
  store::AuditRow r;
  const std::optional<store::AuditHead> last = store::audit_last(db_);
  r.seq = last ? last->seq + 1 : 1;
  if (last) {
    r.prev_hash = last->hash;
  } else {
    const crypto::Digest g = genesis_hash(vault_id_);
    r.prev_hash.assign(g.begin(), g.end());
  }
  r.time = format_rfc3339(when);
  r.principal = utf8_text(who.user);
  r.uid = who.uid;
  r.action = action_name(ev.action);
  r.resource = utf8_text(ev.resource);
  r.params = params_text(ev.params, who.host);
  r.outcome = outcome;
  r.error_code = error_code;
  r.state = store::next_state_field(db_, head_state().state, r.seq);
  const crypto::Digest h = chain_hash(r.prev_hash, encode(r));
  r.hash.assign(h.begin(), h.end());
  const crypto::Digest m = mac_.mac(r.hash);
  r.mac.assign(m.begin(), m.end());
  store::audit_insert(db_, r);
  return r;
}

void Log::publish(const store::AuditRow& row) { anchor_.store(encode_anchor({row.seq, row.hash})); }

void Log::republish(const store::AuditRow& row) {
  anchor_.replace(encode_anchor({row.seq, row.hash}));
}

VerifyReport Log::verify(bool check_anchor) {
  VerifyReport rep;
  // The anchor is read before the log: a writer that commits in between only makes the log
  // longer than the anchor, which is allowed.
  if (check_anchor) rep.anchor = read_anchor();
  store::Tx tx(db_, store::Tx::Kind::read);
  const crypto::Digest g = genesis_hash(vault_id_);
  Bytes prev(g.begin(), g.end());  // the previous record's hash (checked by `checker`)
  std::int64_t expected = 1;
  Bytes last_state;  // the state field of the last record read
  // Here the order and the links; on the checker's thread each record's hash and MAC.
  ChainChecker checker(mac_);
  std::optional<ChainChecker::Failure> order;  // the first order or link problem
  store::audit_scan_views(db_, [&](const store::AuditRowView& r) {
    const std::int64_t position = rep.records++;
    if (order) return;
    if (r.seq != expected) {
      order = {position, expected,
               r.seq > expected
                   ? fmt::format("record {} is missing (next record is {})", expected, r.seq)
                   : fmt::format("record {} is out of order", r.seq)};
      return;
    }
    if (!crypto::equal(r.prev_hash, prev)) {
      order = {position, r.seq,
               fmt::format("record {} does not link to record {}", r.seq, r.seq - 1)};
      return;
    }
    checker.add(position, r);
    prev.assign(r.hash.begin(), r.hash.end());
    last_state.assign(r.state.begin(), r.state.end());
    ++expected;
  });
  // The first record with a problem, as a reader checking one record after another finds it:
  // a record's order and link come before its hash and MAC.
  auto fail = [&](std::int64_t seq, std::string problem) {
    rep.ok = false;
    rep.first_bad_seq = seq;
    rep.problem = std::move(problem);
  };
  std::optional<ChainChecker::Failure> bad = checker.finish();
  if (order && (!bad || order->position <= bad->position)) bad = std::move(order);
  if (bad) fail(bad->seq, std::move(bad->problem));
  rep.head = store::audit_last(db_);
  // The rows against the state the last (now verified) record holds, in the same snapshot. A
  // log without one is an older kmsctl's, whose rows have no MAC yet.
  if (rep.ok && !last_state.empty()) {
    const std::int64_t last = expected - 1;
    const store::StateReport st =
        store::check_state(db_, store::unmask_state(db_, last_state, last), last);
    rep.rows = st.rows;
    rep.state_recorded_at = st.recorded_at;
    if (!st.ok) {
      rep.ok = false;  // no record is at fault: the rows are
      rep.problem = st.problem;
    }
  }
  if (rep.ok && check_anchor) {
    const std::int64_t last = expected - 1;
    if (!rep.anchor) {
      fail(last + 1, "the token holds no audit anchor for this vault");
    } else if (rep.anchor->seq > last) {
      fail(last + 1, fmt::format("records {}..{} are missing: the log ends at {} but the token "
                                 "anchor is at {} (newest records deleted or file rolled back)",
                                 last + 1, rep.anchor->seq, last, rep.anchor->seq));
    } else {
      const std::optional<Bytes> at = store::audit_hash_at(db_, rep.anchor->seq);
      if (!at || !crypto::equal(*at, rep.anchor->hash)) {
        fail(rep.anchor->seq, fmt::format("record {} differs from the token anchor (file replaced)",
                                          rep.anchor->seq));
      }
    }
  }
  return rep;
}

}  // namespace kms::audit
