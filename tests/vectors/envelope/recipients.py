"""Public-key recipients of the file envelope (docs/FORMAT.md §11.3), written from the text with
Python `cryptography`, not from kmsctl's code: generate.py uses it for the vectors, and the
end-to-end tests (tests/e2e/files/test_recipients.py) to write files for a vault's public key and
to open files kmsctl wrote for a key whose private key only the test holds.

RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) is done by hand from RFC 8017 §7.1 when a seed is
given, so that a vector is the same bytes on every run; without one, by `cryptography`.
"""

import hashlib
import os
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from generate import ctx_encode, frames, header, hkdf, nonce, u32

X25519, RSA_OAEP = 2, 3
INFO = {X25519: b"kmsctl/v1/file-x25519", RSA_OAEP: b"kmsctl/v1/file-rsa-oaep"}
ZERO_NONCE = bytes(12)


def spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public_key):
    return hashlib.sha256(spki(public_key)).digest()


def _wrap(rtype, fp, encapsulation, secret, dk, ctx):
    kek = hkdf(secret, fp + encapsulation, INFO[rtype])
    aad = bytes([rtype]) + fp + encapsulation + ctx_encode(ctx)
    return (rtype, fp + encapsulation + AESGCM(kek).encrypt(ZERO_NONCE, dk, aad))


def _mgf1(seed, n):
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(seed + u32(i)).digest()
        i += 1
    return out[:n]


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def _oaep_sha256(public_key, message, seed):
    """RSAES-OAEP-ENCRYPT (RFC 8017 §7.1.1) with SHA-256, MGF1-SHA-256, empty label."""
    nums = public_key.public_numbers()
    k = (nums.n.bit_length() + 7) // 8
    l_hash = hashlib.sha256(b"").digest()
    db = l_hash + bytes(k - len(message) - 2 * 32 - 2) + b"\x01" + message
    masked_db = _xor(db, _mgf1(seed, k - 33))
    masked_seed = _xor(seed, _mgf1(masked_db, 32))
    em = b"\x00" + masked_seed + masked_db
    return pow(int.from_bytes(em, "big"), nums.e, nums.n).to_bytes(k, "big")


def x25519_recipient(public_key, dk, ctx, ephemeral=None):
    """(type, body) of the data key `dk` for an X25519 public key; `ephemeral` an X25519 private
    key to use (a vector), else a fresh one."""
    eph = ephemeral or x25519.X25519PrivateKey.generate()
    shared = eph.exchange(public_key)
    encapsulation = eph.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
    return _wrap(X25519, fingerprint(public_key), encapsulation, shared, dk, ctx)


def rsa_recipient(public_key, dk, ctx, seed=None, oaep_seed=None):
    """(type, body) for an RSA public key: a 32-byte seed (given, or fresh) under RSA-OAEP."""
    seed = seed or os.urandom(32)
    if oaep_seed is not None:
        encapsulation = _oaep_sha256(public_key, seed, oaep_seed)
    else:
        encapsulation = public_key.encrypt(seed, padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    return _wrap(RSA_OAEP, fingerprint(public_key), encapsulation, seed, dk, ctx)


def recipient_for(public_key, dk, ctx):
    if isinstance(public_key, x25519.X25519PublicKey):
        return x25519_recipient(public_key, dk, ctx)
    return rsa_recipient(public_key, dk, ctx)


def open_recipient(rtype, body, private_key, ctx):
    """The data key of a public-key recipient, or None when it is not for this key or does not
    open."""
    fp = fingerprint(private_key.public_key())
    if rtype not in INFO or len(body) <= 32 + 48 or body[:32] != fp:
        return None
    encapsulation, wrapped = body[32:-48], body[-48:]
    try:
        if rtype == X25519:
            secret = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(encapsulation))
        else:
            secret = private_key.decrypt(encapsulation, padding.OAEP(
                mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        kek = hkdf(secret, fp + encapsulation, INFO[rtype])
        aad = bytes([rtype]) + fp + encapsulation + ctx_encode(ctx)
        return AESGCM(kek).decrypt(ZERO_NONCE, wrapped, aad)
    except Exception:  # noqa: BLE001 - any failure: this recipient does not open
        return None


def seal(plaintext, recipients_for_dk, ctx=None, frame_size=1024):
    """A whole envelope of `plaintext`: `recipients_for_dk(dk, ctx)` gives its recipients."""
    ctx = ctx or {}
    dk, salt = os.urandom(32), os.urandom(32)
    h = header(frame_size, ctx, recipients_for_dk(dk, ctx), dk, salt=salt)
    return h + b"".join(frames(plaintext, frame_size, dk=dk, salt=salt))


def parse(data):
    """(frame_size, salt, context bytes, [(type, body)], header length) of an envelope."""
    frame_size, = struct.unpack(">I", data[6:10])
    salt = data[10:42]
    ctx_len, = struct.unpack(">I", data[42:46])
    ctx_bytes = data[46:46 + ctx_len]
    off = 46 + ctx_len
    n, = struct.unpack(">H", data[off:off + 2])
    off += 2
    recipients = []
    for _ in range(n):
        blen, = struct.unpack(">I", data[off + 1:off + 5])
        recipients.append((data[off], data[off + 5:off + 5 + blen]))
        off += 5 + blen
    return frame_size, salt, ctx_bytes, recipients, off + 64


def open_file(data, private_key, ctx=None):
    """The plaintext of an envelope, opened with a public-key recipient for `private_key`: the
    commitment, the header tag and every frame checked as §11.6 says. Raises ValueError."""
    import hmac as hmac_mod
    ctx = ctx or {}
    frame_size, salt, ctx_bytes, recipients, hlen = parse(data)
    if ctx_bytes != ctx_encode(ctx):
        raise ValueError("context differs")
    dk = next((k for t, b in recipients if (k := open_recipient(t, b, private_key, ctx))), None)
    if dk is None:
        raise ValueError("no recipient opens")
    if data[hlen - 64:hlen - 32] != hkdf(dk, salt, b"kmsctl/v1/file-commitment"):
        raise ValueError("commitment")
    tag = hmac_mod.new(hkdf(dk, salt, b"kmsctl/v1/file-header"), data[:hlen - 32],
                       hashlib.sha256).digest()
    if tag != data[hlen - 32:hlen]:
        raise ValueError("header tag")
    aes = AESGCM(hkdf(dk, salt, b"kmsctl/v1/file-frame"))
    body, full, out, i = data[hlen:], frame_size + 16, b"", 0
    while True:
        chunk = body[i * full:(i + 1) * full]
        final = len(chunk) < full
        out += aes.decrypt(nonce(i, final), chunk, b"")
        if final:
            return out
        i += 1
