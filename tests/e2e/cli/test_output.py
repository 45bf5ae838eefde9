"""What kmsctl prints, the same way for every command: data on stdout, confirmations on stderr
(one line naming the object and its new state), `--json` the object, every `list --json` one
shape, one name per field (audit parameters included), and nothing a terminal cannot show."""
import os
import pty
import select
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import HOST, KmsTestCase, KMSCTL, USAGE
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class Confirmations(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.key = self.kms.ok("key", "create", "--alias", "alias/app").out.strip()
        self.kms.ok("secret", "create", "app/db", "--generate")

    def confirm(self, *args, line):
        """ARGS print nothing on stdout and one line on stderr matching `line`; under -q
        nothing at all."""
        r = self.kms.ok(*args)
        self.assertEqual(r.out, "", r.show())
        self.assertEqual(len(r.err.splitlines()), 1, r.show())
        self.assertRegex(r.err.strip(), line)
        return r

    def test_state_changes_confirm_with_one_line_on_stderr(self):
        k = self.key
        self.confirm("key", "disable", "alias/app", line=rf"^key {k}: Disabled$")
        self.confirm("key", "enable", k, line=rf"^key {k}: Enabled$")
        self.confirm("key", "rotate", k, line=rf"^key {k}: rotated, version 2 is primary$")
        self.confirm("key", "set-rotation", k, "--period", "90d",
                     line=rf"^key {k}: rotates every 90d, next \d{{4}}-")
        self.confirm("key", "set-rotation", k, "--off", line=rf"^key {k}: no automatic rotation$")
        self.confirm("key", "tag", k, "env=prod", "team=ops",
                     line=rf"^key {k}: tags env=prod team=ops$")
        self.confirm("key", "untag", k, "env", "team", line=rf"^key {k}: no tags$")
        self.confirm("key", "alias", "create", "alias/other", k,
                     line=rf"^alias alias/other: names key {k}$")
        self.confirm("key", "alias", "delete", "alias/other", line=r"^alias alias/other: deleted$")
        self.confirm("key", "schedule-deletion", k, "--pending-days", "7",
                     line=rf"^key {k}: PendingDeletion, deleted on \d{{4}}-.*cancel-deletion")
        self.confirm("key", "cancel-deletion", k, line=rf"^key {k}: deletion cancelled, Disabled$")
        self.confirm("secret", "put", "app/db", "--generate", line=r"^secret app/db: version 2")
        self.confirm("secret", "rotate", "app/db",
                     line=r"^secret app/db: version 3 is current \(previous 2\)$")
        # Quiet: nothing at all.
        r = self.kms.ok("-q", "key", "disable", k)
        self.assertEqual((r.out, r.err), ("", ""))
        r = self.kms.ok("-q", "secret", "rotate", "app/db")
        self.assertEqual((r.out, r.err), ("", ""))

    def test_json_returns_the_object_on_stdout(self):
        for args in (("key", "disable", self.key), ("key", "enable", self.key),
                     ("key", "rotate", self.key), ("key", "tag", self.key, "a=1"),
                     ("key", "untag", self.key, "a"),
                     ("key", "set-rotation", self.key, "--period", "30d"),
                     ("key", "schedule-deletion", self.key), ("key", "cancel-deletion", self.key)):
            with self.subTest(args=args):
                r = self.kms.ok(*args, "--json")
                self.assertEqual(r.err, "", r.show())
                self.assertEqual(r.json()["key_id"], self.key)
        r = self.kms.ok("secret", "rotate", "app/db", "--json")
        self.assertEqual(r.err, "")
        self.assertEqual(set(r.json()), {"name", "version", "previous_version", "resumed", "steps"})
        d = self.kms.json("secret", "describe", "app/db", "--json")
        self.assertRegex(d["secret_id"], "^" + UUID + "$")
        self.assertRegex(d["key_id"], "^" + UUID + "$")
        self.assertNotIn("id", d)


class JsonResults(KmsTestCase):
    def test_sign_mac_and_key_public_give_the_object_with_json(self):
        self.kms.init()
        sk = self.kms.ok("key", "create", "--spec", "EC_P256", "--usage", "sign",
                         "--alias", "alias/js").out.strip()
        mk = self.kms.ok("key", "create", "--spec", "HMAC_SHA256", "--usage", "mac").out.strip()
        msg = self.kms.path("msg")
        with open(msg, "wb") as f:
            f.write(b"release 1.2")
        j = self.kms.json("sign", "--key", "alias/js", "--algorithm", "ECDSA_SHA_256",
                          "--in", msg, "--json")
        self.assertEqual((j["key_id"], j["key_version"]), (sk, 1))
        sig = self.kms.path("sig")
        with open(sig, "w") as f:
            f.write(j["signature"])
        self.kms.ok("verify", "--key", sk, "--algorithm", "ECDSA_SHA_256", "--signature", sig,
                    "--in", msg)
        j = self.kms.json("mac", "--key", mk, "--in", msg, "--json")
        self.assertEqual(set(j), {"key_id", "key_version", "mac"})
        mac = self.kms.path("mac")
        with open(mac, "w") as f:
            f.write(j["mac"])
        self.kms.ok("verify-mac", "--key", mk, "--mac", mac, "--in", msg)
        j = self.kms.json("key", "public", "alias/js", "--json")
        self.assertEqual((j["key_id"], j["key_version"], j["spec"]), (sk, 1, "EC_P256"))
        self.assertEqual(j["public_key_pem"], self.kms.ok("key", "public", sk).out)
        # --json is the output: it does not go with -o or --format.
        r = self.kms.run("sign", "--key", sk, "--algorithm", "ECDSA_SHA_256", "--in", msg,
                         "--json", "-o", self.kms.path("x"))
        self.assertEqual(r.rc, USAGE, r.show())
        self.assertFalse(os.path.exists(self.kms.path("x")))


class Lists(KmsTestCase):
    def test_every_list_json_is_items_and_next(self):
        self.kms.init()
        key = self.kms.ok("key", "create", "--alias", "alias/l").out.strip()
        self.kms.ok("secret", "create", "l/one", "--generate")
        for args, first in ((("key", "list"), "key_id"),
                            (("key", "versions", key), "version"),
                            (("key", "alias", "list"), "alias"),
                            (("secret", "list"), "name"),
                            (("secret", "versions", "l/one"), "version"),
                            (("grant", "list"), None)):
            with self.subTest(args=args):
                j = self.kms.json(*args, "--json")
                self.assertEqual(set(j), {"items", "next"})
                self.assertIsInstance(j["items"], list)
                self.assertIsNone(j["next"])
                if first:
                    self.assertIn(first, j["items"][0])
        every = self.kms.json("key", "list", "--json")["items"]
        self.assertGreaterEqual(len(every), 2)  # alias/l and the secrets' key
        page = self.kms.json("key", "list", "--limit", "1", "--json")
        self.assertEqual(len(page["items"]), 1)
        self.assertEqual(page["next"], page["items"][0]["key_id"])
        rest = self.kms.json("key", "list", "--after", page["next"], "--json")
        self.assertEqual(page["items"] + rest["items"], every)


class FieldNames(KmsTestCase):
    def test_a_key_is_key_id_in_every_audit_record(self):
        self.kms.init()
        a = self.kms.ok("key", "create", "--alias", "alias/a").out.strip()
        b = self.kms.ok("key", "create").out.strip()
        blob = self.kms.ok("encrypt", "--key", "alias/a", "--in", "-", input=b"x").out
        self.kms.ok("re-encrypt", "--to-key", b, "--in", "-", input=blob)
        self.kms.ok("grant", "create", "--key", "alias/a", "--grantee", "uid:4242",
                    "--operations", "decrypt")
        self.kms.ok("grant", "list", "--key", "alias/a")
        self.kms.ok("secret", "create", "f/s", "--key", "alias/a", "--generate")
        data = self.kms.path("data")
        with open(data, "wb") as f:
            f.write(b"data")
        self.kms.ok("file", "encrypt", "--key", "alias/a", data)
        self.kms.ok("file", "rewrap", "--to-key", b, data + ".kenc")
        self.kms.run("key", "describe", "alias/none")

        def names(value, path=""):
            if isinstance(value, dict):
                for k, v in value.items():
                    yield path + k
                    yield from names(v, path + k + ".")
            elif isinstance(value, list):
                for v in value:
                    yield from names(v, path)

        seen = set()
        for rec in self.kms.records():
            p = rec["params"]
            for name in names(p):
                self.assertNotRegex(name.split(".")[-1], r"^(to_)?key$", rec)
            seen.update(names(p))
            for field in ("key_id", "to_key_id"):
                if field in p and rec["outcome"] == "ok":
                    self.assertRegex(p[field], "^" + UUID + "$", rec)
            if rec["action"] == "key.encrypt":
                self.assertEqual((p["key_alias"], p["key_id"]), ("alias/a", a))
            if rec["action"] == "key.describe" and rec["outcome"] != "ok":
                self.assertEqual(p, {"key_alias": "alias/none", "host": HOST})
        for name in ("key_id", "key_alias", "to_key_id", "keys.key_id", "to_keys.key_id"):
            self.assertIn(name, seen)


def run_on_terminal(env, *args, input=None):
    """kmsctl ARGS with stdout on a pseudo-terminal: (rc, what the terminal got, stderr)."""
    master, slave = pty.openpty()
    e = env.base_env()
    p = subprocess.Popen([KMSCTL, *args], stdin=subprocess.PIPE, stdout=slave,
                         stderr=subprocess.PIPE, env=e, cwd=env.root, start_new_session=True)
    os.close(slave)
    _, err = p.communicate(input=input, timeout=120)
    out = b""
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.returncode, out.replace(b"\r\n", b"\n"), err.decode()


class Terminal(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.kms.ok("key", "create", "--alias", "alias/t")
        self.kms.ok("key", "create", "--spec", "EC_P256", "--usage", "sign", "--alias", "alias/s")
        self.kms.ok("secret", "create", "t/v", "--value-stdin", input=b"no-newline")

    def test_secret_get_ends_with_a_newline_on_a_terminal_and_is_exact_piped(self):
        rc, out, err = run_on_terminal(self.kms, "secret", "get", "t/v")
        self.assertEqual((rc, out), (0, b"no-newline\n"), err)
        self.assertEqual(self.kms.ok("secret", "get", "t/v").raw, b"no-newline")

    def test_binary_output_is_refused_on_a_terminal_before_anything_runs(self):
        for args in (("encrypt", "--key", "alias/t", "--binary", "--in", "-"),
                     ("random", "--bytes", "16", "--format", "raw"),
                     ("sign", "--key", "alias/s", "--algorithm", "ECDSA_SHA_256", "--format", "raw",
                      "--in", "-"),
                     ("key", "public", "alias/s", "--format", "der")):
            with self.subTest(args=args):
                before = self.kms.audit_count()
                rc, out, err = run_on_terminal(self.kms, *args, input=b"message")
                self.assertEqual((rc, out), (USAGE, b""), err)
                self.assertIn("to a terminal", err)
                self.assertIn("redirect standard output", err)
                self.assertEqual(self.kms.audit_count(), before, "the request never ran")
        # Text forms are fine on a terminal.
        rc, out, _ = run_on_terminal(self.kms, "random", "--bytes", "16")
        self.assertEqual(rc, 0)
        self.assertRegex(out.decode(), r"^[A-Za-z0-9+/=]+\n$")


class OutputPlaces(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.kms.ok("key", "create", "--alias", "alias/o")
        self.data = self.kms.path("in.txt")
        with open(self.data, "wb") as f:
            f.write(b"payload")

    def test_a_missing_out_dir_is_refused_unless_mkdir(self):
        missing = self.kms.path("outs", "deeper")
        before = self.kms.audit_count()
        r = self.kms.run("file", "encrypt", "--key", "alias/o", "--out-dir", missing, self.data)
        self.assertError(r, USAGE, "--out-dir", "does not exist", hint="--mkdir")
        self.assertFalse(os.path.exists(self.kms.path("outs")))
        self.assertEqual(self.kms.audit_count(), before)
        self.kms.ok("file", "encrypt", "--key", "alias/o", "--out-dir", missing, "--mkdir",
                    self.data)
        self.assertTrue(os.path.isfile(os.path.join(missing, "in.txt.kenc")))
        self.assertEqual(os.stat(missing).st_mode & 0o777, 0o700)
        # --mkdir without --out-dir is a usage error.
        r = self.kms.run("file", "encrypt", "--key", "alias/o", "--mkdir", self.data)
        self.assertEqual(r.rc, USAGE, r.show())
        # A file where the directory should be.
        r = self.kms.run("file", "encrypt", "--key", "alias/o", "--out-dir", self.data, self.data)
        self.assertError(r, USAGE, "is not a directory")

    def test_an_unreadable_input_names_the_option_that_named_it(self):
        ext = self.kms.ok("key", "create", "--origin", "external").out.strip()
        missing = self.kms.path("no-such-file")
        for args, flag in ((("encrypt", "--key", "alias/o", "--in", missing), "--in"),
                           (("key", "import", ext, "--material", missing, "--import-token",
                             self.data), "--material"),
                           (("secret", "create", "o/s", "--value-file", missing), "--value-file"),
                           (("verify-mac", "--key", "alias/o", "--mac", missing, "--in",
                             self.data), "--mac")):
            with self.subTest(flag=flag):
                r = self.kms.run(*args)
                self.assertError(r, USAGE, "cannot read", missing,
                                 hint=f"check the path given to {flag}")

    def test_o_naming_a_directory_says_so(self):
        d = self.kms.path("adir")
        os.mkdir(d)
        before = self.kms.audit_count()
        r = self.kms.run("file", "encrypt", "--key", "alias/o", "-o", d, self.data)
        self.assertError(r, USAGE, d, "is a directory", hint="--out-dir")
        r = self.kms.run("encrypt", "--key", "alias/o", "-o", d, "--in", self.data)
        self.assertError(r, USAGE, "is a directory", hint=d + "/NAME")
        self.assertEqual(os.listdir(d), [])
        self.assertEqual(self.kms.audit_count(), before, "refused before the request")


if __name__ == "__main__":
    unittest.main()
