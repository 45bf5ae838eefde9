"""Keys with protection level hsm: generated in the vault's SoftHSM2 token as non-extractable AES
keys (one token object per version, label kmsctl-key:<id>:<version>), used in the token, with the
same blob format; destroyed from the token when maintain purges the key."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (SharedVaultTestCase, INTEGRITY, MIN_BLOB, NOT_FOUND, REFUSED, parse_blob, unb64)


def label(key, version):
    return f"kmsctl-key:{key}:{version}"


class HsmKeys(SharedVaultTestCase):
    def key_objects(self, key):
        objs, raw = self.vault.token_secret_keys()
        return {l: a for l, a in objs.items() if l.startswith(f"kmsctl-key:{key}:")}, raw

    def test_hsm_key_lives_in_the_token_as_a_sensitive_never_extractable_object(self):
        r, rec = self.audited("key", "create", "--protection", "hsm", "--json",
                              action="key.create")
        k = r.json()
        key = k["key_id"]
        self.assertEqual(k["protection"], "hsm")
        self.assertEqual(rec["params"]["protection"], "hsm")
        objs, raw = self.key_objects(key)
        self.assertEqual(list(objs), [label(key, 1)], raw)
        obj = objs[label(key, 1)]
        self.assertIn("AES length 32", obj["header"])
        access = [a.strip() for a in obj["Access"].split(",")]
        self.assertIn("sensitive", access, raw)
        self.assertIn("never extractable", access, raw)
        self.assertNotIn("extractable", access, raw)
        # No material for it in the vault file.
        self.assertEqual(self.vault.sql("SELECT material FROM key_versions WHERE key_id = ?",
                                        (key,)), [(None,)])

    def test_hsm_encrypt_decrypt_round_trip_uses_the_same_blob_format(self):
        key = self.vault.create_key("--protection", "hsm")
        pt = b"in the token"
        r, rec = self.audited("encrypt", "--key", key, "--context", "c=1", input=pt,
                              action="key.encrypt")
        raw = unb64(r.out.strip())
        self.assertEqual(parse_blob(raw)[:4], (b"KMSC", 1, key, 1))
        self.assertEqual(len(raw), MIN_BLOB + len(pt))
        r, rec = self.audited("decrypt", "--context", "c=1", input=r.out, action="key.decrypt")
        self.assertEqual(r.raw, pt)
        d = self.vault.json("data-key", "generate", "--key", key, "--json")
        self.assertEqual(self.vault.decrypt(d["ciphertext_blob"]), unb64(d["plaintext"]))

    def test_hsm_decrypt_with_a_wrong_context_or_a_flipped_tag_fails_with_exit_5(self):
        key = self.vault.create_key("--protection", "hsm")
        blob = self.vault.encrypt(key, b"hsm context", "--context", "c=1")
        raw = bytearray(unb64(blob))
        raw[-1] ^= 0x01
        for inp, ctx in ((blob, ("--context", "c=2")), (blob, ()), (bytes(raw), ("--context", "c=1"))):
            with self.subTest(ctx=ctx, flipped=inp is not blob):
                r, _ = self.audited("decrypt", *ctx, input=inp, action="key.decrypt",
                                    rc=INTEGRITY, error_code="integrity")
                self.assertError(r, INTEGRITY, key, hint="--context")

    def test_rotation_makes_a_second_token_object_and_version_1_still_decrypts(self):
        key = self.vault.create_key("--protection", "hsm")
        old = self.vault.encrypt(key, b"v1")
        self.vault.ok("key", "rotate", key)
        objs, raw = self.key_objects(key)
        self.assertEqual(sorted(objs), [label(key, 1), label(key, 2)], raw)
        for o in objs.values():
            self.assertIn("never extractable", o["Access"])
        new = self.vault.encrypt(key, b"v2")
        self.assertEqual(parse_blob(unb64(new))[3], 2)
        self.assertEqual(self.vault.decrypt(old), b"v1")
        self.assertEqual(self.vault.decrypt(new), b"v2")
        moved = self.vault.ok("re-encrypt", "--to-key", key, input=old).out
        self.assertEqual(parse_blob(unb64(moved))[3], 2)
        self.vault.ok("key", "disable", key)
        r = self.vault.run("decrypt", input=old)
        self.assertError(r, REFUSED, key, "disabled")

    def test_a_refused_hsm_create_leaves_no_token_object_behind(self):
        self.vault.create_key("--alias", "alias/hsm-taken")
        before, _ = self.vault.token_secret_keys()
        r, _ = self.audited("key", "create", "--protection", "hsm", "--alias", "alias/hsm-taken",
                            action="key.create", rc=REFUSED)
        self.assertError(r, REFUSED, "alias/hsm-taken")
        after, raw = self.vault.token_secret_keys()
        self.assertEqual(sorted(after), sorted(before), raw)

    def test_maintain_after_the_deletion_date_destroys_the_token_objects(self):
        key = self.vault.create_key("--protection", "hsm", "--alias", "alias/hsm-doomed")
        blob = self.vault.encrypt(key, b"soon gone")
        self.vault.ok("key", "rotate", key)
        keep = self.vault.create_key("--protection", "hsm")
        self.vault.ok("key", "schedule-deletion", key, "--pending-days", "7")
        objs, _ = self.key_objects(key)
        self.assertEqual(len(objs), 2, "scheduling destroys nothing yet")
        r, rec = self.audited("maintain", "--json", action="vault.maintain", faketime="+8d")
        self.assertIn(key, r.json()["deleted"])
        self.assertNotIn(keep, r.json()["deleted"])
        objs, raw = self.key_objects(key)
        self.assertEqual(objs, {}, raw)
        kept, raw = self.key_objects(keep)
        self.assertEqual(list(kept), [label(keep, 1)], raw)
        r = self.vault.run("key", "describe", key, faketime="+8d")
        self.assertError(r, NOT_FOUND, key)
        r = self.vault.run("decrypt", input=blob, faketime="+8d")
        self.assertError(r, NOT_FOUND, key)
        r = self.vault.run("key", "describe", "alias/hsm-doomed", faketime="+8d")
        self.assertError(r, NOT_FOUND, "alias/hsm-doomed")


if __name__ == "__main__":
    kmsenv.main()
