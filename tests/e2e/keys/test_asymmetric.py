"""Asymmetric and HMAC keys through the real binary (docs/KEYS.md): `key public` gives public keys
OpenSSL reads; signatures made by `kmsctl sign` verify with OpenSSL, and signatures OpenSSL makes
with its own keys verify with `kmsctl verify --public-key`, offline (no vault, no PIN, no record);
RSA-OAEP and SM2 ciphertexts cross between the two; HMAC tags verify and a changed message does
not; what each spec, usage and algorithm refuses; old versions after a rotation; one audit record
per operation that never holds the message; the same operations through an agent; and
`key specs` / `key describe`.

RSA key generation is slow, so the keys most tests use are made once per class (SharedVaultTestCase);
tests that change a key (rotation) make their own."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (KMSCTL, OK, USAGE, REFUSED, INTEGRITY, AgentTestCase, SharedVaultTestCase,
                    Result, read, write, unb64)

OPENSSL = shutil.which("openssl")
SM2_ID = "1234567812345678"
# In every message, so that a search of the audit log for it cannot match by accident.
MARKER = b"asym-e2e-message-7f3b9c21"

# The signing keys of the shared vault: (alias, spec, algorithm, how OpenSSL verifies).
SIGNERS = [
    ("alias/p256", "EC_P256", "ECDSA_SHA_256", "dgst-sha256"),
    ("alias/k256", "EC_SECP256K1", "ECDSA_SHA_256", "dgst-sha256"),
    ("alias/p384", "EC_P384", "ECDSA_SHA_384", "dgst-sha384"),
    ("alias/rsa-sign", "RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256", "dgst-sha256"),
    ("alias/rsa-sign", "RSA_2048", "RSASSA_PSS_SHA_256", "pss"),
    ("alias/rsa3072", "RSA_3072", "RSASSA_PSS_SHA_256", "pss"),
    ("alias/ed", "ED25519", "ED25519", "raw"),
    ("alias/sm2-sign", "EC_SM2", "SM2DSA", "sm2"),
]
# Every key of the shared vault: alias -> (spec, usage).
KEYS = {
    "alias/p256": ("EC_P256", None),
    "alias/k256": ("EC_SECP256K1", None),
    "alias/p384": ("EC_P384", None),
    "alias/rsa-sign": ("RSA_2048", "sign"),
    "alias/rsa3072": ("RSA_3072", "sign"),
    "alias/rsa-enc": ("RSA_2048", None),
    "alias/rsa4096": ("RSA_4096", None),
    "alias/ed": ("ED25519", None),
    "alias/x25519": ("X25519", None),
    "alias/sm2-sign": ("EC_SM2", "sign"),
    "alias/sm2-enc": ("EC_SM2", None),
    "alias/hmac256": ("HMAC_SHA256", None),
    "alias/hmac512": ("HMAC_SHA512", None),
    "alias/aes": ("AES_256", None),
}
ASYMMETRIC = [a for a, (spec, _) in KEYS.items() if not spec.startswith(("HMAC", "AES"))]
ALL_SPECS = ["AES_256", "RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P384", "EC_SECP256K1",
             "ED25519", "X25519", "EC_SM2", "SM4", "HMAC_SHA256", "HMAC_SHA512"]


def openssl(*args, check=True):
    p = subprocess.run([OPENSSL, *args], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120)
    r = Result(p.returncode, p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace"), raw=p.stdout, argv=["openssl", *args])
    if check and r.rc != 0:
        raise AssertionError("openssl failed:\n" + r.show())
    return r


def openssl_verify(how, pub, msg, sig):
    """OpenSSL's verification of `sig` over the file `msg` under the PEM public key `pub`."""
    if how.startswith("dgst-"):
        return openssl("dgst", "-" + how[5:], "-verify", pub, "-signature", sig, msg, check=False)
    base = ["pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msg, "-sigfile", sig]
    if how == "pss":
        base += ["-digest", "sha256", "-pkeyopt", "rsa_padding_mode:pss",
                 "-pkeyopt", "rsa_pss_saltlen:32"]
    elif how == "sm2":
        base += ["-digest", "sm3", "-pkeyopt", "distid:" + SM2_ID]
    return openssl(*base, check=False)


def flip(data, at=0):
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


@unittest.skipIf(OPENSSL is None, "the openssl binary is not installed")
class Asymmetric(SharedVaultTestCase):
    ids = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.ids = {}
            for alias, (spec, usage) in KEYS.items():
                args = ["key", "create", "--spec", spec, "--alias", alias]
                if usage:
                    args += ["--usage", usage]
                cls.ids[alias] = cls.vault.ok(*args).out.strip()
            cls.work = cls.vault.path("work")
            os.mkdir(cls.work, 0o700)
            cls.pems = {}
            for alias in ASYMMETRIC:
                pem = os.path.join(cls.work, alias.split("/")[1] + ".pem")
                cls.vault.ok("key", "public", alias, "-o", pem)
                cls.pems[alias] = pem
        except BaseException:
            cls.vault.cleanup()
            raise

    def file(self, name, data):
        p = os.path.join(self.work, name)
        write(p, data)
        return p

    def records_text(self):
        return self.vault.run("audit", "list", "--json", "--limit", "1000000").raw

    # ---- 1. public keys ----
    def test_key_public_pem_and_der_load_in_openssl_for_every_asymmetric_spec(self):
        for alias in ASYMMETRIC:
            with self.subTest(alias=alias, spec=KEYS[alias][0]):
                pem = self.pems[alias]
                self.assertTrue(read(pem).startswith(b"-----BEGIN PUBLIC KEY-----\n"))
                openssl("pkey", "-pubin", "-in", pem, "-noout")
                der = os.path.join(self.work, alias.split("/")[1] + ".der")
                self.vault.ok("key", "public", alias, "--format", "der", "-o", der)
                openssl("pkey", "-pubin", "-inform", "DER", "-in", der, "-noout")
                # The same key both ways, and the same as standard output.
                again = openssl("pkey", "-pubin", "-inform", "DER", "-in", der).raw
                self.assertEqual(again, read(pem))
                self.assertEqual(self.vault.ok("key", "public", alias).raw, read(pem))
        text = openssl("pkey", "-pubin", "-in", self.pems["alias/rsa4096"], "-noout",
                       "-text").out
        self.assertIn("4096 bit", text)

    # ---- 2. kmsctl signs, OpenSSL verifies ----
    def test_signatures_made_by_kmsctl_verify_in_openssl_for_every_algorithm(self):
        msg = self.file("msg.txt", b"release artefact " + MARKER + b"\n")
        other = self.file("other.txt", b"release artefact " + MARKER + b"!\n")
        digest = hashlib.sha256(read(msg)).hexdigest()
        for alias, spec, algorithm, how in SIGNERS:
            with self.subTest(spec=spec, algorithm=algorithm):
                sig = os.path.join(self.work, f"{spec}-{algorithm}.sig")
                r = self.vault.ok("sign", "--key", alias, "--algorithm", algorithm, "--in", msg,
                                  "-o", sig)
                self.assertEqual(r.raw, b"")  # raw to the file, nothing on stdout
                self.assertOk(openssl_verify(how, self.pems[alias], msg, sig))
                self.assertNotEqual(openssl_verify(how, self.pems[alias], other, sig).rc, 0)
                if algorithm == "ED25519":
                    self.assertEqual(len(read(sig)), 64)
                # Standard output: base64 of a signature that verifies as well.
                out = self.vault.ok("sign", "--key", alias, "--algorithm", algorithm,
                                    "--in", msg).out
                sig2 = self.file(f"{spec}-{algorithm}.b64sig", unb64(out))
                self.assertOk(openssl_verify(how, self.pems[alias], msg, sig2))
                # verify --signature reads the base64 text as well as the raw file.
                text = self.file(f"{spec}-{algorithm}.txtsig", out.encode())
                for signature in (sig, text):
                    r = self.vault.run("verify", "--key", alias, "--algorithm", algorithm,
                                       "--signature", signature, "--in", msg)
                    self.assertEqual(r.rc, OK, r.show())
                    self.assertIn(f"signature valid (key {self.ids[alias]} version 1)", r.err)
                if how.startswith("dgst-sha256") or how == "pss":
                    dsig = os.path.join(self.work, f"{spec}-{algorithm}.dsig")
                    self.vault.ok("sign", "--key", alias, "--algorithm", algorithm,
                                  "--digest", digest, "-o", dsig)
                    self.assertOk(openssl_verify(how, self.pems[alias], msg, dsig))
        # A SHA-384 digest for P-384.
        dsig = os.path.join(self.work, "p384.dsig")
        self.vault.ok("sign", "--key", "alias/p384", "--algorithm", "ECDSA_SHA_384", "--digest",
                      hashlib.sha384(read(msg)).hexdigest(), "-o", dsig)
        self.assertOk(openssl_verify("dgst-sha384", self.pems["alias/p384"], msg, dsig))

    # ---- 3. OpenSSL signs, kmsctl verifies offline ----
    def test_verify_public_key_checks_openssl_signatures_offline(self):
        d = os.path.join(self.work, "offline")
        os.mkdir(d)
        msg = os.path.join(d, "m")
        write(msg, b"signed by openssl " + MARKER)
        cases = [
            ("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "ECDSA_SHA_256",
             ["dgst", "-sha256", "-sign", "{key}", "-out", "{sig}", "{msg}"]),
            ("ed", ["-algorithm", "ED25519"], "ED25519",
             ["pkeyutl", "-sign", "-inkey", "{key}", "-rawin", "-in", "{msg}", "-out", "{sig}"]),
            ("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
             "RSASSA_PKCS1_V1_5_SHA_256",
             ["dgst", "-sha256", "-sign", "{key}", "-out", "{sig}", "{msg}"]),
            ("rsa", None, "RSASSA_PSS_SHA_256",
             ["pkeyutl", "-sign", "-inkey", "{key}", "-rawin", "-digest", "sha256",
              "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:32",
              "-in", "{msg}", "-out", "{sig}"]),
            ("sm2", ["-algorithm", "SM2"], "SM2DSA",
             ["pkeyutl", "-sign", "-inkey", "{key}", "-rawin", "-digest", "sm3",
              "-pkeyopt", "distid:" + SM2_ID, "-in", "{msg}", "-out", "{sig}"]),
        ]
        nowhere = self.vault.path("no-such-dir", "vault.db")
        offline = {"env": {"KMSCTL_VAULT": nowhere}, "unset": ("KMSCTL_PIN_FILE",)}
        before = self.vault.audit_count()
        for name, gen, algorithm, sign in cases:
            with self.subTest(algorithm=algorithm):
                key = os.path.join(d, name + ".key")
                pub = os.path.join(d, name + ".pub")
                der = os.path.join(d, name + ".der")
                if gen is not None:
                    openssl("genpkey", *gen, "-out", key)
                    openssl("pkey", "-in", key, "-pubout", "-out", pub)
                    openssl("pkey", "-in", key, "-pubout", "-outform", "DER", "-out", der)
                sig = os.path.join(d, algorithm + ".sig")
                openssl(*[a.format(key=key, sig=sig, msg=msg) for a in sign])

                def verify(*extra, public=pub, signature=sig, message=msg):
                    return self.vault.run("verify", "--public-key", public, "--algorithm",
                                          algorithm, "--signature", signature, "--in", message,
                                          *extra, **offline)

                r = verify()
                self.assertEqual(r.rc, OK, r.show())
                self.assertIn("signature valid", r.err)
                self.assertEqual(r.raw, b"")
                self.assertOk(verify(public=der))  # a DER public key
                j = verify("--json")
                self.assertEqual((j.rc, j.json()["valid"]), (OK, True), j.show())

                bad_msg = os.path.join(d, name + ".badmsg")
                write(bad_msg, flip(read(msg), 3))
                self.assertError(verify(message=bad_msg), INTEGRITY)
                bad_sig = os.path.join(d, algorithm + ".badsig")
                s = read(sig)
                write(bad_sig, flip(s, len(s) - 2))
                self.assertError(verify(signature=bad_sig), INTEGRITY)
                j = verify("--json", signature=bad_sig)
                self.assertEqual(j.rc, INTEGRITY, j.show())
                self.assertEqual(j.json(), {"valid": False})
        # A key that is not of the algorithm's kind verifies nothing: a P-256 key with SHA-384
        # (a pairing kmsctl's own keys refuse), an RSA key with ECDSA.
        sig384 = os.path.join(d, "p256-sha384.sig")
        openssl("dgst", "-sha384", "-sign", os.path.join(d, "ec.key"), "-out", sig384, msg)
        for pub, algorithm, sig in ((os.path.join(d, "ec.pub"), "ECDSA_SHA_384", sig384),
                                    (os.path.join(d, "rsa.pub"), "ECDSA_SHA_256",
                                     os.path.join(d, "ECDSA_SHA_256.sig"))):
            r = self.vault.run("verify", "--public-key", pub, "--algorithm", algorithm,
                               "--signature", sig, "--in", msg, **offline)
            self.assertIn(r.rc, (USAGE, INTEGRITY), r.show())
            self.assertEqual(r.raw, b"")
        self.assertFalse(os.path.exists(os.path.dirname(nowhere)), "a vault directory was made")
        self.assertEqual(self.vault.audit_count(), before, "offline verify wrote a record")

    # ---- 4. public-key encryption ----
    def test_rsa_oaep_ciphertexts_from_openssl_decrypt_and_kmsctl_round_trips(self):
        pem = self.pems["alias/rsa-enc"]
        for size in (1, 190):
            with self.subTest(size=size):
                plain = self.file(f"oaep-{size}.txt", (MARKER * 8)[:size])
                ct = os.path.join(self.work, f"oaep-{size}.enc")
                openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem,
                        "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                        "-in", plain, "-out", ct)
                r, rec = self.audited("decrypt", "--key", "alias/rsa-enc", "--algorithm",
                                      "RSAES_OAEP_SHA_256", "--in", ct, action="key.decrypt")
                self.assertEqual(r.raw, read(plain))
                self.assertEqual(rec["resource"], "key/" + self.ids["alias/rsa-enc"])
                self.assertEqual(rec["params"]["algorithm"], "RSAES_OAEP_SHA_256")
                self.assertEqual(rec["params"]["version"], 1)

        # kmsctl to kmsctl: binary and base64.
        plain = self.file("oaep-k.txt", b"to the inbox " + MARKER)
        out = os.path.join(self.work, "oaep-k.enc")
        self.vault.ok("encrypt", "--key", "alias/rsa-enc", "--algorithm", "RSAES_OAEP_SHA_256",
                      "--in", plain, "--binary", "--out", out)
        self.assertEqual(len(read(out)), 256)
        self.assertEqual(self.vault.ok("decrypt", "--key", "alias/rsa-enc", "--algorithm",
                                       "RSAES_OAEP_SHA_256", "--in", out).raw, read(plain))
        text = self.vault.ok("encrypt", "--key", "alias/rsa-enc", "--algorithm",
                             "RSAES_OAEP_SHA_256", "--in", plain).out
        self.assertEqual(len(unb64(text)), 256)
        self.assertEqual(self.vault.ok("decrypt", "--key", "alias/rsa-enc", "--algorithm",
                                       "RSAES_OAEP_SHA_256", input=text).raw, read(plain))
        # RSA_4096: up to 446 bytes.
        big = self.file("oaep-446.txt", bytes(range(256)) + bytes(190))
        out4 = os.path.join(self.work, "oaep-446.enc")
        self.vault.ok("encrypt", "--key", "alias/rsa4096", "--algorithm", "RSAES_OAEP_SHA_256",
                      "--in", big, "--binary", "--out", out4)
        self.assertEqual(self.vault.ok("decrypt", "--key", "alias/rsa4096", "--algorithm",
                                       "RSAES_OAEP_SHA_256", "--in", out4).raw, read(big))
        # Over the limit: exit 2, naming it.
        too_big = self.file("oaep-191.txt", bytes(191))
        r = self.vault.run("encrypt", "--key", "alias/rsa-enc", "--algorithm",
                           "RSAES_OAEP_SHA_256", "--in", too_big, "--binary", "--out",
                           os.path.join(self.work, "oaep-191.enc"))
        self.assertError(r, USAGE, "190")
        self.assertFalse(os.path.exists(os.path.join(self.work, "oaep-191.enc")))
        # A ciphertext changed by one byte does not decrypt.
        bad = self.file("oaep-bad.enc", flip(read(out), 100))
        r = self.vault.run("decrypt", "--key", "alias/rsa-enc", "--algorithm",
                           "RSAES_OAEP_SHA_256", "--in", bad)
        self.assertNotEqual(r.rc, OK, r.show())
        self.assertEqual(r.raw, b"")

    def test_sm2pke_round_trips_and_decrypts_openssl_ciphertexts(self):
        plain = self.file("sm2.txt", b"sm2 plaintext " + MARKER)
        out = os.path.join(self.work, "sm2.enc")
        self.vault.ok("encrypt", "--key", "alias/sm2-enc", "--algorithm", "SM2PKE", "--in", plain,
                      "--binary", "--out", out)
        r, rec = self.audited("decrypt", "--key", "alias/sm2-enc", "--algorithm", "SM2PKE",
                              "--in", out, action="key.decrypt")
        self.assertEqual(r.raw, read(plain))
        self.assertEqual(rec["params"]["algorithm"], "SM2PKE")
        ct = os.path.join(self.work, "sm2-openssl.enc")
        openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", self.pems["alias/sm2-enc"],
                "-in", plain, "-out", ct)
        self.assertEqual(self.vault.ok("decrypt", "--key", "alias/sm2-enc", "--algorithm",
                                       "SM2PKE", "--in", ct).raw, read(plain))
        # kmsctl's ciphertext is the GM/T 0009 encoding OpenSSL reads: it parses as DER.
        openssl("asn1parse", "-inform", "DER", "-in", out)

    # ---- 5. HMAC ----
    def test_mac_and_verify_mac(self):
        msg = self.file("log.txt", b"day log " + MARKER + b"\n")
        changed = self.file("log2.txt", b"day log " + MARKER + b"?\n")
        for alias, size, name in (("alias/hmac256", 32, "sha256"), ("alias/hmac512", 64,
                                                                   "sha512")):
            with self.subTest(alias=alias):
                mac = os.path.join(self.work, alias.split("/")[1] + ".mac")
                r = self.vault.ok("mac", "--key", alias, "--in", msg, "-o", mac)
                self.assertEqual(r.raw, b"")
                self.assertEqual(len(read(mac)), size)
                out = self.vault.ok("mac", "--key", alias, "--in", msg).out
                self.assertEqual(unb64(out), read(mac))  # base64 on stdout, the same tag
                raw = self.vault.ok("mac", "--key", alias, "--in", msg, "--format", "raw").raw
                self.assertEqual(raw, read(mac))
                r = self.vault.run("verify-mac", "--key", alias, "--mac", mac, "--in", msg)
                self.assertEqual(r.rc, OK, r.show())
                self.assertIn("valid", r.err)
                b64 = self.file(alias.split("/")[1] + ".mac64", out.encode())
                self.assertOk(self.vault.run("verify-mac", "--key", alias, "--mac", b64,
                                             "--in", msg))
                r = self.vault.run("verify-mac", "--key", alias, "--mac", mac, "--in", changed)
                self.assertError(r, INTEGRITY)
                bad = self.file(alias.split("/")[1] + ".badmac", flip(read(mac), size - 1))
                self.assertError(self.vault.run("verify-mac", "--key", alias, "--mac", bad,
                                                "--in", msg), INTEGRITY)
                j = self.vault.run("verify-mac", "--key", alias, "--mac", mac, "--in", changed,
                                   "--json")
                self.assertEqual(j.rc, INTEGRITY, j.show())
                self.assertIs(j.json()["valid"], False)
        # The two keys are different keys: a tag of one does not verify under the other.
        m256 = os.path.join(self.work, "hmac256.mac")
        self.assertNotEqual(self.vault.run("verify-mac", "--key", "alias/hmac512", "--mac", m256,
                                           "--in", msg).rc, OK)

    # ---- 6. refusals ----
    def test_operations_a_key_does_not_serve_are_refused(self):
        msg = self.file("r.txt", b"refused " + MARKER)
        p256 = self.ids["alias/p256"]
        r = self.vault.run("encrypt", "--key", "alias/p256", "--in", msg)
        self.assertError(r, REFUSED, p256, "SIGN_VERIFY", "does not encrypt")
        r = self.vault.run("sign", "--key", "alias/p256", "--algorithm", "ED25519", "--in", msg)
        self.assertError(r, USAGE, "ED25519", hint="ECDSA_SHA_256")
        keys = self.vault.sql("SELECT count(*) FROM keys")[0][0]
        r = self.vault.run("key", "create", "--spec", "EC_P256", "--usage", "encrypt")
        self.assertError(r, USAGE, "EC_P256", "ENCRYPT_DECRYPT")
        r = self.vault.run("key", "create", "--spec", "EC_SM2", "--protection", "hsm")
        self.assertError(r, REFUSED, "EC_SM2")
        self.assertEqual(self.vault.sql("SELECT count(*) FROM keys")[0][0], keys,
                         "a refused create made a key")
        aes = self.ids["alias/aes"]
        r = self.vault.run("sign", "--key", "alias/aes", "--algorithm", "ECDSA_SHA_256",
                           "--in", msg)
        self.assertError(r, REFUSED, aes, "does not sign")
        r = self.vault.run("key", "public", "alias/aes")
        self.assertError(r, REFUSED, aes, "no public key")
        r = self.vault.run("mac", "--key", "alias/p256", "--in", msg)
        self.assertError(r, REFUSED, p256)
        big = self.file("4097.bin", b"x" * 4097)
        r = self.vault.run("sign", "--key", "alias/p256", "--algorithm", "ECDSA_SHA_256",
                           "--in", big)
        self.assertError(r, USAGE, "4096", hint="--digest")
        sig = os.path.join(self.work, "r.sig")
        self.vault.ok("sign", "--key", "alias/p256", "--algorithm", "ECDSA_SHA_256", "--in", msg,
                      "-o", sig)
        r = self.vault.run("verify", "--key", "alias/p256", "--public-key",
                           self.pems["alias/p256"], "--algorithm", "ECDSA_SHA_256",
                           "--signature", sig, "--in", msg)
        self.assertError(r, USAGE, "--public-key")
        ct = self.file("r.enc", b"\x00" * 256)
        r = self.vault.run("decrypt", "--algorithm", "RSAES_OAEP_SHA_256", "--in", ct)
        self.assertError(r, USAGE, hint="--key")

    def test_digests_disabled_keys_and_limits(self):
        msg = self.file("d.txt", b"digest " + MARKER)
        r = self.vault.run("sign", "--key", "alias/ed", "--algorithm", "ED25519", "--digest",
                           hashlib.sha256(read(msg)).hexdigest())
        self.assertError(r, USAGE, "ED25519")
        r = self.vault.run("sign", "--key", "alias/sm2-sign", "--algorithm", "SM2DSA", "--digest",
                           hashlib.sha256(read(msg)).hexdigest())
        self.assertError(r, USAGE, "SM2DSA")
        r = self.vault.run("sign", "--key", "alias/p256", "--algorithm", "ECDSA_SHA_256",
                           "--digest", "abcd")
        self.assertError(r, USAGE, "32 bytes")
        # --message-type digest: the digest's bytes in a file; the signature is the message's.
        dig = self.file("d.bin", hashlib.sha384(read(msg)).digest())
        sig = os.path.join(self.work, "d.sig")
        self.vault.ok("sign", "--key", "alias/p384", "--algorithm", "ECDSA_SHA_384", "--in", dig,
                      "--message-type", "digest", "-o", sig)
        self.assertOk(openssl_verify("dgst-sha384", self.pems["alias/p384"], msg, sig))
        r = self.vault.run("verify", "--key", "alias/p384", "--algorithm", "ECDSA_SHA_384",
                           "--signature", sig, "--in", msg)
        self.assertEqual(r.rc, OK, r.show())
        # A MAC covers at most 64 KiB.
        big = self.file("64k1.bin", bytes(64 * 1024 + 1))
        self.assertError(self.vault.run("mac", "--key", "alias/hmac256", "--in", big), USAGE)
        # The other usages' verifications are refused.
        mac = os.path.join(self.work, "d.mac")
        self.vault.ok("mac", "--key", "alias/hmac256", "--in", msg, "-o", mac)
        r = self.vault.run("verify", "--key", "alias/hmac256", "--algorithm", "ECDSA_SHA_256",
                           "--signature", sig, "--in", msg)
        self.assertError(r, REFUSED, self.ids["alias/hmac256"])
        r = self.vault.run("verify-mac", "--key", "alias/p256", "--mac", mac, "--in", msg)
        self.assertError(r, REFUSED, self.ids["alias/p256"])

    def test_a_disabled_key_gives_its_public_key_but_does_not_sign(self):
        key = self.vault.ok("key", "create", "--spec", "EC_P256").out.strip()
        msg = self.file("dis.txt", b"disabled " + MARKER)
        pub = self.vault.ok("key", "public", key).raw
        self.vault.ok("key", "disable", key)
        r = self.vault.run("sign", "--key", key, "--algorithm", "ECDSA_SHA_256", "--in", msg)
        self.assertError(r, REFUSED, "disabled")
        self.assertEqual(self.vault.ok("key", "public", key).raw, pub)

    def test_only_strict_der_ecdsa_and_the_gmt_0009_sm2_id_verify(self):
        msg = self.file("der.txt", b"strict " + MARKER)
        sig = os.path.join(self.work, "der.sig")
        self.vault.ok("sign", "--key", "alias/p256", "--algorithm", "ECDSA_SHA_256", "--in", msg,
                      "-o", sig)
        d = read(sig)
        self.assertEqual(d[0], 0x30)
        self.assertLess(d[1], 0x80)
        long_form = bytes([0x30, 0x81, d[1]]) + d[2:]
        r_len = d[3]
        padded_r = bytes([0x02, r_len + 1, 0]) + d[4:4 + r_len] + d[4 + r_len:]
        padded = bytes([0x30, len(padded_r)]) + padded_r
        for name, bad in (("long-form", long_form), ("padded-r", padded)):
            with self.subTest(encoding=name):
                p = self.file(f"der-{name}.sig", bad)
                for who in (["--key", "alias/p256"], ["--public-key", self.pems["alias/p256"]]):
                    r = self.vault.run("verify", *who, "--algorithm", "ECDSA_SHA_256",
                                       "--signature", p, "--in", msg)
                    self.assertError(r, INTEGRITY)
        # SM2DSA: OpenSSL 3.0's own default id (empty) is not the GM/T 0009 one kmsctl uses.
        key = os.path.join(self.work, "own-sm2.key")
        pub = os.path.join(self.work, "own-sm2.pub")
        openssl("genpkey", "-algorithm", "SM2", "-out", key)
        openssl("pkey", "-in", key, "-pubout", "-out", pub)
        s = os.path.join(self.work, "sm2-noid.sig")
        openssl("pkeyutl", "-sign", "-inkey", key, "-rawin", "-digest", "sm3", "-in", msg,
                "-out", s)
        r = self.vault.run("verify", "--public-key", pub, "--algorithm", "SM2DSA",
                           "--signature", s, "--in", msg)
        self.assertError(r, INTEGRITY)
        # A private key is not a public key.
        r = self.vault.run("verify", "--public-key", key, "--algorithm", "SM2DSA",
                           "--signature", s, "--in", msg)
        self.assertError(r, USAGE, "not a public key")

    def test_refusals_write_records_that_name_the_key(self):
        msg = self.file("rr.txt", b"refused " + MARKER)
        r, rec = self.audited("encrypt", "--key", "alias/p256", "--in", msg,
                              action="key.encrypt", rc=REFUSED)
        self.assertEqual(rec["resource"], "key/" + self.ids["alias/p256"])
        r, rec = self.audited("sign", "--key", "alias/aes", "--algorithm", "ECDSA_SHA_256",
                              "--in", msg, action="key.sign", rc=REFUSED)
        self.assertEqual(rec["resource"], "key/" + self.ids["alias/aes"])

    # ---- 8. audit ----
    def test_each_operation_writes_one_record_that_never_holds_the_message(self):
        secret = MARKER + b"-audit-only-" + os.urandom(4).hex().encode()
        msg = self.file("audit.txt", b"the message " + secret)
        sig = os.path.join(self.work, "audit.sig")
        p256 = "key/" + self.ids["alias/p256"]
        r, rec = self.audited("sign", "--key", "alias/p256", "--algorithm", "ECDSA_SHA_256",
                              "--in", msg, "-o", sig, action="key.sign")
        self.assertEqual(rec["resource"], p256)
        self.assertEqual((rec["params"]["algorithm"], rec["params"]["version"],
                          rec["params"]["message_type"]), ("ECDSA_SHA_256", 1, "raw"))
        r, rec = self.audited("verify", "--key", "alias/p256", "--algorithm", "ECDSA_SHA_256",
                              "--signature", sig, "--in", msg, action="key.verify")
        self.assertEqual(rec["resource"], p256)
        self.assertEqual((rec["params"]["algorithm"], rec["params"]["version"],
                          rec["params"]["valid"]), ("ECDSA_SHA_256", 1, True))
        bad = self.file("audit-bad.txt", b"the message " + secret + b".")
        r, rec = self.audited("verify", "--key", "alias/p256", "--algorithm", "ECDSA_SHA_256",
                              "--signature", sig, "--in", bad, action="key.verify",
                              rc=INTEGRITY, outcome="ok")
        self.assertIs(rec["params"]["valid"], False)
        mac = os.path.join(self.work, "audit.mac")
        h256 = "key/" + self.ids["alias/hmac256"]
        r, rec = self.audited("mac", "--key", "alias/hmac256", "--in", msg, "-o", mac,
                              action="key.mac")
        self.assertEqual((rec["resource"], rec["params"]["algorithm"], rec["params"]["version"]),
                         (h256, "HMAC_SHA_256", 1))
        r, rec = self.audited("verify-mac", "--key", "alias/hmac256", "--mac", mac, "--in", msg,
                              action="key.verify_mac")
        self.assertEqual((rec["resource"], rec["params"]["algorithm"], rec["params"]["version"],
                          rec["params"]["valid"]), (h256, "HMAC_SHA_256", 1, True))
        r, rec = self.audited("verify-mac", "--key", "alias/hmac256", "--mac", mac, "--in", bad,
                              action="key.verify_mac", rc=INTEGRITY, outcome="ok")
        self.assertIs(rec["params"]["valid"], False)
        r, rec = self.audited("key", "public", "alias/sm2-sign", action="key.get_public_key")
        self.assertEqual((rec["resource"], rec["params"]["version"]),
                         ("key/" + self.ids["alias/sm2-sign"], 1))
        ct = os.path.join(self.work, "audit.enc")
        self.vault.ok("encrypt", "--key", "alias/rsa-enc", "--algorithm", "RSAES_OAEP_SHA_256",
                      "--in", msg, "--binary", "--out", ct)
        r, rec = self.audited("decrypt", "--key", "alias/rsa-enc", "--algorithm",
                              "RSAES_OAEP_SHA_256", "--in", ct, action="key.decrypt")
        self.assertEqual(r.raw, read(msg))
        self.assertEqual((rec["resource"], rec["params"]["algorithm"], rec["params"]["version"]),
                         ("key/" + self.ids["alias/rsa-enc"], "RSAES_OAEP_SHA_256", 1))

        listing = self.records_text()
        self.assertNotIn(secret, listing)
        self.assertNotIn(read(sig).hex().encode(), listing)
        export = self.vault.path("audit-export.jsonl")
        self.vault.ok("audit", "export", "--output", export)
        self.assertNotIn(secret, read(export))
        # What the vault stores: the file, or on PostgreSQL a pg_dump of its database.
        stored = self.vault.db.dump() if self.vault.db else self.vault.vault_bytes()
        self.assertNotIn(secret, stored)
        self.vault.ok("audit", "verify")

    # ---- 10. specs and describe ----
    def test_key_specs_lists_every_spec_and_describe_shows_spec_usage_and_algorithms(self):
        text = self.vault.ok("key", "specs").out
        listed = [line.split()[0] for line in text.splitlines() if line and not line[0].isspace()]
        self.assertEqual(listed, ALL_SPECS)
        specs = {s["spec"]: s for s in self.vault.json("key", "specs", "--json")}
        self.assertEqual(sorted(specs), sorted(ALL_SPECS))
        self.assertEqual(set(specs["RSA_2048"]["usages"]), {"encrypt", "sign"})
        self.assertIn("SM2DSA", specs["EC_SM2"]["usages"]["sign"])
        self.assertEqual(set(specs["HMAC_SHA512"]["usages"]), {"mac"})

        r = self.vault.ok("key", "describe", "alias/rsa-enc")
        self.assertRegex(r.out, r"(?m)^spec / usage\s+RSA_2048 / ENCRYPT_DECRYPT$")
        self.assertRegex(r.out, r"(?m)^algorithms\s+RSAES_OAEP_SHA_256$")
        j = self.vault.json("key", "describe", "alias/rsa-enc", "--json")
        self.assertEqual((j["spec"], j["usage"]), ("RSA_2048", "ENCRYPT_DECRYPT"))
        self.assertIn("RSAES_OAEP_SHA_256", j["algorithms"])
        j = self.vault.json("key", "describe", "alias/rsa-sign", "--json")
        self.assertEqual((j["spec"], j["usage"]), ("RSA_2048", "SIGN_VERIFY"))
        self.assertIn("RSASSA_PSS_SHA_256", j["algorithms"])
        self.assertIn("RSASSA_PKCS1_V1_5_SHA_256", j["algorithms"])
        j = self.vault.json("key", "describe", "alias/hmac512", "--json")
        self.assertEqual((j["spec"], j["usage"]), ("HMAC_SHA512", "GENERATE_VERIFY_MAC"))
        j = self.vault.json("key", "describe", "alias/x25519", "--json")
        self.assertEqual((j["spec"], j["usage"]), ("X25519", "KEY_AGREEMENT"))


class Rotation(SharedVaultTestCase):
    def test_old_signatures_verify_after_rotation_naming_their_version(self):
        key = self.vault.ok("key", "create", "--spec", "EC_P256").out.strip()
        msg = self.vault.path("m.txt")
        write(msg, b"before and after " + MARKER)
        old, new = self.vault.path("old.sig"), self.vault.path("new.sig")
        self.vault.ok("sign", "--key", key, "--algorithm", "ECDSA_SHA_256", "--in", msg,
                      "-o", old)
        pub1 = self.vault.ok("key", "public", key).raw
        self.vault.ok("key", "rotate", key)

        def verify(sig, *extra):
            return self.vault.run("verify", "--key", key, "--algorithm", "ECDSA_SHA_256",
                                  "--signature", sig, "--in", msg, "--json", *extra)

        r = verify(old)
        self.assertEqual(r.rc, OK, r.show())
        self.assertEqual(r.json(), {"valid": True, "key_id": key, "key_version": 1})
        r, rec = self.audited("sign", "--key", key, "--algorithm", "ECDSA_SHA_256", "--in", msg,
                              "-o", new, action="key.sign")
        self.assertEqual(rec["params"]["version"], 2)
        r = verify(new)
        self.assertEqual(r.json(), {"valid": True, "key_id": key, "key_version": 2})
        r = self.vault.run("verify", "--key", key, "--algorithm", "ECDSA_SHA_256",
                           "--signature", old, "--in", msg)
        self.assertIn(f"signature valid (key {key} version 1)", r.err)

        self.assertEqual(self.vault.ok("key", "public", key, "--version", "1").raw, pub1)
        pub2 = self.vault.ok("key", "public", key).raw
        self.assertNotEqual(pub2, pub1)
        self.assertEqual(self.vault.ok("key", "public", key, "--version", "2").raw, pub2)

        r = verify(old, "--key-version", "2")
        self.assertEqual(r.rc, INTEGRITY, r.show())
        self.assertIs(r.json()["valid"], False)
        self.assertEqual(verify(old, "--key-version", "1").rc, OK)
        # Offline with version 1's public key: the old signature, not the new one.
        p1 = self.vault.path("pub1.pem")
        write(p1, pub1)
        offline = ["verify", "--public-key", p1, "--algorithm", "ECDSA_SHA_256", "--in", msg,
                   "--signature"]
        self.assertEqual(self.vault.run(*offline, old).rc, OK)
        self.assertEqual(self.vault.run(*offline, new).rc, INTEGRITY)

    def test_ciphertexts_and_macs_made_before_a_rotation_still_open_naming_version_1(self):
        msg = self.vault.path("r.txt")
        write(msg, b"rotated " + MARKER)
        rsa = self.vault.ok("key", "create", "--spec", "RSA_2048").out.strip()
        sm2 = self.vault.ok("key", "create", "--spec", "EC_SM2").out.strip()
        hmac = self.vault.ok("key", "create", "--spec", "HMAC_SHA512").out.strip()
        cases = [(rsa, "RSAES_OAEP_SHA_256"), (sm2, "SM2PKE")]
        for key, algorithm in cases:
            self.vault.ok("encrypt", "--key", key, "--algorithm", algorithm, "--in", msg,
                          "--binary", "--out", self.vault.path(algorithm + ".enc"))
        mac1 = self.vault.path("r1.mac")
        self.vault.ok("mac", "--key", hmac, "--in", msg, "-o", mac1)
        for key in (rsa, sm2, hmac):
            self.vault.ok("key", "rotate", key)
        for key, algorithm in cases:
            with self.subTest(algorithm=algorithm):
                ct = self.vault.path(algorithm + ".enc")
                r, rec = self.audited("decrypt", "--key", key, "--algorithm", algorithm,
                                      "--in", ct, action="key.decrypt")
                self.assertEqual(r.raw, read(msg))
                self.assertEqual(rec["params"]["version"], 1)
                r = self.vault.run("decrypt", "--key", key, "--algorithm", algorithm, "--in", ct,
                                   "--key-version", "2")
                self.assertError(r, INTEGRITY)
        r, rec = self.audited("verify-mac", "--key", hmac, "--mac", mac1, "--in", msg, "--json",
                              action="key.verify_mac")
        self.assertEqual(rec["params"]["algorithm"], "HMAC_SHA_512")
        self.assertEqual(r.json(), {"valid": True, "key_id": hmac, "key_version": 1})
        mac2 = self.vault.path("r2.mac")
        self.vault.ok("mac", "--key", hmac, "--in", msg, "-o", mac2)
        self.assertNotEqual(read(mac2), read(mac1))
        self.assertEqual(self.vault.json("verify-mac", "--key", hmac, "--mac", mac2, "--in", msg,
                                         "--json")["key_version"], 2)


@unittest.skipIf(OPENSSL is None, "the openssl binary is not installed")
@kmsenv.file_store_only("an agent serves a vault file")
class ThroughAnAgent(AgentTestCase):
    """sign, verify, mac and key public served by `kmsctl agent`, without a PIN."""

    def test_sign_verify_mac_and_oaep_through_the_agent_are_recorded_with_channel_agent(self):
        self.kms.init()
        key = self.kms.ok("key", "create", "--spec", "EC_P256", "--alias", "alias/ag").out.strip()
        hkey = self.kms.ok("key", "create", "--spec", "HMAC_SHA256").out.strip()
        rsa = self.kms.ok("key", "create", "--spec", "RSA_2048").out.strip()
        r = self.kms.run("agent", "start", "--json")
        self.assertOk(r)
        info = r.json()
        self.agent_pid = int(info["pid"])
        sock = info["socket"]

        def served(*args, rc=OK):
            r = self.kms.run(*args, env={"KMSCTL_AGENT_SOCK": sock}, unset=("KMSCTL_PIN_FILE",))
            self.assertEqual(r.rc, rc, r.show())
            return r

        msg = self.kms.path("m.txt")
        write(msg, b"through the agent " + MARKER)
        sig = self.kms.path("m.sig")
        served("sign", "--key", "alias/ag", "--algorithm", "ECDSA_SHA_256", "--in", msg,
               "-o", sig)
        r = served("verify", "--key", "alias/ag", "--algorithm", "ECDSA_SHA_256", "--signature",
                   sig, "--in", msg)
        self.assertIn(f"signature valid (key {key} version 1)", r.err)
        bad = self.kms.path("bad.txt")
        write(bad, flip(read(msg)))
        served("verify", "--key", "alias/ag", "--algorithm", "ECDSA_SHA_256", "--signature",
               sig, "--in", bad, rc=INTEGRITY)
        pem = self.kms.path("ag.pem")
        served("key", "public", "alias/ag", "-o", pem)
        self.assertOk(openssl_verify("dgst-sha256", pem, msg, sig))
        mac = self.kms.path("m.mac")
        served("mac", "--key", hkey, "--in", msg, "-o", mac)
        served("verify-mac", "--key", hkey, "--mac", mac, "--in", msg)
        ct = self.kms.path("m.enc")
        served("encrypt", "--key", rsa, "--algorithm", "RSAES_OAEP_SHA_256", "--in", msg,
               "--binary", "--out", ct)
        r = served("decrypt", "--key", rsa, "--algorithm", "RSAES_OAEP_SHA_256", "--in", ct)
        self.assertEqual(r.raw, read(msg))

        log = self.kms.records()
        start = next(i for i, x in enumerate(log) if x["action"] == "agent.start")
        mine = [x for x in log[start + 1:] if x["action"].startswith("key.")]
        self.assertEqual([x["action"] for x in mine],
                         ["key.sign", "key.verify", "key.verify", "key.get_public_key",
                          "key.mac", "key.verify_mac", "key.encrypt", "key.decrypt"])
        self.assertEqual(mine[0]["params"]["algorithm"], "ECDSA_SHA_256")
        self.assertEqual(mine[-1]["params"]["algorithm"], "RSAES_OAEP_SHA_256")
        self.assertEqual(mine[-1]["resource"], "key/" + rsa)
        for rec in mine:
            with self.subTest(action=rec["action"]):
                self.assertEqual(rec["params"].get("channel"), "agent", rec)
                self.assertEqual(rec["params"].get("agent", {}).get("pid"), self.agent_pid, rec)
                self.assertEqual(rec["outcome"], "ok", rec)
        self.assertEqual([x["params"]["valid"] for x in mine if x["action"] == "key.verify"],
                         [True, False])
        # Offline verification is not sent to the agent: no request, no record.
        requests = self.kms.json("agent", "status", "--json", "--socket", sock)["requests"]
        count = self.kms.audit_count()
        r = served("verify", "--public-key", pem, "--algorithm", "ECDSA_SHA_256",
                   "--signature", sig, "--in", msg)
        self.assertIn("signature valid", r.err)
        self.assertEqual(self.kms.audit_count(), count)
        self.assertEqual(self.kms.json("agent", "status", "--json", "--socket", sock)["requests"],
                         requests)
        self.assertNotIn(MARKER, self.kms.run("audit", "list", "--json").raw)


if __name__ == "__main__":
    kmsenv.main()
