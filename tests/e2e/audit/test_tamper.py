"""Attacks on the audit log by someone who can write the vault file but has no token
(docs/ARCHITECTURE.md §4.5): each must make `audit verify` exit 5 naming the first bad sequence
number.

The record encoding and chain rule below are re-implemented from src/audit/record.cpp
(docs/FORMAT.md §Audit), so the "recomputed chain" attack is the real one, not a stand-in."""

import hashlib
import json
import os
import re
import shutil
import sqlite3
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

COLUMNS = ("time", "principal", "uid", "action", "resource", "params", "outcome", "error_code",
           "prev_hash", "hash", "mac", "state")

RECORD_MAGIC = b"KMSA"
RECORD_VERSION = 1
STATE_RECORD_VERSION = 2  # a record whose transaction changed the vault's rows
GENESIS_LABEL = b"kmsctl-audit-genesis-v1"


def encode(row):
    """The canonical encoding of a record's fields (everything but prev_hash, hash, mac)."""
    def s(v):
        b = v.encode()
        return struct.pack(">I", len(b)) + b
    state = row.get("state")
    return (RECORD_MAGIC + bytes([STATE_RECORD_VERSION if state else RECORD_VERSION]) +
            struct.pack(">Q", row["seq"]) +
            s(row["time"]) + s(row["principal"]) + struct.pack(">Q", row["uid"] & (2**64 - 1)) +
            s(row["action"]) + s(row["resource"]) + s(row["params"]) + s(row["outcome"]) +
            s(row["error_code"]) + (struct.pack(">I", len(state)) + bytes(state) if state else b""))


def chain_hash(prev, row):
    return hashlib.sha256(bytes(prev) + encode(row)).digest()


def genesis_hash(vault_id):
    return hashlib.sha256(GENESIS_LABEL + vault_id.encode()).digest()


def tampered(column, value):
    """A different value of the same SQL type (and within the table's CHECK constraints)."""
    if column == "uid":
        return value + 1000
    if column in ("prev_hash", "hash", "mac", "state") and value:
        return bytes([value[0] ^ 0x01]) + bytes(value[1:])
    if column == "state":  # a record that changed no row: give it a state
        return bytes(32)
    if column == "outcome":
        return "error" if value == "ok" else "ok"
    if column == "time":
        return "2001-01-01T00:00:00.000Z"
    if column == "params":
        return '{"forged":true}'
    return value + "-forged" if value else "forged"


class Tamper(KmsTestCase):
    MIDDLE = 3

    def setUp(self):
        super().setUp()
        self.populate(5)  # records 1..6
        self.vid = self.kms.status()["vault"]["id"]  # record 7

    def rows(self):
        rows = self.kms.sql(f"SELECT seq, {', '.join(COLUMNS)} FROM audit_log ORDER BY seq")
        return [dict(zip(("seq",) + COLUMNS, r)) for r in rows]

    def transaction(self, *statements):
        """Runs (statement, params) pairs on the vault in one write transaction, without kmsctl:
        with sqlite3 on the file, or with psql as the database's administrator."""
        if self.kms.db:
            self.kms.db.transaction(statements)
            return
        con = sqlite3.connect(self.kms.vault, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("BEGIN IMMEDIATE")
            for q, params in statements:
                con.execute(q, params)
            con.execute("COMMIT")
        finally:
            con.close()

    def assertVerifyFailsAt(self, seq, *words):
        """Both forms of `audit verify` exit 5 and name `seq` as the first bad record."""
        r = self.kms.run("audit", "verify", "--json")
        self.assertError(r, 5, f"at seq {seq}", *words, stdout_empty=False)
        rep = json.loads(r.out)
        self.assertIs(rep["ok"], False)
        self.assertEqual(rep["first_bad_seq"], seq, rep)
        self.assertIsInstance(rep["problem"], str)
        self.assertIn(str(seq), rep["problem"])
        r = self.kms.run("audit", "verify")
        self.assertError(r, 5, f"verification failed at seq {seq}", *words)
        return rep

    def assertVerifies(self):
        r = self.kms.run("audit", "verify", "--json")
        self.assertEqual(r.rc, 0, r.show())
        rep = json.loads(r.out)
        self.assertIs(rep["ok"], True)
        return rep

    def test_verify_json_reports_ok_records_head_and_anchor(self):
        rep = self.assertVerifies()
        self.assertIsNone(rep["first_bad_seq"])
        self.assertIsNone(rep["problem"])
        self.assertEqual(rep["records"], 7)
        self.assertEqual(rep["head"], rep["anchor"])
        self.assertEqual(rep["head"]["seq"], 7)
        # The report describes the log as verified, before verify's own record (seq 8).
        self.assertEqual(rep["head"]["hash"], self.rows()[6]["hash"].hex())
        self.assertEqual(self.rows()[7]["action"], "audit.verify")
        r = self.kms.ok("audit", "verify")
        self.assertRegex(r.out, r"audit log OK: 8 records verified; head seq 8")

    def test_our_reimplementation_of_the_record_encoding_matches_the_vault(self):
        # Without this, the recomputed-chain attack below could fail for the wrong reason.
        prev = genesis_hash(self.vid)
        for row in self.rows():
            self.assertEqual(row["prev_hash"], prev, f"seq {row['seq']}")
            self.assertEqual(chain_hash(prev, row), row["hash"], f"seq {row['seq']}")
            prev = row["hash"]

    def test_editing_any_single_field_of_a_middle_record_is_found_at_its_seq(self):
        for column in COLUMNS:
            with self.subTest(column=column):
                # (With seq beside it: psql prints a row of one empty string as no row at all.)
                (old, _) = self.kms.sql(f"SELECT {column}, seq FROM audit_log WHERE seq = ?",
                                        (self.MIDDLE,))[0]
                self.kms.sql(f"UPDATE audit_log SET {column} = ? WHERE seq = ?",
                             (tampered(column, old), self.MIDDLE))
                try:
                    r = self.kms.run("audit", "verify", "--json")
                    self.assertError(r, 5, f"at seq {self.MIDDLE}", stdout_empty=False)
                    self.assertEqual(json.loads(r.out)["first_bad_seq"], self.MIDDLE)
                finally:
                    self.kms.sql(f"UPDATE audit_log SET {column} = ? WHERE seq = ?",
                                 (old, self.MIDDLE))
        self.assertVerifies()  # every edit was undone: the chain is whole again

    def test_editing_the_first_or_the_newest_record_is_found_at_its_seq(self):
        head = self.rows()[-1]["seq"]
        for seq in (1, head):
            with self.subTest(seq=seq):
                (old,) = self.kms.sql("SELECT action FROM audit_log WHERE seq = ?", (seq,))[0]
                self.kms.sql("UPDATE audit_log SET action = 'key.delete' WHERE seq = ?", (seq,))
                r = self.kms.run("audit", "verify", "--json")
                self.assertError(r, 5, f"at seq {seq}", stdout_empty=False)
                self.assertEqual(json.loads(r.out)["first_bad_seq"], seq)
                self.kms.sql("UPDATE audit_log SET action = ? WHERE seq = ?", (old, seq))
        self.assertVerifies()

    def test_deleting_a_middle_record_is_found_at_its_seq(self):
        self.kms.sql("DELETE FROM audit_log WHERE seq = ?", (self.MIDDLE,))
        self.assertVerifyFailsAt(self.MIDDLE, "missing")

    def test_swapping_two_records_is_found_at_the_first_of_them(self):
        for a, b in ((3, 4), (2, 5)):
            with self.subTest(swap=(a, b)):
                cols = ", ".join(COLUMNS)
                ra = self.kms.sql(f"SELECT {cols} FROM audit_log WHERE seq = ?", (a,))[0]
                rb = self.kms.sql(f"SELECT {cols} FROM audit_log WHERE seq = ?", (b,))[0]
                sets = ", ".join(f"{c} = ?" for c in COLUMNS)
                # hash and prev_hash are UNIQUE: park one row on placeholders first.
                park = ("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?",
                        (os.urandom(32), os.urandom(32), a))
                self.transaction(park,
                                 (f"UPDATE audit_log SET {sets} WHERE seq = ?", (*ra, b)),
                                 (f"UPDATE audit_log SET {sets} WHERE seq = ?", (*rb, a)))
                self.assertVerifyFailsAt(a)
                # Swap back.
                self.transaction(park,
                                 (f"UPDATE audit_log SET {sets} WHERE seq = ?", (*rb, b)),
                                 (f"UPDATE audit_log SET {sets} WHERE seq = ?", (*ra, a)))
                self.assertVerifies()

    def test_deleting_the_newest_records_is_found_and_blocks_every_command(self):
        head = self.rows()[-1]["seq"]
        self.kms.sql("DELETE FROM audit_log WHERE seq > ?", (head - 2,))
        self.assertVerifyFailsAt(head - 1, "missing")
        # (A database is not rolled back: it is put back from an older copy, kmsctl says.)
        cut = ("put back from an older copy or its newest records deleted" if self.kms.db else
               "rolled back or its newest records deleted")
        for args in (("status",), ("audit", "list"), ("vault", "rekey")):
            r = self.kms.run(*args)
            self.assertError(r, 5, cut)
        self.assertEqual(self.rows()[-1]["seq"], head - 2, "nothing was appended meanwhile")

    def test_deleting_the_whole_log_is_found_at_seq_1(self):
        self.kms.sql("DELETE FROM audit_log")
        self.assertVerifyFailsAt(1)
        r = self.kms.run("status")
        self.assertError(r, 5)

    @kmsenv.file_store_only("copies the vault file and puts it back without its WAL")
    def test_replacing_the_vault_with_an_older_copy_of_itself_is_found(self):
        # kmsctl leaves the WAL beside the file: fold it in, so that the copy is the whole vault.
        self.kms.checkpoint()
        old_copy = self.kms.path("old-copy.db")
        shutil.copyfile(self.kms.vault, old_copy)
        old_head = self.rows()[-1]["seq"]
        for _ in range(3):
            self.kms.ok("status")
        # The attacker puts the old file back and drops the WAL (which would replay newer pages).
        shutil.copyfile(old_copy, self.kms.vault)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.kms.vault + suffix):
                os.remove(self.kms.vault + suffix)
        self.assertVerifyFailsAt(old_head + 1, "rolled back")
        r = self.kms.run("status")
        self.assertError(r, 5, "rolled back")
        # The hint's commands are real commands.
        hint = next(l for l in r.err.splitlines() if l.startswith("hint:"))
        for cmd in re.findall(r"`kmsctl ([^`]+)`", hint):
            words = [w for w in cmd.split() if re.fullmatch(r"[a-z][a-z-]*", w)]
            h = self.kms.run(*words, "--help")
            self.assertEqual(h.rc, 0, f"the hint names `kmsctl {cmd}`, which does not exist:\n"
                             + h.show())

    @kmsenv.file_store_only("`vault backup` writes a vault file, put in the vault's place")
    def test_replacing_the_vault_with_one_of_its_own_backups_is_found(self):
        # A backup made by `kmsctl vault backup` is the most natural "older copy of itself".
        backup = self.kms.path("backup.db")
        self.kms.ok("vault", "backup", backup)
        backup_head = self.kms.sql("SELECT max(seq) FROM audit_log", db=backup)[0][0]
        for _ in range(3):
            self.kms.ok("status")
        # The file and its WAL replaced together (a WAL left beside it would replay newer pages).
        shutil.copyfile(backup, self.kms.vault)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.kms.vault + suffix):
                os.remove(self.kms.vault + suffix)
        self.assertEqual(self.kms.sql("SELECT max(seq) FROM audit_log")[0][0], backup_head)
        self.assertVerifyFailsAt(backup_head + 1)

    def test_marking_a_cut_short_vault_as_a_backup_does_not_hide_the_cut(self):
        # PRAGMA application_id is in the unauthenticated SQLite header: anyone who can write
        # the file can set it to what `vault backup` writes ("KMSB"). In PostgreSQL it is a
        # column of the kmsctl_schema table, as unauthenticated.
        head = self.rows()[-1]["seq"]
        self.kms.sql("DELETE FROM audit_log WHERE seq > ?", (head - 2,))
        if self.kms.db:
            self.kms.db.execute("UPDATE kmsctl_schema SET application_id = ?", (0x4B4D5342,))
        else:
            self.kms.sql(f"PRAGMA application_id = {0x4B4D5342}")
        self.assertVerifyFailsAt(head - 1)

    def test_a_chain_recomputed_without_the_token_is_found_at_the_edited_record(self):
        rows = self.rows()
        k = self.MIDDLE
        rows[k - 1]["action"] = "key.export"
        rows[k - 1]["params"] = '{"plaintext":true}'
        prev = rows[k - 2]["hash"]
        updates = []
        for row in rows[k - 1:]:
            row["prev_hash"] = prev
            row["hash"] = chain_hash(prev, row)  # the MAC stays: it needs the vault's key
            updates.append(("UPDATE audit_log SET action = ?, params = ?, prev_hash = ?, hash = ? "
                            "WHERE seq = ?", (row["action"], row["params"], row["prev_hash"],
                                              row["hash"], row["seq"])))
            prev = row["hash"]
        self.transaction(*updates)
        # The forged chain is internally consistent: only the MAC (and the anchor) can tell.
        p = genesis_hash(self.vid)
        for row in self.rows():
            self.assertEqual(chain_hash(p, row), row["hash"])
            p = row["hash"]
        self.assertVerifyFailsAt(k, "MAC")
        r = self.kms.run("status")
        self.assertError(r, 5)


if __name__ == "__main__":
    kmsenv.main()
