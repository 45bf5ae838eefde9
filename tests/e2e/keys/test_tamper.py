"""Tampering with ciphertext blobs and with the vault file fails closed: exit 5 (integrity), or 3
for a blob naming a key or key version the vault does not have, a specific message, nothing on
stdout, and an audit record of the failure."""

import os
import sqlite3
import struct
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import SharedVaultTestCase, INTEGRITY, NOT_FOUND, MIN_BLOB, b64, unb64


class FlippedBytes(SharedVaultTestCase):
    def test_flipping_any_byte_of_a_raw_blob_fails_with_exit_5(self):
        key = self.vault.create_key()
        pt = b"Z"
        raw = self.vault.ok("encrypt", "--key", key, "--binary", input=pt).raw
        self.assertEqual(len(raw), MIN_BLOB + 1)
        self.assertEqual(self.vault.decrypt(raw), pt)
        before = self.vault.audit_count()
        bad = []
        for i in range(len(raw)):
            flipped = bytearray(raw)
            flipped[i] ^= 0xFF
            r = self.vault.run("decrypt", input=bytes(flipped))
            # A flip inside the key id names a key that is not in the vault, one inside the key
            # version a version it does not have: exit 3 is right too.
            allowed = (INTEGRITY, NOT_FOUND) if 5 <= i < 25 else (INTEGRITY,)
            if (r.rc not in allowed or r.raw != b"" or not r.err.startswith("kmsctl: error: ")
                    or "\nhint: " not in r.err):
                bad.append(f"byte {i}: {r!r}")
        self.assertEqual(bad, [], "\n".join(bad))
        # Every attempt that reached the vault is audited as a failure; the rest of the audit
        # question (flips of the magic) is DamagedInput's.
        rows = self.vault.audit_rows(before)
        self.assertGreaterEqual(len(rows), len(raw) - 4)
        self.assertEqual({(x["action"], x["outcome"]) for x in rows}, {("key.decrypt", "error")})
        self.assertLessEqual({x["error_code"] for x in rows}, {"integrity", "not_found"})
        # Nothing was damaged: the original still decrypts.
        self.assertEqual(self.vault.decrypt(raw), pt)

    def test_flipping_a_single_bit_of_the_tag_or_ciphertext_in_base64_form_fails(self):
        key = self.vault.create_key()
        raw = unb64(self.vault.encrypt(key, b"bit flip target"))
        for i in (len(raw) - 1, MIN_BLOB - 16, 30):
            flipped = bytearray(raw)
            flipped[i] ^= 0x01
            r, rec = self.audited("decrypt", input=b64(bytes(flipped)), action="key.decrypt",
                                  rc=INTEGRITY, error_code="integrity")
            self.assertError(r, INTEGRITY, key, "altered")
            self.assertEqual(rec["resource"], "key/" + key)


class DamagedInput(SharedVaultTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.vault.create_key()
        cls.b = cls.vault.create_key()
        cls.raw = unb64(cls.vault.encrypt(cls.a, b"ten bytes!"))

    def test_truncated_or_extended_blobs_fail_with_exit_5(self):
        raw = self.raw
        text = b64(raw)
        for name, data in (("one byte short", raw[:-1]), ("no tag", raw[:-16]),
                           ("shorter than the minimum", raw[:MIN_BLOB - 1]),
                           ("header only", raw[:25]), ("magic only", raw[:4]),
                           ("one byte more", raw + b"\x00"),
                           ("base64 cut short", text[:-4]), ("empty", b"")):
            with self.subTest(name):
                r, _ = self.audited("decrypt", input=data, action="key.decrypt", rc=INTEGRITY,
                                    error_code="integrity")
                self.assertError(r, INTEGRITY)

    GARBAGE = (("text", b"hello world"), ("bad base64", b"not*base64!"),
               ("lower-case magic", b"kmsc"))

    def test_garbage_input_fails_with_exit_5_and_says_what_it_expected(self):
        for name, data in self.GARBAGE + (
                ("base64 of random bytes", b64(os.urandom(80))),
                ("format version 2", self.raw[:4] + b"\x02" + self.raw[5:]),
                ("key version 0", self.raw[:21] + b"\0\0\0\0" + self.raw[25:])):
            if name == "lower-case magic":
                data += self.raw[4:]
            with self.subTest(name):
                r = self.vault.run("decrypt", input=data)
                self.assertError(r, INTEGRITY, "blob", hint="kmsctl encrypt")

    def test_every_rejected_decrypt_is_audited_even_when_the_input_is_not_base64(self):
        # Base64 text that is no blob is audited (key.decrypt, integrity); input that is not
        # even base64 is the same failure and must be too.
        for name, data in self.GARBAGE:
            if name == "lower-case magic":
                data += self.raw[4:]
            for args, action in ((("decrypt",), "key.decrypt"),
                                 (("re-encrypt", "--to-key", self.a), "key.reencrypt")):
                with self.subTest(name, command=args[0]):
                    r, _ = self.audited(*args, input=data, action=action, rc=INTEGRITY,
                                        error_code="integrity")
                    self.assertError(r, INTEGRITY)

    def test_a_blob_relabelled_to_another_key_or_version_fails_and_to_a_missing_one_exits_3(self):
        raw = bytearray(self.raw)
        raw[5:21] = uuid.UUID(self.b).bytes
        r, rec = self.audited("decrypt", input=bytes(raw), action="key.decrypt", rc=INTEGRITY,
                              error_code="integrity")
        self.assertError(r, INTEGRITY, self.b)
        self.assertEqual(rec["resource"], "key/" + self.b)
        key = self.vault.create_key()
        old = unb64(self.vault.encrypt(key, b"version one"))
        self.vault.ok("key", "rotate", key)
        relabelled = old[:21] + struct.pack(">I", 2) + old[25:]
        r, _ = self.audited("decrypt", input=relabelled, action="key.decrypt", rc=INTEGRITY,
                            error_code="integrity")
        self.assertError(r, INTEGRITY, key, "version 2", "altered")
        # A version newer than the vault's newest is one it does not have (lost to a restore of
        # an older backup, or the header altered): said so, not blamed on the context.
        missing = old[:21] + struct.pack(">I", 3) + old[25:]
        r, _ = self.audited("decrypt", input=missing, action="key.decrypt", rc=NOT_FOUND,
                            error_code="not_found")
        self.assertError(r, NOT_FOUND, f"this vault has no version 3 of key {key}",
                         "older backup")
        self.assertNotIn("context", r.err)


class SwappedMaterial(SharedVaultTestCase):
    def set_material(self, pairs):
        if self.vault.db:
            # PostgreSQL: its administrator's statements, each committed as it runs (no kmsctl
            # runs meanwhile).
            for (key, version), material in pairs.items():
                cur = self.vault.db.execute("UPDATE key_versions SET material = ? WHERE "
                                            "key_id = ? AND version = ?", (material, key, version))
                self.assertEqual(cur.rowcount, 1)
            return
        con = sqlite3.connect(self.vault.vault, isolation_level=None, timeout=30)
        try:
            con.execute("BEGIN IMMEDIATE")
            for (key, version), material in pairs.items():
                cur = con.execute("UPDATE key_versions SET material = ? WHERE key_id = ? AND "
                                  "version = ?", (material, key, version))
                self.assertEqual(cur.rowcount, 1)
            con.execute("COMMIT")
        finally:
            con.close()

    def material(self, key, version):
        (m,), = self.vault.sql("SELECT material FROM key_versions WHERE key_id = ? AND "
                               "version = ?", (key, version))
        self.assertIsNotNone(m)
        return m

    def test_swapping_two_keys_sealed_material_makes_both_fail_closed_and_audited(self):
        v = self.vault
        a, b = v.create_key(), v.create_key()
        blob_a, blob_b = v.encrypt(a, b"alpha"), v.encrypt(b, b"bravo")
        ma, mb = self.material(a, 1), self.material(b, 1)
        self.assertNotEqual(ma, mb)
        self.set_material({(a, 1): mb, (b, 1): ma})
        try:
            for key, blob in ((a, blob_a), (b, blob_b)):
                r, rec = self.audited("decrypt", input=blob, action="key.decrypt",
                                      rc=INTEGRITY, outcome="error", error_code="integrity")
                self.assertError(r, INTEGRITY)
                self.assertEqual(rec["resource"], "key/" + key)
            # Nothing is produced under the swapped material either.
            r, rec = self.audited("encrypt", "--key", a, input=b"x", action="key.encrypt",
                                  rc=INTEGRITY, error_code="integrity")
            self.assertError(r, INTEGRITY)
            r, rec = self.audited("data-key", "generate", "--key", b, "--json",
                                  action="key.generate_data_key", rc=INTEGRITY,
                                  error_code="integrity")
            self.assertError(r, INTEGRITY)
            r, _ = self.audited("re-encrypt", "--to-key", a, input=blob_b,
                                action="key.reencrypt", rc=INTEGRITY, error_code="integrity")
            self.assertError(r, INTEGRITY)
        finally:
            self.set_material({(a, 1): ma, (b, 1): mb})
        # Put back, both work again: the failure was the swap and nothing else.
        self.assertEqual(v.decrypt(blob_a), b"alpha")
        self.assertEqual(v.decrypt(blob_b), b"bravo")
        rep = v.json("audit", "verify", "--json")
        self.assertIs(rep["ok"], True, rep)

    def test_material_copied_to_another_version_of_the_same_key_fails_closed(self):
        v = self.vault
        key = v.create_key()
        blob1 = v.encrypt(key, b"one")
        v.ok("key", "rotate", key)
        m1, m2 = self.material(key, 1), self.material(key, 2)
        self.set_material({(key, 2): m1})
        try:
            r, _ = self.audited("encrypt", "--key", key, input=b"x", action="key.encrypt",
                                rc=INTEGRITY, error_code="integrity")
            self.assertError(r, INTEGRITY)
            self.assertEqual(v.decrypt(blob1), b"one", "version 1 is untouched")
        finally:
            self.set_material({(key, 2): m2})
        self.assertEqual(v.decrypt(v.encrypt(key, b"two")), b"two")

    def test_a_deleted_version_row_makes_its_blobs_fail_closed(self):
        v = self.vault
        key = v.create_key()
        blob = v.encrypt(key, b"gone")
        v.ok("key", "rotate", key)
        [row] = v.sql("SELECT * FROM key_versions WHERE key_id = ? AND version = 1", (key,))
        v.sql("DELETE FROM key_versions WHERE key_id = ? AND version = 1", (key,))
        r, _ = self.audited("decrypt", input=blob, action="key.decrypt", rc=INTEGRITY,
                            error_code="integrity")
        # Versions are never removed one by one: a gap below the newest is an altered file.
        self.assertError(r, INTEGRITY, key, "no version 1", "vault file was altered")
        # The deleted row is missing from the state the log recorded.
        r = v.run("audit", "verify")
        self.assertError(r, INTEGRITY, "not the state that audit record")
        # Put back as it was (the other tests of this class share the vault), all is well again.
        v.sql(f"INSERT INTO key_versions VALUES ({', '.join('?' * len(row))})", row)
        self.assertEqual(v.decrypt(blob), b"gone")
        self.assertIs(v.json("audit", "verify", "--json")["ok"], True)


class AsymmetricRows(SharedVaultTestCase):
    """A writer of the vault file cannot turn a signing key into an encryption key (or an AES
    key whose material is a private key), nor sign under another key's private key: a key's
    spec and usage are in its authenticated row, its private key is sealed to its own id and
    version."""

    def sign(self, key, rc=0):
        return self.audited("sign", "--key", key, "--algorithm", "ECDSA_SHA_256", "--in", "-",
                            input=b"release 1.0", action="key.sign", rc=rc,
                            error_code=None if rc == 0 else "integrity")

    def test_a_keys_spec_or_usage_rewritten_with_sqlite3_is_refused(self):
        v = self.vault
        key = v.create_key("--spec", "EC_P256")
        self.sign(key)
        (spec, usage), = v.sql("SELECT spec, usage FROM keys WHERE id = ?", (key,))
        self.assertEqual((spec, usage), ("EC_P256", "SIGN_VERIFY"))
        for new_spec, new_usage in (("AES_256", "ENCRYPT_DECRYPT"), ("EC_P256", "ENCRYPT_DECRYPT"),
                                    ("EC_P384", "SIGN_VERIFY")):
            v.sql("UPDATE keys SET spec = ?, usage = ? WHERE id = ?", (new_spec, new_usage, key))
            try:
                r, _ = self.audited("encrypt", "--key", key, input=b"x", action="key.encrypt",
                                    rc=INTEGRITY, error_code="integrity")
                self.assertError(r, INTEGRITY)
                r, _ = self.sign(key, rc=INTEGRITY)
                self.assertError(r, INTEGRITY)
                self.assertEqual(r.out, "")
            finally:
                v.sql("UPDATE keys SET spec = ?, usage = ? WHERE id = ?", (spec, usage, key))
        self.sign(key)  # put back, it signs again

    def test_a_private_key_moved_to_another_key_signs_nothing(self):
        v = self.vault
        a, b = v.create_key("--spec", "EC_P256"), v.create_key("--spec", "EC_P256")
        (ma,), = v.sql("SELECT material FROM key_versions WHERE key_id = ?", (a,))
        (mb,), = v.sql("SELECT material FROM key_versions WHERE key_id = ?", (b,))
        v.sql("UPDATE key_versions SET material = ? WHERE key_id = ?", (ma, b))
        try:
            r, _ = self.sign(b, rc=INTEGRITY)
            self.assertError(r, INTEGRITY)
            r, _ = self.audited("key", "public", b, action="key.get_public_key", rc=INTEGRITY,
                                error_code="integrity")
            self.assertEqual(r.out, "")
        finally:
            v.sql("UPDATE key_versions SET material = ? WHERE key_id = ?", (mb, b))
        self.sign(b)
        rep = v.json("audit", "verify", "--json")
        self.assertIs(rep["ok"], True, rep)


if __name__ == "__main__":
    kmsenv.main()
