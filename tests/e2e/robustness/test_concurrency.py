"""Many kmsctl processes on one vault and one token at once: no error reaches a user, and the
audit chain neither forks nor loses a record."""

import collections
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
from kmsenv import KmsTestCase

PROCESSES = 8
COMMANDS_EACH = 50


class Concurrency(KmsTestCase):
    def test_8_processes_x_50_status_append_400_records_to_one_unforked_chain(self):
        self.kms.init()
        before = len(self.kms.records())  # init, plus this listing's record afterwards

        def worker(n):
            results = []
            for _ in range(COMMANDS_EACH):
                results.append(self.kms.run("status"))
            return results

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=PROCESSES) as pool:
            batches = list(pool.map(worker, range(PROCESSES)))
        elapsed = time.monotonic() - t0
        results = [r for batch in batches for r in batch]
        self.assertEqual(len(results), PROCESSES * COMMANDS_EACH)
        failures = [r for r in results if r.rc != 0 or r.err != ""]
        if failures:
            kinds = collections.Counter((r.rc, r.err.strip()) for r in failures)
            self.fail(f"{len(failures)} of {len(results)} concurrent commands failed or "
                      "complained:\n" + "\n".join(f"  {n} x exit {rc}: {err}"
                                                  for (rc, err), n in kinds.most_common()))

        log = self.kms.records()
        self.assertEqual(len(log), before + 1 + PROCESSES * COMMANDS_EACH)
        self.assertEqual([r["seq"] for r in log], list(range(1, len(log) + 1)))
        for a, b in zip(log, log[1:]):
            self.assertEqual(b["prev_hash"], a["hash"], f"the chain forks at seq {b['seq']}")
        statuses = [r for r in log if r["action"] == "vault.status"]
        self.assertEqual(len(statuses), PROCESSES * COMMANDS_EACH)
        rep = self.kms.json("audit", "verify", "--json")
        self.assertIs(rep["ok"], True)
        self.assertEqual(rep["records"], len(log) + 1)
        print(f"\n{len(results)} concurrent status commands in {elapsed:.1f}s", flush=True)


if __name__ == "__main__":
    kmsenv.main()
