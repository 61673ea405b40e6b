#!/usr/bin/env python3
"""Re-checks tests/data/*.json against libsodium, independently of the Rust code.

Implements docs/PROTOCOL.md from scratch (outer box, envelope v1, payload,
safety number, key fingerprint) on top of libsodium's crypto_box_easy /
crypto_box_open_easy / crypto_scalarmult_base, loaded with ctypes, so it needs
only Python 3 and libsodium (Debian: libsodium23). Not run by `cargo test`;
run it by hand after changing the vectors:

    python3 kavro-proto/tests/interop/check_vectors_libsodium.py
"""

import base64
import ctypes
import ctypes.util
import hashlib
import json
import pathlib
import re
import sys
import uuid

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
MAGIC = b"\xffKVR"
BUCKETS = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
SENT_AT_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
SENT_AT_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,30}$")

name = ctypes.util.find_library("sodium") or "libsodium.so.23"
sodium = ctypes.CDLL(name)
assert sodium.sodium_init() >= 0


class Refused(Exception):
    """A message refused with one of the error kinds of the vectors."""

    def __init__(self, kind, version=None):
        super().__init__(kind)
        self.kind, self.version = kind, version


def scalarmult_base(secret):
    out = ctypes.create_string_buffer(32)
    assert sodium.crypto_scalarmult_curve25519_base(out, secret) == 0
    return out.raw


def box(message, nonce, public, secret):
    out = ctypes.create_string_buffer(len(message) + 16)
    rc = sodium.crypto_box_easy(out, message, ctypes.c_ulonglong(len(message)), nonce, public, secret)
    assert rc == 0
    return out.raw


def box_open(boxed, nonce, public, secret):
    if len(boxed) < 16:
        return None
    out = ctypes.create_string_buffer(max(len(boxed) - 16, 1))
    rc = sodium.crypto_box_open_easy(out, boxed, ctypes.c_ulonglong(len(boxed)), nonce, public, secret)
    return out.raw[: len(boxed) - 16] if rc == 0 else None


def open_message(secret, ciphertext_b64, eph_hex):
    if len(eph_hex) != 64 or not re.fullmatch(r"[0-9a-fA-F]{64}", eph_hex):
        raise Refused("invalid_ephemeral_key")
    if not re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", ciphertext_b64):
        raise Refused("invalid_base64")
    wire = base64.b64decode(ciphertext_b64, validate=True)
    if base64.b64encode(wire).decode() != ciphertext_b64:  # non-canonical trailing bits
        raise Refused("invalid_base64")
    if len(wire) > 65536:
        raise Refused("too_large")
    plain = box_open(wire[24:], wire[:24], bytes.fromhex(eph_hex), secret) if len(wire) >= 40 else None
    if plain is None:
        raise Refused("decryption_failed")
    if plain[:1] != b"\xff":
        try:
            return ("legacy", plain.decode("utf-8"))
        except UnicodeDecodeError:
            raise Refused("legacy_not_utf8")
    if len(plain) < 5 or plain[:4] != MAGIC:
        raise Refused("envelope_not_authentic")
    if plain[4] != 1:
        raise Refused("unsupported_version", plain[4])
    if len(plain) < 61:
        raise Refused("envelope_not_authentic")
    sender_key, inner_nonce, inner_box = plain[5:37], plain[37:61], plain[61:]
    if sender_key[31] & 0x80:  # non-canonical: X25519 would ignore the bit
        raise Refused("envelope_not_authentic")
    inner = box_open(inner_box, inner_nonce, sender_key, secret)
    if inner is None:
        raise Refused("envelope_not_authentic")
    return ("envelope", sender_key.hex(), parse_payload(inner, scalarmult_base(secret)))


def parse_payload(inner, own_key):
    try:
        pos = 0

        def take(n):
            nonlocal pos
            if pos + n > len(inner):
                raise ValueError("short")
            pos += n
            return inner[pos - n : pos]

        if take(1) != b"\x01" or take(32) != own_key:
            raise ValueError("version or recipient key")
        millis = int.from_bytes(take(8), "big", signed=True)
        if not SENT_AT_MIN_MS <= millis <= SENT_AT_MAX_MS:
            raise ValueError("sent_at out of range")
        message_id = str(uuid.UUID(bytes=take(16)))
        names = []
        for _ in range(2):
            name = take(take(1)[0]).decode("utf-8")
            if not USERNAME.match(name):
                raise ValueError("username")
            names.append(name)
        text = take(int.from_bytes(take(4), "big")).decode("utf-8")
        if any(inner[pos:]):
            raise ValueError("padding")
    except (ValueError, UnicodeDecodeError):
        raise Refused("envelope_not_authentic")
    return {"sender": names[0], "recipient": names[1], "sent_at_ms": millis, "message_id": message_id, "text": text}


def safety_half(name, key):
    key = bytes.fromhex(key)
    stable_id = name.lower().encode()
    h = hashlib.sha512(b"Kavro safety number v2\x00" + len(stable_id).to_bytes(8, "big") + stable_id + key).digest()
    for _ in range(5200):
        h = hashlib.sha512(h + key).digest()
    return " ".join("%05d" % (int.from_bytes(h[i : i + 5], "big") % 100000) for i in range(0, 30, 5))


def safety_number(a_name, a_key, b_name, b_key):
    return " ".join(sorted([safety_half(a_name, a_key), safety_half(b_name, b_key)]))


def key_fingerprint(key):
    digest = hashlib.sha256(b"Kavro key fingerprint v1\x00" + bytes.fromhex(key)).digest()[:16]
    return " ".join(digest[i : i + 2].hex() for i in range(0, 16, 2))


def main():
    vectors = json.loads((DATA / "envelope_v1.json").read_text())
    keys = {k: (bytes.fromhex(v["secret"]), v["public"]) for k, v in vectors["keys"].items()}
    for name, (secret, public) in keys.items():
        assert scalarmult_base(secret).hex() == public, name
    checked = 0
    for v in vectors["envelope"]:
        secret = keys[v["recipient"]][0]
        kind, sender_key, payload = open_message(secret, v["ciphertext"], v["ephemeral_pubkey"])
        assert kind == "envelope" and sender_key == keys[v["sender"]][1], v["name"]
        assert payload == v["payload"], (v["name"], payload)
        wire = base64.b64decode(v["ciphertext"])
        assert len(wire) == v["ciphertext_len"] and len(wire) in BUCKETS, v["name"]
        # Re-seal with libsodium from the listed randomness: identical bytes.
        eph = bytes.fromhex(v["ephemeral_secret"])
        assert scalarmult_base(eph).hex() == v["ephemeral_pubkey"], v["name"]
        plain = box_open(wire[24:], wire[:24], bytes.fromhex(v["ephemeral_pubkey"]), secret)
        inner_nonce = bytes.fromhex(v["inner_nonce"])
        inner = box_open(plain[61:], inner_nonce, bytes.fromhex(sender_key), secret)
        again = MAGIC + b"\x01" + bytes.fromhex(sender_key) + inner_nonce
        again += box(inner, inner_nonce, bytes.fromhex(keys[v["recipient"]][1]), keys[v["sender"]][0])
        resealed = bytes.fromhex(v["outer_nonce"]) + box(again, bytes.fromhex(v["outer_nonce"]), bytes.fromhex(keys[v["recipient"]][1]), eph)
        assert resealed == wire, v["name"]
        checked += 1
    for v in vectors["legacy"]:
        secret, public = keys[v["recipient"]]
        assert open_message(secret, v["ciphertext"], v["ephemeral_pubkey"]) == ("legacy", v["text"]), v["name"]
        # PyNaCl's Box(eph_sk, recipient_pk).encrypt(text, nonce) is nonce || crypto_box_easy.
        nonce = bytes.fromhex(v["nonce"])
        sent = nonce + box(v["text"].encode(), nonce, bytes.fromhex(public), bytes.fromhex(v["ephemeral_secret"]))
        assert base64.b64encode(sent).decode() == v["ciphertext"], v["name"]
        checked += 1
    for v in vectors["fail"]:
        try:
            open_message(keys[v["recipient"]][0], v["ciphertext"], v["ephemeral_pubkey"])
        except Refused as refused:
            assert refused.kind == v["error"], (v["name"], refused.kind)
            assert refused.version == v.get("version"), v["name"]
        else:
            raise AssertionError(f"{v['name']} was accepted")
        checked += 1
    numbers = json.loads((DATA / "safety_number_v2.json").read_text())
    for v in numbers["safety_number"]:
        assert safety_half(v["a_name"], v["a_key"]) == v["a_half"]
        assert safety_half(v["b_name"], v["b_key"]) == v["b_half"]
        assert safety_number(v["a_name"], v["a_key"], v["b_name"], v["b_key"]) == v["safety_number"]
        assert safety_number(v["b_name"], v["b_key"], v["a_name"], v["a_key"]) == v["safety_number"]
        checked += 1
    prints = json.loads((DATA / "fingerprint_v1.json").read_text())
    for v in prints["key_fingerprint"]:
        assert key_fingerprint(v["key"]) == v["fingerprint"]
        checked += 1
    print(f"{checked} vectors agree with libsodium and docs/PROTOCOL.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
