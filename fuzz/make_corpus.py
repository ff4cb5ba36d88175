#!/usr/bin/env python3
"""Writes the checked-in seed corpus: fuzz/corpus/<harness>/<name>.

Both harnesses read 4-byte records [op a b c] (see the comments at the top of
ops_fuzzer.cc and bad_free_fuzzer.cc). Rerun after changing an encoding:
    python3 fuzz/make_corpus.py
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def rec(op, a=0, b=0, c=0):
    return bytes([op & 0xFF, a & 0xFF, b & 0xFF, c & 0xFF])


# ---- ops_fuzzer: op = rec[0] & 15
MALLOC, CALLOC, REALLOC, FREE, ALIGNED, POSIX, USABLE, SWITCH = 0, 2, 3, 4, 6, 7, 8, 9
BURST, BURST_FREE, CONCURRENT, MISC, TRIM, CHECK = 10, 11, 12, 13, 14, 15
# size bytes (a, b, c): a < 128 tiny, < 200 mid, < 246 large, else huge
TINY, MID, LARGE, HUGE = 5, 150, 220, 250

ops = {
    "tiny_churn": [rec(MALLOC, TINY, s, 0) for s in (0, 1, 8, 9, 16, 24, 100, 255)]
    + [rec(FREE, 0, 3, 1), rec(REALLOC, TINY, 2, 200), rec(FREE, 0, 0, 0), rec(MALLOC, TINY, 0, 4), rec(CHECK)],
    "all_ranges": [rec(MALLOC, TINY, 200, 1), rec(MALLOC, MID, 10, 40), rec(MALLOC, LARGE, 7, 9),
                   rec(MALLOC, HUGE, 0, 16), rec(USABLE, 0, 0, 1), rec(USABLE, 0, 0, 3),
                   rec(REALLOC, LARGE, 3, 9), rec(REALLOC, TINY, 1, 9), rec(REALLOC, HUGE, 2, 40),
                   rec(CHECK), rec(FREE, 0, 0, 2), rec(FREE, 0, 0, 1)],
    "aligned": [rec(ALIGNED, TINY, 50, a) for a in (0, 4, 5, 6, 12, 16, 17, 21, 22)]
    + [rec(POSIX, MID, 9, a) for a in (0, 1, 9, 13)] + [rec(MISC, 0, 33, 5), rec(MISC, 3, 130, 12), rec(CHECK)],
    "threads": [rec(MALLOC, TINY, 64, 0), rec(MALLOC, MID, 1, 2), rec(MALLOC, LARGE, 1, 1), rec(SWITCH),
                rec(FREE, 0, 0, 0), rec(REALLOC, MID, 0, 5), rec(MALLOC, TINY, 32, 0), rec(SWITCH),
                rec(FREE, 0, 0, 1), rec(USABLE), rec(SWITCH), rec(FREE), rec(FREE), rec(CHECK)],
    "bursts": [rec(BURST, 0, 48, 200), rec(BURST, 0x80, 0x20, 100), rec(BURST_FREE, 0, 0, 150),
               rec(BURST_FREE, 1, 0, 100), rec(TRIM), rec(BURST, 0, 16, 255), rec(SWITCH),
               rec(BURST_FREE, 2, 0, 255), rec(CHECK)],
    "concurrent": [rec(BURST, 0, 100, 120), rec(SWITCH), rec(BURST, 0x81, 0x10, 60), rec(CONCURRENT, 3, 90, 80),
                   rec(CONCURRENT, 0x85, 20, 40), rec(SWITCH), rec(CONCURRENT, 1, 255, 200), rec(CHECK)],
    "calloc_failing": [rec(CALLOC, TINY, 100, 3), rec(CALLOC, MID, 0, 7), rec(CALLOC, LARGE, 2, 2),
                       rec(MISC, 2, 0, 0), rec(MISC, 2, 0, 1), rec(MISC, 2, 0, 2), rec(MISC, 2, 0, 3),
                       rec(MISC, 2, 0, 4), rec(MISC, 2, 0, 5), rec(MISC, 1, 0, 0), rec(CHECK)],
}

# ---- bad_free_fuzzer: op = rec[0] & 15
ALLOC, LFREE, INTERIOR, MISALIGNED, STACK, GLOBAL, MMAP, LIBC = 0, 1, 2, 3, 4, 5, 6, 7
LARGE2, HUGE2, SLAB_EDGES, SEGMENT, AROUND_HUGE, NULLFREE, BTRIM, HEADERS = 8, 9, 10, 11, 12, 13, 14, 15
SLAB, SPAN, BIG = 10, 200, 250  # a: < 170 slab, < 240 large, else huge

bad = {
    "foreign": [rec(STACK, 0, 5, 0), rec(STACK, 1, 200, 1), rec(GLOBAL, 0, 17, 0), rec(MMAP, 3, 0, 1),
                rec(LIBC, 1, 100, 0), rec(LIBC, 0, 3, 1), rec(NULLFREE)],
    "interior": [rec(ALLOC, SLAB, 48, 0), rec(ALLOC, SLAB, 0, 4), rec(ALLOC, SPAN, 5, 5), rec(ALLOC, BIG, 1, 1),
                 rec(INTERIOR, 0, 1, 0), rec(INTERIOR, 1, 255, 1), rec(INTERIOR, 2, 0, 2), rec(INTERIOR, 3, 9, 3),
                 rec(MISALIGNED, 0, 1, 0), rec(MISALIGNED, 1, 7, 1), rec(MISALIGNED, 2, 8, 0), rec(HEADERS)],
    "double_free_big": [rec(LARGE2, 0, 1, 0), rec(LARGE2, 1, 200, 1), rec(HUGE2, 0, 2, 0), rec(HUGE2, 0, 9, 1),
                        rec(ALLOC, SPAN, 9, 9), rec(LARGE2, 1, 0, 0), rec(BTRIM), rec(HUGE2, 0, 0, 1)],
    "slab_edges": [rec(ALLOC, SLAB, 48, 0), rec(ALLOC, SLAB, 96, 0), rec(ALLOC, SLAB, 0, 14), rec(SLAB_EDGES, 0, 0, 0),
                   rec(SLAB_EDGES, 1, 1, 1), rec(SLAB_EDGES, 2, 2, 0), rec(ALLOC, SPAN, 3, 3), rec(SEGMENT, 0, 0, 0),
                   rec(SEGMENT, 1, 1, 2), rec(SEGMENT, 0, 40, 0), rec(HEADERS)],
    "around_huge": [rec(ALLOC, BIG, 0, 120), rec(AROUND_HUGE, 0, 0, 0), rec(AROUND_HUGE, 1, 0, 1),
                    rec(AROUND_HUGE, 2, 0, 0), rec(INTERIOR, 0, 0, 64), rec(LFREE), rec(BTRIM), rec(HEADERS)],
}


def write(harness, corpus):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    for name, recs in corpus.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(b"".join(recs))


write("ops_fuzzer", ops)
write("bad_free_fuzzer", bad)
