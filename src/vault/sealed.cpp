#include "vault/sealed.hpp"

#include "kms/crypto.hpp"

namespace kms {
namespace {

void put_lp(Bytes& out, std::string_view s) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(s.size() >> (8 * i)));
  out.insert(out.end(), s.begin(), s.end());
}

// magic || version || lp(vault id) || lp(table) || lp(row id) || u64be(version)
Bytes record_aad(std::string_view vault_id, const RecordRef& r) {
  Bytes aad(kSealedMagic.begin(), kSealedMagic.end());
  aad.push_back(kSealedVersion);
  put_lp(aad, vault_id);
  put_lp(aad, r.table);
  put_lp(aad, r.row_id);
  for (int i = 7; i >= 0; --i)
    aad.push_back(static_cast<std::uint8_t>(std::uint64_t(r.version) >> (8 * i)));
  return aad;
}

constexpr size_t kHeader = kSealedMagic.size() + 1;

}  // namespace

Bytes seal_record(ByteView key, std::string_view vault_id, const RecordRef& where,
                  ByteView plaintext) {
  const Bytes nonce = crypto::random_bytes(crypto::kGcmNonceSize);
  const Bytes ct = crypto::aes_gcm_seal(key, nonce, record_aad(vault_id, where), plaintext);
  Bytes out(kSealedMagic.begin(), kSealedMagic.end());
  out.push_back(kSealedVersion);
  out.insert(out.end(), nonce.begin(), nonce.end());
  out.insert(out.end(), ct.begin(), ct.end());
  return out;
}

std::optional<SecureBytes> open_record(ByteView key, std::string_view vault_id,
                                       const RecordRef& where, ByteView sealed) {
  if (sealed.size() < kHeader + crypto::kGcmNonceSize + crypto::kGcmTagSize ||
      !std::equal(kSealedMagic.begin(), kSealedMagic.end(), sealed.begin()) ||
      sealed[kSealedMagic.size()] != kSealedVersion) {
    return std::nullopt;
  }
  return crypto::aes_gcm_open(key, sealed.subspan(kHeader, crypto::kGcmNonceSize),
                              record_aad(vault_id, where),
                              sealed.subspan(kHeader + crypto::kGcmNonceSize));
}

}  // namespace kms
