"""Concurrent kmsctl processes on one key: encrypting while the key rotates, and maintain running
twice at once. Every process succeeds, every blob decrypts, versions stay contiguous, and the
audit chain verifies."""

import collections
import concurrent.futures
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KMSCTL, SharedVaultTestCase, parse_blob, unb64

ENCRYPTERS = 4
ENCRYPTS_EACH = 15
ROTATIONS = 20


class Concurrency(SharedVaultTestCase):
    def describe_failures(self, results):
        bad = [r for r in results if r.rc != 0]
        kinds = collections.Counter((r.argv[0], r.rc, r.err.strip()) for r in bad)
        return f"{len(bad)} of {len(results)} failed:\n" + "\n".join(
            f"  {n} x {cmd} exit {rc}: {err}" for (cmd, rc, err), n in kinds.most_common())

    def test_4_encrypting_processes_and_20_rotations_at_once_lose_nothing(self):
        v = self.vault
        key = v.create_key("--alias", "alias/busy")
        before = v.audit_count()

        def encrypter(w):
            return [(f"worker {w} message {i}".encode(),
                     v.run("encrypt", "--key", "alias/busy", input=f"worker {w} message {i}"))
                    for i in range(ENCRYPTS_EACH)]

        def rotator():
            return [v.run("key", "rotate", key) for _ in range(ROTATIONS)]

        with concurrent.futures.ThreadPoolExecutor(max_workers=ENCRYPTERS + 1) as pool:
            rot = pool.submit(rotator)
            encs = [pool.submit(encrypter, w) for w in range(ENCRYPTERS)]
            batches = [f.result() for f in encs]
            rotations = rot.result()
        results = rotations + [r for b in batches for _, r in b]
        self.assertEqual([r for r in results if r.rc != 0], [], self.describe_failures(results))

        k = v.json("key", "describe", key, "--json")
        self.assertEqual([x["version"] for x in k["versions"]], list(range(1, ROTATIONS + 2)))
        self.assertEqual(k["primary_version"], ROTATIONS + 1)
        rotated_to = [x["params"]["version"] for x in v.audit_rows(before)
                      if x["action"] == "key.rotate"]
        self.assertEqual(sorted(rotated_to), list(range(2, ROTATIONS + 2)))

        # Each worker's blobs name non-decreasing versions; every one decrypts to its message.
        jobs = []
        for batch in batches:
            versions = [parse_blob(unb64(r.out))[3] for _, r in batch]
            self.assertEqual(versions, sorted(versions))
            for pt, r in batch:
                self.assertEqual(parse_blob(unb64(r.out))[2], key)
                jobs.append((pt, r.out))
        with concurrent.futures.ThreadPoolExecutor(max_workers=ENCRYPTERS) as pool:
            outs = list(pool.map(lambda j: (j[0], v.run("decrypt", input=j[1])), jobs))
        self.assertEqual([r for _, r in outs if r.rc != 0], [],
                         self.describe_failures([r for _, r in outs]))
        self.assertEqual([r.raw for _, r in outs], [pt for pt, _ in outs])

        n = ENCRYPTERS * ENCRYPTS_EACH
        rows = v.audit_rows(before)
        self.assertEqual(collections.Counter(x["action"] for x in rows),
                         {"key.encrypt": n, "key.rotate": ROTATIONS, "key.decrypt": n,
                          "key.describe": 1})
        rep = v.json("audit", "verify", "--json")
        self.assertIs(rep["ok"], True, rep)
        self.assertEqual(rep["records"] + 1, v.audit_count(), "verify records itself after")

    def test_two_maintain_runs_at_once_rotate_each_due_key_exactly_once(self):
        v = self.vault
        due = [v.create_key("--rotation-period", "7d") for _ in range(3)]
        doomed = v.create_key()
        v.ok("key", "schedule-deletion", doomed, "--pending-days", "7")
        procs = [subprocess.Popen([KMSCTL, "maintain", "--json"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=v.base_env("+60d"), cwd=v.root)
                 for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, err.decode())
        reps = [json.loads(out) for out, _ in outs]
        rotated = [x["key_id"] for rep in reps for x in rep["rotated"]]
        deleted = [d for rep in reps for d in rep["deleted"]]
        self.assertEqual(sorted(rotated), sorted(due), reps)
        self.assertEqual(deleted, [doomed], reps)
        for key in due:
            k = v.json("key", "describe", key, "--json", faketime="+60d")
            self.assertEqual([x["version"] for x in k["versions"]], [1, 2])
        rep = v.json("audit", "verify", "--json", faketime="+60d")
        self.assertIs(rep["ok"], True, rep)


if __name__ == "__main__":
    kmsenv.main()
