"""A token reached over the network of PKCS#11: `p11-kit server` exports a SoftHSM2 token on a
socket (the "HSM host", which alone has the token's files), and kmsctl uses it through
`p11-kit-client.so` (a client host that has only the socket, P11_KIT_SERVER_ADDRESS). Debian 12's
p11-kit cannot carry CKM_AES_GCM's parameters, so such a vault's master key is sealed with a key
that HMAC-SHA256 in the token derives (sealed master key version 2, docs/FORMAT.md §5)."""

import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (AgentTestCase, CLIENT_MODULE, HsmHost, KmsTestCase, SOFTHSM_MODULE, INTEGRITY,
                    REFUSED, UNAVAILABLE, read, write)

CKM_AES_GCM = 0x1087
CKM_SHA256_HMAC = 0x251


def sealed_master(kms):
    return kms.sql("SELECT sealed_master FROM vault_meta")[0][0]


class RemoteToken(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.hsm = HsmHost(self.kms.root, self.kms.pin)
        self.addCleanup(self.hsm.stop)
        self.hsm.start()
        # The client host sees the socket only, never the token's files.
        self.kms.env_overrides["P11_KIT_SERVER_ADDRESS"] = f"unix:path={self.hsm.socket}"

    def init(self):
        self.kms.init("--pkcs11-module", CLIENT_MODULE, "--token-label", "prod")

    def key_objects(self):
        """The labels of kmsctl's key objects on the HSM host (every class)."""
        rc, out = self.hsm.pkcs11_tool("--login", "--pin", self.kms.pin, "--list-objects")
        self.assertEqual(rc, 0, out)
        return sorted(l.split(":", 1)[1].strip() for l in out.splitlines()
                      if l.strip().startswith("label:") and "kmsctl-key:" in l)

    def test_a_vault_on_a_forwarded_token_serves_every_command(self):
        self.init()
        st = self.kms.status()
        self.assertEqual(st["token"]["module"], CLIENT_MODULE)
        self.assertEqual(st["token"]["label"], "prod")
        self.assertEqual(st["root_key_seal"], "hmac-sha256")
        self.assertIn("generation 1, sealing with HMAC-SHA256 in the token",
                      self.kms.ok("status").out)
        sealed = sealed_master(self.kms)
        self.assertEqual((sealed[:4], sealed[4], len(sealed)), (b"KMSK", 2, 65))

        key = self.kms.create_key("--alias", "alias/remote")
        blob = self.kms.encrypt(key, b"through the socket", "--context", "app=x")
        self.assertEqual(self.kms.decrypt(blob, "--context", "app=x"), b"through the socket")
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="s3cr3t-remote")
        self.assertEqual(self.kms.ok("secret", "get", "app/db").out, "s3cr3t-remote")
        plain, enc, out = (self.kms.path(n) for n in ("plain", "plain.kms", "plain.out"))
        write(plain, os.urandom(3 << 20))
        self.kms.ok("file", "encrypt", "--key", key, plain, "-o", enc)
        self.kms.ok("file", "decrypt", enc, "-o", out)
        self.assertEqual(read(out), read(plain))

        # A rekey makes the next generation's root key in the same way.
        self.kms.ok("vault", "rekey")
        sealed2 = sealed_master(self.kms)
        self.assertEqual(sealed2[4], 2)
        self.assertNotEqual(sealed2, sealed)
        self.assertEqual(self.kms.decrypt(blob, "--context", "app=x"), b"through the socket")
        self.assertIn("verified", self.kms.ok("audit", "verify").out)
        # An agent serves the same status.
        info = self.kms.json("agent", "start", "--json")
        self.agent_pid = info["pid"]
        served = self.kms.json("status", "--json", env={"KMSCTL_AGENT_SOCK": info["socket"]})
        self.assertEqual(served["root_key_seal"], "hmac-sha256")
        self.assertEqual(self.kms.audit_rows()[-1]["params"].get("channel"), "agent")

        # On the HSM host: one root key, an HMAC key the token generated and never lets out.
        vid = st["vault"]["id"]
        rc, listing = self.hsm.pkcs11_tool("--login", "--pin", self.kms.pin, "--list-objects",
                                           "--type", "secrkey")
        self.assertEqual(rc, 0, listing)
        roots = [o for o in listing.split("Secret Key Object")[1:]
                 if f"kmsctl-root:{vid}" in o]
        self.assertEqual(len(roots), 1, listing)
        self.assertIn("Generic secret length 32", roots[0])
        access = next(l for l in roots[0].splitlines() if l.strip().startswith("Access:"))
        self.assertIn("never extractable", access)
        self.assertIn("always sensitive", access)
        rc, out = self.hsm.pkcs11_tool("--login", "--pin", self.kms.pin, "--read-object",
                                       "--type", "secrkey", "--label", f"kmsctl-root:{vid}")
        self.assertNotEqual(rc, 0, out)

    def test_keys_the_forwarder_cannot_serve_are_refused_when_created(self):
        self.init()
        before = self.key_objects()
        for spec, usage, mech in (("AES_256", "encrypt", "CKM_AES_GCM"),
                                  ("ED25519", "sign", "CKM_EC_EDWARDS_KEY_PAIR_GEN")):
            with self.subTest(spec=spec):
                r = self.kms.run("key", "create", "--spec", spec, "--usage", usage,
                                 "--protection", "hsm")
                self.assertError(r, REFUSED, spec, mech, hint="--protection software")
        self.assertEqual(self.key_objects(), before, "a refused key leaves no token object")
        # What the forwarder carries works in the token: ECDSA P-256.
        key = self.kms.create_key("--spec", "EC_P256", "--usage", "sign", "--protection", "hsm")
        msg, sig = self.kms.path("msg"), self.kms.path("sig")
        write(msg, b"release artifact")
        self.kms.ok("sign", "--key", key, "--algorithm", "ECDSA_SHA_256", "--in", msg, "-o", sig)
        self.kms.ok("verify", "--key", key, "--algorithm", "ECDSA_SHA_256", "--signature", sig,
                    "--in", msg)
        self.kms.ok("audit", "verify")

    def test_while_the_token_server_is_down_commands_exit_6_and_change_nothing(self):
        self.init()
        key = self.kms.create_key()
        count = self.kms.audit_count()
        self.hsm.stop()
        for args in (("status",), ("encrypt", "--key", key), ("secret", "get", "app/db")):
            with self.subTest(args=args):
                r = self.kms.run(*args, input=b"x")
                self.assertError(r, UNAVAILABLE, "prod", CLIENT_MODULE,
                                 hint="P11_KIT_SERVER_ADDRESS")
        self.assertEqual(self.kms.audit_count(), count)
        self.hsm.start()
        self.assertEqual(self.kms.decrypt(self.kms.encrypt(key, b"back")), b"back")
        self.kms.ok("audit", "verify")

    def test_three_hosts_write_through_one_server_at_once(self):
        # Three client "hosts" (each its own environment and vault, the one token through the one
        # server) write at the same time: the server runs a process per connection, and
        # SoftHSM2's files (root keys, anchors) are rewritten by all of them.
        hosts = []
        for i in range(3):
            h = kmsenv.KmsEnv(pin=self.kms.pin)
            self.addCleanup(h.cleanup)
            h.env_overrides["P11_KIT_SERVER_ADDRESS"] = f"unix:path={self.hsm.socket}"
            h.init("--pkcs11-module", CLIENT_MODULE, "--token-label", "prod")
            hosts.append(h)
        rounds = 4 if kmsenv.SANITIZED else 12
        failures = []

        def work(i, h):
            try:
                key = h.create_key("--alias", f"alias/host{i}")
                for n in range(rounds):
                    blob = h.encrypt(key, f"host {i} round {n}".encode())
                    h.ok("secret", "create", f"host{i}/s{n}", "--generate")
                    h.ok("secret", "put", f"host{i}/s{n}", "--generate")
                    if h.decrypt(blob) != f"host {i} round {n}".encode():
                        failures.append(f"host {i} round {n}: wrong plaintext")
            except AssertionError as e:
                failures.append(f"host {i}: {e}")

        threads = [threading.Thread(target=work, args=(i, h)) for i, h in enumerate(hosts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        for i, h in enumerate(hosts):
            with self.subTest(host=i):
                self.assertIn("verified", h.ok("audit", "verify").out)
                self.assertEqual(h.status()["counts"]["secrets"], rounds)
                versions = h.sql("SELECT count(*) FROM secret_versions")[0][0]
                self.assertEqual(versions, 2 * rounds)

    def test_a_token_that_offers_neither_seal_is_refused_at_init(self):
        # Through the forwarder (no CKM_AES_GCM) with CKM_SHA256_HMAC hidden too.
        r = self.kms.run("init", "--pkcs11-module", CLIENT_MODULE, "--token-label", "prod",
                         env={"KMSCTL_TEST_FAULT": f"mechanism:{CKM_SHA256_HMAC}"})
        self.assertError(r, UNAVAILABLE, "CKM_AES_GCM", "CKM_SHA256_HMAC")
        self.assertFalse(os.path.exists(self.kms.vault))
        rc, out = self.hsm.pkcs11_tool("--login", "--pin", self.kms.pin, "--list-objects")
        self.assertEqual(rc, 0, out)
        self.assertNotIn("kmsctl-root:", out, "no root key left in the token")
        self.init()  # and nothing stops the next init

    def test_a_vault_sealed_with_aes_gcm_names_the_mechanism_through_the_forwarder(self):
        # A vault made on the token's host (SoftHSM2's module: AES-GCM in the token), whose
        # header is then pointed at the forwarder: the token cannot open it that way.
        self.kms.init("--pkcs11-module", SOFTHSM_MODULE, "--token-label", "prod",
                      env={"SOFTHSM2_CONF": self.hsm.conf})
        self.assertEqual(sealed_master(self.kms)[4], 1)
        self.kms.checkpoint()
        self.kms.sql("UPDATE vault_meta SET pkcs11_module = ?", (CLIENT_MODULE,))
        r = self.kms.run("status")
        self.assertError(r, UNAVAILABLE, "CKM_AES_GCM", hint="p11-kit 0.25")

    def test_a_seal_version_edited_with_sqlite3_does_not_open(self):
        self.init()
        good = sealed_master(self.kms)
        for version in (1, 3):
            with self.subTest(version=version):
                self.kms.checkpoint()
                self.kms.sql("UPDATE vault_meta SET sealed_master = ?",
                             (good[:4] + bytes([version]) + good[5:],))
                r = self.kms.run("status")
                self.assertError(r, INTEGRITY, "master key")
        self.kms.sql("UPDATE vault_meta SET sealed_master = ?", (good,))
        self.kms.ok("audit", "verify")


class TokenWithoutGcm(KmsTestCase):
    """A token that does not list CKM_AES_GCM, reached directly (the test fault hides it)."""

    def test_init_seals_with_hmac_and_the_vault_opens_with_the_mechanism_back(self):
        no_gcm = {"KMSCTL_TEST_FAULT": f"mechanism:{CKM_AES_GCM}"}
        self.kms.init(env=no_gcm)
        self.assertEqual(sealed_master(self.kms)[4], 2)
        key = self.kms.create_key()
        blob = self.kms.ok("encrypt", "--key", key, input=b"either way", env=no_gcm).out
        self.assertEqual(self.kms.decrypt(blob), b"either way")
        # A vault sealed in the token with AES-GCM keeps that seal while the token offers it.
        other = kmsenv.KmsEnv()
        self.addCleanup(other.cleanup)
        other.init()
        self.assertEqual(sealed_master(other)[4], 1)
        self.assertEqual(other.status()["root_key_seal"], "aes-gcm")
        other.ok("vault", "rekey")
        self.assertEqual(sealed_master(other)[4], 1)
        # Its seal edited to say HMAC opens nothing either.
        good = sealed_master(other)
        other.checkpoint()
        other.sql("UPDATE vault_meta SET sealed_master = ?", (good[:4] + b"\x02" + good[5:],))
        self.assertError(other.run("status"), INTEGRITY, "master key")


if __name__ == "__main__":
    kmsenv.main()
