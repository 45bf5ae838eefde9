"""Helpers for the end-to-end tests of issue 4 (`kmsctl file encrypt|decrypt|rewrap|inspect`).

They reuse the vault fixture of tests/e2e_keys/keyenv.py (a fresh vault and private SoftHSM2 token
per test class, kmsctl run as a user runs it) and add a reader of the file envelope header
(docs/FORMAT.md §11.3), written from the spec, to cut and alter files at exact offsets.
"""

import glob
import hashlib
import os
import struct
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "e2e_keys"))

import keyenv  # noqa: E402
from keyenv import (KeysTestCase, INTEGRITY, NOT_FOUND, OK, REFUSED, USAGE)  # noqa: E402,F401

TAG = 16


class Envelope:
    """The parsed header of an envelope and the offsets of its fields (§11.3)."""

    def __init__(self, data):
        self.data = data
        assert data[:4] == b"KENC", data[:8]
        self.version, self.suite = data[4], data[5]
        (self.frame_size,) = struct.unpack(">I", data[6:10])
        self.salt = data[10:42]
        (ctx_len,) = struct.unpack(">I", data[42:46])
        self.ctx_off = 46
        off = 46 + ctx_len
        (n,) = struct.unpack(">H", data[off:off + 2])
        self.count_off = off
        off += 2
        self.recipients = []  # (offset of type, type, body offset, body)
        for _ in range(n):
            rtype = data[off]
            (blen,) = struct.unpack(">I", data[off + 1:off + 5])
            self.recipients.append((off, rtype, off + 5, data[off + 5:off + 5 + blen]))
            off += 5 + blen
        self.commit_off = off
        self.tag_off = off + 32
        self.header_len = off + 64
        self.body = data[self.header_len:]

    def keys(self):
        """[(key id, version)] named by the vault-key recipients' blobs."""
        out = []
        for _, rtype, _, body in self.recipients:
            if rtype == 1:
                out.append((str(uuid.UUID(bytes=bytes(body[5:21]))),
                            struct.unpack(">I", body[21:25])[0]))
        return out

    def frames(self):
        full = self.frame_size + TAG
        return [self.body[i:i + full] for i in range(0, len(self.body), full)]

    @property
    def header(self):
        return self.data[:self.header_len]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def mode(path):
    return os.stat(path).st_mode & 0o777


class FilesTestCase(KeysTestCase):
    """KeysTestCase with a working directory per test class for input and output files."""

    def dir(self, name):
        d = self.vault.path(name)
        os.makedirs(d, exist_ok=True)
        return d

    def file_audited(self, *args, action, rc=0, error_code=None, input=None):
        """Runs a `file encrypt` or `file decrypt` of one input, checks its exit code and that it
        wrote exactly its two records (docs/FORMAT.md §8.1): the key use, outcome `started`
        (step start), then the end naming it (started_seq): `ok` with step done after a success,
        else `error` (`denied` for exit 4) with step end. Returns (result, start, end)."""
        before = self.vault.sql("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0]
        r = self.vault.run(*args, input=input)
        self.assertEqual(r.rc, rc, f"expected exit {rc}:\n{r!r}")
        new = self.vault.audit_rows(before)
        self.assertEqual([x["action"] for x in new], [action, action], new)
        start, end = new
        self.assertEqual((start["outcome"], start["error_code"], start["params"]["step"]),
                         ("started", "", "start"), start)
        self.assertEqual(end["resource"], start["resource"], end)
        self.assertEqual(end["params"]["file"], start["params"]["file"], end)
        self.assertEqual(end["params"]["started_seq"], start["seq"], end)
        if rc == 0:
            self.assertEqual((end["outcome"], end["error_code"], end["params"]["step"]),
                             ("ok", "", "done"), end)
        else:
            self.assertEqual(end["outcome"], "denied" if rc == REFUSED else "error", end)
            self.assertEqual(end["params"]["step"], "end", end)
            if error_code is not None:
                self.assertEqual(end["error_code"], error_code, end)
        return r, start, end

    def assertNoOutput(self, directory, *names):
        """None of `names` exists in `directory`, and no temporary file was left there."""
        for n in names:
            self.assertFalse(os.path.exists(os.path.join(directory, n)), f"{n} was left behind")
        leftovers = [p for p in glob.glob(os.path.join(directory, ".*")) if ".tmp-" in p]
        self.assertEqual(leftovers, [], "temporary files were left behind")
