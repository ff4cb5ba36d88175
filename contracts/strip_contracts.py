#!/usr/bin/env python3
"""Removes every contract checker call from a copy of hakmem's sources.

    strip_contracts.py FILE...   (rewrites the files in place)

Replaces each `HAK_CONTRACT(...);` statement (balanced parentheses, over as
many lines as it takes) with an empty block `{}`, which keeps
`if (x) HAK_CONTRACT(...);` a statement of its own, and deletes each include of
contracts/contracts.h. contracts/zero_cost builds the release library from
such a copy to show that the checkers cost the release hot path nothing.
"""
import re
import sys

INCLUDE = re.compile(r'^\s*#include "contracts/contracts.h"\s*\n', re.M)


def strip(text):
    out, i = [], 0
    while True:
        j = text.find("HAK_CONTRACT(", i)
        if j < 0:
            out.append(text[i:])
            return INCLUDE.sub("", "".join(out))
        out.append(text[i:j])
        k, depth = j + len("HAK_CONTRACT("), 1
        while depth:
            depth += {"(": 1, ")": -1}.get(text[k], 0)
            k += 1
        while text[k] in " \t":
            k += 1
        if text[k] == ";":
            k += 1
        out.append("{}")
        i = k


for path in sys.argv[1:]:
    with open(path) as f:
        src = f.read()
    # The macro's own definition stays: only its uses go.
    if path.endswith("contracts/contracts.h"):
        continue
    with open(path, "w") as f:
        f.write(strip(src))
