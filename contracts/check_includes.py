#!/usr/bin/env python3
"""Contract D: checks the include graph of core/ against allowed_includes.txt.

Every include in a file of core/<box>/ (at any depth) that names a hakmem
header must name either the box itself, the public header <dep>/<dep>.h of a
box listed for it, hakmem.h (the public header of box include), or
contracts/contracts.h. Quoted, angled and relative forms are all read, and
resolved the way the build's include path (core, core/include, the root)
would; an include through a macro cannot be checked and is a violation.
Prints one line per violation; exit 1 if any."""
import argparse
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^[ \t]*#[ \t]*(?:include_next|include|import)\b[ \t]*'
                     r'(?:"([^"\n]*)"|<([^>\n]*)>|([^\n]*))', re.M)
CONTRACTS_HEADER = "contracts/contracts.h"


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


def public_header(box):
    # Box include is the public API itself: its one header is hakmem.h.
    return "include/hakmem.h" if box == "include" else f"{box}/{box}.h"


def target_of(inc, angled, including_dir, core, boxes):
    """Where the hakmem file that an include names lies: ("core", its path in
    core/) or ("root", its path in the repository), or None for a header from
    outside hakmem."""
    root = os.path.dirname(core)

    def located(path):
        path = os.path.normpath(path)
        if os.path.commonpath([path, core]) == core:
            return "core", os.path.relpath(path, core).replace(os.sep, "/")
        if os.path.commonpath([path, root]) == root:
            return "root", os.path.relpath(path, root).replace(os.sep, "/")
        return None

    search = ([] if angled else [including_dir]) + [core, os.path.join(core, "include"), root]
    for folder in search:
        candidate = os.path.join(folder, inc)
        if os.path.isfile(candidate):
            return located(candidate)
    # A file that is not there (a test's fake tree, a header about to be
    # added) is judged by its name, as the compiler would look it up.
    if not angled and inc.startswith((".", "/")):
        return located(os.path.join(including_dir, inc))
    parts = os.path.normpath(inc).split(os.sep)
    if parts[0] == "core" and len(parts) > 1:
        parts = parts[1:]
    if len(parts) == 1:
        if inc == "hakmem.h":
            return "core", "include/hakmem.h"
        return None if angled else located(os.path.join(including_dir, inc))
    if parts[0] in boxes:
        return "core", "/".join(parts)
    if parts[0] == "contracts":
        return "root", "/".join(parts)
    return None


def check(core, table):
    core = os.path.abspath(core)
    boxes = {name for name in os.listdir(core) if os.path.isdir(os.path.join(core, name))} | set(table)
    problems = []
    for box in sorted(os.listdir(core)):
        folder = os.path.join(core, box)
        if not os.path.isdir(folder):
            continue
        if box not in table:
            problems.append(f"core/{box}/: box missing from the allowed table")
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                problems += check_file(path, box, core, boxes, table)
    return problems


def check_file(path, box, core, boxes, table):
    label = "core/" + os.path.relpath(path, core).replace(os.sep, "/")
    with open(path, errors="replace") as f:
        text = f.read().replace("\\\n", "")  # a directive continued over lines is one line
    problems = []
    for quoted, angled, other in INCLUDE.findall(text):
        if other.strip() and not other.lstrip().startswith("//"):
            problems.append(f"{label}: includes through a macro ({other.strip()}): the include graph cannot be checked")
            continue
        inc = angled if angled else quoted
        written = f"<{inc}>" if angled else f'"{inc}"'
        target = target_of(inc, bool(angled), os.path.dirname(path), core, boxes)
        if target is None or target == ("root", CONTRACTS_HEADER):
            continue
        where, in_core = target
        if where != "core":
            problems.append(f"{label}: includes {written}: outside core/ only {CONTRACTS_HEADER} may be used")
            continue
        dep = in_core.split("/", 1)[0]
        if dep == box:
            continue
        if "/" not in in_core:
            problems.append(f"{label}: includes {written}: a file of core/ outside every box")
        elif dep not in table[box]:
            problems.append(f"{label}: includes {written}: box {box} may not use box {dep}")
        elif in_core != public_header(dep):
            problems.append(f"{label}: includes {written}: only {public_header(dep)} is public")
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
