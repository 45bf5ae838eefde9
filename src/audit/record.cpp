#include "audit/log.hpp"

namespace kms::audit {
namespace {

void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_u64(Bytes& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_str(Bytes& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

Bytes encode(const store::AuditRow& r) {
  Bytes out;
  encode_into(r, out);
  return out;
}

void encode_into(const store::AuditRowView& r, Bytes& out) {
  out.clear();
  encode_append(r, out);
}

void encode_append(const store::AuditRowView& r, Bytes& out) {
  out.reserve(out.size() + 96 + r.time.size() + r.principal.size() + r.action.size() +
              r.resource.size() + r.params.size() + r.outcome.size() + r.error_code.size() +
              r.state.size());
  out.insert(out.end(), kRecordMagic.begin(), kRecordMagic.end());
  out.push_back(r.state.empty() ? kRecordVersion : kStateRecordVersion);
  put_u64(out, static_cast<std::uint64_t>(r.seq));
  put_str(out, r.time);
  put_str(out, r.principal);
  put_u64(out, static_cast<std::uint64_t>(r.uid));
  put_str(out, r.action);
  put_str(out, r.resource);
  put_str(out, r.params);
  put_str(out, r.outcome);
  put_str(out, r.error_code);
  if (!r.state.empty()) {
    put_u32(out, static_cast<std::uint32_t>(r.state.size()));
    out.insert(out.end(), r.state.begin(), r.state.end());
  }
}

void encode_into(const store::AuditRow& r, Bytes& out) { encode_into(store::view(r), out); }

crypto::Digest genesis_hash(std::string_view vault_id) {
  Bytes in(kGenesisLabel.begin(), kGenesisLabel.end());
  in.insert(in.end(), vault_id.begin(), vault_id.end());
  return crypto::sha256(in);
}

crypto::Digest chain_hash(ByteView prev_hash, ByteView encoding) {
  crypto::Sha256 h;
  h.update(prev_hash);
  h.update(encoding);
  return h.finish();
}

nlohmann::json to_json(const store::AuditRow& r) {
  nlohmann::json params = nlohmann::json::parse(r.params, nullptr, false);
  if (params.is_discarded()) params = r.params;  // keep what is stored, even if damaged
  nlohmann::json j = {
      {"seq", r.seq},
      {"time", r.time},
      {"principal", r.principal},
      {"uid", r.uid},
      {"action", r.action},
      {"resource", r.resource},
      {"params", params},
      {"outcome", r.outcome},
      {"error_code", r.error_code},
      {"prev_hash", crypto::to_hex(r.prev_hash)},
      {"hash", crypto::to_hex(r.hash)},
      {"mac", crypto::to_hex(r.mac)},
  };
  if (!r.state.empty()) j["state"] = crypto::to_hex(r.state);
  return j;
}

}  // namespace kms::audit
