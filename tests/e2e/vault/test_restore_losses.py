"""vault restore tells what it would drop: the key versions, keys, secret versions and audit
records that the live vault has and the backup lacks. Without --force it refuses (exit 4) listing
them, and changes nothing; on a terminal it asks instead; with --force it warns with the same list
and records the counts in vault.restore. Afterwards, data made under a lost key version says so
(exit 3 for a ciphertext blob, exit 5 for a file, whose header cannot be authenticated without
the key), never that the context differs."""

import json
import os
import pty
import select
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KMSCTL, KmsTestCase

NOT_FOUND, REFUSED, INTEGRITY = 3, 4, 5
SECRET_VALUE = "s3cr3t-value-never-printed-7f2c"


class RestoreLosses(KmsTestCase):
    def key(self, *args):
        return self.kms.ok("key", "create", *args).out.strip()

    def head(self):
        return self.kms.sql("SELECT max(seq) FROM audit_log")[0][0]

    def restore_record(self):
        recs = [r for r in self.kms.records() if r["action"] == "vault.restore"]
        self.assertEqual(len(recs), 1)
        return recs[0]

    def listed(self, err):
        """The indented lines of the list on stderr."""
        return [line.strip() for line in err.splitlines() if line.startswith("  ")]

    def test_a_key_version_made_after_the_backup_is_listed_then_reported_as_missing(self):
        k = self.kms
        k.init()
        sw = self.key("--alias", "alias/a")
        hw = self.key("--alias", "alias/h", "--protection", "hsm")
        backup = k.path("b1.db")
        k.ok("vault", "backup", backup)
        after_backup = self.head()
        k.ok("key", "rotate", "alias/a")
        k.ok("key", "rotate", "alias/h")
        f = k.path("f")
        with open(f, "wb") as out:
            out.write(b"made under version 2\n")
        k.ok("file", "encrypt", "--key", "alias/a", f)
        k.ok("file", "encrypt", "--key", "alias/h", "-o", f + ".h.kenc", f)
        blob = k.ok("encrypt", "--key", "alias/a", "--in", f).out
        hblob = k.ok("encrypt", "--key", "alias/h", "--in", f).out
        os.unlink(f)

        # Without --force: refused, the version listed, nothing changed.
        head = self.head()
        digest = k.vault_digest()
        r = k.run("vault", "restore", backup)
        self.assertError(r, REFUSED, "2 key versions",
                         "ciphertexts and files made under these key versions will no longer "
                         "decrypt", "vault backup", "--force")
        self.assertEqual(sorted(self.listed(r.err)), sorted([
            f"key {sw} (alias/a): version 2",
            f"key {hw} (alias/h): version 2",
            f"audit records: {head - after_backup}, seq {after_backup + 1} to {head}"]))
        self.assertIn("hint: take a backup of the live vault first", r.err.splitlines()[1])
        self.assertEqual(k.vault_digest(), digest)
        self.assertEqual(self.head(), head)
        k.ok("file", "decrypt", f + ".kenc")
        with open(f, "rb") as got:
            self.assertEqual(got.read(), b"made under version 2\n")
        os.unlink(f)

        # With --force: restored, the same list as a warning, the counts in the record.
        head = self.head()
        r = k.run("vault", "restore", "--force", backup)
        self.assertOk(r)
        self.assertIn("warning: the restore dropped", r.err)
        self.assertEqual(sorted(self.listed(r.err)), sorted([
            f"key {sw} (alias/a): version 2",
            f"key {hw} (alias/h): version 2",
            f"audit records: {head - after_backup}, seq {after_backup + 1} to {head}"]))
        params = self.restore_record()["params"]
        self.assertEqual({n: params[n] for n in params if n.startswith("dropped_")},
                         {"dropped_key_versions": 2, "dropped_keys": 0,
                          "dropped_secret_versions": 0, "dropped_secrets": 0,
                          "dropped_records": head - after_backup})
        k.ok("audit", "verify")

        # Each way to use the lost versions says which version is missing, never the context.
        for key, name, kenc, b in ((sw, "alias/a", f + ".kenc", blob),
                                   (hw, "alias/h", f + ".h.kenc", hblob)):
            said = f"this vault has no version 2 of key {key} ({name})"
            for args, inp, code, action, error_code in (
                    (("decrypt",), b, NOT_FOUND, "key.decrypt", "not_found"),
                    (("re-encrypt", "--to-key", name), b, NOT_FOUND, "key.reencrypt",
                     "not_found"),
                    (("file", "decrypt", "-o", k.path("out"), kenc), None, INTEGRITY,
                     "file.decrypt", "integrity"),
                    (("file", "rewrap", kenc), None, INTEGRITY, "file.rewrap", "integrity")):
                with self.subTest(key=name, command=args[:2]):
                    before = self.head()
                    r = k.run(*args) if inp is None else self.run_with_input(args, inp)
                    self.assertError(r, code, said, "restored from an older backup")
                    self.assertNotIn("context", r.err)
                    self.assertFalse(os.path.exists(k.path("out")))
                    recs = k.sql("SELECT action, outcome, error_code FROM audit_log WHERE seq > ?",
                                 (before,))
                    self.assertEqual(recs, [(action, "error", error_code)])

    def run_with_input(self, args, data):
        path = self.kms.path("input")
        with open(path, "w") as f:
            f.write(data)
        return self.kms.run(*args, "--in", path)

    def test_a_lost_key_secret_and_secret_version_are_listed_by_name_never_by_value(self):
        k = self.kms
        k.init()
        value = k.write_secret_file("value", SECRET_VALUE)
        k.ok("secret", "create", "app/kept", "--value-file", value)
        backup = k.path("b1.db")
        k.ok("vault", "backup", backup)
        new_key = self.key("--alias", "alias/new")
        blob = k.ok("encrypt", "--key", new_key, "--in", value).out
        k.ok("secret", "put", "app/kept", "--value-file", value)
        k.ok("secret", "create", "app/new", "--value-file", value)
        ids = {s["name"]: s["secret_id"] for s in k.json("secret", "list", "--json")["items"]}

        r = k.run("vault", "restore", backup)
        self.assertError(r, REFUSED, "1 key version (1 whole key)",
                         "2 secret versions (1 whole secret)", "no longer decrypt")
        secret_lines = {ids["app/kept"]: f"secret app/kept ({ids['app/kept']}): version 2",
                        ids["app/new"]: f"secret app/new ({ids['app/new']}): the whole secret, "
                                        "version 1"}
        lines = self.listed(r.err)
        self.assertEqual(lines[:3], [f"key {new_key} (alias/new): the whole key, version 1",
                                     *(secret_lines[i] for i in sorted(secret_lines))])
        self.assertEqual(len(lines), 4, lines)
        self.assertTrue(lines[3].startswith("audit records: "), lines)

        r = k.run("vault", "restore", "--force", "--json", backup)
        self.assertOk(r)
        dropped = json.loads(r.out)["dropped"]
        self.assertEqual(dropped["keys"], [{"key_id": new_key, "aliases": ["alias/new"]}])
        self.assertEqual(dropped["key_versions"], [
            {"key_id": new_key, "aliases": ["alias/new"], "version": 1, "replaced": False}])
        self.assertEqual(dropped["secrets"], [{"secret_id": ids["app/new"], "name": "app/new"}])
        self.assertEqual(
            sorted((v["name"], v["version"]) for v in dropped["secret_versions"]),
            [("app/kept", 2), ("app/new", 1)])
        self.assertGreater(dropped["records"]["count"], 0)
        for _, res in k.transcript:
            self.assertNotIn(SECRET_VALUE, res.out + res.err)
        for rec in k.records():
            self.assertNotIn(SECRET_VALUE, json.dumps(rec))

        # The lost key, named by a blob made under it, is missing as a whole.
        r = self.run_with_input(("decrypt",), blob)
        self.assertError(r, NOT_FOUND, f"this vault has no key {new_key}", "older backup")
        self.assertEqual(k.run("secret", "get", "app/new").rc, NOT_FOUND)
        r = k.run("secret", "get", "app/kept")
        self.assertOk(r)
        self.assertEqual(r.out.rstrip("\n"), SECRET_VALUE)

    def test_a_restore_that_loses_only_audit_records_lists_only_them(self):
        k = self.kms
        k.init()
        self.key("--alias", "alias/a")
        backup = k.path("b1.db")
        k.ok("vault", "backup", backup)
        shared = self.head()
        k.ok("status")
        k.ok("key", "describe", "alias/a")
        head = self.head()
        r = k.run("vault", "restore", backup)
        self.assertError(r, REFUSED, f"{head - shared} audit records (seq {shared + 1} to {head})",
                         "gone from the audit log")
        self.assertNotIn("no longer decrypt", r.err)
        self.assertEqual(self.listed(r.err),
                         [f"audit records: {head - shared}, seq {shared + 1} to {head}"])
        r = k.run("vault", "restore", "--force", "--json", backup)
        self.assertOk(r)
        self.assertEqual(json.loads(r.out)["dropped"], {
            "key_versions": [], "keys": [], "secret_versions": [], "secrets": [],
            "records": {"count": head - shared, "first_seq": shared + 1, "last_seq": head}})
        self.assertEqual(self.restore_record()["params"]["dropped_records"], head - shared)

    def test_a_restore_right_after_the_backup_loses_nothing_and_still_needs_force(self):
        k = self.kms
        k.init()
        backup = k.path("b1.db")
        k.ok("vault", "backup", backup)
        r = k.run("vault", "restore", backup)
        self.assertError(r, REFUSED, "a vault exists at", "--force")
        self.assertEqual(self.listed(r.err), [])
        r = k.run("vault", "restore", "--force", backup)
        self.assertOk(r)
        self.assertNotIn("warning", r.err)
        params = self.restore_record()["params"]
        self.assertEqual([params[n] for n in ("dropped_key_versions", "dropped_keys",
                                              "dropped_secret_versions", "dropped_secrets",
                                              "dropped_records")], [0, 0, 0, 0, 0])

    def test_a_version_number_a_restore_dropped_is_never_made_again(self):
        # b2 holds version 2 of the key; after restoring b1, version 2 is gone, and the next
        # rotation makes version 3: a ciphertext of version 2 keeps saying that its version is
        # missing, never meets another version 2 that does not open it.
        k = self.kms
        k.init()
        key = self.key("--alias", "alias/a")
        k.ok("vault", "backup", k.path("b1.db"))
        k.ok("key", "rotate", "alias/a")
        blob2 = k.ok("encrypt", "--key", "alias/a", input=b"made under version 2").out
        k.ok("vault", "backup", k.path("b2.db"))
        k.ok("vault", "restore", "--force", k.path("b1.db"))
        rotated = json.loads(k.ok("key", "rotate", "alias/a", "--json").out)
        self.assertEqual(rotated["primary_version"], 3, rotated)
        r = k.run("decrypt", input=blob2.encode())
        self.assertError(r, NOT_FOUND, "no version 2 of key", "older backup")
        r = k.run("vault", "restore", k.path("b2.db"))
        self.assertError(r, REFUSED, "no longer decrypt")
        self.assertIn(f"key {key} (alias/a): version 3", self.listed(r.err))
        self.assertNotIn("another version", r.err)

    def test_a_secret_version_number_a_restore_dropped_is_never_made_again(self):
        k = self.kms
        k.init()
        k.ok("secret", "create", "app/db", "--value-stdin", input=b"first value")
        k.ok("vault", "backup", k.path("b1.db"))
        k.ok("secret", "put", "app/db", "--value-stdin", input=b"second value")
        k.ok("vault", "restore", "--force", k.path("b1.db"))
        k.ok("secret", "put", "app/db", "--value-stdin", input=b"third value")
        versions = json.loads(k.ok("secret", "versions", "app/db", "--json").out)["items"]
        self.assertEqual([v["version"] for v in versions], [1, 3])
        r = k.run("secret", "get", "app/db", "--version-id", "2")
        self.assertEqual(r.rc, NOT_FOUND, r.show())

    def pty_restore(self, answer, backup):
        """vault restore with stdin and stderr on a terminal, answering `answer`."""
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([KMSCTL, "vault", "restore", backup], stdin=slave,
                                 stdout=subprocess.PIPE, stderr=slave, env=self.kms.base_env(),
                                 cwd=self.kms.root, start_new_session=True)
            os.close(slave)
            slave = -1
            seen = b""
            while b"Type yes" not in seen:
                ready, _, _ = select.select([master], [], [], 120)
                self.assertTrue(ready, f"no question asked: {seen!r}")
                seen += os.read(master, 4096)
            os.write(master, answer.encode() + b"\n")
            out, _ = p.communicate(timeout=120)
            while True:
                ready, _, _ = select.select([master], [], [], 0.5)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            return p.returncode, out.decode(), seen.decode("utf-8", "replace")
        finally:
            os.close(master)
            if slave >= 0:
                os.close(slave)

    def test_on_a_terminal_it_asks_and_only_yes_restores(self):
        k = self.kms
        k.init()
        key = self.key("--alias", "alias/a")
        backup = k.path("b1.db")
        k.ok("vault", "backup", backup)
        k.ok("key", "rotate", "alias/a")
        rc, out, err = self.pty_restore("no", backup)
        self.assertEqual(rc, REFUSED, err)
        self.assertIn(f"key {key} (alias/a): version 2", err)
        self.assertIn("kmsctl: error: restoring", err)
        self.assertEqual(k.json("key", "describe", "alias/a", "--json")["primary_version"], 2)
        rc, out, err = self.pty_restore("yes", backup)
        self.assertEqual(rc, 0, err)
        self.assertIn("restored", err)
        self.assertEqual(k.json("key", "describe", "alias/a", "--json")["primary_version"], 1)
        self.assertEqual(self.restore_record()["params"]["dropped_key_versions"], 1)


if __name__ == "__main__":
    kmsenv.main()
