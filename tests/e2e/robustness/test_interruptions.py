"""What a kill can leave behind, made on purpose, and how kmsctl mends it (docs/SECURITY.md §12):
an emptied or cut-short token.object (SoftHSM2 truncates and rewrites it at every login), a
`vault restore` killed between replacing the vault's content and moving the token anchor, and a
key object left in the token by an hsm key rotation killed before its commit.

test_torture.py produces these by killing real commands at random instants; these tests make
each state deterministically and check the repair, its audit record and its limits."""

import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

EXIT_INTEGRITY = 5
EXIT_UNAVAILABLE = 6


class TokenFile(KmsTestCase):
    def token_object(self):
        files = glob.glob(os.path.join(self.kms.token_dir, "tokens", "*", "token.object"))
        self.assertEqual(len(files), 1, files)
        return files[0]

    def test_an_emptied_token_object_is_restored_from_the_copy_and_recorded(self):
        self.kms.init()
        path = self.token_object()
        with open(path, "rb") as f:
            before = f.read()
        for damage in (b"", before[: len(before) // 2], before[:-3]):
            with self.subTest(length=len(damage)):
                with open(path, "wb") as f:
                    f.write(damage)
                self.kms.ok("status")
                rec = [r for r in self.kms.records() if r["action"] == "vault.repair_token"][-1]
                self.assertEqual(rec["outcome"], "ok")
                self.assertEqual(rec["params"], {"file": path, "restored_from": "copy",
                                                 "host": kmsenv.HOST})
                # The token is whole again: its own tools log in with the user PIN.
                self.assertIn("kmsctl-", self.kms.secret_keys())
        self.kms.ok("audit", "verify")

    def test_the_copy_follows_a_pin_change(self):
        self.kms.init()
        new_pin = self.kms.write_secret_file("new-pin", "e2e-New-Pin-9e41")
        self.kms.ok("vault", "change-pin", env={"KMSCTL_NEW_PIN_FILE": new_pin})
        self.kms.pin_file = new_pin
        with open(self.token_object(), "wb"):
            pass
        self.kms.ok("status")  # mended with the new PIN's token.object, not the old one
        r = self.kms.run("status", env={"KMSCTL_PIN_FILE": self.kms.path("pin")})
        self.assertError(r, EXIT_UNAVAILABLE, "CKR_PIN_INCORRECT")

    def test_a_damaged_token_object_without_a_copy_names_the_file_and_the_way_back(self):
        self.kms.init()
        path = self.token_object()
        shutil.rmtree(os.path.join(self.kms.token_dir, "token-copy"))
        with open(path, "wb"):
            pass
        r = self.kms.run("status")
        self.assertError(r, EXIT_UNAVAILABLE, path, "no valid copy", "backup")
        self.assertEqual(os.path.getsize(path), 0, "nothing is made up")

    def test_the_copy_and_the_lock_are_private(self):
        self.kms.init()
        copies = glob.glob(os.path.join(self.kms.token_dir, "token-copy", "*.token.object"))
        self.assertEqual(len(copies), 1)
        self.assertEqual(kmsenv.file_mode(copies[0]), 0o600)
        self.assertEqual(kmsenv.file_mode(os.path.dirname(copies[0])), 0o700)
        self.assertEqual(kmsenv.file_mode(os.path.join(self.kms.token_dir, "token-files.lock")),
                         0o600)


class InterruptedRestore(KmsTestCase):
    """The state a kill between a restore's content swap and its anchor update leaves: the vault
    holds the backup and the vault.restore record, the token still holds the old anchor. It is
    made by putting back a copy of the token directory taken before the restore."""

    def restore_with_token_put_back(self, token_copy):
        backup = self.kms.path("b.db")
        self.kms.ok("vault", "restore", "--force", backup)
        shutil.rmtree(self.kms.token_dir)
        shutil.copytree(token_copy, self.kms.token_dir)

    def test_the_next_command_finishes_it(self):
        self.kms.init()
        self.kms.ok("vault", "backup", self.kms.path("b.db"))
        self.kms.ok("key", "create", "--alias", "alias/after-backup")
        token_copy = self.kms.path("token-before-restore")
        shutil.copytree(self.kms.token_dir, token_copy)
        self.restore_with_token_put_back(token_copy)
        self.kms.ok("status")
        records = self.kms.records()
        self.assertEqual([r["action"] for r in records[-2:]], ["vault.restore", "vault.status"])
        self.kms.ok("audit", "verify")
        r = self.kms.run("key", "describe", "alias/after-backup")
        self.assertEqual(r.rc, 3, r.show())  # the backup's content, as restored

    def test_audit_verify_as_the_first_command_finishes_it_too(self):
        self.kms.init()
        self.kms.ok("vault", "backup", self.kms.path("b.db"))
        self.kms.ok("status")
        token_copy = self.kms.path("token-before-restore")
        shutil.copytree(self.kms.token_dir, token_copy)
        self.restore_with_token_put_back(token_copy)
        self.kms.ok("audit", "verify")

    def test_a_restore_record_naming_another_anchor_is_refused(self):
        self.kms.init()
        self.kms.ok("vault", "backup", self.kms.path("b.db"))
        self.kms.ok("status")
        self.kms.ok("status")
        # An anchor ahead of the backup's log, but not the one the restore replaces.
        token_copy = self.kms.path("token-older")
        shutil.copytree(self.kms.token_dir, token_copy)
        self.kms.ok("status")
        self.restore_with_token_put_back(token_copy)
        r = self.kms.run("status")
        self.assertError(r, EXIT_INTEGRITY, "token anchor")
        r = self.kms.run("audit", "verify")
        self.assertEqual(r.rc, EXIT_INTEGRITY, r.show())

    def delete_anchor(self):
        for _ in range(2):  # both slots
            r = self.kms.pkcs11_tool("--login", "--pin", self.kms.pin, "--delete-object",
                                     "--type", "data", "--application-label",
                                     "kmsctl-audit-anchor:" + self.vault_id)
            self.assertEqual(r.rc, 0, r.show())

    def test_a_restore_record_is_no_pass_when_the_token_holds_no_anchor(self):
        """A restore made while the token had no anchor records none as replaced. Its record at
        the head must not make a token whose anchor was deleted (its files removed) accept the
        log: that is what a rolled-back file with a deleted anchor looks like."""
        self.kms.init()
        self.vault_id = self.kms.status()["vault"]["id"]
        self.kms.ok("vault", "backup", self.kms.path("b.db"))
        self.delete_anchor()
        self.kms.ok("vault", "restore", "--force", self.kms.path("b.db"))
        restore = self.kms.records()[-1]
        self.assertEqual((restore["action"], restore["params"]["replaced_anchor_seq"]),
                         ("vault.restore", None))
        self.delete_anchor()
        r = self.kms.run("status")
        self.assertError(r, EXIT_INTEGRITY, "no audit anchor")


class StrayHsmKey(KmsTestCase):
    def test_a_rotation_replaces_a_key_object_left_by_an_interrupted_one(self):
        self.kms.init()
        key = self.kms.json("key", "create", "--protection", "hsm", "--json")["key_id"]
        label = "kmsctl-key:%s:2" % key
        # What a rotation killed after C_GenerateKey and before its commit leaves: a key with
        # kmsctl's attributes (private, sensitive, not extractable, CKA_ID the key id).
        r = self.kms.pkcs11_tool("--login", "--pin", self.kms.pin, "--keygen", "--key-type",
                                 "aes:32", "--label", label, "--private", "--sensitive",
                                 "--id", key.encode().hex())
        self.assertEqual(r.rc, 0, r.show())
        self.assertEqual(self.kms.secret_keys().count(label), 1)
        self.kms.ok("key", "rotate", key)
        self.assertEqual(self.kms.secret_keys().count(label + "\n"), 1,
                         "one key object for version 2")
        with open(self.kms.path("plain"), "wb") as f:
            f.write(b"after the stray")
        for i in range(5):  # whichever order the token lists objects in, the same key is used
            blob = self.kms.path("blob-%d" % i)
            self.kms.ok("encrypt", "--key", key, "--in", self.kms.path("plain"), "--out", blob)
            self.kms.ok("decrypt", "--in", blob, "--out", self.kms.path("out"))
            with open(self.kms.path("out"), "rb") as f:
                self.assertEqual(f.read(), b"after the stray")
            os.unlink(self.kms.path("out"))


if __name__ == "__main__":
    kmsenv.main()
