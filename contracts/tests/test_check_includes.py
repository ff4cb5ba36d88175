#!/usr/bin/env python3
"""Contract D's checker (contracts/check_includes.py), run as CI runs it, on
small fake core/ trees made in a temp dir and on the real one.

    test_check_includes.py [unittest options]

A checker that misses an include form or a nested folder passes every tree,
so each way out of a box is shown caught, and a tree that keeps the contract
with the same forms is shown passing."""
import os
import subprocess
import sys
import tempfile
import unittest

CONTRACTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKER = os.path.join(CONTRACTS, "check_includes.py")
TABLE = os.path.join(CONTRACTS, "allowed_includes.txt")
REAL_CORE = os.path.join(os.path.dirname(CONTRACTS), "core")

# A tree that keeps the contract, using every form the checker must read: it
# has system headers in both forms, public headers named with <...>, a box
# subfolder, and relative includes inside a box.
GOOD_TREE = {
    "base/base.h": "#pragma once\n#include <stdint.h>\n#include <atomic>\n",
    "os/os.h": '#pragma once\n#include "base/base.h"\n#include <sys/mman.h>\n',
    "os/os.cc": '#include "os.h"\n#include "contracts/contracts.h"\n',
    "slab/slab.h": "#pragma once\n#include <os/os.h>\n#include <contracts/contracts.h>\n",
    "slab/slab.cc": '#include "slab/slab.h"\n#include "detail/carve.h"\n#include <base/base.h>\n',
    "slab/detail/carve.h": '#pragma once\n#include "../slab.h"\n#include "slab/slab.h"\n',
    "slab/detail/carve.cc": '#include "carve.h"\n#  include <os/os.h>\n#include <slab/detail/carve.h>\n',
}


def run_checker(core):
    return subprocess.run([sys.executable, CHECKER, "--core", core, "--table", TABLE],
                          capture_output=True, text=True)


class CheckIncludes(unittest.TestCase):
    def check_tree(self, extra_files):
        """Runs the checker on GOOD_TREE plus `extra_files` (path in core/ to
        text); returns its result."""
        with tempfile.TemporaryDirectory() as tmp:
            core = os.path.join(tmp, "core")
            for rel, text in {**GOOD_TREE, **extra_files}.items():
                path = os.path.join(core, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
            result = run_checker(core)
        self.assertNotIn("Traceback", result.stderr, result.stderr)
        return result

    def assert_fires(self, extra_files, *expected):
        result = self.check_tree(extra_files)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        for line in expected:
            self.assertIn(line, result.stdout)

    def test_passes_a_tree_that_keeps_the_contract(self):
        result = self.check_tree({})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("contract D holds", result.stdout)

    def test_fires_on_a_cross_box_angle_include(self):
        self.assert_fires({"os/os.cc": "#include <slab/slab.h>\n"},
                          "core/os/os.cc: includes <slab/slab.h>: box os may not use box slab")

    def test_fires_on_a_private_header_named_with_angles(self):
        self.assert_fires({"slab/slab.cc": "#include <os/os_internal.h>\n"},
                          "core/slab/slab.cc: includes <os/os_internal.h>: only os/os.h is public")

    def test_fires_on_a_box_named_from_the_repository_root(self):
        self.assert_fires({"os/os.cc": "#include <core/slab/slab.h>\n"},
                          "core/os/os.cc: includes <core/slab/slab.h>: box os may not use box slab")

    def test_fires_on_hakmem_h_in_angles_where_not_allowed(self):
        self.assert_fires({"os/os.cc": "#include <hakmem.h>\n"},
                          "core/os/os.cc: includes <hakmem.h>: box os may not use box include")

    def test_fires_on_a_bad_include_from_a_nested_folder(self):
        self.assert_fires({"os/detail/map.cc": '#include "slab/slab.h"\n',
                           "os/detail/deeper/unmap.cc": "#include <slab/detail/carve.h>\n"},
                          'core/os/detail/map.cc: includes "slab/slab.h": box os may not use box slab',
                          "core/os/detail/deeper/unmap.cc: includes <slab/detail/carve.h>: "
                          "box os may not use box slab")

    def test_fires_on_a_relative_include_into_another_box(self):
        self.assert_fires({"slab/detail/peek.cc": '#include "../../os/os_internal.h"\n'},
                          'core/slab/detail/peek.cc: includes "../../os/os_internal.h": only os/os.h is public')

    def test_fires_on_an_include_through_a_macro(self):
        self.assert_fires({"slab/slab.cc": "#define SLAB_IMPL \"os/os_internal.h\"\n#include SLAB_IMPL\n"},
                          "core/slab/slab.cc: includes through a macro (SLAB_IMPL)")

    def test_passes_the_real_tree(self):
        result = run_checker(REAL_CORE)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
