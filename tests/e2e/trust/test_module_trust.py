"""Code chosen by the vault file's writer never runs (docs/SECURITY.md §3.3): the PKCS#11 module
named in the vault header is loaded only from a root-owned system library directory, a p11-kit
registration, or the user's own list of trusted modules.

The attack: a shared library dropped beside the vault (in VAULT.token/) and named in the header
with sqlite3. Its constructor would run, and its C_Login would receive the PIN. The library used
here writes a marker file from its constructor, so the test sees whether it ever ran."""

import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

EXIT_UNAVAILABLE = 6

PLANTED_C = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void planted(void) {
  const char* p = "%s";
  int fd = open(p, O_WRONLY | O_CREAT, 0600);
  if (fd >= 0) close(fd);
}
"""


@unittest.skipIf(shutil.which("cc") is None, "no C compiler to build the planted library")
class PlantedModule(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.marker = self.kms.path("planted-code-ran")
        src = self.kms.path("planted.c")
        with open(src, "w") as f:
            f.write(PLANTED_C % self.marker)
        self.planted = os.path.join(self.kms.token_dir, "libplanted.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", self.planted, src], check=True)
        self.kms.sql("UPDATE vault_meta SET pkcs11_module = ?", (self.planted,))

    def trust_file(self):
        return os.path.join(self.kms.home, ".config", "kmsctl", "trusted-modules")

    def test_a_module_planted_beside_the_vault_is_never_loaded(self):
        for argv in (["status"], ["audit", "verify"], ["key", "list"]):
            with self.subTest(command=" ".join(argv)):
                r = self.kms.run(*argv)
                self.assertError(r, EXIT_UNAVAILABLE, "refusing to load the PKCS#11 module",
                                 self.planted, "trusted-modules")
                self.assertFalse(os.path.exists(self.marker), "the planted library ran")

    def test_the_users_list_of_trusted_modules_is_honoured_and_must_be_private(self):
        os.makedirs(os.path.dirname(self.trust_file()), mode=0o700)
        with open(self.trust_file(), "w") as f:
            f.write("# modules I trust\n%s\n" % self.planted)
        os.chmod(self.trust_file(), 0o664)  # writable by the group: not a list to trust
        r = self.kms.run("status")
        self.assertError(r, EXIT_UNAVAILABLE, "refusing to load")
        self.assertFalse(os.path.exists(self.marker))
        os.chmod(self.trust_file(), 0o600)
        r = self.kms.run("status")
        # Now it is loaded (it is no PKCS#11 module, so the command still fails, differently).
        self.assertTrue(os.path.exists(self.marker), r.show())
        self.assertEqual(r.rc, EXIT_UNAVAILABLE, r.show())
        self.assertNotIn("refusing to load", r.err)

    def test_init_refuses_an_untrusted_module_before_touching_anything(self):
        vault = self.kms.path("other", "vault.db")
        r = self.kms.run("init", "--pkcs11-module", self.planted, "--token-label", "x",
                         env={"KMSCTL_VAULT": vault})
        self.assertError(r, EXIT_UNAVAILABLE, "given with --pkcs11-module", "trusted-modules")
        self.assertFalse(os.path.exists(self.marker))
        self.assertFalse(os.path.exists(vault))

    def test_the_system_softhsm2_module_is_trusted(self):
        self.kms.sql("UPDATE vault_meta SET pkcs11_module = ?", (kmsenv.SOFTHSM_MODULE,))
        self.kms.ok("status")


if __name__ == "__main__":
    kmsenv.main()
