"""A vault in PostgreSQL: `--vault` (or KMSCTL_VAULT) names a database by a libpq connection
string instead of a file, and the token by its module. A throwaway cluster (initdb on a private
socket) holds one database per test; a SoftHSM2 token of the test's own is the HSM. What holds
for a file holds here: rows edited with psql are refused, a database put back from an older
pg_dump is refused as a rolled-back file is, writers on several processes at once keep one
chain, and no secret, password or connection string reaches a table, an output or a message."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import (INTEGRITY, REFUSED, UNAVAILABLE, USAGE, KmsTestCase, PostgresCluster,
                    SOFTHSM_MODULE, read, write)

PASSWORD = "db-Pw-never-shown-4e1f"
SO_PIN = "e2e-SO-pin-9d2b"


class PostgresStore(KmsTestCase):
    cluster = None
    databases = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # scram-sha-256: the password in the connection string is really used, and must not leak.
        cls.cluster = PostgresCluster(auth="scram-sha-256", admin_password=PASSWORD)

    @classmethod
    def tearDownClass(cls):
        if cls.cluster:
            cls.cluster.remove()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        PostgresStore.databases += 1
        self.db = f"vault{PostgresStore.databases}"
        self.cluster.admin_sql(f"CREATE DATABASE {self.db}")
        self.location = self.cluster.conninfo(self.db) + f" password={PASSWORD}"
        # The token: SoftHSM2 with a directory of this test's own, named by its module.
        tokens = self.kms.path("hsm", "tokens")
        os.makedirs(tokens, 0o700)
        conf = self.kms.path("hsm", "softhsm2.conf")
        write(conf, f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n".encode())
        p = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "prod",
                            "--so-pin", SO_PIN, "--pin", self.kms.pin],
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                "SOFTHSM2_CONF": conf},
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.kms.env_overrides.update({"KMSCTL_VAULT": self.location, "SOFTHSM2_CONF": conf})

    def init(self):
        return self.kms.init("--pkcs11-module", SOFTHSM_MODULE, "--token-label", "prod")

    def sql(self, statement):
        return self.cluster.admin_sql(statement, self.db)

    def assertNoPassword(self):
        for argv, r in self.kms.transcript:
            self.assertNotIn(PASSWORD, r.out + r.err, argv)

    def test_every_command_works_on_a_vault_in_postgresql(self):
        r = self.init()
        shown = f"postgresql://admin@/{self.db}?host={self.cluster.sock}&port={self.cluster.port}"
        self.assertIn(shown, r.out + r.err)
        st = self.kms.status()
        self.assertEqual(st["vault"]["path"], shown)
        self.assertEqual(st["token"]["label"], "prod")
        self.assertFalse(st["token"]["private"])
        self.assertEqual(st["root_key_seal"], "aes-gcm")

        key = self.kms.create_key("--alias", "alias/app")
        blob = self.kms.encrypt(key, b"in the database", "--context", "app=x")
        self.assertEqual(self.kms.decrypt(blob, "--context", "app=x"), b"in the database")
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="s3cr3t-in-pg-7a")
        self.kms.ok("secret", "put", "app/db", "--value-stdin", input="s3cr3t-in-pg-8b")
        self.assertEqual(self.kms.ok("secret", "get", "app/db").out, "s3cr3t-in-pg-8b")
        plain, enc, out = (self.kms.path(n) for n in ("plain", "plain.kms", "plain.out"))
        write(plain, os.urandom(1 << 20))
        self.kms.ok("file", "encrypt", "--key", key, plain, "-o", enc)
        self.kms.ok("file", "decrypt", enc, "-o", out)
        self.assertEqual(read(out), read(plain))
        self.kms.ok("key", "rotate", key)
        self.kms.ok("audit", "verify")

        # The rows are the database's: one record per command, the chain in seq order.
        actions = self.sql("SELECT action FROM audit_log ORDER BY seq").split()
        self.assertEqual(actions[0], "vault.init")
        self.assertIn("secret.get", actions)
        self.assertEqual(self.sql("SELECT count(*) FROM secret_versions").strip(), "2")
        # Nothing secret in any table: a dump of the whole database holds neither value.
        dump = self.kms.path("all.sql")
        self.cluster.dump(self.db, dump)
        data = read(dump)
        for needle in (b"s3cr3t-in-pg-7a", b"s3cr3t-in-pg-8b", b"in the database", PASSWORD.encode()):
            self.assertNotIn(needle, data)
        self.assertNoPassword()

    def test_a_row_edited_with_psql_is_refused(self):
        self.init()
        key = self.kms.create_key()
        self.sql(f"UPDATE keys SET state = 'Disabled' WHERE id = '{key}'")
        r = self.kms.run("encrypt", "--key", key, input=b"x")
        self.assertError(r, INTEGRITY, "altered outside kmsctl")
        self.assertNotEqual(self.kms.run("audit", "verify").rc, 0)
        self.assertNoPassword()

    def test_a_database_put_back_from_an_older_dump_is_refused(self):
        self.init()
        key = self.kms.create_key()
        older = self.kms.path("older.dump")
        self.cluster.dump(self.db, older)
        self.kms.encrypt(key, b"after the dump")
        self.cluster.restore(self.db, older)
        for argv in (("status",), ("encrypt", "--key", key)):
            r = self.kms.run(*argv, input=b"x")
            self.assertError(r, INTEGRITY, "token anchor")
        self.assertNoPassword()

    def test_three_writers_at_once_keep_one_chain(self):
        self.init()
        key = self.kms.create_key("--alias", "alias/shared")
        failures = []

        def writer(n):
            for i in range(8):
                for argv, data in ((("encrypt", "--key", "alias/shared"), b"x"),
                                   (("secret", "create", f"w{n}/s{i}", "--value-stdin"), b"v"),
                                   (("key", "rotate", key), None)):
                    r = self.kms.run(*argv, input=data)
                    if r.rc != 0:
                        failures.append(r.show(argv))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        self.kms.ok("audit", "verify")
        self.assertEqual(self.sql("SELECT count(*) FROM secrets").strip(), "24")
        self.assertEqual(self.sql(f"SELECT count(*) FROM key_versions WHERE key_id = '{key}'")
                         .strip(), "25")
        seqs = [int(s) for s in self.sql("SELECT seq FROM audit_log ORDER BY seq").split()]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))

    def test_the_server_down_is_exit_6_naming_the_database_and_nothing_is_lost(self):
        self.init()
        key = self.kms.create_key()
        before = self.sql("SELECT count(*) FROM audit_log").strip()
        self.cluster.stop()
        try:
            r = self.kms.run("encrypt", "--key", key, input=b"x")
            self.assertError(r, UNAVAILABLE, "cannot connect to the vault's database",
                             f"postgresql://admin@/{self.db}")
        finally:
            self.cluster.start()
        self.assertEqual(self.sql("SELECT count(*) FROM audit_log").strip(), before)
        self.kms.encrypt(key, b"back")
        self.kms.ok("audit", "verify")
        self.assertNoPassword()

    def test_the_server_killed_under_load_loses_no_record_and_splits_no_request(self):
        self.init()
        key = self.kms.create_key("--alias", "alias/load")
        stop = threading.Event()
        done = {"ok": 0, "failed": 0}
        wrong = []
        lock = threading.Lock()

        def writer(n):
            i = 0
            while not stop.is_set():
                i += 1
                for argv, data in ((("secret", "create", f"k{n}/s{i}", "--value-stdin"), b"v"),
                                   (("key", "rotate", key), None)):
                    r = self.kms.run(*argv, input=data)
                    with lock:
                        done["ok" if r.rc == 0 else "failed"] += 1
                        # While the server is down: exit 6, naming the database.
                        if r.rc not in (0, UNAVAILABLE) or (r.rc and "database" not in r.err):
                            wrong.append(r.show(argv))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            self.cluster.stop("immediate")  # a crash: no checkpoint, connections cut
            time.sleep(1.0)
        finally:
            self.cluster.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(wrong, [])
        self.assertGreater(done["failed"], 0, "some requests met the server down")
        self.assertGreater(done["ok"], 0)
        # Every request happened with its record or not at all: the chain verifies and the rows
        # are the state its newest record holds.
        self.assertIn("rows match the state", self.kms.ok("audit", "verify").out)
        created = int(self.sql("SELECT count(*) FROM secrets").strip())
        recorded = int(self.sql("SELECT count(*) FROM audit_log WHERE action = 'secret.create' "
                                "AND outcome = 'ok'").strip())
        self.assertEqual(created, recorded)
        self.kms.encrypt(key, b"after the crash")
        self.assertNoPassword()

    def test_vault_migrate_moves_a_file_into_the_database_verified(self):
        # A vault file on its private token, with keys, versions, aliases, secrets, a grant.
        file_env = {"KMSCTL_VAULT": self.kms.vault}
        self.kms.env_overrides.pop("KMSCTL_VAULT")
        self.kms.init()
        key = self.kms.create_key("--alias", "alias/moved")
        self.kms.ok("key", "rotate", key)
        blob = self.kms.encrypt(key, b"sealed before the move")
        self.kms.ok("secret", "create", "app/db", "--value-stdin", input="moved-s3cret-1")
        self.kms.ok("secret", "put", "app/db", "--value-stdin", input="moved-s3cret-2")
        self.kms.ok("key", "tag", key, "team=core")
        before = self.kms.status()
        records = before["counts"]["audit_records"]

        # A database that is not PostgreSQL's, or that holds a vault, is refused before anything
        # is recorded in the file.
        self.assertError(self.kms.run("vault", "migrate", "--to", self.kms.path("x.db")), USAGE,
                         "no PostgreSQL connection string")
        r = self.kms.json("vault", "migrate", "--to", self.location, "--json")
        self.assertEqual(r["to"], f"postgresql://admin@/{self.db}?host={self.cluster.sock}"
                                  f"&port={self.cluster.port}")
        self.assertEqual(r["audit_records"], records + 1)  # the file's, then vault.migrate
        self.assertGreater(r["rows_checked"], 0)
        self.assertError(self.kms.run("vault", "migrate", "--to", self.location), REFUSED,
                         "already holds a kmsctl vault")

        # The database is the same vault: its id, keys, secrets, versions and whole log.
        self.kms.env_overrides["KMSCTL_VAULT"] = self.location
        after = self.kms.status()
        self.assertEqual(after["vault"]["id"], before["vault"]["id"])
        self.assertEqual(after["counts"]["keys"], before["counts"]["keys"])
        self.assertEqual(after["counts"]["secrets"], before["counts"]["secrets"])
        self.assertEqual(self.kms.decrypt(blob), b"sealed before the move")
        self.assertEqual(self.kms.ok("secret", "get", "app/db").out, "moved-s3cret-2")
        self.assertEqual(self.kms.ok("secret", "get", "app/db", "--stage", "previous").out,
                         "moved-s3cret-1")
        self.assertEqual(len(self.kms.json("key", "describe", key, "--json")["versions"]), 2)
        self.assertIn("rows match the state", self.kms.ok("audit", "verify").out)
        actions = self.sql("SELECT action FROM audit_log ORDER BY seq").split()
        self.assertEqual(actions[records], "vault.migrate")
        self.assertEqual(actions[0], "vault.init")

        # The file is behind the anchor now that the database recorded more: refused.
        self.assertError(self.kms.run("status", env=file_env), INTEGRITY, "token anchor")
        self.assertNoPassword()

    def test_what_only_a_vault_file_has_is_refused_with_the_way_out(self):
        r = self.kms.run("init")
        self.assertError(r, USAGE, "a vault in PostgreSQL is made on a token named by its module",
                         hint="--pkcs11-module")
        self.init()
        self.assertError(self.kms.run("init", "--pkcs11-module", SOFTHSM_MODULE, "--token-label",
                                      "prod"), REFUSED, "already holds a kmsctl vault")
        self.assertError(self.kms.run("agent", "start", "--socket", self.kms.path("a.sock")),
                         USAGE, "an agent serves a vault file")
        self.assertError(self.kms.run("vault", "backup", self.kms.path("b.db")), USAGE,
                         "is in PostgreSQL", hint="pg_dump")
        self.assertFalse(os.path.exists(self.kms.path("b.db")))
        self.kms.ok("audit", "verify")
        self.assertNoPassword()


if __name__ == "__main__":
    kmsenv.main()
