// The per-record half of `audit verify` (Log::verify): each record's hash over its predecessor's
// hash and its own encoding, and its MAC. Log::verify reads the log and checks the order and the
// links; ChainChecker checks the hashes and MACs of what it is given, on a second thread once
// there is more than one batch of records, since reading the rows and hashing them cost about
// the same (docs/PERFORMANCE.md).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kms/crypto.hpp"
#include "store/store.hpp"

namespace kms::audit {

class ChainChecker {
 public:
  // `mac` is used by this checker alone until finish() returns.
  explicit ChainChecker(const crypto::HmacSha256& mac);
  ~ChainChecker();
  ChainChecker(const ChainChecker&) = delete;
  ChainChecker& operator=(const ChainChecker&) = delete;

  // A problem found in the record at `position` (0 for the first record read).
  struct Failure {
    std::int64_t position = 0;
    std::int64_t seq = 0;
    std::string problem;
  };
  // Queues the record read at `position`: its encoding, and its prev_hash, hash and mac as
  // stored (the caller checked that prev_hash is its predecessor's hash).
  void add(std::int64_t position, const store::AuditRowView& r);
  // Waits until every queued record is checked: the first that failed, if any. Rethrows an
  // error of the checking thread.
  std::optional<Failure> finish();

 private:
  struct Batch;
  void submit();
  void run();
  void check(const Batch& b, crypto::Sha256& sha);

  const crypto::HmacSha256& mac_;
  std::unique_ptr<Batch> filling_;
  std::optional<Failure> failure_;  // the checking thread's, read after it is joined
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Batch>> full_, free_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace kms::audit
