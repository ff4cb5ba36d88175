"""An allocation-heavy Python program for hakmem's demonstration: builds and
discards many dicts, lists and strings, and round-trips a few MB of JSON.
Prints a digest so runs under different allocators can be compared."""
import hashlib
import json

def churn(rounds):
    digest = hashlib.sha256()
    for r in range(rounds):
        table = {f"key-{r}-{i}": [i, str(i) * (i % 13), {"n": i, "sq": i * i}] for i in range(40000)}
        text = json.dumps(table)
        back = json.loads(text)
        words = " ".join(k for k in back if k.endswith("7")).split()
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(str(len(words)).encode())
        del table, back, words, text
    return digest.hexdigest()[:16]

print("digest", churn(12))
