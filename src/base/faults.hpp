// A test seam for fault injection: KMSCTL_TEST_FAULT=OP:N makes the N-th OP of the process fail,
// as a full disk or a failing device would. OP is `write` (a write to a SQLite file: the vault,
// its WAL), `sync` (an fsync of one), `dirsync` (a directory fsync: SQLite's, and those that
// publish output files) or `pkcs11` (a call into the PKCS#11 module, failed with
// CKR_DEVICE_ERROR before it reaches the token). `walopen` is a race rather than a failure: the
// N-th open of an existing WAL finds it read-only, as when another process creates the WAL
// between SQLite's read-write and read-only tries. `mechanism:N` makes the token lack one
// mechanism, the CKM_ value N (C_GetMechanismInfo answers CKR_MECHANISM_INVALID for it), as a
// token without it would. `conflict:N` makes each of the first N write transactions on
// PostgreSQL lose to another writer at its commit: the server itself raises a serialization
// failure (SQLSTATE 40001) and rolls it back. When the fault fires, "kmsctl: test fault: OP N
// failed" is printed on stderr, so a test can tell a run it failed from one that ended before the
// N-th OP. Without the variable nothing is counted.
#pragma once

namespace kms::faults {

enum class Op { write, sync, dirsync, pkcs11, walopen, mechanism, conflict };

// Whether any fault is armed in this process (read once from the environment).
bool armed() noexcept;
// Counts one `op`; true when it is the one that must fail.
bool fail_now(Op op) noexcept;
// Counts one `op`; true for each of the first N (an op armed as `op:N`).
bool fail_first(Op op) noexcept;
// Whether `mechanism:N` hides this mechanism (N == mechanism).
bool mechanism_hidden(unsigned long mechanism) noexcept;

}  // namespace kms::faults
