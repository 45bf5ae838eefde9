"""Only token objects that the PIN holder made are used (docs/SECURITY.md §3.3), and
`kmsctl vault check-token` shows the others.

Anyone who can write the token directory can add public objects to a SoftHSM2 token without the
PIN (pkcs11-tool does it with no login), with any label, application and value. kmsctl looks up
its keys and anchor slots only among private objects, and keys only among sensitive,
non-extractable ones generated in the token, so planted objects are never used. A copy of a
genuine object (which needs no PIN either: it is a file) is a tamper alarm naming the key, not
a brick for the rest of the vault."""

import glob
import json
import os
import shutil
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

EXIT_INTEGRITY = 5


class TokenCase(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.key = self.kms.json("key", "create", "--protection", "hsm", "--alias", "alias/hk",
                                 "--json")["key_id"]
        self.vault_id = self.kms.status()["vault"]["id"]
        with open(self.kms.path("plain"), "wb") as f:
            f.write(b"attack at dawn")
        self.n = 0

    def plant(self, *args):
        """A public object made without logging in, as a file attacker with the tool could."""
        r = self.kms.pkcs11_tool(*args)
        self.assertEqual(r.rc, 0, r.show())

    def roundtrip(self, ref="alias/hk"):
        self.n += 1
        blob = self.kms.path("blob-%d" % self.n)
        self.kms.ok("encrypt", "--key", ref, "--in", self.kms.path("plain"), "--out", blob)
        out = blob + ".out"
        self.kms.ok("decrypt", "--in", blob, "--out", out)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"attack at dawn")
        return blob

    def write_key_file(self):
        p = self.kms.path("chosen-key.bin")
        with open(p, "wb") as f:
            f.write(b"\x42" * 32)
        return p



class PlantedObjects(TokenCase):
    def test_public_keys_with_the_labels_of_an_hsm_key_are_never_used(self):
        before = self.roundtrip()
        for version in (1, 2):  # the current version, and the next rotation's
            label = "kmsctl-key:%s:%d" % (self.key, version)
            for _ in range(3):
                self.plant("--write-object", self.write_key_file(), "--type", "secrkey",
                           "--key-type", "AES:", "--label", label, "--id",
                           self.key.encode().hex())
        self.roundtrip()
        self.kms.ok("key", "rotate", "alias/hk")
        self.roundtrip()
        self.kms.ok("decrypt", "--in", before, "--out", before + ".again")
        self.kms.ok("audit", "verify")

    def test_a_public_data_object_with_the_anchor_application_changes_nothing(self):
        app = "kmsctl-audit-anchor:" + self.vault_id
        data = self.kms.path("junk")
        with open(data, "wb") as f:
            f.write(b"KANC\x01" + b"\x00" * 72)
        for _ in range(2):
            self.plant("--write-object", data, "--type", "data", "--application-label", app,
                       "--label", "kmsctl-audit-anchor-value:AAAA")
        self.kms.ok("status")
        self.roundtrip()
        self.kms.ok("audit", "verify")
        self.kms.ok("vault", "backup", self.kms.path("b.db"))
        self.kms.ok("vault", "restore", "--force", self.kms.path("b.db"))
        self.kms.ok("status")

    def test_a_copy_of_a_genuine_key_object_is_a_tamper_alarm_not_a_brick(self):
        token = glob.glob(os.path.join(self.kms.token_dir, "tokens", "*"))[0]
        before = set(glob.glob(os.path.join(token, "*.object")))
        self.kms.ok("key", "create", "--protection", "hsm", "--alias", "alias/victim")
        new = set(glob.glob(os.path.join(token, "*.object"))) - before
        self.assertEqual(len(new), 1, new)
        shutil.copy(new.pop(), os.path.join(token, "%s.object" % uuid.uuid4()))
        r = self.kms.run("encrypt", "--key", "alias/victim", "--in", self.kms.path("plain"),
                         "--out", self.kms.path("never"))
        self.assertError(r, EXIT_INTEGRITY, "key objects for key", "the token was altered")
        self.assertFalse(os.path.exists(self.kms.path("never")))
        # The rest of the vault works.
        self.kms.ok("status")
        self.roundtrip()
        self.kms.ok("key", "create", "--alias", "alias/sw")
        self.roundtrip("alias/sw")



class CheckToken(TokenCase):
    """`kmsctl vault check-token` lists the token, flags what the vault did not make, and with
    --remove (confirmed) destroys it, audited."""

    def check(self, *args):
        r = self.kms.run("vault", "check-token", "--json", *args)
        return r, json.loads(r.out) if r.out else None

    def plant_all(self):
        self.plant("--write-object", self.write_key_file(), "--type", "secrkey", "--key-type",
                   "AES:", "--label", "kmsctl-key:%s:1" % self.key, "--id", self.key.encode().hex())
        data = self.kms.path("junk")
        with open(data, "wb") as f:
            f.write(b"junk")
        self.plant("--write-object", data, "--type", "data", "--application-label",
                   "kmsctl-audit-anchor:" + self.vault_id, "--label", "planted")
        # A stray: kmsctl's attributes, the label of a version that has no row.
        r = self.kms.pkcs11_tool("--login", "--pin", self.kms.pin, "--keygen", "--key-type",
                                 "aes:32", "--label", "kmsctl-key:%s:7" % self.key, "--private",
                                 "--sensitive", "--id", self.key.encode().hex())
        self.assertEqual(r.rc, 0, r.show())

    def test_a_clean_token_lists_what_is_in_use(self):
        r, j = self.check()
        self.assertEqual(r.rc, 0, r.show())
        kinds = sorted((o["kind"], o["status"]) for o in j["objects"])
        self.assertEqual(kinds, [("anchor slot", "in use"), ("anchor slot", "in use"),
                                 ("hsm key", "in use"), ("root key", "in use")])
        self.assertEqual((j["foreign"], j["strays"], j["duplicates"], j["removed"]), (0, 0, 0, 0))

    def test_planted_and_stray_objects_are_flagged_and_removed_only_when_confirmed(self):
        self.plant_all()
        r, j = self.check()
        self.assertEqual(r.rc, EXIT_INTEGRITY, r.show())
        self.assertIn("did not make", r.err)
        self.assertEqual((j["foreign"], j["strays"]), (2, 1))
        flagged = [o for o in j["objects"] if o["status"] in ("foreign", "stray")]
        self.assertTrue(all(not o["removed"] for o in flagged))
        # No terminal and no --yes: refused, nothing destroyed.
        r, j = self.check("--remove")
        self.assertEqual(r.rc, 4, r.show())
        self.assertIn("--yes", r.err)
        self.assertEqual(self.check()[1]["foreign"], 2)
        r, j = self.check("--remove", "--yes")
        self.assertEqual(r.rc, 0, r.show())
        self.assertEqual(j["removed"], 3)
        r, j = self.check()
        self.assertEqual(r.rc, 0, r.show())
        self.assertEqual(len(j["objects"]), 4)
        rec = [x for x in self.kms.records() if x["action"] == "vault.check_token"]
        removal = [x for x in rec if x["params"]["remove"]]
        self.assertEqual(len(removal), 1)
        self.assertEqual((removal[0]["params"]["foreign"], removal[0]["params"]["strays"],
                          removal[0]["params"]["removed"]), (2, 1, 3))
        self.roundtrip()  # nothing of the vault's own was touched
        self.kms.ok("audit", "verify")

    def test_a_copied_key_object_is_reported_and_never_removed(self):
        token = glob.glob(os.path.join(self.kms.token_dir, "tokens", "*"))[0]
        before = set(glob.glob(os.path.join(token, "*.object")))
        self.kms.ok("key", "create", "--protection", "hsm", "--alias", "alias/victim")
        new = (set(glob.glob(os.path.join(token, "*.object"))) - before).pop()
        shutil.copy(new, os.path.join(token, "%s.object" % uuid.uuid4()))
        r, j = self.check("--remove", "--yes")
        self.assertError(r, EXIT_INTEGRITY, "copies of objects in use", "backup",
                         stdout_empty=False)
        self.assertEqual((j["duplicates"], j["removed"]), (1, 0))

    def test_the_text_listing_names_each_object(self):
        self.plant_all()
        r = self.kms.run("vault", "check-token")
        self.assertEqual(r.rc, EXIT_INTEGRITY, r.show())
        lines = r.out.splitlines()
        self.assertTrue(lines[0].startswith("KIND"))
        self.assertEqual(sum("foreign" in ln for ln in lines), 2)
        self.assertEqual(sum("stray" in ln for ln in lines), 1)
        self.assertIn("planted", r.out)


if __name__ == "__main__":
    kmsenv.main()
