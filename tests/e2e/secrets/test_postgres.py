"""scripts/rotators/postgres.sh against a real, throwaway PostgreSQL: a cluster made by initdb in
a temporary directory, listening only on a private unix socket directory, started and stopped by
this test. Rotating the app role's password: the new password logs in and the old one no longer
does; a failing `test` step sets the old password back, and the retry finishes the rotation.

Skipped (with a message) only when the PostgreSQL server binaries are not installed;
scripts/setup.sh installs them (Debian `postgresql`), so CI runs it."""

import json
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import FAILED, SOURCE_DIR, PostgresCluster, SecretsTestCase, main

ROTATOR = os.path.join(SOURCE_DIR, "scripts", "rotators", "postgres.sh")
ADMIN_PW = "admin-Pw-for-the-throwaway-cluster-1"
APP_PW = "app-initial-password-2"


class Postgres(SecretsTestCase):

    @classmethod
    def setUpClass(cls):
        if shutil.which("jq") is None:
            raise unittest.SkipTest("jq not installed; scripts/setup.sh installs it")
        cls.cluster = PostgresCluster(auth="scram-sha-256", admin_password=ADMIN_PW)
        cls.sock, cls.port = cls.cluster.sock, cls.cluster.port
        try:
            super().setUpClass()
            cls.cluster.admin_sql("CREATE ROLE app LOGIN PASSWORD '" + APP_PW + "'")
        except BaseException:
            cls.cluster.remove()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.cluster.remove()
        finally:
            super().tearDownClass()

    @classmethod
    def psql(cls, user, password, sql="SELECT 1"):
        return cls.cluster.psql(sql, user=user, password=password)

    def logs_in(self, password):
        return self.psql("app", password).returncode == 0

    def creds(self, user, password):
        return json.dumps({"host": self.sock, "port": int(self.port), "user": user,
                           "password": password, "database": "postgres"}).encode()

    def test_rotating_the_app_role_password(self):
        v = self.vault
        self.create("db/admin", self.creds("admin", ADMIN_PW))
        self.create("db/app", self.creds("app", APP_PW), "--rotation-command",
                    f"{ROTATOR} --admin-secret db/admin")
        self.assertTrue(self.logs_in(APP_PW))

        r = v.json("secret", "rotate", "db/app", "--json")
        self.assertEqual(r["steps"], ["create", "set", "test", "finish"])
        new = json.loads(self.get("db/app"))
        self.assertEqual({k: new[k] for k in ("host", "port", "user", "database")},
                         {k: json.loads(self.creds("app", "x"))[k]
                          for k in ("host", "port", "user", "database")})
        self.assertNotEqual(new["password"], APP_PW)
        self.assertTrue(self.logs_in(new["password"]), "the new password logs in")
        self.assertFalse(self.logs_in(APP_PW), "the old one no longer does")
        self.assertEqual(json.loads(self.get("db/app", "--stage", "previous"))["password"], APP_PW)
        self.assertNotStored(new["password"].encode(), APP_PW.encode(), ADMIN_PW.encode())

        # A failing test step: logins are refused while it runs, so the new password cannot be
        # checked; the rotator sets the current password back and the rotation stops.
        working = new["password"]
        self.cluster.admin_sql("ALTER ROLE app CONNECTION LIMIT 0")
        r = v.run("secret", "rotate", "db/app")
        self.assertEqual(r.rc, FAILED, r)
        self.assertIn("failed at step test", r.err)
        self.assertIn("setting the current one back", r.err)
        self.cluster.admin_sql("ALTER ROLE app CONNECTION LIMIT -1")
        pending = json.loads(self.get("db/app", "--stage", "pending"))["password"]
        self.assertEqual(json.loads(self.get("db/app"))["password"], working, "current unchanged")
        self.assertTrue(self.logs_in(working), "the old password still works")
        self.assertFalse(self.logs_in(pending))

        r = v.json("secret", "rotate", "db/app", "--json")
        self.assertEqual((r["resumed"], r["steps"]), (True, ["set", "test", "finish"]))
        self.assertEqual(json.loads(self.get("db/app"))["password"], pending)
        self.assertTrue(self.logs_in(pending))
        self.assertFalse(self.logs_in(working))


if __name__ == "__main__":
    main()
