#!/usr/bin/env python3
"""Independent re-implementation of docs/format.md §5/§6 (format v1) in Python, checking
dedup/testdata/kat.json byte for byte. Needs python3-cryptography. Usage: python3 kat_check.py"""
import hashlib, hmac, json, os, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes

SEG = 65536

def hkdf(secret, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)

def padme(l):
    if l < 2:
        return l
    e = l.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (l + mask) & ~mask

def plain(n):
    return bytes((7 * i + 3) % 251 for i in range(n))

def stream_seal(kenc, prefix_aad, p):
    st = struct.pack(">QQ", len(p), 0) + p
    st += b"\0" * (padme(len(p) + 16) - len(st))
    segs = [st[i:i + SEG] for i in range(0, len(st), SEG)]
    out = b""
    g = AESGCM(kenc)
    for i, s in enumerate(segs):
        nonce = bytes([1 if i == len(segs) - 1 else 0, 0, 0, 0]) + struct.pack(">Q", i)
        out += g.encrypt(nonce, s, prefix_aad)
    return out

def content(cs, p):
    kc = hmac.new(cs, b"imgfs v1 content" + p, hashlib.sha256).digest()
    kenc = hkdf(kc, None, b"imgfs v1 content enc")
    kcom = hkdf(kc, None, b"imgfs v1 content commit")
    hdr = b"IMGFS\x01c\x00" + bytes([1, 16]) + b"\0" * 6
    commit = hmac.new(kcom, hdr, hashlib.sha256).digest()
    return kc, hdr + commit + stream_seal(kenc, hdr + commit, p)

def meta(mk, kindbyte, kind, name, salt, p):
    k = hkdf(mk, salt, b"imgfs v1 meta " + kind.encode())
    kenc = hkdf(k, None, b"imgfs v1 meta enc")
    kcom = hkdf(k, None, b"imgfs v1 meta commit")
    hdr = b"IMGFS\x01" + kindbyte + b"\x00" + bytes([1, 16]) + b"\0" * 6 + salt
    ctx = bytes([len(kind)]) + kind.encode() + bytes([len(name)]) + name.encode()
    commit = hmac.new(kcom, hdr + ctx, hashlib.sha256).digest()
    return hdr + commit + stream_seal(kenc, hdr + commit + ctx, p)

def main():
    vecs = json.load(open(os.path.join(os.path.dirname(__file__), "kat.json")))
    cs = bytes(range(32))
    bad = 0
    for v in vecs:
        p = plain(v["size"])
        if v["kind"] == "content":
            kc, obj = content(cs, p)
            ok = kc.hex() == v["key"]
        else:
            salt = bytes.fromhex(v["salt"])
            if v["kind"] == "root":
                obj = meta(cs, b"r", "root", "r/%020d" % v["seq"], salt, p)
            else:
                obj = meta(cs, b"m", "tree", "", salt, p)
            ok = True
        loc = hashlib.sha256(obj).hexdigest()
        ok = ok and loc == v["locator"] and len(obj) == v["object_len"]
        if "object" in v:
            ok = ok and obj.hex() == v["object"]
        print("ok  " if ok else "FAIL", v["kind"], v["size"])
        bad += not ok
    sys.exit(1 if bad else 0)

main()
