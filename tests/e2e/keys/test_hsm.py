"""Keys with protection level hsm: generated in the vault's SoftHSM2 token as non-extractable AES
keys or RSA, EC and Ed25519 key pairs (token objects per version, label kmsctl-key:<id>:<version>),
used in the token, with the same blob and signature formats as software keys; destroyed from the
token when maintain purges the key."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (SharedVaultTestCase, INTEGRITY, MIN_BLOB, NOT_FOUND, REFUSED, parse_blob, read,
                    unb64)


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



def parse_objects(text, header):
    objects, current = {}, None
    for line in text.splitlines():
        if line.startswith(header):
            current = {"header": line}
        elif not line.startswith(" "):
            current = None
        elif current is not None and line.strip().startswith("label:"):
            objects[line.split(":", 1)[1].strip()] = current
        elif current is not None and ":" in line:
            k, v = line.split(":", 1)
            current[k.strip()] = v.strip()
    return objects


def openssl(*args, input=None):
    p = subprocess.run(["openssl", *args], input=input, capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


class KeyPairCase(SharedVaultTestCase):
    """A vault of its own per class, and the token's key pair objects as pkcs11-tool lists them."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="kmsctl-hsm-pairs-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def pair_objects(self, key=None):
        """The key pair objects of `key` (of every hsm key when None), by type and label."""
        prefix = f"kmsctl-key:{key}:" if key else "kmsctl-key:"
        out = {}
        for kind, header in (("privkey", "Private Key Object"), ("pubkey", "Public Key Object")):
            r = self.vault.pkcs11_tool("--login", "--pin", self.vault.pin, "--list-objects",
                                       "--type", kind)
            self.assertEqual(r.rc, 0, r.show())
            objs = parse_objects(r.out, header)
            out[kind] = {l: a for l, a in objs.items() if l.startswith(prefix)}
        return out

    def public_pem(self, key):
        pem = self.path(f"{key}.pem")
        self.vault.ok("key", "public", key, "-o", pem, "--force")
        return pem


class HsmKeyPairs(KeyPairCase):
    def test_signatures_made_in_the_token_verify_with_openssl(self):
        msg = self.path("m")
        with open(msg, "wb") as f:
            f.write(b"artifact contents")
        for spec, alg in (("EC_P256", "ECDSA_SHA_256"), ("EC_P384", "ECDSA_SHA_384"),
                          ("ED25519", "ED25519"), ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
                          ("RSA_2048", "RSASSA_PSS_SHA_256")):
            with self.subTest(spec=spec, alg=alg):
                r, rec = self.audited("key", "create", "--spec", spec, "--usage", "sign",
                                      "--protection", "hsm", "--json", action="key.create")
                key = r.json()["key_id"]
                self.assertEqual(self.vault.sql(
                    "SELECT material FROM key_versions WHERE key_id = ?", (key,)), [(None,)])
                pem = self.public_pem(key)
                sig = self.path("sig")
                self.vault.ok("sign", "--key", key, "--algorithm", alg, "--in", msg, "-o", sig,
                              "--force")
                if alg.startswith("ECDSA") or alg.startswith("RSASSA_PKCS1"):
                    md = "-sha384" if alg.endswith("384") else "-sha256"
                    rc, out, err = openssl("dgst", md, "-verify", pem, "-signature", sig, msg)
                elif alg == "ED25519":
                    rc, out, err = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pem,
                                           "-rawin", "-in", msg, "-sigfile", sig)
                else:
                    rc, out, err = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pem,
                                           "-rawin", "-digest", "sha256", "-in", msg,
                                           "-sigfile", sig, "-pkeyopt", "rsa_padding_mode:pss",
                                           "-pkeyopt", "rsa_pss_saltlen:32")
                self.assertEqual(rc, 0, out + err.encode())
                self.vault.ok("verify", "--key", key, "--algorithm", alg, "--signature", sig,
                              "--in", msg)
                self.vault.ok("verify", "--public-key", pem, "--algorithm", alg, "--signature",
                              sig, "--in", msg)

    def test_rsa_oaep_to_the_public_key_decrypts_in_the_token(self):
        key = self.vault.create_key("--spec", "RSA_2048", "--protection", "hsm")
        pem = self.public_pem(key)
        pt, ct = self.path("pt"), self.path("ct")
        with open(pt, "wb") as f:
            f.write(b"a token for the inbox")
        rc, out, err = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem, "-pkeyopt",
                               "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                               "-in", pt, "-out", ct)
        self.assertEqual(rc, 0, err)
        with open(ct, "rb") as f:
            data = f.read()
        r = self.vault.ok("decrypt", "--key", key, "--algorithm", "RSAES_OAEP_SHA_256",
                          input=data)
        self.assertEqual(r.raw, b"a token for the inbox")
        objs = self.pair_objects(key)
        self.assertEqual(list(objs["privkey"]), [label(key, 1)])
        self.assertIn("decrypt", objs["privkey"][label(key, 1)].get("Usage", ""))

    def test_the_private_key_is_sensitive_and_never_extractable(self):
        key = self.vault.create_key("--spec", "EC_P256", "--usage", "sign", "--protection", "hsm")
        self.vault.ok("key", "rotate", key)
        objs = self.pair_objects(key)
        self.assertEqual(sorted(objs["privkey"]), [label(key, 1), label(key, 2)])
        self.assertEqual(sorted(objs["pubkey"]), [label(key, 1), label(key, 2)])
        for o in objs["privkey"].values():
            access = [a.strip() for a in o["Access"].split(",")]
            self.assertIn("sensitive", access, o)
            self.assertIn("never extractable", access, o)
            self.assertNotIn("extractable", access, o)
        # `vault check-token` counts both objects of each version as in use.
        r = self.vault.ok("vault", "check-token", "--json")
        mine = [o for o in r.json()["objects"] if o["label"].startswith(f"kmsctl-key:{key}:")]
        self.assertEqual(sorted((o["kind"], o["status"]) for o in mine),
                         [("hsm key (priv)", "in use")] * 2 + [("hsm key (pub)", "in use")] * 2)

    def test_specs_the_token_cannot_hold_are_refused_naming_the_mechanism(self):
        r, _ = self.audited("key", "create", "--spec", "EC_SM2", "--protection", "hsm",
                            action="key.create", rc=REFUSED)
        self.assertError(r, REFUSED, "EC_SM2", "SM2")
        self.assertIn("--protection software", r.err)

    def test_a_token_that_lacks_a_mechanism_refuses_the_spec_naming_it(self):
        # KMSCTL_TEST_FAULT=mechanism:N: the token answers CKR_MECHANISM_INVALID for CKM_ value N,
        # as a token without it does (SoftHSM2 has every mechanism these specs need).
        for spec, usage, mech, name in (
                ("ED25519", "sign", 0x1055, "CKM_EC_EDWARDS_KEY_PAIR_GEN"),
                ("EC_P256", "sign", 0x1041, "CKM_ECDSA"),
                ("RSA_2048", "encrypt", 0x0003, "CKM_RSA_X_509")):
            with self.subTest(spec=spec):
                before = self.pair_objects()
                r = self.vault.run("key", "create", "--spec", spec, "--usage", usage,
                                   "--protection", "hsm",
                                   env={"KMSCTL_TEST_FAULT": f"mechanism:{mech}"})
                self.assertError(r, REFUSED, spec, name, "--protection software")
                self.assertEqual(self.pair_objects(), before)
        # The same spec with the token's mechanisms intact is made in the token.
        self.vault.create_key("--spec", "ED25519", "--protection", "hsm")

    def test_a_refused_key_pair_create_leaves_no_token_object_behind(self):
        self.vault.create_key("--alias", "alias/pair-taken")
        self.vault.create_key("--spec", "ED25519", "--protection", "hsm")
        before = self.pair_objects()
        self.assertEqual(len(before["privkey"]), len(before["pubkey"]))
        self.assertTrue(before["privkey"])
        r, _ = self.audited("key", "create", "--spec", "EC_P256", "--protection", "hsm",
                            "--alias", "alias/pair-taken", action="key.create", rc=REFUSED)
        self.assertError(r, REFUSED, "alias/pair-taken")
        self.assertEqual(self.pair_objects(), before)

    def test_a_deleted_key_pair_is_destroyed_from_the_token(self):
        key = self.vault.create_key("--spec", "ED25519", "--protection", "hsm")
        self.vault.ok("key", "rotate", key)
        keep = self.vault.create_key("--spec", "EC_P384", "--protection", "hsm")
        objs = self.pair_objects(key)
        self.assertEqual(len(objs["privkey"]) + len(objs["pubkey"]), 4)
        self.vault.ok("key", "schedule-deletion", key, "--pending-days", "7")
        r = self.vault.ok("maintain", "--json", faketime="+8d")
        self.assertIn(key, r.json()["deleted"])
        self.assertEqual(self.pair_objects(key), {"privkey": {}, "pubkey": {}})
        kept = self.pair_objects(keep)
        self.assertEqual(list(kept["privkey"]), [label(keep, 1)])


class PlantedKeyObjects(KeyPairCase):
    """An attacker with pkcs11-tool on the token (its own vault: the planted objects stay)."""

    def test_a_public_key_object_planted_in_the_token_is_never_used(self):
        key = self.vault.create_key("--spec", "EC_P256", "--usage", "sign", "--protection", "hsm")
        real = read(self.public_pem(key))
        msg, sig = self.path("m"), self.path("sig")
        with open(msg, "wb") as f:
            f.write(b"release 1.0")
        # The attacker's own key pair, its public key planted beside the key's, same label and id.
        rc, _, err = openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                             "-out", self.path("att.pem"))
        self.assertEqual(rc, 0, err)
        rc, _, err = openssl("pkey", "-in", self.path("att.pem"), "-pubout", "-outform", "DER",
                             "-out", self.path("att.der"))
        self.assertEqual(rc, 0, err)
        rc, _, err = openssl("dgst", "-sha256", "-sign", self.path("att.pem"), "-out", sig, msg)
        self.assertEqual(rc, 0, err)
        plant = ("--write-object", self.path("att.der"), "--type", "pubkey", "--label",
                 label(key, 1), "--id", key.encode().hex())
        # Without the PIN, a public object; with it, a private one. kmsctl reads only private
        # objects the token generated itself (CKA_LOCAL, which no C_CreateObject can set), so
        # neither is ever used: the public key stays the real one, the attacker's signature
        # does not verify, and `vault check-token` reports both as foreign objects (exit 5).
        for extra in ((), ("--login", "--pin", self.vault.pin, "--private")):
            with self.subTest(pin=bool(extra)):
                r = self.vault.pkcs11_tool(*extra, *plant)
                self.assertEqual(r.rc, 0, r.show())
                self.assertEqual(read(self.public_pem(key)), real)
                r = self.vault.run("verify", "--key", key, "--algorithm", "ECDSA_SHA_256",
                                   "--signature", sig, "--in", msg)
                self.assertError(r, INTEGRITY, "not valid")
        r = self.vault.run("vault", "check-token", "--json")
        self.assertEqual(r.rc, INTEGRITY, r.show())
        foreign = [o for o in r.json()["objects"] if o["label"] == label(key, 1)
                   and o["status"] != "in use"]
        self.assertEqual(len(foreign), 2, r.out)

if __name__ == "__main__":
    kmsenv.main()
