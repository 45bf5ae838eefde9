"""Files encrypted to public keys (docs/FORMAT.md §11.3) through the real binary, checked against an
independent implementation of the format (tests/vectors/envelope/recipients.py, Python
`cryptography`):

- `file encrypt --recipient PUBKEY` works with no vault at all (no PIN, no vault file, nothing
  recorded), and what it writes opens with the private key outside kmsctl;
- a file written outside kmsctl for a vault key's public key (`key public`) opens with
  `file decrypt`, for X25519 and RSA keys, software and hsm, and the audit names the key;
- a file may mix vault keys and public keys; `file rewrap` keeps every recipient it does not
  rewrap, including types it does not know, byte for byte;
- refusals: a key that cannot be a recipient, no key named, a file for another vault's key, an
  altered recipient, another context, a key of the wrong usage or state."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (Envelope, FilesTestCase, INTEGRITY, NOT_FOUND, OK, REFUSED, USAGE, read,
                    write)

sys.path.insert(0, os.path.join(kmsenv.SOURCE_DIR, "tests", "vectors", "envelope"))
import recipients  # noqa: E402  (the independent implementation)
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa, x25519  # noqa: E402


def pem(public_key):
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public(path):
    return serialization.load_pem_public_key(read(path))


class Recipients(FilesTestCase):
    def setUp(self):
        self.d = self.dir(self._testMethodName)

    def p(self, name):
        return os.path.join(self.d, name)

    def public_key_of(self, key):
        out = self.p(f"{key}.pem")
        self.vault.ok("key", "public", key, "-o", out)
        return out

    def offline(self, *args, **kw):
        """kmsctl with no vault to find: no KMSCTL_VAULT, no PIN, HOME an empty directory."""
        home = self.p("home")
        os.makedirs(home, exist_ok=True)
        return self.vault.run(*args, unset=("KMSCTL_VAULT", "KMSCTL_PIN_FILE"),
                              env={"HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home},
                              **kw)

    def records(self):
        return self.vault.sql("SELECT count(*) FROM audit_log")[0][0]

    # ---- offline: kmsctl writes, the private key outside kmsctl reads ----

    def test_offline_encrypt_needs_no_vault_and_opens_with_the_private_key(self):
        keys = {"x25519": x25519.X25519PrivateKey.generate(),
                "rsa": rsa.generate_private_key(public_exponent=65537, key_size=3072)}
        pt = os.urandom(300_000)
        write(self.p("data"), pt)
        for name, priv in keys.items():
            write(self.p(f"{name}.pem"), pem(priv.public_key()))
        before = self.records()
        r = self.offline("file", "encrypt", "--recipient", self.p("x25519.pem"), "--recipient",
                         self.p("rsa.pem"), "--context", "build=42", "--frame-size", "64KiB",
                         self.p("data"), "-o", self.p("data.kenc"))
        self.assertEqual(r.rc, OK, r.show())
        self.assertEqual(os.listdir(self.p("home")), [], "an offline encrypt made files in HOME")
        self.assertEqual(self.records(), before, "an offline encrypt touched the vault")
        data = read(self.p("data.kenc"))
        self.assertEqual([t for t, _ in recipients.parse(data)[3]],
                         [recipients.X25519, recipients.RSA_OAEP])
        for name, priv in keys.items():
            self.assertEqual(recipients.open_file(data, priv, {"build": "42"}), pt, name)
            # Only with the context it was made with.
            with self.assertRaises(ValueError):
                recipients.open_file(data, priv, {"build": "43"})
        j = self.offline("file", "inspect", "--json", self.p("data.kenc")).json()
        self.assertEqual([(x["type"], x["public_key_sha256"]) for x in j["recipients"]],
                         [("x25519", recipients.fingerprint(keys["x25519"].public_key()).hex()),
                          ("rsa-oaep", recipients.fingerprint(keys["rsa"].public_key()).hex())])

    def test_offline_encrypt_to_an_openssl_key_from_stdin_to_stdout(self):
        subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", self.p("k.pem")],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", self.p("k.pem"), "-pubout", "-out",
                        self.p("pub.pem")], check=True, capture_output=True)
        r = self.offline("file", "encrypt", "--recipient", self.p("pub.pem"), "-",
                         input=b"from a pipe")
        self.assertEqual(r.rc, OK, r.show())
        priv = serialization.load_pem_private_key(read(self.p("k.pem")), password=None)
        self.assertEqual(recipients.open_file(r.raw, priv), b"from a pipe")

    # ---- the vault opens files written for its public keys ----

    def check_vault_opens(self, key, *, ctx=None):
        ctx = ctx or {}
        pub = load_public(self.public_key_of(key))
        pt = os.urandom(5000)
        path = self.p(f"{key}.kenc")
        write(path, recipients.seal(pt, lambda dk, c: [recipients.recipient_for(pub, dk, c)],
                                    ctx=ctx))
        args = [a for k, v in sorted(ctx.items()) for a in ("--context", f"{k}={v}")]
        r, start, end = self.file_audited("file", "decrypt", *args, path, "-o",
                                          self.p(f"{key}.out"), action="file.decrypt")
        self.assertEqual(read(self.p(f"{key}.out")), pt)
        self.assertEqual(start["params"]["keys"], [{"key_id": key, "version": 1}])
        return path

    def test_the_vault_opens_a_file_written_outside_kmsctl_for_its_x25519_key(self):
        key = self.vault.create_key("--spec", "X25519")
        self.check_vault_opens(key, ctx={"app": "billing"})

    def test_the_vault_opens_a_file_for_its_rsa_keys_in_software_and_in_the_token(self):
        for protection in ("software", "hsm"):
            key = self.vault.create_key("--spec", "RSA_2048", "--usage", "encrypt",
                                        "--protection", protection)
            self.check_vault_opens(key)

    def test_after_a_rotation_a_file_for_the_old_public_key_still_opens(self):
        key = self.vault.create_key("--spec", "X25519")
        old = self.public_key_of(key)
        self.vault.ok("key", "rotate", key)
        write(self.p("pt"), b"made before the rotation")
        self.assertEqual(self.offline("file", "encrypt", "--recipient", old, self.p("pt")).rc, OK)
        r, start, _ = self.file_audited("file", "decrypt", self.p("pt.kenc"), "-o", "-",
                                        action="file.decrypt")
        self.assertEqual(r.raw, b"made before the rotation")
        self.assertEqual(start["params"]["keys"], [{"key_id": key, "version": 1}])

    def test_a_file_for_vault_keys_and_public_keys_opens_with_either(self):
        aes = self.vault.create_key()
        xkey = self.vault.create_key("--spec", "X25519")
        outside = x25519.X25519PrivateKey.generate()
        write(self.p("outside.pem"), pem(outside.public_key()))
        write(self.p("pt"), b"mixed")
        self.file_audited("file", "encrypt", "--key", aes, "--recipient", self.public_key_of(xkey),
                          "--recipient", self.p("outside.pem"), self.p("pt"),
                          action="file.encrypt")
        data = read(self.p("pt.kenc"))
        self.assertEqual([t for t, _ in recipients.parse(data)[3]], [1, 2, 2])
        self.assertEqual(recipients.open_file(data, outside), b"mixed")
        # With the AES key disabled, the vault opens it with its X25519 key.
        self.vault.ok("key", "disable", aes)
        r, start, _ = self.file_audited("file", "decrypt", self.p("pt.kenc"), "-o", "-",
                                        action="file.decrypt")
        self.assertEqual(r.raw, b"mixed")
        self.assertEqual(start["params"]["keys"], [{"key_id": xkey, "version": 1}])
        self.vault.ok("key", "enable", aes)

    def test_rewrap_keeps_public_key_and_unknown_recipients_byte_for_byte(self):
        xkey = self.vault.create_key("--spec", "X25519")
        aes = self.vault.create_key()
        vault_pub = load_public(self.public_key_of(xkey))
        outside = x25519.X25519PrivateKey.generate()
        pt = os.urandom(4000)
        unknown = (200, b"a recipient type from the future")
        write(self.p("f.kenc"), recipients.seal(pt, lambda dk, c: [
            recipients.recipient_for(outside.public_key(), dk, c), unknown,
            recipients.recipient_for(vault_pub, dk, c)]))
        before = Envelope(read(self.p("f.kenc")))
        self.vault.ok("file", "rewrap", "--to-key", aes, self.p("f.kenc"))
        after = Envelope(read(self.p("f.kenc")))
        self.assertEqual(after.keys(), [(aes, 1)])
        self.assertEqual([(t, b) for _, t, _, b in after.recipients[1:]],
                         [(t, b) for _, t, _, b in before.recipients])
        self.assertEqual(after.body, before.body)
        self.assertEqual(recipients.open_file(read(self.p("f.kenc")), outside), pt)
        self.vault.ok("key", "disable", xkey)
        try:
            r, start, _ = self.file_audited("file", "decrypt", self.p("f.kenc"), "-o", "-",
                                            action="file.decrypt")
            self.assertEqual(r.raw, pt)
            self.assertEqual(start["params"]["keys"], [{"key_id": aes, "version": 1}])
        finally:
            self.vault.ok("key", "enable", xkey)

    # ---- refusals ----

    def test_a_key_that_cannot_be_a_recipient_is_refused_before_any_output(self):
        ec = self.vault.create_key("--spec", "EC_P256")
        write(self.p("pt"), b"x")
        r = self.offline("file", "encrypt", "--recipient", self.public_key_of(ec), self.p("pt"))
        self.assertError(r, USAGE, "EC_P256", "recipient")
        write(self.p("junk.pem"), b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
        self.assertError(self.offline("file", "encrypt", "--recipient", self.p("junk.pem"),
                                      self.p("pt")), USAGE, "not a public key")
        self.assertError(self.offline("file", "encrypt", self.p("pt")), USAGE, "--recipient")
        self.assertNoOutput(self.d, "pt.kenc")

    def test_a_file_for_a_key_this_vault_does_not_hold_fails_naming_the_public_key(self):
        outside = x25519.X25519PrivateKey.generate()
        write(self.p("f.kenc"), recipients.seal(
            b"x", lambda dk, c: [recipients.recipient_for(outside.public_key(), dk, c)]))
        r, _ = self.audited("file", "decrypt", self.p("f.kenc"), "-o", self.p("out"),
                                    rc=INTEGRITY, action="file.decrypt")
        self.assertIn(recipients.fingerprint(outside.public_key()).hex(), r.err)
        self.assertNoOutput(self.d, "out")

    def test_an_altered_recipient_or_another_context_opens_nothing(self):
        key = self.vault.create_key("--spec", "X25519")
        path = self.check_vault_opens(key, ctx={"tenant": "a"})
        data = read(path)
        env = Envelope(data)
        off = env.recipients[0][2]
        for name, at in (("ephemeral key", off + 32 + 4), ("wrapped key", off + 64 + 7)):
            bad = bytearray(data)
            bad[at] ^= 0x01
            write(self.p("bad.kenc"), bytes(bad))
            r, _ = self.audited("file", "decrypt", "--context", "tenant=a",
                                        self.p("bad.kenc"), "-o", self.p("out"), rc=INTEGRITY,
                                        action="file.decrypt")
            self.assertNoOutput(self.d, "out")
        # The header's context changed to one a grant might allow: the wrapped key is bound to
        # the context, so the vault releases nothing (not just a failed header tag afterwards).
        forged = recipients.header(1024, {"tenant": "b"}, [(t, b) for _, t, _, b in
                                                           env.recipients], os.urandom(32))
        write(self.p("forged.kenc"), forged + env.body)
        r, _ = self.audited("file", "decrypt", "--context", "tenant=b",
                                        self.p("forged.kenc"), "-o", self.p("out"),
                                        rc=INTEGRITY, action="file.decrypt")
        self.assertIn("does not open", r.err)

    def test_a_signing_or_disabled_key_does_not_open_a_file(self):
        signer = self.vault.create_key("--spec", "RSA_2048", "--usage", "sign")
        write(self.p("pt"), b"x")
        self.assertEqual(self.offline("file", "encrypt", "--recipient",
                                      self.public_key_of(signer), self.p("pt")).rc, OK)
        r, _ = self.audited("file", "decrypt", self.p("pt.kenc"), "-o", "-", rc=REFUSED,
                                    action="file.decrypt")
        self.assertIn("usage SIGN_VERIFY", r.err)
        xkey = self.vault.create_key("--spec", "X25519")
        self.assertEqual(self.offline("file", "encrypt", "--recipient", self.public_key_of(xkey),
                                      "-o", self.p("x.kenc"), self.p("pt")).rc, OK)
        self.vault.ok("key", "disable", xkey)
        r, _ = self.audited("file", "decrypt", self.p("x.kenc"), "-o", "-", rc=REFUSED,
                                    action="file.decrypt")
        self.assertIn("disabled", r.err.lower())


if __name__ == "__main__":
    kmsenv.main()
