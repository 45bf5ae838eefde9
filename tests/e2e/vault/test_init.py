"""kmsctl init: the vault file, its private token, the SO PIN, re-init, interrupted init, and
init on an existing token."""

import datetime
import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase, SOFTHSM_MODULE, file_mode


def tree_digest(root):
    """Names and contents of every file under root."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            h.update(os.path.relpath(p, root).encode() + b"\0")
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def leftovers(vault):
    """What an unfinished init leaves beside `vault`."""
    d, name = os.path.split(vault)
    found = []
    if os.path.isdir(d):
        found += [n for n in os.listdir(d) if n.startswith(f".{name}.init-")]
    marker = os.path.join(vault + ".token", "INIT-INCOMPLETE")
    if os.path.exists(marker):
        found.append(marker)
    return found


class Init(KmsTestCase):
    def test_init_creates_the_vault_0600_in_a_0700_directory_even_with_umask_022(self):
        self.assertFalse(os.path.exists(self.kms.vault_dir))
        r = self.kms.init(preexec_fn=lambda: os.umask(0o022))
        self.assertEqual(r.out, "", "a confirmation goes to stderr")
        self.assertIn(f"created vault {self.kms.vault} (id ", r.err)
        self.assertEqual(file_mode(self.kms.vault_dir), 0o700)
        self.assertEqual(file_mode(self.kms.vault), 0o600)
        self.assertEqual(file_mode(self.kms.token_dir), 0o700)
        # Nothing init made (vault, lock, token configuration, token objects) is open to others.
        for dirpath, dirnames, filenames in os.walk(self.kms.vault_dir):
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                self.assertEqual(file_mode(p) & 0o077, 0, f"{p} is mode {file_mode(p):04o}")
        # And the vault works.
        st = self.kms.status()
        self.assertEqual(st["vault"]["path"], self.kms.vault)

    def test_init_json_reports_the_vault_id_and_the_new_private_token(self):
        r = self.kms.init("--json")
        j = json.loads(r.out)
        self.assertEqual(j["vault"], self.kms.vault)
        self.assertRegex(j["vault_id"],
                         r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(j["token"]["module"], SOFTHSM_MODULE)
        self.assertEqual(j["token"]["label"], "kmsctl-" + j["vault_id"][:8])
        self.assertTrue(j["token"]["serial"])
        self.assertIs(j["token"]["private"], True)
        st = self.kms.status()
        self.assertEqual(st["vault"]["id"], j["vault_id"])
        self.assertEqual(st["token"]["serial"], j["token"]["serial"])

    def test_second_init_is_refused_with_exit_4_and_leaves_vault_and_token_byte_identical(self):
        self.kms.init()
        vault_before = self.kms.vault_digest()
        token_before = tree_digest(self.kms.token_dir)
        r = self.kms.run("init")
        self.assertError(r, 4, "a vault already exists at " + self.kms.vault, "--force")
        self.assertEqual(self.kms.vault_digest(), vault_before)
        self.assertEqual(tree_digest(self.kms.token_dir), token_before)
        self.assertEqual(leftovers(self.kms.vault), [])
        self.kms.ok("status")

    def test_init_force_moves_the_old_vault_aside_unchanged_and_makes_a_new_one(self):
        self.kms.init()
        old_id = self.kms.status()["vault"]["id"]
        old_bytes = self.kms.vault_bytes()
        r = self.kms.init("--force")
        prefix = "moved the previous vault aside to "
        self.assertIn(prefix, r.err)
        aside = r.err.split(prefix, 1)[1].splitlines()[0].strip()
        self.assertTrue(os.path.basename(aside).startswith("vault.db.replaced-"), aside)
        self.assertEqual(os.path.dirname(aside), self.kms.vault_dir)
        with open(aside, "rb") as f:
            self.assertEqual(f.read(), old_bytes, "the moved-aside vault must be the old vault")
        self.assertTrue(os.path.isdir(aside + ".token"), "the old vault's token moves with it")
        new = self.kms.status()
        self.assertNotEqual(new["vault"]["id"], old_id)
        self.kms.ok("audit", "verify")

    def test_vault_moved_aside_by_init_force_still_opens_with_its_own_token(self):
        # "Move an existing vault aside (renamed, not deleted)": the point of keeping it is that
        # it can still be opened (its root key moved along, in ITS token directory).
        self.kms.init()
        old_id = self.kms.status()["vault"]["id"]
        r = self.kms.init("--force")
        aside = r.err.split("moved the previous vault aside to ", 1)[1].splitlines()[0].strip()
        r = self.kms.run("status", "--json", env={"KMSCTL_VAULT": aside})
        self.assertEqual(r.rc, 0, "the moved-aside vault no longer opens:\n" + r.show())
        self.assertEqual(json.loads(r.out)["vault"]["id"], old_id)

    def test_init_force_never_overwrites_an_earlier_moved_aside_vault(self):
        # Two `init --force` within one second name their moved-aside vaults alike; the second
        # must not replace the first ("renamed, not deleted"). Decoys stand for earlier ones.
        self.kms.init()
        now = datetime.datetime.now(datetime.timezone.utc)
        decoys = {}
        for s in range(-2, 30):
            t = (now + datetime.timedelta(seconds=s)).strftime("%Y%m%dT%H%M%SZ")
            p = f"{self.kms.vault}.replaced-{t}"
            decoys[p] = f"an earlier moved-aside vault {t}".encode()
            with open(p, "wb") as f:
                f.write(decoys[p])
        r = self.kms.run("init", "--force")
        self.assertEqual(r.rc, 0, r.show())
        for p, content in decoys.items():
            with open(p, "rb") as f:
                self.assertEqual(f.read(), content, f"init --force overwrote {p}")

    def test_so_pin_file_is_written_0600_and_the_so_pin_is_not_printed(self):
        so_file = self.kms.path("so-pin")
        r = self.kms.init("--so-pin-file", so_file)
        self.assertEqual(file_mode(so_file), 0o600)
        with open(so_file) as f:
            so_pin = f.read().strip()
        self.assertRegex(so_pin, r"^[A-Za-z0-9]{16,}$")
        self.assertNotIn(so_pin, r.out)
        self.assertNotIn(so_pin, r.err)
        self.assertIn(so_file, r.err)
        self.assertIsNone(self.kms.so_pin)
        # It really is the token's SO PIN.
        t = self.kms.pkcs11_tool("--session-rw", "--login", "--login-type", "so",
                                 "--so-pin", so_pin, "--list-objects")
        self.assertEqual(t.rc, 0, t.show())
        bad = self.kms.pkcs11_tool("--session-rw", "--login", "--login-type", "so",
                                   "--so-pin", so_pin + "x", "--list-objects")
        self.assertNotEqual(bad.rc, 0, "pkcs11-tool accepted a wrong SO PIN: the check is void")

    def test_an_existing_so_pin_file_is_refused_before_anything_is_created(self):
        so_file = self.kms.write_secret_file("so-pin", "keep me")
        r = self.kms.run("init", "--so-pin-file", so_file)
        self.assertError(r, 4, so_file)
        self.assertFalse(os.path.exists(self.kms.vault))
        self.assertFalse(os.path.exists(self.kms.token_dir))
        with open(so_file) as f:
            self.assertEqual(f.read(), "keep me\n")

    def test_without_so_pin_file_the_so_pin_is_printed_once_on_stderr_only(self):
        r = self.kms.init()
        so_pin = self.kms.so_pin
        self.assertIsNotNone(so_pin, "no SO PIN found on stderr:\n" + r.show())
        self.assertEqual(r.err.count(so_pin), 1)
        self.assertNotIn(so_pin, r.out)
        t = self.kms.pkcs11_tool("--session-rw", "--login", "--login-type", "so",
                                 "--so-pin", so_pin, "--list-objects")
        self.assertEqual(t.rc, 0, t.show())
        # ... and never again.
        for args in (("status",), ("audit", "list"), ("audit", "verify")):
            again = self.kms.ok(*args)
            self.assertNotIn(so_pin, again.out + again.err)

    def test_leftovers_of_an_interrupted_init_are_cleaned_by_the_next_init(self):
        # The markers as src/vault/token_setup.cpp names them.
        os.makedirs(self.kms.token_dir, 0o700)
        with open(os.path.join(self.kms.vault_dir, ".vault.db.init-pending"), "w") as f:
            f.write("00000000-0000-4000-8000-000000000000\n")
        with open(os.path.join(self.kms.vault_dir, ".vault.db.init-tmp"), "wb") as f:
            f.write(b"half a vault")
        with open(os.path.join(self.kms.token_dir, "INIT-INCOMPLETE"), "w") as f:
            f.write("00000000-0000-4000-8000-000000000000\n")
        os.makedirs(os.path.join(self.kms.token_dir, "tokens", "junk"))
        self.kms.init()
        self.assertEqual(leftovers(self.kms.vault), [])
        self.assertFalse(os.path.exists(os.path.join(self.kms.token_dir, "tokens", "junk")))
        self.kms.ok("status")
        self.kms.ok("audit", "verify")

    def test_an_empty_token_directory_left_by_an_interrupted_init_does_not_block_the_next(self):
        # Killed between creating the token directory and writing its INIT-INCOMPLETE marker:
        # the pending marker is there, the token directory is empty (it holds no key).
        os.makedirs(self.kms.token_dir, 0o700)
        with open(os.path.join(self.kms.vault_dir, ".vault.db.init-pending"), "w") as f:
            f.write("00000000-0000-4000-8000-000000000000\n")
        r = self.kms.run("init")
        self.assertEqual(r.rc, 0, r.show())
        self.assertEqual(leftovers(self.kms.vault), [])
        self.kms.ok("status")

    def test_init_again_after_an_init_killed_while_publishing_keeps_the_vault_usable(self):
        # Killed in Vault::publish() after the vault was linked into place but before the
        # markers were removed: the vault is complete. A second `init` must refuse (exit 4)
        # without destroying the token directory that holds the vault's root key.
        self.kms.init()
        with open(os.path.join(self.kms.token_dir, "INIT-INCOMPLETE"), "w") as f:
            f.write(self.kms.status()["vault"]["id"] + "\n")
        with open(os.path.join(self.kms.vault_dir, ".vault.db.init-pending"), "w") as f:
            f.write(self.kms.status()["vault"]["id"] + "\n")
        r = self.kms.run("init")
        self.assertError(r, 4, "already exists")
        self.assertTrue(os.path.exists(self.kms.token_conf),
                        "init deleted the token directory of an existing vault")
        self.assertEqual(leftovers(self.kms.vault), [], "the stale markers are cleared")
        r = self.kms.run("status")
        self.assertEqual(r.rc, 0, r.show())

    def test_init_killed_at_any_moment_leaves_nothing_a_second_init_cannot_clean(self):
        # How long an init takes here (ASan builds are slower), then SIGKILL at fractions of it.
        t0 = time.monotonic()
        self.kms.init()
        duration = time.monotonic() - t0
        for i, frac in enumerate((0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)):
            with self.subTest(kill_after=f"{frac:.0%} of {duration:.2f}s"):
                vault = self.kms.path(f"killed{i}", "vault.db")
                env = {"KMSCTL_VAULT": vault}
                p = self.kms.popen("init", env=env)
                time.sleep(duration * frac)
                p.send_signal(signal.SIGKILL)
                p.communicate()
                r = self.kms.run("init", env=env)
                if r.rc == 4:  # the killed init had finished: its vault must work
                    self.assertIn("already exists", r.err)
                else:
                    self.assertEqual(r.rc, 0, r.show())
                self.assertEqual(leftovers(vault), [])
                s = self.kms.run("audit", "verify", env=env)
                self.assertEqual(s.rc, 0, s.show())

    def test_a_failed_init_leaves_nothing_that_stops_the_next_one(self):
        r = self.kms.run("init", "--pkcs11-module", "/nonexistent.so", "--token-label", "x")
        self.assertError(r, 6, "/nonexistent.so")
        self.assertFalse(os.path.exists(self.kms.vault))
        self.kms.init()
        self.assertEqual(leftovers(self.kms.vault), [])
        self.kms.ok("status")


class ExistingToken(KmsTestCase):
    SO_PIN = "e2e-SO-pin-91ab"

    def make_token(self, label="prod"):
        hsm = self.kms.path("hsm")
        os.makedirs(os.path.join(hsm, "tokens"), 0o700, exist_ok=True)
        conf = os.path.join(hsm, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {hsm}/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
        p = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                            "--so-pin", self.SO_PIN, "--pin", self.kms.pin],
                           env={"PATH": os.environ.get("PATH", ""), "SOFTHSM2_CONF": conf},
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return conf

    def test_init_on_an_existing_token_then_status_needs_only_the_pin(self):
        conf = self.make_token()
        env = {"SOFTHSM2_CONF": conf}
        r = self.kms.run("init", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "prod",
                         env=env)
        self.assertEqual(r.rc, 0, r.show())
        self.assertNotIn("security officer", r.err, "an existing token has no new SO PIN")
        self.assertFalse(os.path.exists(self.kms.token_dir), "no private token for an HSM")
        st = self.kms.json("status", "--json", env=env)
        self.assertEqual(st["token"]["label"], "prod")
        self.assertEqual(st["token"]["module"], SOFTHSM_MODULE)
        self.assertIs(st["token"]["private"], False)
        self.kms.ok("audit", "verify", env=env)
        keys = self.kms.secret_keys(conf=conf)
        self.assertIn("kmsctl-root:" + st["vault"]["id"], keys)

        # A second vault on the same token, chosen by serial this time.
        v2 = self.kms.path("second", "vault.db")
        env2 = {"SOFTHSM2_CONF": conf, "KMSCTL_VAULT": v2}
        r = self.kms.run("init", "--pkcs11-module", SOFTHSM_MODULE, "--token-serial",
                         st["token"]["serial"], env=env2)
        self.assertEqual(r.rc, 0, r.show())
        st2 = self.kms.json("status", "--json", env=env2)
        self.assertNotEqual(st2["vault"]["id"], st["vault"]["id"])
        self.kms.ok("status", env=env)  # the first is untouched

    def test_a_module_other_than_softhsm2_serves_the_vault_end_to_end(self):
        # OpenSC's pkcs11-spy in front of SoftHSM2: to kmsctl, a module it does not know, which
        # it loads with OpenSSL as OpenSSL starts by default (SoftHSM2 itself gets it leaner).
        spy = next(iter(sorted(glob.glob("/usr/lib/*/pkcs11-spy.so") +
                               glob.glob("/usr/lib/pkcs11-spy.so"))), None)
        self.assertIsNotNone(spy, "OpenSC's pkcs11-spy.so is missing (scripts/setup.sh installs opensc)")
        conf = self.make_token()
        log = self.kms.path("spy.log")
        env = {"SOFTHSM2_CONF": conf, "PKCS11SPY": SOFTHSM_MODULE, "PKCS11SPY_OUTPUT": log}
        self.assertOk(self.kms.run("init", "--pkcs11-module", spy, "--token-label", "prod", env=env))
        self.assertEqual(self.kms.json("status", "--json", env=env)["token"]["module"], spy)
        self.kms.ok("key", "create", "--alias", "alias/spy", env=env)
        plain = self.kms.write_secret_file("plain", "through another module")
        blob = self.kms.path("blob")
        self.kms.ok("encrypt", "--key", "alias/spy", "--in", plain, "--out", blob, env=env)
        r = self.kms.run("decrypt", "--in", blob, "--out", "-", env=env)
        self.assertEqual((r.rc, r.out), (0, "through another module\n"), r.show())
        self.kms.ok("secret", "create", "spy/db", "--generate", env=env)
        self.assertEqual(len(self.kms.ok("secret", "get", "spy/db", env=env).out), 32)
        self.kms.ok("audit", "verify", env=env)
        with open(log) as f:
            calls = f.read()
        for call in ("C_Login", "C_Decrypt", "C_SetAttributeValue"):
            self.assertIn(call, calls, "the token was reached through the spy")

    def test_init_with_an_unknown_token_label_exits_6(self):
        conf = self.make_token()
        r = self.kms.run("init", "--pkcs11-module", SOFTHSM_MODULE, "--token-label", "nosuch",
                         env={"SOFTHSM2_CONF": conf})
        self.assertError(r, 6, "nosuch")
        self.assertFalse(os.path.exists(self.kms.vault))

    def test_init_with_a_module_but_no_token_choice_is_a_usage_error(self):
        r = self.kms.run("init", "--pkcs11-module", SOFTHSM_MODULE)
        self.assertError(r, 2, "--token-label")
        r = self.kms.run("init", "--token-label", "prod")
        self.assertError(r, 2, "--pkcs11-module")


class RootKeyInToken(KmsTestCase):
    def test_pkcs11_tool_lists_the_root_key_as_sensitive_and_never_extractable(self):
        self.kms.init()
        vid = self.kms.status()["vault"]["id"]
        out = self.kms.secret_keys()
        objects = [o for o in out.split("Secret Key Object")[1:]]
        roots = [o for o in objects if f"label:      kmsctl-root:{vid}" in o]
        self.assertEqual(len(roots), 1, out)
        root = roots[0]
        self.assertIn("AES length 32", root)
        access = next(l for l in root.splitlines() if l.strip().startswith("Access:"))
        self.assertIn("sensitive", access)
        self.assertIn("always sensitive", access)
        self.assertIn("never extractable", access)
        # Its value cannot be read out of the token.
        r = self.kms.pkcs11_tool("--login", "--pin", self.kms.pin, "--read-object", "--type",
                                 "secrkey", "--label", f"kmsctl-root:{vid}")
        self.assertNotEqual(r.rc, 0, r.show())
        # Without the PIN, the token shows no key at all (CKA_PRIVATE).
        anon = self.kms.pkcs11_tool("--list-objects", "--type", "secrkey")
        self.assertNotIn("kmsctl-root", anon.out)


if __name__ == "__main__":
    kmsenv.main()
