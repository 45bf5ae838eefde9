"""Bring your own key (docs/KEYS.md, "Bring your own key"): a key created with --origin external
has no material until `key import` puts in material wrapped with OpenSSL for the wrapping key of
`key import-params`. HMAC and AES material (RSAES_OAEP_SHA_256) and an EC private key
(RSA_AES_KEY_WRAP_SHA_256, PKCS #8) then work as OpenSSL's own: the same MAC, a blob built in
Python before the import decrypts, an OpenSSL signature verifies. Material expires (unusable, then
deleted by `maintain`) and only the same material comes back; tokens serve one key, once, for 24
hours; external keys are never rotated nor put in the token; the new rows are authenticated.
Every refusal changes nothing and leaves an audit chain that verifies."""

import datetime
import json
import os
import shutil
import struct
import subprocess
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (OK, USAGE, REFUSED, INTEGRITY, AgentTestCase, SharedVaultTestCase, Result, read,
                    write, b64)

OPENSSL = shutil.which("openssl")
try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # pragma: no cover
    AESGCM = None

MARKER = b"byok-e2e-message-41c9d2"


def openssl(*args, check=True, input=None):
    p = subprocess.run([OPENSSL, *args], input=input,
                       stdin=None if input is not None else subprocess.DEVNULL,
                       capture_output=True, timeout=120)
    r = Result(p.returncode, p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace"), raw=p.stdout, argv=["openssl", *args])
    if check and p.returncode != 0:
        raise AssertionError("openssl failed:\n" + r.show())
    return r


def blob(key_id, version, material, plaintext, nonce=b"\x07" * 12):
    """A ciphertext blob of docs/FORMAT.md §12.3 with the empty context."""
    header = b"KMSC" + bytes([1]) + uuid.UUID(key_id).bytes + struct.pack(">I", version)
    return header + nonce + AESGCM(material).encrypt(nonce, plaintext, header + b"\0\0\0\0")


@unittest.skipIf(OPENSSL is None, "the openssl binary is not installed")
class Byok(SharedVaultTestCase):
    def dir(self, name):
        d = self.vault.path(name)
        os.makedirs(d, exist_ok=True)
        return d

    def params(self, key, algorithm=None, name=None):
        """Runs `key import-params`; returns (wrapping-key.pem, import-token) paths."""
        d = self.dir(name or f"params-{os.urandom(4).hex()}")
        args = ["key", "import-params", key, "-o", d]
        if algorithm:
            args += ["--wrapping-algorithm", algorithm]
        r = self.vault.ok(*args)
        self.assertIn("wrap the material", r.err)
        return os.path.join(d, "wrapping-key.pem"), os.path.join(d, "import-token")

    def wrap_oaep(self, pem, material):
        src = self.vault.path(f"m-{os.urandom(4).hex()}")
        out = src + ".wrapped"
        write(src, material)
        openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem, "-pkeyopt",
                "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt",
                "rsa_mgf1_md:sha256", "-in", src, "-out", out)
        os.unlink(src)
        return out

    def wrap_kwp(self, pem, der_path):
        """RSA_AES_KEY_WRAP_SHA_256 as AWS documents it, with the openssl binary."""
        aes = self.vault.path(f"aes-{os.urandom(4).hex()}")
        openssl("rand", "-out", aes, "32")
        aes_hex = read(aes).hex()
        wrapped_key = aes + ".wrapped"
        openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem, "-pkeyopt",
                "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt",
                "rsa_mgf1_md:sha256", "-in", aes, "-out", wrapped_key)
        wrapped_material = aes + ".kwp"
        openssl("enc", "-id-aes256-wrap-pad", "-K", aes_hex, "-iv", "A65959A6", "-in", der_path,
                "-out", wrapped_material)
        out = aes + ".both"
        write(out, read(wrapped_key) + read(wrapped_material))
        return out

    def external(self, spec="AES_256", *args):
        return self.vault.ok("key", "create", "--origin", "external", "--spec", spec,
                             *args).out.strip()

    def describe(self, key, **kw):
        return self.vault.json("key", "describe", key, "--json", **kw)

    def import_(self, key, wrapped, token, *args, **kw):
        return self.vault.run("key", "import", key, "--material", wrapped, "--import-token",
                              token, *args, **kw)

    def assertChainVerifies(self):
        r = self.vault.run("audit", "verify")
        self.assertEqual(r.rc, OK, r.show())

    # ---- the three workflows ----
    def test_hmac_material_wrapped_by_openssl_macs_as_openssl_does(self):
        key = self.external("HMAC_SHA256")
        d = self.describe(key)
        self.assertEqual((d["state"], d["origin"], d["versions"]), ("PendingImport", "external", []))
        msg = self.vault.path("hmac-msg")
        write(msg, b"imported hmac " + MARKER)
        self.assertError(self.vault.run("mac", "--key", key, "--in", msg), REFUSED,
                         "pending import", hint="import-params")
        material = os.urandom(32)
        pem, token = self.params(key)
        r, rec = self.audited("key", "import", key, "--material", self.wrap_oaep(pem, material),
                              "--import-token", token, action="key.import_key_material")
        self.assertEqual(rec["params"]["wrapping_algorithm"], "RSAES_OAEP_SHA_256")
        self.assertIs(rec["params"]["reimport"], False)
        self.assertIsNone(rec["params"]["material_expires"])
        mac = self.vault.ok("mac", "--key", key, "--in", msg, "--format", "raw").raw
        expected = openssl("dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:" + material.hex(),
                           "-binary", msg).raw
        self.assertEqual(mac, expected)
        d = self.describe(key)
        self.assertEqual((d["state"], d["origin"], d["primary_version"]), ("Enabled", "external", 1))
        # No material, wrapped or not, is in any record.
        log = json.dumps([x["params"] for x in self.vault.audit_rows()])
        self.assertNotIn(material.hex(), log)
        self.assertNotIn(b64(material), log)

    @unittest.skipIf(AESGCM is None, "the Python package cryptography is not installed")
    def test_aes_blob_made_before_the_import_decrypts_then_expires_and_comes_back(self):
        key = self.external("AES_256", "--alias", "alias/byok-aes")
        material = os.urandom(32)
        old = blob(key, 1, material, b"made outside " + MARKER)
        self.assertError(self.vault.run("decrypt", input=old), REFUSED, "pending import")
        pem, token = self.params("alias/byok-aes")
        wrapped = self.wrap_oaep(pem, material)
        self.assertOk(self.import_("alias/byok-aes", wrapped, token, "--expires", "1d"))
        self.assertEqual(self.vault.decrypt(old), b"made outside " + MARKER)
        expiry = self.describe(key)["material_expires"]
        self.assertIsNotNone(expiry)
        self.assertIn(expiry, self.vault.ok("key", "list").out)
        # A day and more later: unusable, naming the expiry, before maintain runs.
        r = self.vault.run("decrypt", input=old, faketime="+2d")
        self.assertError(r, REFUSED, "expired on " + expiry)
        # maintain deletes the material, in its record; the key waits for it again.
        r, rec = self.audited("maintain", "--json", action="vault.maintain", faketime="+2d")
        self.assertEqual(json.loads(r.out)["material_expired"], [{"key_id": key,
                                                                  "expired": expiry}])
        self.assertEqual(rec["params"]["material_expired"], [{"key_id": key, "expired": expiry}])
        d = self.describe(key)
        self.assertEqual((d["state"], d["versions"], d["material_expires"]),
                         ("PendingImport", [], None))
        self.assertEqual(self.vault.sql("SELECT count(*) FROM key_versions WHERE key_id = ?",
                                        (key,))[0][0], 0)
        self.assertError(self.vault.run("decrypt", input=old), REFUSED, "pending import")
        # The same material again: same key, same version, the old blob opens again.
        pem, token = self.params(key)
        r, rec = self.audited("key", "import", key, "--material", self.wrap_oaep(pem, material),
                              "--import-token", token, action="key.import_key_material")
        self.assertIs(rec["params"]["reimport"], True)
        self.assertEqual(self.vault.decrypt(old), b"made outside " + MARKER)
        # Other material: refused, and nothing changed.
        pem, token = self.params(key)
        before = self.describe(key)
        r = self.import_(key, self.wrap_oaep(pem, os.urandom(32)), token)
        self.assertError(r, REFUSED, "other material")
        self.assertEqual(self.describe(key), before)
        self.assertEqual(self.vault.decrypt(old), b"made outside " + MARKER)
        self.assertChainVerifies()

    def test_ec_p256_private_key_wrapped_with_aes_key_wrap_verifies_openssl_signatures(self):
        key = self.external("EC_P256")
        pem_key = self.vault.path("ec.pem")
        der = self.vault.path("ec.der")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                pem_key)
        openssl("pkcs8", "-topk8", "-nocrypt", "-in", pem_key, "-outform", "DER", "-out", der)
        pem, token = self.params(key, "RSA_AES_KEY_WRAP_SHA_256")
        self.assertOk(self.import_(key, self.wrap_kwp(pem, der), token))
        msg = self.vault.path("ec-msg")
        write(msg, b"signed outside " + MARKER)
        sig = self.vault.path("ec.sig")
        openssl("dgst", "-sha256", "-sign", pem_key, "-out", sig, msg)
        r = self.vault.run("verify", "--key", key, "--algorithm", "ECDSA_SHA_256", "--signature",
                           sig, "--in", msg)
        self.assertEqual(r.rc, OK, r.show())
        self.assertIn(f"signature valid (key {key} version 1)", r.err)
        # The vault's public key is the imported key's.
        ours = self.vault.ok("key", "public", key).out
        theirs = openssl("pkey", "-in", pem_key, "-pubout").out
        self.assertEqual(ours, theirs)
        # And kmsctl's signatures verify with OpenSSL.
        sig2 = self.vault.path("ec2.sig")
        self.vault.ok("sign", "--key", key, "--algorithm", "ECDSA_SHA_256", "--in", msg, "-o",
                      sig2)
        pub = self.vault.path("ec-pub.pem")
        write(pub, theirs.encode())
        openssl("dgst", "-sha256", "-verify", pub, "-signature", sig2, msg)

    # ---- refusals: exit code, message, nothing changed, the chain verifies ----
    def test_a_token_of_another_key_an_expired_or_used_token_is_refused(self):
        a, b = self.external(), self.external()
        material = os.urandom(32)
        pem_b, token_b = self.params(b)
        r = self.import_(a, self.wrap_oaep(pem_b, material), token_b)
        self.assertError(r, REFUSED, f"is for key {b}", hint="import-params")
        self.assertEqual(self.describe(a)["state"], "PendingImport")
        # Expired: the token serves 24 hours.
        pem_a, token_a = self.params(a)
        wrapped = self.wrap_oaep(pem_a, material)
        r, rec = self.audited("key", "import", a, "--material", wrapped, "--import-token",
                              token_a, action="key.import_key_material", rc=REFUSED,
                              faketime="+2d")
        self.assertError(r, REFUSED, "expired", hint=f"kmsctl key import-params {a}")
        self.assertEqual(self.describe(a)["state"], "PendingImport")
        # Used: one import per token.
        self.assertOk(self.import_(a, wrapped, token_a))
        r = self.import_(a, wrapped, token_a)
        self.assertError(r, REFUSED, "already used", hint="import-params")
        # A token of another vault (or made up) is not known here.
        fake = self.vault.path("fake-token")
        write(fake, f"kmsctl-import-token-v1.{a}.{'ab' * 32}\n".encode())
        self.assertError(self.import_(a, wrapped, fake), REFUSED, "not known")
        write(fake, b"not a token\n")
        self.assertError(self.import_(a, wrapped, fake), USAGE, "import token")
        self.assertChainVerifies()

    def test_material_that_does_not_fit_the_spec_is_refused_without_echoing_it(self):
        key = self.external("EC_P256")
        p384 = self.vault.path("p384.pem")
        der = self.vault.path("p384.der")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", p384)
        openssl("pkcs8", "-topk8", "-nocrypt", "-in", p384, "-outform", "DER", "-out", der)
        pem, token = self.params(key, "RSA_AES_KEY_WRAP_SHA_256")
        r = self.import_(key, self.wrap_kwp(pem, der), token)
        self.assertError(r, USAGE, "EC_P384", "EC_P256")
        self.assertNotIn(read(der).hex()[-40:], r.err)
        self.assertEqual(self.describe(key)["state"], "PendingImport")
        # 16 bytes for an AES_256 key; 8 for an HMAC key.
        for spec, size in (("AES_256", 16), ("HMAC_SHA512", 8)):
            k = self.external(spec)
            pem, token = self.params(k)
            material = os.urandom(size)
            r = self.import_(k, self.wrap_oaep(pem, material), token)
            self.assertError(r, USAGE, f"has {size} bytes", spec)
            self.assertNotIn(material.hex(), r.err)
            # The token was not used up by the refusal.
            self.assertOk(self.import_(k, self.wrap_oaep(pem, os.urandom(32 if spec == "AES_256"
                                                                        else 64)), token))
        self.assertChainVerifies()

    def test_tampered_wrapped_material_is_refused_with_exit_5(self):
        key = self.external("HMAC_SHA512")
        pem, token = self.params(key)
        wrapped = self.wrap_oaep(pem, os.urandom(64))
        raw = bytearray(read(wrapped))
        raw[100] ^= 0x01
        bad = self.vault.path("tampered.wrapped")
        write(bad, bytes(raw))
        r, rec = self.audited("key", "import", key, "--material", bad, "--import-token", token,
                              action="key.import_key_material", rc=INTEGRITY,
                              error_code="integrity")
        self.assertError(r, INTEGRITY, "does not unwrap")
        self.assertEqual(self.describe(key)["state"], "PendingImport")
        self.assertOk(self.import_(key, wrapped, token))  # the token still serves
        self.assertChainVerifies()

    def test_external_keys_are_not_rotated_nor_in_the_token(self):
        key = self.external()
        for args in (("key", "rotate", key), ("key", "set-rotation", key, "--period", "90d")):
            self.assertError(self.vault.run(*args), REFUSED, "imported material",
                             "does not rotate")
        # Refused whatever the spec, for a spec the token could hold. A token reached through
        # p11-kit 0.24 has no AES-GCM, and an AES_256 key is then refused for the token's sake
        # first: there only the RSA key asks.
        specs = ["RSA_2048"]
        if not (kmsenv.ON_POSTGRES and kmsenv.TOKEN == "p11-kit"):
            specs.insert(0, "AES_256")
        for spec in specs:
            r = self.vault.run("key", "create", "--origin", "external", "--protection", "hsm",
                               "--spec", spec)
            self.assertError(r, REFUSED, "software only")
        r = self.vault.run("key", "create", "--origin", "external", "--rotation-period", "90d")
        self.assertError(r, REFUSED, "never rotated")
        # A key the vault made takes no import.
        kms_key = self.vault.create_key()
        r = self.vault.run("key", "import-params", kms_key, "-o", self.dir("kmskey"))
        self.assertError(r, REFUSED, "origin kms")
        self.assertEqual(os.listdir(self.dir("kmskey")), [])
        self.assertChainVerifies()

    def test_an_expiry_not_in_the_future_is_a_usage_error_before_the_vault(self):
        key = self.external()
        pem, token = self.params(key)
        wrapped = self.wrap_oaep(pem, os.urandom(32))
        for when in ("2020-01-01", "2020-01-01T00:00:00Z", "tomorrow", "0d"):
            with self.subTest(when=when):
                r = self.unaudited("key", "import", key, "--material", wrapped,
                                   "--import-token", token, "--expires", when, rc=USAGE)
                self.assertError(r, USAGE, "expir")
        self.assertEqual(self.describe(key)["state"], "PendingImport")
        day = (datetime.date.today() + datetime.timedelta(days=400)).isoformat()  # a date alone
        self.assertOk(self.import_(key, wrapped, token, "--expires", day))
        self.assertEqual(self.describe(key)["material_expires"], day + "T00:00:00.000Z")

    def test_import_params_refuses_to_overwrite_its_files_without_force(self):
        key = self.external()
        d = self.dir("overwrite")
        self.vault.ok("key", "import-params", key, "-o", d)
        first = read(os.path.join(d, "import-token"))
        r = self.vault.run("key", "import-params", key, "-o", d)
        self.assertError(r, REFUSED, "already exists")
        self.assertEqual(read(os.path.join(d, "import-token")), first)
        self.vault.ok("key", "import-params", key, "-o", d, "--force")
        self.assertNotEqual(read(os.path.join(d, "import-token")), first)
        openssl("pkey", "-pubin", "-in", os.path.join(d, "wrapping-key.pem"), "-noout")
        text = openssl("pkey", "-pubin", "-in", os.path.join(d, "wrapping-key.pem"), "-noout",
                       "-text").out
        self.assertIn("3072 bit", text)

    # ---- the new rows are authenticated ----
    def own_vault(self):
        """A vault of this test alone (one the test damages), with an external HMAC key and its
        import parameters: (env, key, wrapped material, token)."""
        env = kmsenv.KmsEnv()
        self.addCleanup(env.cleanup)
        env.init()
        key = env.ok("key", "create", "--origin", "external", "--spec", "HMAC_SHA256").out.strip()
        d = env.path("p")
        os.mkdir(d)
        env.ok("key", "import-params", key, "-o", d)
        src = env.path("m")
        write(src, os.urandom(32))
        wrapped = env.path("w")
        openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", os.path.join(d, "wrapping-key.pem"),
                "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                "-pkeyopt", "rsa_mgf1_md:sha256", "-in", src, "-out", wrapped)
        return env, key, wrapped, os.path.join(d, "import-token")

    def test_edited_import_parameters_are_refused(self):
        env, key, wrapped, token = self.own_vault()
        # The import parameters' expiry moved: exit 5, nothing imported.
        env.sql("UPDATE key_import_params SET expires = '2099-01-01T00:00:00.000Z' "
                "WHERE key_id = ?", (key,))
        r = env.run("key", "import", key, "--material", wrapped, "--import-token", token)
        self.assertError(r, INTEGRITY, "import parameters", "altered")
        self.assertEqual(env.sql("SELECT count(*) FROM key_versions")[0][0], 0)
        self.assertEqual(env.run("audit", "verify").rc, INTEGRITY)

    def test_edited_origin_expiry_or_commitment_is_refused(self):
        for column, value in (("origin", "kms"), ("material_expires", None),
                              ("material_commitment", bytes(32))):
            with self.subTest(column=column):
                env, key, wrapped, token = self.own_vault()
                env.ok("key", "import", key, "--material", wrapped, "--import-token", token,
                       "--expires", "30d")
                env.sql(f"UPDATE keys SET {column} = ? WHERE id = ?", (value, key))
                r = env.run("key", "describe", key)
                self.assertEqual(r.rc, INTEGRITY, r.show())
                self.assertIn("altered outside kmsctl", r.err)
                self.assertEqual(env.run("audit", "verify").rc, INTEGRITY)

    def test_deleted_import_parameters_are_reported_by_audit_verify(self):
        env, _, _, _ = self.own_vault()
        self.assertEqual(env.run("audit", "verify").rc, OK)
        env.sql("DELETE FROM key_import_params")
        r = env.run("audit", "verify")
        self.assertEqual(r.rc, INTEGRITY, r.show())
        self.assertIn("not the state", r.err)

    def test_describe_and_list_show_origin(self):
        key = self.external()
        out = self.vault.ok("key", "describe", key).out
        self.assertIn("origin           external", out)
        self.assertIn("PendingImport", out)
        kms_key = self.vault.create_key()
        self.assertEqual(self.describe(kms_key)["origin"], "kms")
        listed = self.vault.json("key", "list", "--state", "pending-import", "--json",
                                 "--limit", "1000")
        self.assertIn(key, [k["key_id"] for k in listed["items"]])
        self.assertNotIn(kms_key, [k["key_id"] for k in listed["items"]])


@unittest.skipIf(OPENSSL is None, "the openssl binary is not installed")
@kmsenv.file_store_only("an agent serves a vault file")
class ThroughAnAgent(AgentTestCase):
    """import-params and import served by `kmsctl agent`, without a PIN: the wrapped material
    crosses the socket as the request's bytes, and the records say channel agent."""

    def test_import_through_the_agent(self):
        self.kms.init()
        key = self.kms.ok("key", "create", "--origin", "external", "--spec",
                          "HMAC_SHA512").out.strip()
        r = self.kms.run("agent", "start", "--json")
        self.assertOk(r)
        info = r.json()
        self.agent_pid = int(info["pid"])

        def served(*args, rc=OK):
            r = self.kms.run(*args, env={"KMSCTL_AGENT_SOCK": info["socket"]},
                             unset=("KMSCTL_PIN_FILE",))
            self.assertEqual(r.rc, rc, r.show())
            return r

        d = self.kms.path("p")
        os.mkdir(d)
        served("key", "import-params", key, "-o", d)
        material = os.urandom(64)
        src = self.kms.path("m")
        write(src, material)
        wrapped = self.kms.path("w")
        openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", os.path.join(d, "wrapping-key.pem"),
                "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                "-pkeyopt", "rsa_mgf1_md:sha256", "-in", src, "-out", wrapped)
        served("key", "import", key, "--material", wrapped, "--import-token",
               os.path.join(d, "import-token"))
        msg = self.kms.path("msg")
        write(msg, MARKER)
        mac = served("mac", "--key", key, "--in", msg, "--format", "raw").raw
        self.assertEqual(mac, openssl("dgst", "-sha512", "-mac", "HMAC", "-macopt",
                                      "hexkey:" + material.hex(), "-binary", msg).raw)
        recs = [x for x in self.kms.records()
                if x["action"] in ("key.get_parameters_for_import", "key.import_key_material")]
        self.assertEqual([x["outcome"] for x in recs], ["ok", "ok"])
        for rec in recs:
            self.assertEqual(rec["params"].get("channel"), "agent", rec)
        self.assertNotIn(material.hex(), json.dumps(self.kms.records()))


if __name__ == "__main__":
    unittest.main()
