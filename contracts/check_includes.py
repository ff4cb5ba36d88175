#!/usr/bin/env python3
"""Contract D: checks the include graph of core/ against allowed_includes.txt.

Every #include "x/..." in core/<box>/ must name either the box itself, the
public header <dep>/<dep>.h of a box listed for it, hakmem.h, or
contracts/contracts.h. Prints one line per violation; exit 1 if any."""
import argparse
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def load_table(path):
    table = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            box, _, deps = line.partition(":")
            table[box.strip()] = set(deps.split())
    return table


def check(core, table):
    problems = []
    for box in sorted(os.listdir(core)):
        folder = os.path.join(core, box)
        if not os.path.isdir(folder):
            continue
        if box not in table:
            problems.append(f"core/{box}/: box missing from the allowed table")
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            with open(path, errors="replace") as f:
                text = f.read()
            for inc in INCLUDE.findall(text):
                if inc in ("hakmem.h", "contracts/contracts.h"):
                    if inc == "hakmem.h" and box != "include" and "include" not in table[box] and box != "front":
                        problems.append(f"core/{box}/{name}: includes hakmem.h, not allowed for {box}")
                    continue
                if "/" not in inc:
                    continue  # a file of the box's own folder
                dep = inc.split("/", 1)[0]
                if dep == box:
                    continue
                if dep not in table[box]:
                    problems.append(f"core/{box}/{name}: includes \"{inc}\": box {box} may not use box {dep}")
                elif inc != f"{dep}/{dep}.h":
                    problems.append(f"core/{box}/{name}: includes \"{inc}\": only {dep}/{dep}.h is public")
    return problems


def self_test(table_path):
    """Builds a tree that breaks the contract and checks that it is caught."""
    table = load_table(table_path)
    with tempfile.TemporaryDirectory() as tmp:
        for box, header in (("base", '#pragma once\n'), ("os", '#include "base/base.h"\n'),
                            ("slab", '#include "os/os.h"\n')):
            os.makedirs(os.path.join(tmp, box))
            with open(os.path.join(tmp, box, f"{box}.h"), "w") as f:
                f.write(header)
        # os reaching up into slab: a cross-box include
        with open(os.path.join(tmp, "os", "os.cc"), "w") as f:
            f.write('#include "slab/slab.h"\n')
        # slab reaching into a private header of os
        with open(os.path.join(tmp, "slab", "slab.cc"), "w") as f:
            f.write('#include "os/os_internal.h"\n')
        problems = check(tmp, table)
    want = ["box os may not use box slab", "only os/os.h is public"]
    missing = [w for w in want if not any(w in p for p in problems)]
    for p in problems:
        print("caught:", p)
    if missing:
        print("contract D checker did NOT fire on:", ", ".join(missing))
        return 1
    print("contract D checker fires on cross-box and private includes")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--core")
    ap.add_argument("--table", required=True)
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.table)
    problems = check(args.core, load_table(args.table))
    for p in problems:
        print("contract D violated:", p)
    if problems:
        return 1
    print(f"contract D holds: include graph of {args.core} matches {os.path.basename(args.table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
