"""encrypt, decrypt, re-encrypt, data-key generate and random through the real binary: input and
output forms, the 4096-byte limit, the encryption context, refusals by key state, and that no
plaintext or data key reaches the audit log or the vault's files."""

import base64
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (SharedVaultTestCase, INTEGRITY, MAGIC, MIN_BLOB, NOT_FOUND, REFUSED, USAGE, b64,
                    parse_blob, unb64)


def mode(path):
    return os.stat(path).st_mode & 0o777


class EncryptDecrypt(SharedVaultTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.vault.create_key("--alias", "alias/app")

    def test_encrypt_writes_one_base64_line_holding_a_version_1_blob_that_names_key_and_version(self):
        pt = b"attack at dawn\x00\xff\n"
        r, rec = self.audited("encrypt", "--key", "alias/app", input=pt, action="key.encrypt")
        self.assertTrue(r.out.endswith("\n"))
        self.assertEqual(r.out.count("\n"), 1)
        raw = unb64(r.out.strip())
        magic, fmt_version, key_id, key_version, nonce, sealed = parse_blob(raw)
        self.assertEqual((magic, fmt_version, key_id, key_version), (MAGIC, 1, self.key, 1))
        self.assertEqual(len(raw), MIN_BLOB + len(pt))
        self.assertEqual(rec["resource"], "key/" + self.key)
        self.assertEqual(rec["params"], {"key_alias": "alias/app", "key_id": self.key,
                                         "bytes": len(pt), "version": 1,
                                         "context": {}, "host": kmsenv.HOST})
        r, rec = self.audited("decrypt", input=r.out, action="key.decrypt")
        self.assertEqual(r.raw, pt)
        self.assertEqual(rec["resource"], "key/" + self.key)
        self.assertEqual(rec["params"], {"version": 1, "context": {}, "host": kmsenv.HOST})
        # A fresh nonce each time: the same plaintext never gives the same blob.
        again = unb64(self.vault.encrypt(self.key, pt))
        self.assertNotEqual(again[25:37], nonce)
        self.assertNotEqual(again, raw)

    def test_binary_blob_is_raw_and_decrypts_as_raw_as_base64_or_with_whitespace(self):
        pt = b"binary form"
        raw = self.vault.ok("encrypt", "--key", self.key, "--binary", input=pt).raw
        self.assertTrue(raw.startswith(MAGIC))
        self.assertEqual(parse_blob(raw)[2:4], (self.key, 1))
        self.assertEqual(len(raw), MIN_BLOB + len(pt))
        for form in (raw, b64(raw), "\n  " + b64(raw) + "\r\n\n"):
            self.assertEqual(self.vault.decrypt(form), pt)

    def test_in_and_out_files_are_written_0600_and_never_overwritten_without_force(self):
        pt = os.urandom(300)
        src, blob, back = (self.vault.path(n) for n in ("pt.bin", "blob.txt", "back.bin"))
        with open(src, "wb") as f:
            f.write(pt)
        r, _ = self.audited("encrypt", "--key", self.key, "--in", src, "--out", blob,
                            action="key.encrypt")
        self.assertEqual((r.raw, r.err), (b"", ""))
        self.assertEqual(mode(blob), 0o600)
        with open(blob) as f:
            self.assertEqual(parse_blob(unb64(f.read().strip()))[2], self.key)
        r, _ = self.audited("decrypt", "--in", blob, "--out", back, action="key.decrypt")
        self.assertEqual((r.raw, r.err), (b"", ""))
        self.assertEqual(mode(back), 0o600)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), pt)

        # An existing output file is refused (exit 4) and left as it was.
        with open(back, "wb") as f:
            f.write(b"keep me")
        os.chmod(back, 0o644)
        for args, action in ((("decrypt", "--in", blob, "--out", back), "key.decrypt"),
                             (("encrypt", "--key", self.key, "--in", src, "--out", back),
                              "key.encrypt"),
                             (("re-encrypt", "--to-key", self.key, "--in", blob, "--out", back),
                              "key.reencrypt")):
            before = self.vault.audit_count()
            r = self.vault.run(*args)
            self.assertError(r, REFUSED, back, hint="--force")
            self.assertEqual(self.vault.audit_count(), before + 1, "one record per command")
            self.assertEqual(self.vault.audit_rows(before)[0]["action"], action)
            with open(back, "rb") as f:
                self.assertEqual(f.read(), b"keep me")
        # --force replaces it, with mode 0600.
        self.vault.ok("decrypt", "--in", blob, "--out", back, "--force")
        with open(back, "rb") as f:
            self.assertEqual(f.read(), pt)
        self.assertEqual(mode(back), 0o600)
        self.assertEqual(sorted(n for n in os.listdir(self.vault.root) if n.startswith(".")), [],
                         "no temporary files are left behind")

    def test_encrypt_takes_4096_bytes_and_refuses_4097_pointing_to_file_encrypt(self):
        pt = os.urandom(4096)
        blob = self.vault.encrypt(self.key, pt)
        self.assertEqual(self.vault.decrypt(blob), pt)
        big = self.vault.path("big.bin")
        with open(big, "wb") as f:
            f.write(pt + b"!")
        for kw in ({"input": pt + b"!"}, {"args": ("--in", big)}):
            r = self.unaudited("encrypt", "--key", self.key, *kw.get("args", ()),
                               input=kw.get("input"), rc=USAGE)
            self.assertError(r, USAGE, "4096", hint="kmsctl file encrypt")

    def test_context_pairs_in_any_order_decrypt_and_are_recorded_in_the_audit_log(self):
        pt = b"with context"
        r, rec = self.audited("encrypt", "--key", self.key, "--context", "tenant=42",
                              "--context", "app=billing", "--context", "note=a=b",
                              input=pt, action="key.encrypt")
        ctx = {"tenant": "42", "app": "billing", "note": "a=b"}
        self.assertEqual(rec["params"]["context"], ctx)
        r, rec = self.audited("decrypt", "--context", "note=a=b", "--context", "app=billing",
                              "--context", "tenant=42", input=r.out, action="key.decrypt")
        self.assertEqual(r.raw, pt)
        self.assertEqual(rec["params"]["context"], ctx)

    def test_decrypt_with_a_missing_extra_or_different_pair_fails_with_exit_5(self):
        pt = b"context matters"
        blob = self.vault.encrypt(self.key, pt, "--context", "a=1", "--context", "b=2")
        plain = self.vault.encrypt(self.key, pt)
        for b, ctx in (
                (blob, ()),                                                 # none
                (blob, ("a=1",)),                                           # missing
                (blob, ("a=1", "b=2", "c=3")),                              # extra
                (blob, ("a=1", "b=3")),                                     # different value
                (blob, ("a=1", "B=2")),                                     # different name
                (blob, ("a=1", "b=2 ")),                                    # trailing space
                (blob, ("a=1", "b=")),                                      # empty value
                (blob, ("a=1b=2",)),                                        # merged
                (plain, ("a=1",)),                                          # extra on none
                (plain, ("a=",))):
            args = [x for c in ctx for x in ("--context", c)]
            r, rec = self.audited("decrypt", *args, input=b, action="key.decrypt",
                                  rc=INTEGRITY, error_code="integrity")
            self.assertError(r, INTEGRITY, self.key, "context", hint="--context")
            self.assertEqual(rec["resource"], "key/" + self.key)
        self.assertEqual(self.vault.decrypt(blob, "--context", "b=2", "--context", "a=1"), pt)

    def test_malformed_context_flags_are_usage_errors(self):
        for cmd in (("encrypt", "--key", self.key), ("decrypt",)):
            for bad in (("novalue",), ("=v",), ("a=1", "a=2")):
                args = [x for c in bad for x in ("--context", c)]
                r = self.unaudited(*cmd, *args, input=b"x", rc=USAGE)
                self.assertError(r, USAGE, "--context")

    def test_missing_input_file_is_a_usage_error(self):
        for cmd in (("encrypt", "--key", self.key), ("decrypt",)):
            r = self.unaudited(*cmd, "--in", self.vault.path("no-such-file"), rc=USAGE)
            self.assertError(r, USAGE, "no-such-file", hint="--in")


class ReEncrypt(SharedVaultTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.vault.create_key()
        cls.b = cls.vault.create_key("--alias", "alias/b")

    def test_re_encrypt_moves_a_blob_to_another_key_and_context_without_revealing_it(self):
        pt = b"re-encrypt-secret-7f3e"
        blob = self.vault.encrypt(self.a, pt, "--context", "from=1")
        r, rec = self.audited("re-encrypt", "--to-key", "alias/b", "--context", "from=1",
                              "--to-context", "to=2", input=blob, action="key.reencrypt")
        self.assertNotIn(pt, r.raw)
        raw = unb64(r.out.strip())
        self.assertEqual(parse_blob(raw)[2:4], (self.b, 1))
        self.assertEqual(len(raw), MIN_BLOB + len(pt))
        self.assertEqual(rec["resource"], "key/" + self.a)
        p = rec["params"]
        self.assertEqual((p["from_version"], p["to_key_id"], p["to_version"]), (1, self.b, 1))
        self.assertEqual((p["context"], p["to_context"]), ({"from": "1"}, {"to": "2"}))
        self.assertEqual(self.vault.decrypt(r.out, "--context", "to=2"), pt)
        r = self.vault.run("decrypt", "--context", "from=1", input=r.out)
        self.assertError(r, INTEGRITY, self.b)

    def test_re_encrypt_to_the_same_key_after_rotation_moves_the_blob_to_the_new_version(self):
        key = self.vault.create_key()
        pt = b"old version"
        old = unb64(self.vault.encrypt(key, pt))
        self.assertEqual(parse_blob(old)[3], 1)
        self.vault.ok("key", "rotate", key)
        r, rec = self.audited("re-encrypt", "--to-key", key, "--binary", input=old,
                              action="key.reencrypt")
        new = r.raw
        _, _, key_id, version, nonce, _ = parse_blob(new)
        self.assertEqual((key_id, version), (key, 2))
        self.assertNotEqual(nonce, parse_blob(old)[4])
        self.assertEqual((rec["params"]["from_version"], rec["params"]["to_version"]), (1, 2))
        self.assertEqual(self.vault.decrypt(new), pt)
        self.assertEqual(self.vault.decrypt(old), pt, "the old blob still decrypts")

    def test_a_version_1_ciphertext_still_decrypts_after_three_rotations(self):
        key = self.vault.create_key()
        blobs = {1: self.vault.encrypt(key, b"from v1", "--context", "v=1")}
        for n in (2, 3, 4):
            self.vault.ok("key", "rotate", key)
            blobs[n] = self.vault.encrypt(key, f"from v{n}".encode(), "--context", f"v={n}")
        self.assertEqual([x["version"] for x in
                          self.vault.json("key", "versions", key, "--json")["items"]], [1, 2, 3, 4])
        for n, blob in blobs.items():
            self.assertEqual(parse_blob(unb64(blob))[3], n)
            r, rec = self.audited("decrypt", "--context", f"v={n}", input=blob,
                                  action="key.decrypt")
            self.assertEqual(r.raw, f"from v{n}".encode())
            self.assertEqual(rec["params"]["version"], n)

    def test_re_encrypt_without_to_context_keeps_the_source_context(self):
        pt = b"keeps its context"
        blob = self.vault.encrypt(self.a, pt, "--context", "app=web", "--context", "env=prod")
        r, rec = self.audited("re-encrypt", "--to-key", self.b, "--context", "env=prod",
                              "--context", "app=web", input=blob, action="key.reencrypt")
        self.assertEqual(rec["params"]["to_context"], {"app": "web", "env": "prod"})
        self.assertEqual(self.vault.decrypt(r.out, "--context", "app=web", "--context", "env=prod"),
                         pt)
        r = self.vault.run("decrypt", input=r.out)
        self.assertError(r, INTEGRITY, self.b)

    def test_re_encrypt_with_the_wrong_source_context_fails_with_exit_5_and_prints_nothing(self):
        blob = self.vault.encrypt(self.a, b"x", "--context", "k=v")
        r, _ = self.audited("re-encrypt", "--to-key", self.b, "--context", "k=w", input=blob,
                            action="key.reencrypt", rc=INTEGRITY, error_code="integrity")
        self.assertError(r, INTEGRITY, self.a, hint="--context")

    def test_re_encrypt_to_an_unknown_key_exits_3(self):
        blob = self.vault.encrypt(self.a, b"x")
        ghost = str(uuid.uuid4())
        r, _ = self.audited("re-encrypt", "--to-key", ghost, input=blob, action="key.reencrypt",
                            rc=NOT_FOUND, error_code="not_found")
        self.assertError(r, NOT_FOUND, ghost)


class DataKeys(SharedVaultTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.vault.create_key("--alias", "alias/dk")

    def test_generate_returns_a_32_byte_key_and_its_blob_which_decrypt_turns_back_into_it(self):
        r, rec = self.audited("data-key", "generate", "--key", "alias/dk", "--json",
                              action="key.generate_data_key")
        d = r.json()
        self.assertEqual(set(d), {"key_id", "key_version", "plaintext", "ciphertext_blob"})
        self.assertEqual((d["key_id"], d["key_version"]), (self.key, 1))
        plaintext = unb64(d["plaintext"])
        self.assertEqual(len(plaintext), 32)
        raw = unb64(d["ciphertext_blob"])
        self.assertEqual(parse_blob(raw)[2:4], (self.key, 1))
        self.assertEqual(len(raw), MIN_BLOB + 32)
        self.assertEqual(self.vault.decrypt(d["ciphertext_blob"]), plaintext)
        self.assertEqual(rec["resource"], "key/" + self.key)
        self.assertEqual(rec["params"], {"key_alias": "alias/dk", "key_id": self.key,
                                         "bytes": 32, "version": 1,
                                         "context": {}, "host": kmsenv.HOST})
        # Each call makes a new key.
        self.assertNotEqual(unb64(self.vault.json("data-key", "generate", "--key", self.key,
                                                  "--json")["plaintext"]), plaintext)

    def test_aes_128_data_keys_are_16_bytes(self):
        d = self.vault.json("data-key", "generate", "--key", self.key, "--spec", "AES_128",
                            "--json")
        self.assertEqual(len(unb64(d["plaintext"])), 16)
        self.assertEqual(self.vault.decrypt(d["ciphertext_blob"]), unb64(d["plaintext"]))

    def test_no_plaintext_omits_the_key_and_the_blob_still_decrypts_to_32_bytes(self):
        r, _ = self.audited("data-key", "generate", "--key", self.key, "--no-plaintext",
                            "--json", action="key.generate_data_key")
        d = r.json()
        self.assertNotIn("plaintext", d)
        self.assertEqual(len(self.vault.decrypt(d["ciphertext_blob"])), 32)
        r = self.vault.ok("data-key", "generate", "--key", self.key, "--no-plaintext")
        self.assertEqual([l.split()[0] for l in r.out.splitlines()],
                         ["key_id", "ciphertext_blob"])

    def test_text_form_prints_key_id_plaintext_and_blob(self):
        r = self.vault.ok("data-key", "generate", "--key", self.key)
        fields = dict(l.split(None, 1) for l in r.out.splitlines())
        self.assertEqual(list(fields), ["key_id", "plaintext", "ciphertext_blob"])
        self.assertEqual(fields["key_id"], self.key)
        self.assertEqual(self.vault.decrypt(fields["ciphertext_blob"]),
                         unb64(fields["plaintext"]))

    def test_a_data_key_with_a_context_needs_that_context_to_decrypt(self):
        r, rec = self.audited("data-key", "generate", "--key", self.key, "--context", "f=1",
                              "--json", action="key.generate_data_key")
        d = r.json()
        self.assertEqual(rec["params"]["context"], {"f": "1"})
        r = self.vault.run("decrypt", input=d["ciphertext_blob"])
        self.assertError(r, INTEGRITY, self.key)
        self.assertEqual(self.vault.decrypt(d["ciphertext_blob"], "--context", "f=1"),
                         unb64(d["plaintext"]))

    def test_unknown_spec_is_a_usage_error(self):
        r = self.unaudited("data-key", "generate", "--key", self.key, "--spec", "AES_512",
                           rc=USAGE)
        self.assertError(r, USAGE, "--spec")


class Random(SharedVaultTestCase):
    def test_random_gives_exactly_n_bytes_in_each_format(self):
        for n in (1, 1024):
            r, rec = self.audited("random", "--bytes", str(n), action="random.generate")
            self.assertEqual(len(unb64(r.out.strip())), n)
            self.assertTrue(r.out.endswith("\n"))
            self.assertEqual(rec["params"], {"bytes": n, "host": kmsenv.HOST})
            r, _ = self.audited("random", "--bytes", str(n), "--format", "hex",
                                action="random.generate")
            self.assertRegex(r.out, rf"^[0-9a-f]{{{2 * n}}}\n$")
            r, _ = self.audited("random", "--bytes", str(n), "--format", "raw",
                                action="random.generate")
            self.assertEqual(len(r.raw), n)
        a = self.vault.ok("random", "--bytes", "32").out
        b = self.vault.ok("random", "--bytes", "32").out
        self.assertNotEqual(a, b)

    def test_zero_1025_or_malformed_counts_and_unknown_formats_are_usage_errors(self):
        for args in (("--bytes", "0"), ("--bytes", "1025"), ("--bytes", "-1"),
                     ("--bytes", "ten"), (), ("--bytes", "8", "--format", "base32")):
            r = self.unaudited("random", *args, rc=USAGE)
            self.assertError(r, USAGE)


class Refusals(SharedVaultTestCase):
    """A disabled key and a key pending deletion refuse every cryptographic operation with exit
    4, a message naming the key and its state, and a hint naming the command that fixes it."""

    def setUp(self):
        v = self.vault
        self.key = v.create_key("--alias", "alias/" + uuid.uuid4().hex[:12])
        self.alias = v.json("key", "describe", self.key, "--json")["aliases"][0]
        self.other = v.create_key()
        self.pt = b"refusal plaintext"
        self.blob = v.encrypt(self.key, self.pt)
        self.dk = v.json("data-key", "generate", "--key", self.key, "--json")
        self.other_blob = v.encrypt(self.other, self.pt)

    def check_refused(self, state_words, hint):
        cases = (
            (("encrypt", "--key", self.key), b"x", "key.encrypt", self.key),
            (("encrypt", "--key", self.alias), b"x", "key.encrypt", self.alias),
            (("decrypt",), self.blob, "key.decrypt", self.key),
            (("decrypt",), self.dk["ciphertext_blob"], "key.decrypt", self.key),
            (("re-encrypt", "--to-key", self.other), self.blob, "key.reencrypt", self.key),
            (("re-encrypt", "--to-key", self.key), self.other_blob, "key.reencrypt", self.key),
            (("data-key", "generate", "--key", self.key), None, "key.generate_data_key",
             self.key),
        )
        for args, inp, action, ref in cases:
            with self.subTest(args=args):
                r, rec = self.audited(*args, input=inp, action=action, rc=REFUSED,
                                      outcome="denied", error_code="refused")
                self.assertError(r, REFUSED, self.key, state_words, hint=hint)
                self.assertIn(ref, r.err.splitlines()[-1], "the hint names the key as given")

    def check_works(self):
        self.assertEqual(self.vault.decrypt(self.blob), self.pt)
        self.assertEqual(self.vault.decrypt(self.dk["ciphertext_blob"]),
                         unb64(self.dk["plaintext"]))
        self.assertEqual(self.vault.decrypt(self.vault.encrypt(self.alias, b"y")), b"y")

    def test_a_disabled_key_refuses_encrypt_decrypt_re_encrypt_and_data_keys(self):
        self.vault.ok("key", "disable", self.key)
        self.check_refused("is disabled", "kmsctl key enable")
        self.vault.ok("key", "enable", self.key)
        self.check_works()

    def test_a_key_pending_deletion_refuses_them_too_until_cancelled_and_enabled(self):
        self.vault.ok("key", "schedule-deletion", self.key, "--pending-days", "7")
        self.check_refused("pending deletion", "kmsctl key cancel-deletion")
        self.vault.ok("key", "cancel-deletion", self.key)
        r = self.vault.run("decrypt", input=self.blob)
        self.assertError(r, REFUSED, self.key, "is disabled", hint="kmsctl key enable")
        self.vault.ok("key", "enable", self.key)
        self.check_works()

    def test_an_unknown_key_exits_3_for_every_operation(self):
        ghost = str(uuid.uuid4())
        raw = bytearray(unb64(self.blob))
        raw[5:21] = uuid.UUID(ghost).bytes
        for args, inp, action, named in (
                (("encrypt", "--key", ghost), b"x", "key.encrypt", ghost),
                (("encrypt", "--key", "alias/ghost"), b"x", "key.encrypt", "alias/ghost"),
                (("data-key", "generate", "--key", ghost), None, "key.generate_data_key",
                 ghost),
                (("re-encrypt", "--to-key", ghost), self.blob, "key.reencrypt", ghost),
                (("decrypt",), bytes(raw), "key.decrypt", ghost),
                (("re-encrypt", "--to-key", self.key), bytes(raw), "key.reencrypt", ghost)):
            with self.subTest(args=args):
                r, rec = self.audited(*args, input=inp, action=action, rc=NOT_FOUND,
                                      error_code="not_found")
                self.assertError(r, NOT_FOUND, named)


class NoPlaintextAtRest(SharedVaultTestCase):
    def test_plaintext_and_data_keys_never_reach_the_audit_log_or_the_vault_files(self):
        v = self.vault
        secret = b"PLAINTEXT-" + uuid.uuid4().hex.encode() + b"-do-not-store"
        key = v.create_key()
        other = v.create_key()
        blob = v.encrypt(key, secret, "--context", "purpose=leak-check")
        self.assertEqual(v.decrypt(blob, "--context", "purpose=leak-check"), secret)
        moved = v.ok("re-encrypt", "--to-key", other, "--context", "purpose=leak-check",
                     input=blob).out
        self.assertEqual(v.decrypt(moved, "--context", "purpose=leak-check"), secret)
        dk = v.json("data-key", "generate", "--key", key, "--json")
        dk_raw = unb64(dk["plaintext"])
        export = v.path("audit.jsonl")
        v.ok("audit", "export", "-o", export)
        with open(export, "rb") as f:
            log = f.read()
        self.assertIn(b'"purpose":"leak-check"', log.replace(b" ", b""),
                      "the context is recorded")
        needles = {"plaintext": secret, "plaintext (base64)": base64.b64encode(secret),
                   "plaintext (hex)": secret.hex().encode(), "data key": dk_raw,
                   "data key (base64)": dk["plaintext"].encode(),
                   "data key (hex)": dk_raw.hex().encode()}
        files = {"audit export": log}
        if v.db:
            # PostgreSQL: the whole database as pg_dump writes it, and the token's own files.
            files["the database (pg_dump)"] = v.db.dump()
            self.assertIn(key.encode(), files["the database (pg_dump)"], "the dump has the keys")
            vault_dir = v.token_dir
        else:
            vault_dir = os.path.dirname(v.vault)
        for root, _, names in os.walk(vault_dir):
            for n in names:
                if os.path.isfile(os.path.join(root, n)):
                    with open(os.path.join(root, n), "rb") as f:
                        files[os.path.relpath(os.path.join(root, n), vault_dir)] = f.read()
        if not v.db:
            self.assertIn("vault.db", files)
        for fname, data in files.items():
            for what, needle in needles.items():
                self.assertNotIn(needle, data, f"{what} found in {fname}")


if __name__ == "__main__":
    kmsenv.main()
