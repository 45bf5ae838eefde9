"""vault backup / restore / rekey / change-pin, and the invariant that no PIN ever reaches the
disk, the output or argv (docs/ARCHITECTURE.md §4.1)."""

import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase, file_mode


class Backup(KmsTestCase):
    def test_backup_writes_a_0600_copy_that_verifies_on_its_own(self):
        self.populate(2)
        backup = self.kms.path("backup.db")
        r = self.kms.run("vault", "backup", backup, preexec_fn=lambda: os.umask(0o022))
        self.assertOk(r)
        self.assertEqual(r.out, "")
        self.assertIn(f"backed up vault {self.kms.vault} to {backup}", r.err)
        self.assertEqual(file_mode(backup), 0o600)
        self.assertFalse(os.path.exists(backup + "-wal"), "a backup is one self-contained file")
        # It holds the log up to and including its own vault.backup record.
        rows = self.kms.sql("SELECT seq, action FROM audit_log ORDER BY seq", db=backup)
        self.assertEqual(rows[-1][1], "vault.backup")
        r = self.kms.run("audit", "verify", env={"KMSCTL_VAULT": backup})
        self.assertEqual(r.rc, 0, r.show())
        self.assertIn("audit log OK", r.out)

    def test_verifying_a_backup_leaves_the_live_vault_usable(self):
        # Checking a backup is routine; it must not make the live vault look rolled back.
        self.kms.init()
        backup = self.kms.path("backup.db")
        self.kms.ok("vault", "backup", backup)
        self.kms.ok("audit", "verify", env={"KMSCTL_VAULT": backup})
        r = self.kms.run("status")
        self.assertEqual(r.rc, 0, "the live vault broke after verifying its backup:\n" + r.show())
        self.kms.ok("audit", "verify")

    def test_backup_refuses_an_existing_file_without_force(self):
        self.kms.init()
        backup = self.kms.write_secret_file("backup.db", "precious")
        r = self.kms.run("vault", "backup", backup)
        self.assertError(r, 4, backup, "--force")
        with open(backup) as f:
            self.assertEqual(f.read(), "precious\n")
        self.kms.ok("vault", "backup", backup, "--force")
        self.assertEqual(self.kms.sql("PRAGMA user_version", db=backup),
                         self.kms.sql("PRAGMA user_version"))
        self.assertEqual(sorted(os.listdir(self.kms.root)),
                         sorted(["home", "vault", "pin", "backup.db"]), "no temporary files left")


class Restore(KmsTestCase):
    def test_restore_accepts_a_rollback_with_a_record_naming_the_replaced_anchor(self):
        self.kms.init()
        backup = self.kms.path("backup.db")
        self.kms.ok("vault", "backup", backup)
        for _ in range(2):
            self.kms.ok("status")
        anchor = self.kms.json("audit", "verify", "--json")["anchor"]  # then verify's record
        anchor_seq = anchor["seq"] + 1
        r = self.kms.run("vault", "restore", backup)
        self.assertError(r, 4, "--force")
        r = self.kms.run("vault", "restore", backup, "--force")
        self.assertOk(r)
        self.assertIn(f"the token anchor moved from seq {anchor_seq}", r.err)
        self.kms.ok("audit", "verify")
        log = self.kms.records()
        restore = [x for x in log if x["action"] == "vault.restore"]
        self.assertEqual(len(restore), 1)
        self.assertEqual(restore[0]["params"]["replaced_anchor_seq"], anchor_seq)
        self.kms.ok("status")

    def test_restore_refuses_a_tampered_backup_and_leaves_the_vault_alone(self):
        self.kms.init()
        backup = self.kms.path("backup.db")
        self.kms.ok("vault", "backup", backup)
        self.kms.sql("UPDATE audit_log SET principal = 'mallory' WHERE seq = 1", db=backup)
        before = self.kms.vault_digest()
        r = self.kms.run("vault", "restore", backup, "--force")
        self.assertError(r, 5, "seq 1")
        self.assertEqual(self.kms.vault_digest(), before)
        self.kms.ok("audit", "verify")


class Rekey(KmsTestCase):
    def test_rekey_leaves_exactly_one_root_key_and_everything_still_opens(self):
        self.kms.init()
        vid = self.kms.status()["vault"]["id"]
        for gen in (2, 3):
            with self.subTest(generation=gen):
                r = self.kms.run("vault", "rekey")
                self.assertOk(r)
                self.assertIn(f"root key generation {gen}", r.err)
                self.assertEqual(self.kms.status()["root_key_generation"], gen)
                self.kms.ok("audit", "verify")
                keys = self.kms.secret_keys()
                self.assertEqual(keys.count("Secret Key Object"), 1, keys)
                self.assertIn(f"label:      kmsctl-root:{vid}", keys)
                self.assertIn(f"ID:         {gen:016x}", keys)
                self.assertIn("never extractable", keys)
        rec = [x for x in self.kms.records() if x["action"] == "vault.rekey"]
        self.assertEqual([x["params"]["root_key_generation"] for x in rec], [2, 3])


class ChangePin(KmsTestCase):
    def test_change_pin_makes_the_old_pin_fail_and_the_new_one_work(self):
        self.kms.init()
        new_pin = "e2e-New-Pin-a1b2c3"
        new_file = self.kms.write_secret_file("new-pin", new_pin)
        r = self.kms.run("vault", "change-pin", env={"KMSCTL_NEW_PIN_FILE": new_file})
        self.assertOk(r)
        self.assertIn("PIN changed", r.err)
        r = self.kms.run("status")
        self.assertError(r, 6, "CKR_PIN_INCORRECT")
        self.kms.ok("status", env={"KMSCTL_PIN_FILE": new_file})
        self.kms.ok("audit", "verify", env={"KMSCTL_PIN_FILE": new_file})
        self.kms.secret_keys(pin=new_pin)
        # And back, with the flag and with the environment variable.
        r = self.kms.run("vault", "change-pin", "--new-pin-file", self.kms.pin_file,
                         env={"KMSCTL_PIN_FILE": new_file})
        self.assertOk(r)
        self.kms.ok("status")
        r = self.kms.run("vault", "change-pin", env={"KMSCTL_NEW_PIN": new_pin})
        self.assertOk(r)
        self.kms.ok("status", env={"KMSCTL_PIN_FILE": new_file})

    def test_a_too_short_or_missing_new_pin_changes_nothing(self):
        self.kms.init()
        short = self.kms.write_secret_file("short", "12")
        r = self.kms.run("vault", "change-pin", env={"KMSCTL_NEW_PIN_FILE": short})
        self.assertError(r, 2, "shorter than 4")
        r = self.kms.run("vault", "change-pin")  # no new PIN and no terminal
        self.assertError(r, 6, "KMSCTL_NEW_PIN")
        self.kms.ok("status")


class ResetPin(KmsTestCase):
    """A forgotten user PIN: `vault reset-pin` sets a new one with the SO PIN (C_InitPIN)."""

    def test_the_so_pin_sets_a_new_user_pin_and_the_reset_is_recorded(self):
        so_file = self.kms.path("so-pin")
        self.kms.init("--so-pin-file", so_file)
        self.kms.ok("key", "create")
        new_pin = "e2e-Reset-Pin-77aa"
        new_file = self.kms.write_secret_file("new-pin", new_pin)
        # No user PIN is needed (it is forgotten): none is given.
        r = self.kms.run("vault", "reset-pin", "--so-pin-file", so_file, "--new-pin-file",
                         new_file, unset=("KMSCTL_PIN_FILE",))
        self.assertOk(r)
        self.assertIn("reset", r.err)
        self.assertEqual(r.out, "")
        self.assertError(self.kms.run("status"), 6, "PIN")
        env = {"KMSCTL_PIN_FILE": new_file}
        self.kms.ok("audit", "verify", env=env)
        rows = self.kms.sql("SELECT action, outcome FROM audit_log ORDER BY seq")
        self.assertEqual(rows[-2:], [("vault.reset_pin", "ok"), ("audit.verify", "ok")])
        self.assertEqual(len(self.kms.json("key", "list", "--json", env=env)["items"]), 1)
        self.kms.secret_keys(pin=new_pin)

    def test_a_wrong_so_pin_changes_nothing(self):
        self.kms.init("--so-pin-file", self.kms.path("so-pin"))
        wrong = self.kms.write_secret_file("wrong-so", "not-the-so-pin-1234")
        new_file = self.kms.write_secret_file("new-pin", "e2e-Reset-Pin-88bb")
        before = self.kms.sql("SELECT count(*) FROM audit_log")[0][0]
        r = self.kms.run("vault", "reset-pin", "--so-pin-file", wrong, "--new-pin-file", new_file)
        self.assertError(r, 4, "security officer PIN")
        self.assertNotIn("not-the-so-pin-1234", r.err)
        self.kms.ok("status")  # the old PIN still opens the vault
        self.assertError(self.kms.run("status", env={"KMSCTL_PIN_FILE": new_file}), 6, "PIN")
        self.assertEqual(self.kms.sql("SELECT count(*) FROM audit_log")[0][0], before + 1)


class NoSecretLeaks(KmsTestCase):
    def test_no_pin_reaches_the_disk_the_output_or_argv(self):
        kms = self.kms
        new_pin = "e2e-New-Pin-d00dfeed"
        new_file = kms.write_secret_file("new-pin", new_pin)
        wrong = "e2e-Wrong-Pin-8badf00d"
        wrong_file = kms.write_secret_file("wrong-pin", wrong)
        kms.init()
        so_pin = kms.so_pin
        self.assertIsNotNone(so_pin)
        # A reader that keeps the WAL alive, so that it can be searched too.
        con = sqlite3.connect(kms.vault)
        con.execute("SELECT count(*) FROM audit_log").fetchall()
        try:
            kms.ok("status")
            kms.ok("status", "--json", unset=("KMSCTL_PIN_FILE",), env={"KMSCTL_PIN": kms.pin})
            kms.ok("audit", "list", "--json")
            kms.ok("audit", "verify", "--json")
            kms.ok("audit", "export", "--output", kms.path("log.jsonl"))
            kms.ok("vault", "backup", kms.path("backup.db"))
            kms.ok("vault", "rekey")
            kms.run("status", env={"KMSCTL_PIN_FILE": wrong_file})
            kms.run("status", unset=("KMSCTL_PIN_FILE",), env={"KMSCTL_PIN": wrong})
            kms.ok("vault", "change-pin", env={"KMSCTL_NEW_PIN_FILE": new_file})
            kms.ok("status", env={"KMSCTL_PIN_FILE": new_file})
            kms.ok("audit", "verify", env={"KMSCTL_PIN_FILE": new_file})
            self.assertTrue(os.path.exists(kms.vault + "-wal"))
            secrets = {"user PIN": kms.pin, "new PIN": new_pin, "wrong PIN": wrong,
                       "SO PIN": so_pin}
            pin_files = {kms.pin_file, new_file, wrong_file}
            searched = 0
            for dirpath, _, filenames in os.walk(kms.root):
                for name in filenames:
                    p = os.path.join(dirpath, name)
                    if p in pin_files:
                        continue
                    with open(p, "rb") as f:
                        data = f.read()
                    searched += 1
                    for what, secret in secrets.items():
                        self.assertNotIn(secret.encode(), data, f"the {what} is in {p}")
                        self.assertNotIn(secret.encode("utf-16-le"), data, f"the {what} is in {p}")
            self.assertGreater(searched, 5)
        finally:
            con.close()
        for i, (argv, r) in enumerate(kms.transcript):
            for what, secret in secrets.items():
                self.assertNotIn(secret, " ".join(argv), f"the {what} is on argv")
                if what == "SO PIN" and i == 0:
                    continue  # init shows the new SO PIN once, by design
                self.assertNotIn(secret, r.out + r.err, f"the {what} is in the output of "
                                 f"kmsctl {' '.join(argv)}")


if __name__ == "__main__":
    kmsenv.main()
