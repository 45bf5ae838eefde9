"""Attacks on the rows that decide what the vault does (docs/ARCHITECTURE.md §4.9) by someone who
can write the vault file but has neither the token nor the PIN: python's sqlite3 on the file,
then kmsctl run by its user.

Every such row (keys, key_versions, key_aliases, key_tags, secrets, secret_versions, secret_tags
and the header vault_meta) carries a MAC under a subkey that only the token can unseal, over its
table and every column, so:

- a row edited, moved to another primary key, copied or inserted with a made-up MAC is refused
  when kmsctl reads it: exit 5, naming the row, and the refusal is audited (outcome error,
  error_code integrity). Putting the exact original row back makes `audit verify` pass again:
  nothing was lost;
- a row replaced by an older genuine copy of itself (a replay), deleted or added keeps valid MACs
  and reads do not see it; `audit verify` does, by comparing the rows with the state digest the
  newest row-changing audit record holds, and `kmsctl maintain` checks the same before it destroys
  anything;
- a vault of schema 3 (made before rows had MACs; tests/fixtures/vault-schema3/) has its rows
  authenticated on its first open, in one audited `vault.upgrade` record.
"""

import base64
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

REFUSED, INTEGRITY, UNAVAILABLE = 4, 5, 6

ALTERED = "was altered outside kmsctl: its row in the vault does not match its MAC"
NOT_RECORDED_STATE = "the vault's keys and secrets are not the state that audit record"
HEADER = "the vault header"

# Primary key columns of every authenticated table.
KEY_COLUMNS = {
    "vault_meta": ("singleton",),
    "keys": ("id",),
    "key_versions": ("key_id", "version"),
    "key_aliases": ("alias",),
    "key_tags": ("key_id", "name"),
    "secrets": ("id",),
    "secret_versions": ("secret_id", "version"),
    "secret_tags": ("secret_id", "name"),
}

ROW_TABLES = ("vault_meta", "keys", "key_versions", "key_aliases", "key_tags", "secrets",
              "secret_versions", "secret_tags")
FIXTURE = os.path.join(kmsenv.SOURCE_DIR, "tests", "fixtures", "vault-schema3")
FIXTURE_PIN = "fixture-Pin-3a7c52e1"  # tests/fixtures/vault-schema3/README.md
SCHEMA_VERSION = 9  # the schema this kmsctl writes (kSchemaVersion, src/store/store.hpp)

# Test values, distinctive so that a search of output cannot match by accident.
VALUE_OLD = "row-auth-value-old-7f3a91"
VALUE_NEW = "row-auth-value-new-2c8e54"
VALUE_OTHER = "row-auth-value-other-d41b07"
PLAINTEXT = b"row-auth plaintext 5e90c3\n"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class RowAttackCase(KmsTestCase):
    """A fresh vault per test, plus the attacker's view of its rows and the checks every attack
    makes."""

    def setUp(self):
        super().setUp()
        self.kms.init("--so-pin-file", self.kms.path("so-pin"))

    # ---- files ----
    def write(self, name, data):
        path = self.kms.path(name)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        return path

    # ---- the attacker's side: rows as sqlite3 sees them ----
    @contextlib.contextmanager
    def attacker(self):
        """One write transaction on the vault file, without kmsctl. Like any program that does
        not ask for it, this connection does not enforce foreign keys: deleting a key's or a
        secret's row leaves the rows that refer to it."""
        if self.kms.db:
            # PostgreSQL: its administrator's statements, each committed as it runs.
            yield self.kms.db
            return
        con = sqlite3.connect(self.kms.vault, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        finally:
            con.close()

    def rows(self, table, where="1 = 1", params=()):
        """Whole rows (every column, the MAC too) as dicts, in primary key order."""
        if self.kms.db:
            return self.kms.db.sql_dicts(f"SELECT * FROM {table} WHERE {where} "
                                         f"ORDER BY {', '.join(KEY_COLUMNS[table])}", params)
        con = sqlite3.connect(self.kms.vault, isolation_level=None)
        try:
            cur = con.execute(f"SELECT * FROM {table} WHERE {where} "
                              f"ORDER BY {', '.join(KEY_COLUMNS[table])}", params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            con.close()

    def row(self, table, **key):
        where = " AND ".join(f"{k} = ?" for k in key)
        found = self.rows(table, where, tuple(key.values()))
        self.assertEqual(len(found), 1, f"{table} {key}: {found}")
        return found[0]

    def edit(self, table, key, **changes):
        """UPDATE one row (its MAC left as it was); returns the row as it was before."""
        before = self.row(table, **key)
        sets = ", ".join(f"{c} = ?" for c in changes)
        where = " AND ".join(f"{k} = ?" for k in key)
        with self.attacker() as con:
            n = con.execute(f"UPDATE {table} SET {sets} WHERE {where}",
                            (*changes.values(), *key.values())).rowcount
        self.assertEqual(n, 1)
        return before

    def put_back(self, table, saved, where=None, params=()):
        """Replaces rows with saved copies (all columns, MAC included), in one transaction: the
        rows matching `where` (default: those with the saved rows' primary keys) are deleted,
        then the saved ones inserted."""
        saved = [saved] if isinstance(saved, dict) else list(saved)
        keys = KEY_COLUMNS[table]
        if self.kms.db:
            self.put_back_in_database(table, saved, where, params)
            return
        with self.attacker() as con:
            if where is not None:
                con.execute(f"DELETE FROM {table} WHERE {where}", params)
            else:
                for r in saved:
                    con.execute(f"DELETE FROM {table} WHERE " +
                                " AND ".join(f"{k} = ?" for k in keys), [r[k] for k in keys])
            for r in saved:
                cols = list(r)
                con.execute(f"INSERT INTO {table} ({', '.join(cols)}) "
                            f"VALUES ({', '.join('?' * len(cols))})", [r[c] for c in cols])

    def put_back_in_database(self, table, saved, where, params):
        """put_back() on PostgreSQL, in one transaction. PostgreSQL enforces foreign keys in every
        session, so deleting a key's or a secret's row there would delete the rows that refer to
        it (ON DELETE CASCADE); the attacker, the database's superuser, turns them off for the
        transaction (session_replication_role), as they are off in the sqlite3 connection. That
        also stops the triggers that count keys and secrets, which rows replaced one for one do
        not need."""
        keys = KEY_COLUMNS[table]
        statements = []
        if where is not None:
            statements.append((f"DELETE FROM {table} WHERE {where}", params))
        else:
            for r in saved:
                statements.append((f"DELETE FROM {table} WHERE " +
                                   " AND ".join(f"{k} = ?" for k in keys), [r[k] for k in keys]))
        for r in saved:
            cols = list(r)
            statements.append((f"INSERT INTO {table} ({', '.join(cols)}) "
                               f"VALUES ({', '.join('?' * len(cols))})", [r[c] for c in cols]))
        self.kms.db.transaction(statements, setup=("SET LOCAL session_replication_role = replica",))

    def insert(self, table, **values):
        with self.attacker() as con:
            con.execute(f"INSERT INTO {table} ({', '.join(values)}) "
                        f"VALUES ({', '.join('?' * len(values))})", tuple(values.values()))

    def delete(self, table, **key):
        with self.attacker() as con:
            n = con.execute(f"DELETE FROM {table} WHERE " +
                            " AND ".join(f"{k} = ?" for k in key), tuple(key.values())).rowcount
        self.assertEqual(n, 1)

    # ---- the audit log ----
    def head(self):
        return self.kms.sql("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0]

    def state_seq(self):
        """The record whose state the next command compares the rows with: every record holds
        the state after it, so the newest."""
        return self.head()

    # ---- checks ----
    def rows_now(self):
        """Every authenticated row, as the file holds it."""
        return {t: sorted(self.kms.sql(f"SELECT * FROM {t}"), key=repr) for t in ROW_TABLES}

    def refused(self, args, label, action, **kw):
        """`kmsctl ARGS` exits 5 naming the row `label` as altered, prints nothing on stdout,
        changes no row and writes exactly one audit record: `action`, outcome error, error_code
        integrity."""
        before, rows = self.head(), self.rows_now()
        r = self.kms.run(*args, **kw)
        self.assertError(r, INTEGRITY, label, ALTERED)
        self.assertRefusalRecorded(before, action)
        self.assertEqual(self.rows_now(), rows, "a refusal changes no row")
        return r

    def assertRefusalRecorded(self, before, action):
        new = [rec for rec in self.kms.records() if rec["seq"] > before]
        self.assertEqual(len(new), 1, f"expected one record of the refusal: {new}")
        self.assertEqual(new[0]["action"], action, new[0])
        self.assertEqual(new[0]["outcome"], "error", new[0])
        self.assertEqual(new[0]["error_code"], "integrity", new[0])
        return new[0]

    def assertRowRefusedByVerify(self, label):
        """`audit verify`: the chain is whole (no bad record), the rows are not."""
        head = self.head()
        r = self.kms.run("audit", "verify", "--json")
        self.assertError(r, INTEGRITY, "vault verification failed: " + label, ALTERED,
                         stdout_empty=False)
        rep = json.loads(r.out)
        self.assertIs(rep["ok"], False)
        self.assertIsNone(rep["first_bad_seq"], "no audit record is at fault")
        self.assertEqual(rep["records"], head, "every record up to the head was verified")
        self.assertIn(label, rep["problem"])

    def assertReplayFound(self):
        """`audit verify`: the chain is whole, but the rows are not the recorded state."""
        for args in (("audit", "verify", "--json"), ("audit", "verify")):
            seq = head = self.state_seq()
            r = self.kms.run(*args)
            self.assertError(
                r, INTEGRITY,
                f"vault verification failed: {NOT_RECORDED_STATE} {seq} recorded",
                stdout_empty="--json" not in args)
            if "--json" in args:
                rep = json.loads(r.out)
                self.assertIs(rep["ok"], False)
                self.assertIsNone(rep["first_bad_seq"], "no audit record is at fault")
                self.assertEqual(rep["records"], head)

    def assertVerifies(self):
        seq = self.state_seq()
        r = self.kms.run("audit", "verify", "--json")
        self.assertEqual(r.rc, 0, r.show())
        rep = json.loads(r.out)
        self.assertIs(rep["ok"], True)
        self.assertEqual(rep["state_recorded_at"], seq)
        return rep

    def assertNoValue(self, r, *values):
        for v in values:
            self.assertNotIn(v, r.out, f"a secret value was printed:\n{r.show()}")
            self.assertNotIn(v, r.err, f"a secret value was printed:\n{r.show()}")

    # ---- kmsctl, as its user ----
    def create_key(self, *args):
        return self.kms.ok("key", "create", *args).out.strip()

    def encrypt(self, key, name):
        """A blob of PLAINTEXT under `key`, in the file `name`."""
        out = self.kms.path(name)
        self.kms.ok("encrypt", "--key", key, "--in", self.write("plaintext", PLAINTEXT),
                    "--out", out)
        return out

    def decrypts(self, blob):
        r = self.kms.ok("decrypt", "--in", blob)
        self.assertEqual(r.out.encode(), PLAINTEXT)

    def key_id_of_blob(self, path):
        """(key id, key version) from a blob's header (FORMAT.md §12)."""
        with open(path, "rb") as f:
            raw = base64.b64decode(f.read().strip())
        return str(uuid.UUID(bytes=raw[5:21])), int.from_bytes(raw[21:25], "big")

    def secret_id(self, name):
        return self.kms.json("secret", "describe", name, "--json")["secret_id"]

    def faketime_run(self, *args, offset):
        """`kmsctl ARGS` with its clock moved by `offset` (libfaketime); skips the test when
        libfaketime cannot be preloaded into this build of kmsctl."""
        r = self.kms.run(*args, faketime=offset)
        if r.rc != 0 and not r.err.startswith("kmsctl: "):
            self.skipTest("libfaketime cannot be preloaded into this kmsctl build: "
                          + (r.err.strip().splitlines() or ["(no message)"])[0])
        return r


class SecretRows(RowAttackCase):
    """Secrets: names, stages, generator settings, tags."""

    def setUp(self):
        super().setUp()
        self.kms.ok("secret", "create", "app/db-password", "--value-file",
                    self.write("old", VALUE_OLD), "--tag", "team=ops")
        self.kms.ok("secret", "put", "app/db-password", "--value-file", self.write("new", VALUE_NEW))
        self.kms.ok("secret", "create", "app/api-token", "--value-file",
                    self.write("other", VALUE_OTHER))
        self.sid = self.secret_id("app/db-password")
        self.values = (VALUE_OLD, VALUE_NEW, VALUE_OTHER)

    def get(self, name, *args):
        return self.kms.ok("secret", "get", name, *args).out

    def exec_args(self, name, marker):
        """`kmsctl exec` of a shell that writes the secret's value into the file `marker`."""
        return ("exec", "--secret", f"{name}=ROW_AUTH_VALUE", "--", "/bin/sh", "-c",
                'printf %s "$ROW_AUTH_VALUE" > "$0"', marker)

    def test_current_stage_pointed_back_at_an_old_version_is_refused_by_get_and_exec(self):
        # After a second `secret put` and after a rotation: the old version's row is edited to be
        # current again, the new one's to be previous.
        self.kms.ok("secret", "create", "app/rotated", "--value-file", self.write("r", VALUE_OLD))
        self.kms.ok("secret", "rotate", "app/rotated")
        marker = self.kms.path("marker")
        for name, after in (("app/db-password", "put"), ("app/rotated", "rotate")):
            with self.subTest(after=after):
                sid = self.secret_id(name)
                current = self.get(name)
                self.assertEqual(self.get(name, "--version-id", "2"), current)
                self.kms.ok(*self.exec_args(name, marker))  # what the attack aims at works first
                with open(marker) as f:
                    self.assertEqual(f.read(), current)
                os.remove(marker)
                saved = self.rows("secret_versions", "secret_id = ?", (sid,))
                with self.attacker() as con:  # one current per secret (a UNIQUE index): park v2
                    for version, stage in ((2, None), (1, "current"), (2, "previous")):
                        con.execute("UPDATE secret_versions SET stage = ? "
                                    "WHERE secret_id = ? AND version = ?", (stage, sid, version))
                label = f"secret version (secret_id {sid}, version 1)"
                for args in (("secret", "get", name), ("secret", "get", name, "--json"),
                             self.exec_args(name, marker)):
                    r = self.refused(args, label, "secret.get")
                    self.assertNoValue(r, *self.values, current)
                self.assertFalse(os.path.exists(marker), "the command ran")
                self.assertRowRefusedByVerify(label)
                self.put_back("secret_versions", saved, "secret_id = ?", (sid,))
                self.assertVerifies()
                self.assertEqual(self.get(name), current)

    def test_the_older_rows_of_a_secret_replayed_are_found_by_verify(self):
        # Copies of the secret's rows while version 1 was current, taken before `secret put`.
        # (A second current row beside the new one is not possible: a UNIQUE index allows one
        # version per stage, so the newer version's row goes.)
        self.kms.ok("secret", "create", "app/replayed", "--value-file", self.write("r1", VALUE_OLD))
        sid = self.secret_id("app/replayed")
        secret_then = self.rows("secrets", "id = ?", (sid,))
        versions_then = self.rows("secret_versions", "secret_id = ?", (sid,))
        self.kms.ok("secret", "put", "app/replayed", "--value-file", self.write("r2", VALUE_NEW))
        secret_now = self.rows("secrets", "id = ?", (sid,))
        versions_now = self.rows("secret_versions", "secret_id = ?", (sid,))
        self.assertEqual(len(versions_now), 2)
        with self.subTest(replay="the version rows as they were"):
            self.put_back("secret_versions", versions_then, "secret_id = ?", (sid,))
            self.assertReplayFound()
            self.put_back("secret_versions", versions_now, "secret_id = ?", (sid,))
            self.assertVerifies()
        with self.subTest(replay="the secret's row and its version rows as they were"):
            self.put_back("secrets", secret_then)
            self.put_back("secret_versions", versions_then, "secret_id = ?", (sid,))
            self.assertReplayFound()
            self.put_back("secrets", secret_now)
            self.put_back("secret_versions", versions_now, "secret_id = ?", (sid,))
            self.assertVerifies()
        self.assertEqual(self.kms.ok("secret", "get", "app/replayed").out, VALUE_NEW)

    def test_two_secrets_names_swapped_are_refused_and_neither_value_is_printed(self):
        a = self.row("secrets", id=self.sid)
        b = self.row("secrets", name="app/api-token")
        with self.attacker() as con:  # names are UNIQUE: park one on a placeholder first
            con.execute("UPDATE secrets SET name = 'x-swap' WHERE id = ?", (a["id"],))
            con.execute("UPDATE secrets SET name = ? WHERE id = ?", (a["name"], b["id"]))
            con.execute("UPDATE secrets SET name = ? WHERE id = ?", (b["name"], a["id"]))
        marker = self.kms.path("marker")
        for name, holder in (("app/db-password", b), ("app/api-token", a)):
            with self.subTest(name=name):
                label = f"secret (id {holder['id']}, name {name})"
                r = self.refused(("secret", "get", name), label, "secret.get")
                self.assertNoValue(r, *self.values)
                r = self.refused(("secret", "get", name, "--json"), label, "secret.get")
                self.assertNoValue(r, *self.values)
                r = self.refused(self.exec_args(name, marker), label, "secret.get")
                self.assertNoValue(r, *self.values)
                self.assertFalse(os.path.exists(marker), "the command ran")
        self.assertRowRefusedByVerify("secret (id ")
        self.put_back("secrets", [a, b], "id IN (?, ?)", (a["id"], b["id"]))
        self.assertVerifies()
        self.assertEqual(self.get("app/db-password"), VALUE_NEW)
        self.assertEqual(self.get("app/api-token"), VALUE_OTHER)

    def test_a_weakened_generator_is_refused_by_rotate_and_no_version_is_made(self):
        self.kms.ok("secret", "create", "app/generated", "--generate", "--length", "64",
                    "--charset", "alnum-symbols")
        sid = self.secret_id("app/generated")
        versions = self.rows("secret_versions", "secret_id = ?", (sid,))
        saved = self.edit("secrets", {"id": sid}, gen_length=4, gen_charset="hex")
        self.refused(("secret", "rotate", "app/generated"),
                     f"secret (id {sid}, name app/generated)", "secret.rotate")
        self.assertEqual(self.rows("secret_versions", "secret_id = ?", (sid,)), versions,
                         "a version was made with the forged generator")
        self.assertEqual(self.row("secrets", id=sid)["next_version"], saved["next_version"])
        self.assertRowRefusedByVerify(f"secret (id {sid}, name app/generated)")
        self.put_back("secrets", saved)
        self.assertVerifies()
        self.kms.ok("secret", "rotate", "app/generated")
        self.assertEqual(len(self.get("app/generated")), 64)

    def test_a_rotation_command_written_into_the_row_never_runs(self):
        # A hook runs as the user with the secret's values on its descriptors: the row that
        # names it is refused before anything is started, by `secret rotate` and by a
        # `maintain` that finds the secret due.
        marker = self.kms.path("hook-ran")
        saved = self.edit("secrets", {"id": self.sid}, rotation_command=f"touch {marker}",
                          rotation_period_days=1, last_rotated="2001-01-01T00:00:00.000Z")
        label = f"secret (id {self.sid}, name app/db-password)"
        self.refused(("secret", "rotate", "app/db-password"), label, "secret.rotate")
        self.refused(("maintain",), label, "vault.maintain")
        self.assertFalse(os.path.exists(marker), "the forged rotation command ran")
        self.assertRowRefusedByVerify(label)
        self.put_back("secrets", saved)
        self.assertVerifies()
        self.assertEqual(self.get("app/db-password"), VALUE_NEW)

    def test_a_secret_forged_as_due_for_deletion_is_not_purged_by_maintain(self):
        saved = self.edit("secrets", {"id": self.sid}, deletion_date="2001-01-01T00:00:00.000Z")
        versions = self.rows("secret_versions", "secret_id = ?", (self.sid,))
        label = f"secret (id {self.sid}, name app/db-password)"
        self.refused(("maintain",), label, "vault.maintain")
        self.assertEqual(len(self.rows("secrets", "id = ?", (self.sid,))), 1, "it was purged")
        self.assertEqual(self.rows("secret_versions", "secret_id = ?", (self.sid,)), versions)
        self.assertRowRefusedByVerify(label)
        self.put_back("secrets", saved)
        self.assertVerifies()
        self.assertEqual(self.get("app/db-password"), VALUE_NEW)

    def test_a_replayed_deletion_schedule_of_a_secret_is_not_carried_out_by_maintain(self):
        # Deleted 40 days ago with 7 days to recover it, then restored: the attacker puts back
        # the row of the deletion, whose date has passed.
        r = self.faketime_run("secret", "delete", "app/db-password", "--recovery-days", "7",
                              offset="-40d")
        self.assertOk(r)
        scheduled = self.row("secrets", id=self.sid)
        if scheduled["deletion_date"] >= now_rfc3339():
            self.skipTest("libfaketime did not move this kmsctl build's clock")
        self.kms.ok("secret", "restore", "app/db-password")
        restored = self.row("secrets", id=self.sid)
        versions = self.rows("secret_versions", "secret_id = ?", (self.sid,))
        self.put_back("secrets", scheduled)
        before = self.head()
        r = self.kms.run("maintain")
        self.assertError(r, INTEGRITY, "refusing to delete keys or secrets that are due",
                         f"{NOT_RECORDED_STATE} {before} recorded")
        self.assertRefusalRecorded(before, "vault.maintain")
        self.assertEqual(self.row("secrets", id=self.sid), scheduled, "the secret was purged")
        self.assertEqual(self.rows("secret_versions", "secret_id = ?", (self.sid,)), versions)
        self.assertReplayFound()
        self.put_back("secrets", restored)
        self.assertVerifies()
        self.assertEqual(self.get("app/db-password"), VALUE_NEW)

    def test_an_edited_secret_tag_is_refused_by_describe(self):
        saved = self.edit("secret_tags", {"secret_id": self.sid, "name": "team"}, value="attacker")
        label = f"secret tag (secret_id {self.sid}, name team)"
        self.refused(("secret", "describe", "app/db-password"), label, "secret.describe")
        self.assertRowRefusedByVerify(label)
        self.put_back("secret_tags", saved)
        self.assertVerifies()
        self.assertEqual(self.kms.json("secret", "describe", "app/db-password", "--json")["tags"],
                         {"team": "ops"})

    def test_a_deleted_secret_tag_is_found_by_verify(self):
        saved = self.row("secret_tags", secret_id=self.sid, name="team")
        self.delete("secret_tags", secret_id=self.sid, name="team")
        self.assertReplayFound()
        self.put_back("secret_tags", saved)
        self.assertVerifies()

    def test_a_forged_secret_tag_row_is_refused_by_describe(self):
        self.insert("secret_tags", secret_id=self.sid, name="owner", value="attacker",
                    mac=os.urandom(32))
        label = f"secret tag (secret_id {self.sid}, name owner)"
        self.refused(("secret", "describe", "app/db-password"), label, "secret.describe")
        self.assertRowRefusedByVerify(label)
        self.delete("secret_tags", secret_id=self.sid, name="owner")
        self.assertVerifies()

    def test_a_secret_version_without_its_mac_is_refused(self):
        saved = self.edit("secret_versions", {"secret_id": self.sid, "version": 2}, mac=None)
        label = f"secret version (secret_id {self.sid}, version 2)"
        r = self.refused(("secret", "get", "app/db-password"), label, "secret.get")
        self.assertNoValue(r, *self.values)
        self.put_back("secret_versions", saved)
        self.assertVerifies()


class KeyRows(RowAttackCase):
    """Keys: states, deletion schedules, primary versions, aliases, versions' material, tags."""

    def setUp(self):
        super().setUp()
        self.kid = self.create_key("--alias", "alias/app", "--tag", "env=prod")
        self.blob = self.encrypt(self.kid, "blob-v1")

    def key_label(self, kid=None):
        return f"key (id {kid or self.kid})"

    def test_a_disabled_key_forged_to_enabled_is_refused_by_encrypt_and_decrypt(self):
        self.kms.ok("key", "disable", self.kid)
        saved = self.edit("keys", {"id": self.kid}, state="Enabled")
        self.refused(("encrypt", "--key", self.kid, "--in", self.write("p", PLAINTEXT)),
                     self.key_label(), "key.encrypt")
        self.refused(("encrypt", "--key", "alias/app", "--in", self.kms.path("p")),
                     self.key_label(), "key.encrypt")
        self.refused(("decrypt", "--in", self.blob), self.key_label(), "key.decrypt")
        self.assertRowRefusedByVerify(self.key_label())
        self.put_back("keys", saved)
        self.assertVerifies()
        self.assertError(self.kms.run("decrypt", "--in", self.blob), REFUSED, "disabled")

    def test_the_enabled_row_of_a_disabled_key_replayed_is_found_by_verify(self):
        enabled = self.row("keys", id=self.kid)
        self.kms.ok("key", "disable", self.kid)
        disabled = self.row("keys", id=self.kid)
        self.put_back("keys", enabled)
        self.assertReplayFound()
        self.put_back("keys", disabled)
        self.assertVerifies()

    def test_a_scheduled_deletion_cancelled_in_the_row_is_refused(self):
        self.kms.ok("key", "schedule-deletion", self.kid, "--pending-days", "7")
        saved = self.edit("keys", {"id": self.kid}, state="Enabled", deletion_date=None)
        for args, action in ((("key", "describe", self.kid), "key.describe"),
                             (("encrypt", "--key", "alias/app", "--in",
                               self.write("p", PLAINTEXT)), "key.encrypt"),
                             (("decrypt", "--in", self.blob), "key.decrypt"),
                             (("key", "list"), "key.list")):
            with self.subTest(args=args):
                self.refused(args, self.key_label(), action)
        self.assertRowRefusedByVerify(self.key_label())
        self.put_back("keys", saved)
        self.assertVerifies()
        self.assertEqual(self.kms.json("key", "describe", self.kid, "--json")["state"],
                         "PendingDeletion")

    def test_a_key_forged_as_due_for_deletion_is_not_deleted_by_maintain(self):
        saved = self.edit("keys", {"id": self.kid}, state="PendingDeletion",
                          deletion_date="2001-01-01T00:00:00.000Z")
        versions = self.rows("key_versions", "key_id = ?", (self.kid,))
        self.refused(("maintain",), self.key_label(), "vault.maintain")
        self.assertEqual(len(self.rows("keys", "id = ?", (self.kid,))), 1, "the key was deleted")
        self.assertEqual(self.rows("key_versions", "key_id = ?", (self.kid,)), versions)
        self.assertRowRefusedByVerify(self.key_label())
        self.put_back("keys", saved)
        self.assertVerifies()
        self.decrypts(self.blob)

    def test_a_replayed_deletion_schedule_is_not_carried_out_by_maintain(self):
        # Scheduled 40 days ago for 7 days, then cancelled: the attacker puts back the row of the
        # schedule, whose date has passed, and waits for the next `kmsctl maintain`.
        r = self.faketime_run("key", "schedule-deletion", self.kid, "--pending-days", "7",
                              offset="-40d")
        self.assertOk(r)
        scheduled = self.row("keys", id=self.kid)
        if scheduled["deletion_date"] >= now_rfc3339():
            self.skipTest("libfaketime did not move this kmsctl build's clock")
        self.kms.ok("key", "cancel-deletion", self.kid)
        cancelled = self.row("keys", id=self.kid)
        versions = self.rows("key_versions", "key_id = ?", (self.kid,))
        self.put_back("keys", scheduled)
        before = self.head()
        r = self.kms.run("maintain")
        self.assertError(r, INTEGRITY, "refusing to delete keys or secrets that are due",
                         f"{NOT_RECORDED_STATE} {before} recorded")
        self.assertRefusalRecorded(before, "vault.maintain")
        self.assertEqual(self.row("keys", id=self.kid), scheduled, "the key was deleted")
        self.assertEqual(self.rows("key_versions", "key_id = ?", (self.kid,)), versions)
        self.assertReplayFound()
        self.put_back("keys", cancelled)
        self.assertVerifies()
        self.kms.ok("key", "enable", self.kid)
        self.decrypts(self.blob)

    def test_the_primary_version_set_back_is_refused_by_encrypt(self):
        self.kms.ok("key", "rotate", self.kid)
        saved = self.edit("keys", {"id": self.kid}, primary_version=1)
        self.refused(("encrypt", "--key", "alias/app", "--in", self.write("p", PLAINTEXT)),
                     self.key_label(), "key.encrypt")
        self.assertRowRefusedByVerify(self.key_label())
        self.put_back("keys", saved)
        self.assertVerifies()
        self.assertEqual(self.key_id_of_blob(self.encrypt("alias/app", "blob-v2")), (self.kid, 2))

    def test_the_key_row_from_before_a_rotation_replayed_is_found_by_verify(self):
        before_rotation = self.row("keys", id=self.kid)
        self.kms.ok("key", "rotate", self.kid)
        rotated = self.row("keys", id=self.kid)
        self.put_back("keys", before_rotation)
        self.assertReplayFound()
        self.put_back("keys", rotated)
        self.assertVerifies()

    def test_an_alias_pointed_at_another_key_is_refused(self):
        other = self.create_key()
        saved = self.edit("key_aliases", {"alias": "alias/app"}, key_id=other)
        label = "alias (alias alias/app)"
        self.refused(("encrypt", "--key", "alias/app", "--in", self.write("p", PLAINTEXT)),
                     label, "key.encrypt")
        self.refused(("key", "describe", other), label, "key.describe")
        self.refused(("key", "alias", "list"), label, "key.alias_list")
        self.assertRowRefusedByVerify(label)
        self.put_back("key_aliases", saved)
        self.assertVerifies()
        self.assertEqual(self.key_id_of_blob(self.encrypt("alias/app", "blob-again")),
                         (self.kid, 1))

    def test_key_material_moved_or_copied_to_another_key_or_version_is_refused(self):
        self.kms.ok("key", "rotate", self.kid)
        other = self.create_key()
        other_blob = self.encrypt(other, "other-blob")
        v1 = self.row("key_versions", key_id=self.kid, version=1)
        v2 = self.row("key_versions", key_id=self.kid, version=2)
        other_v1 = self.row("key_versions", key_id=other, version=1)
        p = self.write("p", PLAINTEXT)
        with self.subTest(attack="moved to another key's version 1"):
            self.put_back("key_versions", dict(v1, key_id=other), "key_id = ?", (other,))
            label = f"key version (key_id {other}, version 1)"
            self.refused(("encrypt", "--key", other, "--in", p), label, "key.encrypt")
            self.refused(("decrypt", "--in", other_blob), label, "key.decrypt")
            self.assertRowRefusedByVerify(label)
            self.put_back("key_versions", other_v1, "key_id = ?", (other,))
            self.assertVerifies()
        with self.subTest(attack="copied over the same key's version 2"):
            self.put_back("key_versions", dict(v1, version=2))
            label = f"key version (key_id {self.kid}, version 2)"
            self.refused(("encrypt", "--key", self.kid, "--in", p), label, "key.encrypt")
            self.assertRowRefusedByVerify(label)
            self.put_back("key_versions", v2)
            self.assertVerifies()
        with self.subTest(attack="copied as a new version 3"):
            self.insert("key_versions", **dict(v1, version=3))
            label = f"key version (key_id {self.kid}, version 3)"
            self.refused(("key", "versions", self.kid), label, "key.describe")
            self.refused(("key", "rotate", self.kid), label, "key.rotate")
            self.assertRowRefusedByVerify(label)
            self.delete("key_versions", key_id=self.kid, version=3)
            self.assertVerifies()
        self.decrypts(self.blob)
        self.decrypts(other_blob)

    def test_an_edited_key_tag_is_refused_by_describe(self):
        saved = self.edit("key_tags", {"key_id": self.kid, "name": "env"}, value="dev")
        label = f"key tag (key_id {self.kid}, name env)"
        self.refused(("key", "describe", "alias/app"), label, "key.describe")
        self.assertRowRefusedByVerify(label)
        self.put_back("key_tags", saved)
        self.assertVerifies()
        self.assertEqual(self.kms.json("key", "describe", self.kid, "--json")["tags"],
                         {"env": "prod"})

    def test_a_deleted_key_tag_is_found_by_verify(self):
        saved = self.row("key_tags", key_id=self.kid, name="env")
        self.delete("key_tags", key_id=self.kid, name="env")
        self.assertReplayFound()
        self.put_back("key_tags", saved)
        self.assertVerifies()

    def test_a_forged_alias_row_is_refused_wherever_it_is_read(self):
        self.insert("key_aliases", alias="alias/forged", key_id=self.kid, created=now_rfc3339(),
                    mac=os.urandom(32))
        label = "alias (alias alias/forged)"
        for args, action in ((("encrypt", "--key", "alias/forged", "--in",
                               self.write("p", PLAINTEXT)), "key.encrypt"),
                             (("key", "describe", self.kid), "key.describe"),
                             (("key", "alias", "list"), "key.alias_list")):
            with self.subTest(args=args):
                self.refused(args, label, action)
        self.assertRowRefusedByVerify(label)
        self.delete("key_aliases", alias="alias/forged")
        self.assertVerifies()

    def test_a_key_row_without_its_mac_is_refused(self):
        saved = self.edit("keys", {"id": self.kid}, mac=None)
        self.refused(("encrypt", "--key", "alias/app", "--in", self.write("p", PLAINTEXT)),
                     self.key_label(), "key.encrypt")
        self.assertRowRefusedByVerify(self.key_label())
        self.put_back("keys", saved)
        self.assertVerifies()


class RecordedState(RowAttackCase):
    """The state digest and the rows' MACs are judged by what the audit log says; the `state`
    field of a record is part of what its hash covers, so a file attacker who edits it breaks
    the chain and must gain nothing before `audit verify` runs."""

    def setUp(self):
        super().setUp()
        self.kid = self.create_key()
        self.blob = self.encrypt(self.kid, "blob")

    def assertNotUpgraded(self, before):
        upgrades = self.kms.sql("SELECT seq FROM audit_log WHERE seq > ? AND "
                                "action = 'vault.upgrade' AND outcome = 'ok'", (before,))
        self.assertEqual(upgrades, [], "the forged rows were authenticated as an upgrade")

    def test_the_counts_status_shows_edited_with_sqlite3_are_found_by_verify(self):
        # `status` reads the numbers of keys and secrets from row_counts, which triggers keep,
        # instead of counting every row; `audit verify` counts the rows and compares.
        counts = self.kms.json("status", "--json")["counts"]
        for table in ("keys", "secrets"):
            with self.attacker() as con:
                con.execute("UPDATE row_counts SET n = n + 7 WHERE name = ?", (table,))
            self.assertEqual(self.kms.json("status", "--json")["counts"][table],
                             counts[table] + 7)
            r = self.kms.run("audit", "verify", "--json")
            self.assertError(r, INTEGRITY, f"the vault holds {counts[table]} {table} but its "
                             f"row_counts table says {counts[table] + 7}", stdout_empty=False)
            self.assertIsNone(json.loads(r.out)["first_bad_seq"], "no audit record is at fault")
            with self.attacker() as con:
                con.execute("UPDATE row_counts SET n = n - 7 WHERE name = ?", (table,))
            self.assertVerifies()

    def test_removing_the_recorded_states_does_not_make_forged_rows_authentic(self):
        # Without a recorded state, a vault looks like one of an older kmsctl whose rows have no
        # MAC yet. The attacker makes it look so, then forges a row without a MAC.
        self.kms.ok("key", "disable", self.kid)
        with self.attacker() as con:
            con.execute("UPDATE audit_log SET state = NULL")
            con.execute("UPDATE keys SET state = 'Enabled', mac = NULL WHERE id = ?", (self.kid,))
        before = self.head()
        r = self.kms.run("encrypt", "--key", self.kid, "--in", self.write("p", PLAINTEXT))
        self.assertError(r, INTEGRITY)
        self.assertIsNone(self.row("keys", id=self.kid)["mac"],
                          "kmsctl gave the forged row a MAC of its own")
        self.assertNotUpgraded(before)

    def test_a_vault_made_to_look_like_schema_3_does_not_get_forged_rows_authenticated(self):
        # The same, with every trace of authenticated rows removed from the file: the MAC and
        # state columns dropped and PRAGMA user_version (unauthenticated) set back to 3, as a
        # vault of the older kmsctl has them. Only the audit records' hashes, which covered the
        # state, still tell.
        # In PostgreSQL, the version is the one in the kmsctl_schema table (unauthenticated too).
        self.kms.ok("key", "disable", self.kid)
        statements = [f"UPDATE keys SET state = 'Enabled' WHERE id = '{self.kid}'"]
        statements += [f"ALTER TABLE {table} DROP COLUMN mac" for table in KEY_COLUMNS]
        statements += ["ALTER TABLE keys DROP COLUMN highest_lost_version",
                       "ALTER TABLE audit_log DROP COLUMN state",
                       "DROP TABLE grants",  # schema 5
                       "DROP TABLE key_policies",  # schema 6
                       "DROP TABLE secret_policies",  # schema 7
                       "DROP TABLE key_import_params"]  # schema 8
        if self.kms.db:
            statements.append("UPDATE kmsctl_schema SET version = 3")
            self.kms.db.script("BEGIN;\n" + "".join(q + ";\n" for q in statements) + "COMMIT;\n")
        else:
            with self.attacker() as con:
                for q in statements:
                    con.execute(q)
            self.kms.sql("PRAGMA user_version = 3")
        before = self.head()
        r = self.kms.run("encrypt", "--key", self.kid, "--in", self.write("p", PLAINTEXT))
        self.assertError(r, INTEGRITY)
        self.assertNotUpgraded(before)

    def test_hiding_the_newer_recorded_states_does_not_let_maintain_delete_a_replayed_key(self):
        # A replayed deletion schedule (see KeyRows), plus the `state` fields of every record
        # since the schedule set to NULL, so that the rows match the newest state left.
        r = self.faketime_run("key", "schedule-deletion", self.kid, "--pending-days", "7",
                              offset="-40d")
        self.assertOk(r)
        scheduled = self.row("keys", id=self.kid)
        if scheduled["deletion_date"] >= now_rfc3339():
            self.skipTest("libfaketime did not move this kmsctl build's clock")
        schedule_seq = self.state_seq()
        self.kms.ok("key", "cancel-deletion", self.kid)
        cancelled = self.row("keys", id=self.kid)
        states = self.kms.sql("SELECT seq, state FROM audit_log WHERE seq > ?", (schedule_seq,))
        self.put_back("keys", scheduled)
        with self.attacker() as con:
            con.execute("UPDATE audit_log SET state = NULL WHERE seq > ?", (schedule_seq,))
        r = self.kms.run("maintain")
        self.assertError(r, INTEGRITY)
        self.assertEqual(len(self.rows("keys", "id = ?", (self.kid,))), 1, "the key was deleted")
        self.assertEqual(len(self.rows("key_versions", "key_id = ?", (self.kid,))), 1)
        # Everything put back: nothing was lost.
        self.put_back("keys", cancelled)
        with self.attacker() as con:
            for seq, state in states:
                con.execute("UPDATE audit_log SET state = ? WHERE seq = ?", (state, seq))
        self.assertVerifies()
        self.kms.ok("key", "enable", self.kid)
        self.decrypts(self.blob)


class Header(RowAttackCase):
    """The header's token_label, token_serial and pkcs11_module. A label or serial that names no
    token stops every command as unavailable (exit 6); to reach the MAC, the attacker points the
    header at a clone of the vault's own token (same PIN and root key, other serial or label),
    which anyone who can write the token directory can make: SoftHSM2 keeps a token's label and
    serial in plaintext in its token.object."""

    def setUp(self):
        super().setUp()
        self.kid = self.create_key()
        self.kms.ok("secret", "create", "app/s", "--value-file", self.write("v", VALUE_OLD))
        self.meta = self.row("vault_meta", singleton=1)
        (self.token,) = os.listdir(os.path.join(self.kms.token_dir, "tokens"))

    def patch_token_object(self, token_dir, old, new):
        path = os.path.join(token_dir, "token.object")
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(len(old), len(new))
        self.assertEqual(data.count(old), 1, "the field is not where SoftHSM2 keeps it")
        with open(path, "wb") as f:
            f.write(data.replace(old, new))

    def clone_token(self, serial):
        """A copy of the vault's token beside it with another serial number (SoftHSM2 refuses two
        tokens with one serial); removed by the caller or when the test ends."""
        tokens = os.path.join(self.kms.token_dir, "tokens")
        dst = os.path.join(tokens, str(uuid.uuid4()))
        shutil.copytree(os.path.join(tokens, self.token), dst)
        self.addCleanup(shutil.rmtree, dst, ignore_errors=True)
        self.patch_token_object(dst, self.meta["token_serial"].encode(), serial.encode())
        return dst

    def relabel_token(self, old, new):
        """The vault's own token given another label (blank-padded to 32 bytes, as in
        CK_TOKEN_INFO)."""
        self.patch_token_object(os.path.join(self.kms.token_dir, "tokens", self.token),
                                old.encode().ljust(32, b" "), new.encode().ljust(32, b" "))
        if self.kms.db and self.kms.db.hsm.server:
            # `p11-kit server` exports the token by its label, as SoftHSM2 read it when the
            # server started: the HSM host is restarted to serve it as its files now have it.
            hsm = self.kms.db.hsm
            hsm.stop()
            hsm.label = new
            hsm.start()

    def assertEveryCommandRefused(self, needle, code=INTEGRITY, commands=None):
        """Every command exits `code` at open, and nothing is written to the vault."""
        contents = self.vault_contents()
        head = self.head()
        for args in commands or (
                ("status",), ("audit", "list"), ("audit", "verify"), ("key", "list"),
                ("encrypt", "--key", self.kid, "--in", self.write("p", PLAINTEXT)),
                ("secret", "get", "app/s"), ("maintain",)):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertError(r, code, needle)
                self.assertNoValue(r, VALUE_OLD)
        self.assertEqual(self.head(), head, "a record was written to a vault whose header is forged")
        self.assertEqual(self.vault_contents(), contents, "the vault changed")

    def vault_contents(self):
        """A digest of the whole vault: of its file (WAL folded in), or of a dump of its
        database (less the random key pg_dump puts on its \\restrict and \\unrestrict lines)."""
        if self.kms.db:
            dump = re.sub(rb"(?m)^\\(un)?restrict \S+$", b"", self.kms.db.dump())
            return hashlib.sha256(dump).hexdigest()
        self.kms.checkpoint()
        return self.kms.vault_digest()

    def test_a_header_pointed_at_another_serial_or_label_of_its_token_is_refused(self):
        # The serial of a clone of the vault's token; a new label given to the token itself.
        serial, label = "0123456789abcdef", "kmsctl-relabelled"
        with self.subTest(column="token_serial"):
            clone = self.clone_token(serial)
            saved = self.edit("vault_meta", {"singleton": 1}, token_serial=serial)
            self.assertEveryCommandRefused(f"{HEADER} {ALTERED}")
            self.put_back("vault_meta", saved)
            self.assertVerifies()
            shutil.rmtree(clone)
        with self.subTest(column="token_label"):
            self.relabel_token(self.meta["token_label"], label)
            saved = self.edit("vault_meta", {"singleton": 1}, token_label=label)
            self.assertEveryCommandRefused(f"{HEADER} {ALTERED}")
            self.put_back("vault_meta", saved)
            self.relabel_token(label, self.meta["token_label"])
            self.assertVerifies()

    def test_a_label_or_serial_that_names_no_token_leaves_the_vault_unavailable(self):
        for column, value in (("token_serial", "0123456789abcdef"),
                              ("token_label", "kmsctl-nothing")):
            with self.subTest(column=column):
                saved = self.edit("vault_meta", {"singleton": 1}, **{column: value})
                # (Few commands: each looks for the token for half a second before it gives up.)
                self.assertEveryCommandRefused("no initialised token", code=UNAVAILABLE,
                                               commands=(("status",), ("secret", "get", "app/s")))
                self.put_back("vault_meta", saved)
                self.assertVerifies()

    def test_the_module_path_changed(self):
        module = self.meta["pkcs11_module"]
        d, name = os.path.split(module)
        with self.subTest(module="another name of the same trusted module"):
            saved = self.edit("vault_meta", {"singleton": 1},
                              pkcs11_module=os.path.join(d, "..", os.path.basename(d), name))
            self.assertEveryCommandRefused(f"{HEADER} {ALTERED}")
            self.put_back("vault_meta", saved)
            self.assertVerifies()
        with self.subTest(module="a copy the user never trusted"):
            # Refused before it is loaded, by the module trust rule (test_module_trust.py): the
            # header's MAC is never reached.
            copy = self.kms.path("copy-of-module.so")
            shutil.copyfile(os.path.realpath(module), copy)
            saved = self.edit("vault_meta", {"singleton": 1}, pkcs11_module=copy)
            self.assertEveryCommandRefused("refusing to load the PKCS#11 module", code=UNAVAILABLE)
            self.put_back("vault_meta", saved)
            self.assertVerifies()


@kmsenv.file_store_only("its fixture, a vault file of schema 3 (older than PostgreSQL vaults)")
class UpgradeOfASchema3Vault(RowAttackCase):
    """The vault in tests/fixtures/vault-schema3/, made by kmsctl before rows had MACs (its README
    says how), copied to a temporary directory and opened by this kmsctl."""

    TABLES = tuple(KEY_COLUMNS)

    def setUp(self):  # no init: the fixture is the vault
        self.kms = kmsenv.KmsEnv(pin=FIXTURE_PIN)
        self.addCleanup(self.kms.cleanup)
        os.mkdir(self.kms.vault_dir, 0o700)
        shutil.copyfile(os.path.join(FIXTURE, "vault.db"), self.kms.vault)
        shutil.copytree(os.path.join(FIXTURE, "vault.db.token"), self.kms.token_dir)
        for top, dirs, files in os.walk(self.kms.vault_dir):
            os.chmod(top, 0o700)
            for f in files:
                os.chmod(os.path.join(top, f), 0o600)
        self.assertEqual(self.kms.sql("PRAGMA user_version")[0][0], 3)
        self.assertNotIn("mac", [c[1] for c in self.kms.sql("PRAGMA table_info(keys)")])
        self.row_count = sum(self.kms.sql(f"SELECT count(*) FROM {t}")[0][0] for t in self.TABLES)
        self.records_before = self.head()

    def upgrades(self):
        return [r for r in self.kms.records() if r["action"] == "vault.upgrade"]

    def test_the_first_open_authenticates_every_row_in_one_audited_record(self):
        self.kms.ok("status")
        self.assertEqual(self.kms.sql("PRAGMA user_version")[0][0], SCHEMA_VERSION)
        (up,) = self.upgrades()
        self.assertEqual(up["seq"], self.records_before + 1)
        self.assertEqual(up["outcome"], "ok")
        self.assertEqual(up["params"], {"rows_authenticated": self.row_count, "schema_version": SCHEMA_VERSION,
                                         "host": kmsenv.HOST})
        self.assertIn("state", up, "the upgrade records the first state")
        for t in self.TABLES:
            self.assertEqual(self.kms.sql(f"SELECT count(*) FROM {t} WHERE mac IS NULL")[0][0], 0,
                             f"{t} has rows without a MAC")
        rep = self.assertVerifies()  # against the state of the newest record (the status one)
        self.assertEqual(rep["rows"], self.row_count - 1, "every row but the header")
        # The token's configuration in the copy now names the copy's token directory.
        with open(self.kms.token_conf) as f:
            self.assertIn(f"directories.tokendir = {self.kms.token_dir}/tokens\n", f.read())
        self.kms.ok("key", "list")
        self.assertEqual(len(self.upgrades()), 1, "a second open upgraded again")

    def test_what_the_older_kmsctl_stored_still_decrypts_and_reads(self):
        for blob, plaintext in (("fixture-key.b64", b"plaintext under the fixture key\n"),
                                ("rotated-key-v1.b64",
                                 b"plaintext under version 1 of the rotated key\n")):
            with self.subTest(blob=blob):
                r = self.kms.ok("decrypt", "--in", os.path.join(FIXTURE, blob))
                self.assertEqual(r.out.encode(), plaintext)
        self.assertEqual(self.kms.ok("secret", "get", "app/db-password").out,
                         "fixture-secret-value-two")
        self.assertEqual(self.kms.ok("secret", "get", "app/db-password", "--stage",
                                     "previous").out, "fixture-secret-value-one")
        key = self.kms.json("key", "describe", "alias/fixture", "--json")
        self.assertEqual(key["tags"], {"owner": "fixture"})
        secret = self.kms.json("secret", "describe", "app/db-password", "--json")
        self.assertEqual(secret["tags"], {"team": "fixture"})
        self.assertEqual(secret["stages"], {"current": 2, "previous": 1, "pending": None})
        rotated = self.kms.json("key", "describe", "alias/fixture-rotated", "--json")
        self.assertEqual(rotated["primary_version"], 2)
        self.assertEqual(self.key_id_of_blob(self.encrypt("alias/fixture-rotated", "new-blob")),
                         (rotated["key_id"], 2))
        self.assertVerifies()
        self.assertEqual(len(self.upgrades()), 1)

    def test_a_forgery_after_the_upgrade_is_refused(self):
        self.kms.ok("status")
        rotated = self.kms.json("key", "describe", "alias/fixture-rotated", "--json")["key_id"]
        saved = self.edit("key_aliases", {"alias": "alias/fixture"}, key_id=rotated)
        self.refused(("encrypt", "--key", "alias/fixture", "--in", self.write("p", PLAINTEXT)),
                     "alias (alias alias/fixture)", "key.encrypt")
        self.put_back("key_aliases", saved)
        self.assertVerifies()

    def test_a_row_without_a_mac_after_the_upgrade_is_refused(self):
        self.kms.ok("status")
        sid = self.secret_id("app/db-password")
        saved = self.edit("secrets", {"id": sid}, mac=None)
        label = f"secret (id {sid}, name app/db-password)"
        r = self.refused(("secret", "get", "app/db-password"), label, "secret.get")
        self.assertNotIn("fixture-secret-value", r.out + r.err)
        self.assertRowRefusedByVerify(label)
        self.put_back("secrets", saved)
        self.assertVerifies()

    def test_the_upgrade_authenticates_the_rows_as_it_finds_them(self):
        # An older vault's rows have no MAC to check, so a row forged before the first open by
        # this kmsctl cannot be told from a genuine one: the upgrade MACs it like the others.
        # (What the older kmsctl did is still in its audit log, for a person to compare.)
        rotated = self.kms.sql("SELECT key_id FROM key_aliases WHERE alias = ?",
                               ("alias/fixture-rotated",))[0][0]
        with self.attacker() as con:
            con.execute("UPDATE key_aliases SET key_id = ? WHERE alias = 'alias/fixture'",
                        (rotated,))
        self.kms.ok("status")
        self.assertEqual(self.upgrades()[0]["params"]["rows_authenticated"], self.row_count)
        blob_key, _ = self.key_id_of_blob(self.encrypt("alias/fixture", "blob"))
        self.assertEqual(blob_key, rotated)
        self.assertVerifies()


if __name__ == "__main__":
    kmsenv.main()
