#include "audit/chain_check.hpp"

#include <fmt/format.h>

#include "audit/log.hpp"

namespace kms::audit {
namespace {

// Records per batch: a few hundred KiB, two batches at most waiting.
constexpr std::size_t kBatchRecords = 2048;
constexpr std::size_t kMaxWaiting = 2;

void append(Bytes& out, ByteView v) { out.insert(out.end(), v.begin(), v.end()); }

}  // namespace

// Records back to back in `data`: encoding, prev_hash, hash, mac; their sizes in `items`.
struct ChainChecker::Batch {
  struct Item {
    std::int64_t position, seq;
    std::uint32_t encoding, prev_hash, hash, mac;
  };
  Bytes data;
  std::vector<Item> items;
};

ChainChecker::ChainChecker(const crypto::HmacSha256& mac) : mac_(mac) {}

ChainChecker::~ChainChecker() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    full_.clear();  // left by an exception of the reader: not worth checking
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ChainChecker::add(std::int64_t position, const store::AuditRowView& r) {
  if (!filling_) {
    std::lock_guard lock(mutex_);
    if (!free_.empty()) {
      filling_ = std::move(free_.front());
      free_.pop_front();
    } else {
      filling_ = std::make_unique<Batch>();
    }
  }
  Batch& b = *filling_;
  const std::size_t start = b.data.size();
  encode_append(r, b.data);
  const auto encoding = static_cast<std::uint32_t>(b.data.size() - start);
  append(b.data, r.prev_hash);
  append(b.data, r.hash);
  append(b.data, r.mac);
  b.items.push_back({position, r.seq, encoding, static_cast<std::uint32_t>(r.prev_hash.size()),
                     static_cast<std::uint32_t>(r.hash.size()),
                     static_cast<std::uint32_t>(r.mac.size())});
  if (b.items.size() >= kBatchRecords) submit();
}

void ChainChecker::submit() {
  std::unique_lock lock(mutex_);
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  changed_.wait(lock, [&] { return full_.size() < kMaxWaiting; });
  full_.push_back(std::move(filling_));
  changed_.notify_all();
}

void ChainChecker::run() {
  crypto::Sha256 sha;
  for (;;) {
    std::unique_ptr<Batch> b;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return !full_.empty() || stop_; });
      if (full_.empty()) return;
      b = std::move(full_.front());
      full_.pop_front();
    }
    changed_.notify_all();
    try {
      check(*b, sha);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    b->data.clear();
    b->items.clear();
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(b));
  }
}

void ChainChecker::check(const Batch& b, crypto::Sha256& sha) {
  if (failure_) return;  // the first is reported; the rest need no work
  const std::uint8_t* p = b.data.data();
  for (const Batch::Item& it : b.items) {
    const ByteView encoding(p, it.encoding);
    const ByteView prev_hash(encoding.data() + it.encoding, it.prev_hash);
    const ByteView hash(prev_hash.data() + it.prev_hash, it.hash);
    const ByteView mac(hash.data() + it.hash, it.mac);
    p = mac.data() + it.mac;
    sha.reset();
    sha.update(prev_hash);
    sha.update(encoding);
    const crypto::Digest h = sha.finish();
    if (!crypto::equal(h, hash)) {
      failure_ = Failure{
          it.position, it.seq,
          fmt::format("record {} was altered (its hash does not match its contents)", it.seq)};
      return;
    }
    if (!mac_.verify(h, mac)) {
      failure_ = Failure{it.position, it.seq,
                         fmt::format("record {} has an invalid MAC: the chain was rewritten "
                                     "without the vault's key",
                                     it.seq)};
      return;
    }
  }
}

std::optional<ChainChecker::Failure> ChainChecker::finish() {
  if (filling_ && !filling_->items.empty()) {
    if (thread_.joinable()) {
      submit();
    } else {
      crypto::Sha256 sha;  // one batch or less: not worth a thread
      check(*filling_, sha);
    }
  }
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(error_);
  return failure_;
}

}  // namespace kms::audit
