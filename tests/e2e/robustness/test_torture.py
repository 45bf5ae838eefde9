"""No interruption destroys a vault or leaves an operation half done: a short torture run (about
200 kills by SIGKILL, SIGTERM and SIGINT at random instants of a random mix of commands, init
included), each followed by the checks of torture.py. scripts/torture.sh runs the long one.

KMS_TORTURE_KILLS sets the number of kills; KMS_TORTURE_SEED repeats a run."""

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/e2e: kmsenv
import kmsenv
import torture


class TortureTest(unittest.TestCase):
    def test_every_kill_leaves_a_whole_vault(self):
        kills = int(os.environ.get("KMS_TORTURE_KILLS", "200"))
        seed = int(os.environ.get("KMS_TORTURE_SEED") or random.SystemRandom().randrange(1 << 31))
        t = torture.Torture(seed, log=lambda line: print(line, flush=True))
        try:
            stats = t.run(kills)
        except torture.Violation as e:
            self.fail("%s\n(the vault is kept in %s; KMS_TORTURE_SEED=%d repeats this run)"
                      % (e, t.kms.root, seed))
        t.cleanup()
        print("torture:", torture.summary(stats), flush=True)
        self.assertEqual(torture.landed(stats), kills)


if __name__ == "__main__":
    kmsenv.main()
