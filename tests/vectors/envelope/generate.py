#!/usr/bin/env python3
"""Writes the file-envelope test vectors of docs/FORMAT.md §11.9 into this directory.

An independent implementation of §11, written from the text (Python `cryptography`), not from
kmsctl's code. Deterministic: every random value of §11.7 is fixed here. Re-run it only when the
format changes; src/envelope/test_envelope.cpp checks the committed files with kmsctl's format code.

    python3 tests/vectors/envelope/generate.py
"""

import hashlib
import hmac
import json
import os
import struct
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))

K_V = bytes(range(0x00, 0x20))
KEY_ID = "6b6d7363-746c-4000-8000-000000000001"
KEY_VERSION = 1
K_V2 = bytes(range(0x40, 0x60))  # a second key, for the two-recipient vector
KEY_ID2 = "6b6d7363-746c-4000-8000-000000000002"
DK = bytes(range(0xA0, 0xC0))
DK_OTHER = bytes(range(0x60, 0x80))  # a second data key, for the commitment vector
SALT = bytes(range(0xC0, 0xE0))
BLOB_NONCE = bytes(range(0xB0, 0xBC))


def u16(n): return struct.pack(">H", n)
def u32(n): return struct.pack(">I", n)
def u64(n): return struct.pack(">Q", n)
def lp(b): return u32(len(b)) + b


def hkdf(ikm, salt, info, n=32):
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=info).derive(ikm)


def ctx_encode(ctx):
    out = u32(len(ctx))
    for k in sorted(ctx, key=lambda s: s.encode()):
        out += lp(k.encode()) + lp(ctx[k].encode())
    return out


def blob(kv, key_id, version, ctx_bytes, dk, nonce=BLOB_NONCE):
    head = b"KMSC" + bytes([1]) + uuid.UUID(key_id).bytes + u32(version)
    return head + nonce + AESGCM(kv).encrypt(nonce, dk, head + ctx_bytes)


def header(frame_size, ctx, recipients, dk, salt=SALT, version=1, suite=1, commit_dk=None):
    ctx_bytes = ctx_encode(ctx)
    body = b"KENC" + bytes([version, suite]) + u32(frame_size) + salt + lp(ctx_bytes)
    body += u16(len(recipients))
    for rtype, rbody in recipients:
        body += bytes([rtype]) + lp(rbody)
    body += hkdf(commit_dk or dk, salt, b"kmsctl/v1/file-commitment")
    return body + hmac.new(hkdf(dk, salt, b"kmsctl/v1/file-header"), body, hashlib.sha256).digest()


def nonce(i, final):
    return b"\0\0\0" + u64(i) + bytes([1 if final else 0])


def frames(pt, frame_size, dk=DK, salt=SALT):
    """[(counter, final, sealed frame)] of §11.5."""
    k = AESGCM(hkdf(dk, salt, b"kmsctl/v1/file-frame"))
    chunks = [pt[i:i + frame_size] for i in range(0, len(pt) - len(pt) % frame_size, frame_size)]
    chunks.append(pt[len(pt) - len(pt) % frame_size:])
    last = len(chunks) - 1
    return [k.encrypt(nonce(i, i == last), c, b"") for i, c in enumerate(chunks)]


def vault_recipient(ctx, kv=K_V, key_id=KEY_ID, version=KEY_VERSION, dk=DK):
    return (1, blob(kv, key_id, version, ctx_encode(ctx), dk))


def plaintext(n):
    # Deterministic, not all the same byte: SHA-256 in counter mode.
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"kmsctl envelope vector " + u32(i)).digest()
        i += 1
    return out[:n]


# ---- public-key recipients (§11.3), from recipients.py ----

X25519_PRIVATE = bytes(range(0x20, 0x40))    # the recipient's X25519 private key
X25519_EPHEMERAL = bytes(range(0x80, 0xA0))  # the ephemeral key of the X25519 vectors
RSA_SEED = bytes(range(0xE0, 0x100))         # what RSA-OAEP encrypts
OAEP_SEED = bytes(range(0x10, 0x30))         # OAEP's own random seed, fixed for the vector
RSA_KEY_FILE = "rsa2048_recipient_key.pem"   # a test key, made once and committed


def recipient_keys():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa, x25519
    path = os.path.join(HERE, RSA_KEY_FILE)
    if not os.path.exists(path):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    with open(path, "rb") as f:
        rsa_key = serialization.load_pem_private_key(f.read(), password=None)
    return [x25519.X25519PrivateKey.from_private_bytes(X25519_PRIVATE), rsa_key]


def private_pkcs8(key):
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_vectors(ok, bad, pt):
    from cryptography.hazmat.primitives.asymmetric import x25519
    import recipients
    xkey, rkey = recipient_keys()
    eph = x25519.X25519PrivateKey.from_private_bytes(X25519_EPHEMERAL)
    ctx = {"app": "billing"}

    def x(ctx, dk=DK):
        return recipients.x25519_recipient(xkey.public_key(), dk, ctx, ephemeral=eph)

    def r(ctx, dk=DK):
        return recipients.rsa_recipient(rkey.public_key(), dk, ctx, seed=RSA_SEED,
                                        oaep_seed=OAEP_SEED)

    ok("x25519_recipient", plaintext(1500), ctx=ctx, recipients=[x(ctx)],
       note="for an X25519 public key; context app=billing")
    ok("rsa_oaep_recipient", plaintext(1500), recipients=[r({})],
       note="for an RSA-2048 public key (rsa2048_recipient_key.pem)")
    ok("mixed_recipients", plaintext(700), recipients=[x({}), (9, b"unknown"), r({}),
                                                       vault_recipient({})],
       note="an X25519, an unknown (9), an RSA and a vault-key recipient; any known one opens it")

    h1 = header(1024, {}, [x({})], DK)
    body = b"".join(frames(pt, 1024))
    off = Envelope_offsets(h1)

    def flip(at):
        b = bytearray(h1)
        b[at] ^= 0x01
        return bytes(b) + body
    bad("x25519_fingerprint_altered", flip(off), "names another public key")
    bad("x25519_ephemeral_altered", flip(off + 32 + 5), "the ephemeral public key")
    bad("x25519_wrapped_key_altered", flip(off + 64 + 3), "the wrapped data key")
    bad("x25519_context_mismatch", header(1024, {}, [x({"app": "other"})], DK) + body,
        "wrapped with another context than the header's")
    hr = header(1024, {}, [r({})], DK)
    b = bytearray(hr)
    b[Envelope_offsets(hr) + 32 + 10] ^= 0x01
    bad("rsa_oaep_encapsulation_altered", bytes(b) + body, "a bit of the RSA-OAEP ciphertext")
    bad("x25519_recipient_body_short", header(1024, {}, [(2, x({})[1][:-1])], DK) + body,
        "an X25519 recipient one byte short: the wrong shape")


def Envelope_offsets(h):
    """Where the first recipient's body starts in header `h`."""
    ctx_len = struct.unpack(">I", h[42:46])[0]
    return 46 + ctx_len + 2 + 1 + 4


def main():
    vectors = []

    def write(name, data):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)

    def ok(name, pt, frame_size=1024, ctx=None, recipients=None, note=""):
        ctx = ctx or {}
        recipients = recipients or [vault_recipient(ctx)]
        h = header(frame_size, ctx, recipients, DK)
        write(name + ".kenc", h + b"".join(frames(pt, frame_size)))
        write(name + ".txt", pt)
        vectors.append({"file": name + ".kenc", "expect": "ok", "plaintext": name + ".txt",
                        "context": ctx, "frame_size": frame_size, "header_bytes": len(h),
                        "note": note})

    def bad(name, data, note, ctx=None, error="integrity"):
        write(name + ".kenc", data)
        vectors.append({"file": name + ".kenc", "expect": error, "context": ctx or {},
                        "note": note})

    F = 1024
    ok("empty", b"", note="the empty plaintext: one empty final frame")
    ok("one_byte", plaintext(1))
    ok("frame_size_minus_1", plaintext(F - 1), note="one final frame of 1023 bytes")
    ok("frame_size_exactly", plaintext(F), note="one full frame and an empty final frame")
    ok("frame_size_plus_1", plaintext(F + 1))
    ok("several_frames", plaintext(3 * F + 500))
    ctx = {"purpose": "backup", "app": "billing"}
    ok("with_context", plaintext(2000), ctx=ctx, note="context {app: billing, purpose: backup}")
    ok("two_recipients", plaintext(1500),
       recipients=[vault_recipient({}), vault_recipient({}, kv=K_V2, key_id=KEY_ID2)],
       note="wrapped for key 1 and key 2; either opens it")
    ok("unknown_recipient_type_ignored", plaintext(100),
       recipients=[(7, b"a future public-key recipient"), vault_recipient({})],
       note="a reader skips recipient type 7 and opens the vault-key recipient")
    ok("frame_size_64k", plaintext(70000), frame_size=65536)

    # ---- damage: one file per kind, built from the several_frames vector ----
    pt = plaintext(3 * F + 500)
    h = header(F, {}, [vault_recipient({})], DK)
    fr = frames(pt, F)  # 3 full frames + a final frame of 500 bytes
    body = b"".join(fr)
    full = F + 16
    bad("truncated_at_frame_boundary", h + b"".join(fr[:3]),
        "the final frame dropped: the input ends at a frame boundary")
    bad("truncated_after_first_frame", h + fr[0], "only frame 0 is left")
    bad("truncated_body_empty", h, "the header alone: no final frame")
    bad("truncated_inside_final_frame", h + body[:-1], "one byte short")
    bad("truncated_inside_frame", h + body[:full + 100], "cut inside frame 1")
    bad("truncated_one_byte_after_boundary", h + body[:2 * full + 1],
        "one byte after the boundary of frame 1")
    bad("truncated_final_frame_tag", h + body[:3 * full + 10],
        "a final chunk shorter than a tag")
    bad("truncated_inside_header", h[:len(h) - 5], "the header is cut", error="integrity")
    bad("appended_byte", h + body + b"\0", "one byte after the final frame")
    bad("appended_frame", h + body + fr[3], "the final frame twice")
    bad("frames_swapped", h + fr[1] + fr[0] + fr[2] + fr[3], "frames 0 and 1 swapped")
    bad("frame_duplicated", h + fr[0] + fr[0] + fr[1] + fr[2] + fr[3], "frame 0 twice")
    bad("frame_dropped", h + fr[0] + fr[2] + fr[3], "frame 1 missing")
    # A full frame sealed as final, followed by nothing: the flag does not match its position.
    k = AESGCM(hkdf(DK, SALT, b"kmsctl/v1/file-frame"))
    bad("final_flag_on_full_frame", h + k.encrypt(nonce(0, True), pt[:F], b""),
        "a full-size frame sealed with the final flag, and no final frame")
    bad("final_flag_missing", h + fr[0] + fr[1] + fr[2] + k.encrypt(nonce(3, False), pt[3 * F:], b""),
        "the last frame sealed without the final flag")
    flip = bytearray(h + body)
    flip[len(h) + full + 7] ^= 0x01
    bad("frame_ciphertext_altered", bytes(flip), "one bit of frame 1 flipped")
    flip = bytearray(h + body)
    flip[-1] ^= 0x80
    bad("frame_tag_altered", bytes(flip), "one bit of the final frame's tag flipped")

    # Header fields altered (each offset per §11.3; the tag no longer matches, or parsing fails).
    def altered(offset, xor=0x01):
        b = bytearray(h + body)
        b[offset] ^= xor
        return bytes(b)
    bad("magic_altered", altered(0), "K -> J")
    bad("version_altered", altered(4, 0x03), "version 2")
    bad("suite_altered", altered(5, 0x03), "suite 2")
    bad("frame_size_altered", altered(8, 0x01), "frame size 1280: parses, the tag does not match")
    bad("frame_size_out_of_range", altered(6, 0x10), "frame size above 64 MiB")
    bad("salt_altered", altered(10), "salt changed: commitment and keys change")
    ctx_off = 4 + 1 + 1 + 4 + 32
    # The context length field (4 bytes) then the encoded context (4 bytes for the empty one).
    bad("context_length_altered", altered(ctx_off + 3, 0x04), "context length 0: malformed")
    rcount = ctx_off + 4 + 4
    bad("recipient_count_zero", altered(rcount + 1, 0x01), "0 recipients")
    rbody = rcount + 2 + 1 + 4
    bad("recipient_type_altered", altered(rcount + 2, 0x03),
        "type 2 (X25519) with a vault-key body, which has the wrong shape: nothing opens it")
    bad("wrapped_key_altered", altered(rbody + 25 + 12 + 3), "a bit of the wrapped data key")
    bad("wrapped_key_id_altered", altered(rbody + 8), "the key id inside the blob")
    commit_off = len(h) - 64
    bad("commitment_altered", altered(commit_off), "a bit of the commitment")
    bad("header_tag_altered", altered(len(h) - 1), "a bit of the header tag")
    # Context added (the tag covers it): a header whose context says purpose=x, tag unchanged.
    with_ctx = bytearray(h)
    # Rebuild with a context but keep the old tag: the header tag does not match.
    forged = header(F, {"purpose": "x"}, [vault_recipient({"purpose": "x"})], DK)
    bad("context_altered", forged[:-32] + h[-32:] + body,
        "context purpose=x added, header tag of the original", ctx={"purpose": "x"})
    del with_ctx
    # Key commitment: a recipient that opens to another data key (the invisible-salamander shape):
    # the header is consistent for DK_OTHER except for the commitment, which is DK's.
    other = header(F, {}, [vault_recipient({}, dk=DK_OTHER)], DK_OTHER, commit_dk=DK)
    bad("commitment_mismatch", other + b"".join(frames(pt, F, dk=DK_OTHER)),
        "the wrapped key opens to a data key that does not match the commitment")
    # A recipient wrapped under another context than the header's: the blob does not open.
    swapped = header(F, {}, [vault_recipient({"purpose": "other"})], DK)
    bad("recipient_context_mismatch", swapped + body, "the blob was made with another context")
    bad("wrong_context_expected", h + body, "a valid file read with --context purpose=backup",
        ctx={"purpose": "backup"})
    bad("no_context_expected", header(F, ctx, [vault_recipient(ctx)], DK) + body,
        "a file with a context read with none")
    public_key_vectors(ok, bad, pt)
    bad("not_an_envelope", b"hello world, this is not an envelope at all" * 3, "wrong magic")
    bad("empty_input", b"", "zero bytes")

    manifest = {
        "comment": "docs/FORMAT.md section 11.9; written by generate.py",
        "private_keys": [private_pkcs8(k).hex() for k in recipient_keys()],
        "keys": [{"key_id": KEY_ID, "key_version": KEY_VERSION, "material": K_V.hex()},
                 {"key_id": KEY_ID2, "key_version": 1, "material": K_V2.hex()}],
        "data_key": DK.hex(), "salt": SALT.hex(), "blob_nonce": BLOB_NONCE.hex(),
        "k_commit": hkdf(DK, SALT, b"kmsctl/v1/file-commitment").hex(),
        "k_header": hkdf(DK, SALT, b"kmsctl/v1/file-header").hex(),
        "k_frame": hkdf(DK, SALT, b"kmsctl/v1/file-frame").hex(),
        "vectors": vectors,
    }
    with open(os.path.join(HERE, "vectors.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors")
    print("K_commit", manifest["k_commit"])
    print("K_header", manifest["k_header"])
    print("K_frame ", manifest["k_frame"])
    print("empty.kenc", open(os.path.join(HERE, "empty.kenc"), "rb").read().hex())


if __name__ == "__main__":
    main()
