"""Allocation-heavy Python workload for hakmem's program tests.

Builds and discards many dicts, lists, strings, tuples and bytes of all sizes,
round-trips a few MB of JSON, sorts, slices and joins; prints a digest that
depends only on the computed values, so glibc and hakmem runs must agree."""
import hashlib
import json
import random

rng = random.Random(12345)
digest = hashlib.sha256()


def feed(*values):
    for v in values:
        digest.update(repr(v).encode())


# 1. dicts of lists of strings: build, mutate, delete, rebuild.
for rnd in range(6):
    table = {}
    for i in range(30000):
        key = f"k{rnd}-{i:06d}-" + "x" * (i % 37)
        table[key] = [i, str(i * 7919), "y" * (i % 211), (i, -i)]
    for i in range(0, 30000, 3):
        del table[f"k{rnd}-{i:06d}-" + "x" * (i % 37)]
    for key in list(table)[::5]:
        table[key].append(key.upper() * 3)
    feed(len(table), sum(len(v) for v in table.values()))
    del table

# 2. a JSON round trip of a few MB.
doc = {
    "users": [
        {
            "id": i,
            "name": f"user{i}",
            "tags": [f"t{(i * j) % 97}" for j in range(i % 11)],
            "score": (i * 37 % 1000) / 7.0,
            "bio": "lorem ipsum dolor sit amet " * (i % 9),
            "nested": {"a": [i, i + 1, {"b": str(i)}], "ok": i % 2 == 0},
        }
        for i in range(25000)
    ]
}
text = json.dumps(doc, sort_keys=True)
back = json.loads(text)
assert back == doc
text2 = json.dumps(back, sort_keys=True, indent=1)
feed(len(text), len(text2), hashlib.sha256(text2.encode()).hexdigest())
del doc, back, text, text2

# 3. strings: growth by concatenation, split/join, replace, bytes <-> str.
parts = []
for i in range(60000):
    s = "".join(chr(97 + (i * k) % 26) for k in range(i % 50))
    parts.append(s)
big = "|".join(parts)
words = big.split("|")
assert words == parts
big2 = big.replace("a", "AAAA").encode("utf-8")
feed(len(big), len(big2), sum(map(len, words)), hashlib.md5(big2).hexdigest())
del parts, big, big2, words

# 4. random-size lists and bytearrays with a sliding window of live objects.
live = []
total = 0
for i in range(120000):
    size = rng.choice((1, 8, 24, 100, 700, 3000, 20000, 150000)) + rng.randrange(64)
    if i % 3 == 0:
        obj = bytearray((i + k) & 0xFF for k in range(min(size, 64))) * (size // 64 + 1)
        total += obj[size // 2] + len(obj)
    else:
        obj = [i] * (size // 8 + 1)
        total += len(obj)
    live.append(obj)
    if len(live) > 400:
        del live[rng.randrange(len(live))]
feed(total, len(live))
del live

# 5. sorting, sets (sorted before use) and tuples.
values = [rng.randrange(10**9) for _ in range(200000)]
pairs = sorted(((v % 1000, str(v)) for v in values), reverse=True)
uniq = sorted(set(v % 50000 for v in values))
feed(pairs[:5], pairs[-5:], len(uniq), sum(uniq))

print("py_alloc digest", digest.hexdigest())
