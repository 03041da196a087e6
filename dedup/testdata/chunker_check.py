#!/usr/bin/env python3
# Independent check of the format v2 chunker (docs/format.md §11): recomputes every vector
# of chunker_kat.json with Python's cryptography package. No code is shared with Go.
import hashlib, json, os, struct, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes

MIN, NORMAL, MAX, WIN, CAND, PRF_BEFORE, PRF_AFTER = 1 << 20, 3 << 20, 8 << 20, 64, 8, 14, 12
M64 = (1 << 64) - 1
GEAR = [int.from_bytes(hashlib.sha256(b"imgfs v2 chunker gear" + bytes([i])).digest()[:8], "big") for i in range(256)]

def plain(n):
    out = bytearray()
    j = 0
    while len(out) < n:
        out += hashlib.sha256(b"imgfs chunker kat" + struct.pack(">I", j)).digest()
        j += 1
    return bytes(out[:n])

def split(cs, data):
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"imgfs v2 chunker").derive(cs)
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out, off = [], 0
    while off < len(data):
        b = data[off:off + MAX]
        n = len(b)
        if n > MIN:
            g = 0
            for x in b[MIN - WIN:MIN]:
                g = ((g << 1) + GEAR[x]) & M64
            for i in range(MIN, len(b)):
                g = ((g << 1) + GEAR[b[i]]) & M64
                if g >> (64 - CAND) == 0:
                    v = int.from_bytes(enc.update(struct.pack(">QQ", g, 0))[:8], "big")
                    bits = PRF_BEFORE if i + 1 < NORMAL else PRF_AFTER
                    if v >> (64 - bits) == 0:
                        n = i + 1
                        break
        out.append(n)
        off += n
    return out

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    vecs = json.load(open(os.path.join(here, "chunker_kat.json")))
    bad = 0
    for v in vecs:
        got = split(bytes.fromhex(v["cs"]), plain(v["size"]))
        if got == v["chunks"]:
            print("ok", v["size"], got)
        else:
            bad += 1
            print("FAIL", v["size"], got, "want", v["chunks"])
    sys.exit(1 if bad else 0)

main()
