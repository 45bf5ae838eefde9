"""Fault injection: every write, fsync, directory fsync and PKCS#11 call a command makes fails in
turn, and each failure is clean (docs/SECURITY.md §12).

KMSCTL_TEST_FAULT=OP:N makes the N-th OP of a kmsctl process fail (src/base/faults.hpp; the seams are
the vault's SQLite VFS for writes and syncs of the vault and its WAL, the directory fsyncs that
publish output files, and a copy of the PKCS#11 module's function list). For each command of the mix and each OP, N runs from 1 until a run ends
before its N-th OP. After every run: the command either succeeded or failed with a documented
exit code, an error line and a hint (never a crash); an output file exists only if it succeeded;
and the checks of the torture test hold: the vault opens, `audit verify` passes, `PRAGMA
integrity_check` is ok, and the rows the command adds grew by exactly its `ok` records.

With a sanitized kmsctl (kmsenv.SANITIZED), every fault is still injected and each run's exit code,
error and output file still checked, but the checks of the vault run once after each command's
series of faults (they count the records of the whole series), not after each run: what the
sanitizers look for is in the failing command itself, and the release build's run checks after
each one. `change-pin` is checked after each run either way (the check finds which PIN holds)."""

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
import torture

OPS = ("write", "sync", "dirsync", "pkcs11")
# Commands of torture.py's mix, and the output each writes (if any).
COMMANDS = ("status", "key-create", "key-rotate", "secret-put", "encrypt", "file-encrypt",
            "backup", "rekey", "change-pin")
LIMIT = 200  # no command of the mix makes this many of one OP


class FaultInjection(unittest.TestCase):
    def test_every_failing_write_and_sync_is_clean_and_loses_nothing(self):
        t = torture.Torture(random.SystemRandom().randrange(1 << 31))
        self.addCleanup(t.cleanup)
        t.populate()
        fired = {}
        for name in COMMANDS:
            for op in OPS:
                n = 0
                each_run = not kmsenv.SANITIZED or name == "change-pin"
                before = t.snapshot()
                for nth in range(1, LIMIT + 1):
                    if each_run:
                        before = t.snapshot()
                    argv, env = t.command(name)
                    env["KMSCTL_TEST_FAULT"] = "%s:%d" % (op, nth)
                    r = t.kms.run(*argv, env=env)
                    where = "%s with %s:%d" % (" ".join(argv), op, nth)
                    hit = "kmsctl: test fault: %s %d failed" % (op, nth) in r.err
                    if r.rc != 0:
                        self.assertIn(r.rc, range(1, 7), "%s: not a documented exit code:\n%s"
                                      % (where, r.show(argv)))
                        self.assertIn("kmsctl: error: ", r.err, where)
                        self.assertRegex(r.err, r"(?m)^hint: \S", where)
                        if "--out" in argv or "-o" in argv or "backup" in argv:
                            out = argv[-1] if "backup" in argv else argv[argv.index(
                                "--out" if "--out" in argv else "-o") + 1]
                            self.assertFalse(os.path.exists(out), "%s: left %s" % (where, out))
                    # The checks run without the fault (and find out which PIN is in force).
                    if each_run or not hit:
                        t.check(name, where, before, None)
                    if not hit:
                        break
                    n += 1
                self.assertLess(nth, LIMIT, "%s %s: the fault kept firing" % (name, op))
                fired[(name, op)] = n
        print("faults injected per command and OP:", flush=True)
        for (name, op), n in sorted(fired.items()):
            print("  %-14s %-8s %d" % (name, op, n), flush=True)
        self.assertGreater(sum(fired.values()), 0, "no fault ever fired")
        for op in OPS:
            self.assertGreater(sum(n for (_, o), n in fired.items() if o == op), 0,
                               "no %s fault ever fired" % op)


class WalRace(unittest.TestCase):
    """Another SQLite client of the vault file (a monitoring script, sqlite3 in a shell) can
    delete the WAL as it closes and create it again as it opens. If that lands between the read-
    write and the read-only try of SQLite's WAL open, kmsctl used to hold the WAL read-only and
    fail its first write with "attempt to write a readonly database". The `walopen` seam makes
    every command of the mix meet that race on its first WAL open: each must succeed."""

    def test_a_wal_that_appears_read_only_is_opened_again_and_every_command_succeeds(self):
        t = torture.Torture(random.SystemRandom().randrange(1 << 31))
        self.addCleanup(t.cleanup)
        t.populate()
        for name in COMMANDS:
            before = t.snapshot()
            argv, env = t.command(name)
            env["KMSCTL_TEST_FAULT"] = "walopen:1"
            r = t.kms.run(*argv, env=env)
            self.assertIn("kmsctl: test fault: walopen 1 failed", r.err, " ".join(argv))
            self.assertEqual(r.rc, 0, r.show(argv))
            t.check(name, " ".join(argv) + " with walopen:1", before, None)


if __name__ == "__main__":
    kmsenv.main()
