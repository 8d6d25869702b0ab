"""Random plain-data dicts pickled at every protocol, for the unpickler's
differential test. Prints one line per case: protocol, the pickle in hex,
and a canonical rendering of the value that the Rust side reproduces."""
import pickle
import random
import struct
import sys

seed, count = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
ALPHABET = "abc xyz'\"\\\n\r\t\x00\x7f\x80\xe9\xff\u0100\u20ac\U0001f600%{}"


def rstr():
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 12)))


def scalar():
    k = rng.randrange(9)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.randrange(-300, 300)
    if k == 3:
        bits = rng.choice([8, 16, 31, 32, 63, 64, 65, 100, 300])
        return rng.randrange(-(2 ** bits), 2 ** bits)
    if k == 4:
        return rng.choice([0.0, -0.0, 1.5, 1e300, -1e-300, float("inf"), float("-inf"), 0.1]) * rng.choice([1, 3.7])
    if k == 5:
        return struct.unpack(">d", struct.pack(">Q", rng.getrandbits(64) & ~(0x7FF << 52) | (rng.randrange(1, 2046) << 52)))[0]
    if k == 6:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 6)))
    return rstr()


def value(depth):
    if depth > 3 or rng.random() < 0.6:
        return scalar()
    k = rng.randrange(3)
    items = [value(depth + 1) for _ in range(rng.randrange(0, 4))]
    if k == 0:
        return items
    if k == 1:
        return tuple(items)
    return {rstr(): v for v in items}


def canon(v):
    if v is None:
        return "N"
    if v is True:
        return "T"
    if v is False:
        return "F"
    if isinstance(v, int):
        return "i%d" % v
    if isinstance(v, float):
        return "f" + struct.pack(">d", v).hex()
    if isinstance(v, str):
        return "s" + v.encode("utf-8").hex()
    if isinstance(v, bytes):
        return "b" + v.hex()
    if isinstance(v, list):
        return "[" + ",".join(canon(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ",".join(canon(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ",".join(canon(k) + ":" + canon(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


for i in range(count):
    d = {rstr(): value(0) for _ in range(rng.randrange(0, 8))}
    if rng.random() < 0.3:
        shared = [1, "two", (3.0,)]
        d["shared_a"] = shared
        d["shared_b"] = shared
    proto = i % 6
    print(proto, pickle.dumps(d, proto).hex(), canon(d))
