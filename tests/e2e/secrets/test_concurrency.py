"""4 processes x 25 `secret put` on one secret: every put lands in its own version, the oldest
unstaged version is purged at 100, exactly one version is current, and `get` meanwhile always
returns a whole value that some put wrote."""

import concurrent.futures
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
from kmsenv import SecretsTestCase, main

PROCS, PUTS = 4, 25


class Concurrency(SecretsTestCase):

    def test_four_processes_putting_25_versions_each_lose_nothing(self):
        v = self.vault
        self.create("busy", b"initial-value-0")
        values = {f"w{w}-put{i:02d}-value".encode() for w in range(PROCS) for i in range(PUTS)}

        def writer(w):
            got = {}
            for i in range(PUTS):
                val = f"w{w}-put{i:02d}-value".encode()
                r = v.run("secret", "put", "busy", "--value-stdin", "--json", input=val)
                if r.rc != 0:
                    raise AssertionError(repr(r))
                got[json.loads(r.raw)["stages"]["current"]] = val
            return got

        def reader():
            seen = []
            for _ in range(10):
                r = v.run("secret", "get", "busy")
                if r.rc != 0:
                    raise AssertionError(repr(r))
                seen.append(r.raw)
            return seen

        with concurrent.futures.ThreadPoolExecutor(PROCS + 1) as pool:
            writers = [pool.submit(writer, w) for w in range(PROCS)]
            read = pool.submit(reader)
            by_version = {}
            for f in writers:
                by_version.update(f.result())
            for seen in read.result():
                self.assertIn(seen, values | {b"initial-value-0"}, "get returned a torn value")
        self.assertEqual(sorted(by_version), list(range(2, 2 + PROCS * PUTS)),
                         "each put made its own version")
        self.assertEqual(set(by_version.values()), values)
        versions = v.json("secret", "versions", "busy", "--json")["items"]
        self.assertEqual([x["version"] for x in versions], list(range(2, 2 + PROCS * PUTS)),
                         "100 kept: version 1 (oldest, unstaged) purged")
        self.assertEqual(sum(1 for x in versions if x["stages"] == ["current"]), 1)
        self.assertEqual(sum(1 for x in versions if x["stages"] == ["previous"]), 1)
        last = max(by_version)
        self.assertEqual(self.get("busy"), by_version[last])
        for ver in (2, 30, 77, last - 1):
            self.assertEqual(self.get("busy", "--version-id", str(ver)), by_version[ver])
        self.assertNotStored(*values)


if __name__ == "__main__":
    main()
