"""No audit, no operation (docs/ARCHITECTURE.md §4.4): when the audit record cannot be written,
the command fails, prints nothing on stdout, writes no output file, and changes nothing; once the
cause is gone everything works again and the chain verifies."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

TRIGGER = ("CREATE TRIGGER t BEFORE INSERT ON audit_log "
           "BEGIN SELECT RAISE(ABORT, 'disk full'); END;")
# The same trigger in PostgreSQL: a trigger there runs a function.
PG_TRIGGER = """
CREATE FUNCTION e2e_disk_full() RETURNS trigger LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
CREATE TRIGGER t BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION e2e_disk_full();
"""


class AuditWriteFails(KmsTestCase):
    def setUp(self):
        super().setUp()
        self.kms.init()
        self.kms.ok("status")
        self.head = self.kms.sql("SELECT max(seq) FROM audit_log")[0][0]
        if self.kms.db:
            self.kms.sql_script(PG_TRIGGER)
        else:
            self.kms.sql(TRIGGER)

    def drop_trigger(self):
        """Removes the cause: the audit log takes records again."""
        self.kms.sql("DROP TRIGGER t ON audit_log" if self.kms.db else "DROP TRIGGER t")

    def assertRefused(self, r):
        self.assertNotEqual(r.rc, 0, r.show())
        self.assertEqual(r.out, "", "nothing may be released when the record is not written")
        self.assertTrue(r.err.startswith("kmsctl: error: "), r.show())

    def assertNothingRecorded(self):
        self.assertEqual(self.kms.sql("SELECT max(seq) FROM audit_log")[0][0], self.head)

    def test_status_and_listing_fail_and_print_nothing(self):
        for args in (("status",), ("status", "--json"), ("audit", "list"),
                     ("audit", "list", "--json"), ("audit", "verify", "--json")):
            with self.subTest(args=args):
                self.assertRefused(self.kms.run(*args))
        self.assertNothingRecorded()
        self.drop_trigger()
        self.kms.ok("status")
        self.kms.ok("audit", "verify")

    def test_export_and_backup_leave_no_output_file(self):
        out_dir = self.kms.path("out")
        os.mkdir(out_dir)
        r = self.kms.run("audit", "export", "--output", os.path.join(out_dir, "log.jsonl"))
        self.assertRefused(r)
        if not self.kms.db:  # a vault in PostgreSQL has no `vault backup`
            r = self.kms.run("vault", "backup", os.path.join(out_dir, "backup.db"))
            self.assertRefused(r)
        self.assertEqual(os.listdir(out_dir), [], "no output and no temporary file left")
        self.assertNothingRecorded()
        self.drop_trigger()
        self.kms.ok("audit", "export", "--output", os.path.join(out_dir, "log.jsonl"))
        self.kms.ok("audit", "verify")

    def test_a_rekey_that_cannot_be_recorded_does_not_happen(self):
        vid = self.kms.sql("SELECT vault_id FROM vault_meta")[0][0]
        self.assertRefused(self.kms.run("vault", "rekey"))
        self.assertNothingRecorded()
        self.drop_trigger()
        self.assertEqual(self.kms.status()["root_key_generation"], 1)
        keys = self.kms.secret_keys()
        self.assertEqual(keys.count(f"kmsctl-root:{vid}"), 1, keys)
        self.kms.ok("audit", "verify")

    def test_a_pin_change_that_cannot_be_recorded_does_not_happen(self):
        new_pin = self.kms.write_secret_file("new-pin", "e2e-New-Pin-0b0b")
        r = self.kms.run("vault", "change-pin", env={"KMSCTL_NEW_PIN_FILE": new_pin})
        self.assertRefused(r)
        self.assertNothingRecorded()
        self.drop_trigger()
        r = self.kms.run("status")
        self.assertEqual(r.rc, 0, "the PIN changed although the change was not audited:\n"
                         + r.show())

    def test_a_failed_audit_write_is_reported_with_a_hint(self):
        r = self.kms.run("status")
        self.assertError(r, 1)


@kmsenv.file_store_only("a full or read-only file system under the vault file")
class FileSystem(KmsTestCase):
    """A real full (and a read-only) file system under the vault: a tiny tmpfs."""

    def setUp(self):
        super().setUp()
        self.mnt = self.kms.path("mnt")
        os.mkdir(self.mnt, 0o700)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest("cannot mount a tmpfs here (needs CAP_SYS_ADMIN): "
                          + (p.stderr.strip() or p.stdout.strip()))
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], capture_output=True)
        self.kms.vault = os.path.join(self.mnt, "vault", "vault.db")
        self.kms.token_dir = self.kms.vault + ".token"
        self.kms.token_conf = os.path.join(self.kms.token_dir, "softhsm2.conf")
        self.kms.init()
        self.kms.ok("status")

    def fill(self):
        """Fills the tmpfs to the last byte."""
        filler = os.path.join(self.mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return filler

    def test_a_full_file_system_fails_the_command_and_loses_nothing(self):
        n = len(self.kms.records())
        out = self.kms.path("log.jsonl")  # on a file system with room
        filler = self.fill()
        for args in (("status",), ("status", "--json"), ("audit", "export", "--output", out),
                     ("vault", "rekey")):
            with self.subTest(args=args):
                r = self.kms.run(*args)
                self.assertNotEqual(r.rc, 0, r.show())
                self.assertEqual(r.out, "")
                self.assertError(r, r.rc, "vault")
        self.assertFalse(os.path.exists(out))
        os.remove(filler)
        log = self.kms.records()
        self.assertEqual(len(log), n + 1, [x["action"] for x in log[n:]])
        st = self.kms.status()
        self.assertEqual(st["root_key_generation"], 1)
        self.kms.ok("audit", "verify")

    def test_a_read_only_file_system_fails_the_command_and_loses_nothing(self):
        n = len(self.kms.records())
        subprocess.run(["mount", "-o", "remount,ro", self.mnt], check=True)
        try:
            for args in (("status",), ("audit", "list", "--json")):
                with self.subTest(args=args):
                    r = self.kms.run(*args)
                    self.assertNotEqual(r.rc, 0, r.show())
                    self.assertEqual(r.out, "")
                    self.assertError(r, r.rc)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", self.mnt], check=True)
        self.assertEqual(len(self.kms.records()), n + 1)
        self.kms.ok("audit", "verify")


if __name__ == "__main__":
    kmsenv.main()
