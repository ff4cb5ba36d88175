# hakmem's front door. CMake does the work; each variant builds in its own
# folder under build/.
#   make            release library and launcher only, no test dependencies:
#                   build/release/lib/libhakmem.{so,a}, build/release/bin/hakmem
#   make install    install them with the header, pkg-config file, CMake package and man page
#                   under PREFIX (default /usr/local)
#   make test       every test of every build: contracts, asan (+UBSan), tsan, valgrind, a fuzz
#                   smoke, then the release build's unit tests and real programs (ctest's summary last)
#   make check      only the release build's tests
#   make demo       run a real program under hakmem beside glibc, with hakmem's statistics
#   make hardened   the hardened variant, build/hardened/lib/libhakmem-hardened.so, and its tests
#   make bench      benchmarks against glibc, mimalloc, jemalloc and tcmalloc, the hardened
#                   variant beside release
#   make scaling    the multi-threaded workloads at 1-16 threads under every allocator
#                   (bench/results/scaling/)
#   make gate       the merge gate: a quick benchmark run checked against bench/thresholds
#   make mutate     mutation testing of core/ against a fast test set (build/mutate-report.md;
#                   the samples' record, with each survivor's verdict: tests/mutate/REPORT.md)
#   make deps       install the Debian packages the build, tests and benchmarks need
JOBS ?= $(shell nproc)
CMAKE ?= cmake
BUILD := build

.PHONY: lib install clang all release test check demo bench scaling gate deps clean fuzz fuzz-smoke contracts asan ubsan tsan valgrind hardened mutate
FUZZ_SECONDS ?= 60

PREFIX ?= /usr/local

all: lib

# The library and the launcher alone: tests and benchmarks off, so that
# neither GoogleTest nor RapidCheck is needed (`make release` turns them on
# again in the same build folder; the library is not rebuilt).
lib:
	$(CMAKE) -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DHAKMEM_OVERRIDE=ON -DHAKMEM_TESTS=OFF \
	  -DHAKMEM_BENCH=OFF -DHAKMEM_CONTRACTS=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/release -j $(JOBS) --target hakmem hakmem_static

install: lib
	$(CMAKE) --install $(BUILD)/release --prefix $(PREFIX)

release:
	$(CMAKE) -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DHAKMEM_OVERRIDE=ON -DHAKMEM_TESTS=ON \
	  -DHAKMEM_BENCH=ON -DHAKMEM_CONTRACTS=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/release -j $(JOBS)

test: clang contracts asan ubsan tsan valgrind hardened fuzz-smoke
	$(MAKE) --no-print-directory check

check: release
	cd $(BUILD)/release && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# A short run of each fuzz harness (CI); `make fuzz` is the long one.
fuzz-smoke:
	@if [ -f fuzz/run ]; then $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS); \
	else echo "fuzz-smoke: no harnesses yet"; fi
FUZZ_SMOKE_SECONDS ?= 15

demo:
	bash ci/demo

# The hardened library alone (its tests are `make hardened`'s), so that
# bench/run measures it beside release; the options are the hardened target's,
# so the two share build/hardened without reconfiguring it.
bench: release
	$(CMAKE) -S . -B $(BUILD)/hardened -DCMAKE_BUILD_TYPE=Release -DHAKMEM_HARDENED=ON -DHAKMEM_OVERRIDE=ON \
	  -DHAKMEM_TESTS=ON -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/hardened -j $(JOBS) --target hakmem
	bash bench/run $(BENCH_ARGS)
	bash bench/hardened-settings --out bench/results/hardened-settings.md
	bash bench/ace-arms --out bench/results/ace-arms.md

scaling: release
	bash bench/scaling $(SCALING_ARGS)

gate: release
	$(CMAKE) -S . -B $(BUILD)/hardened -DCMAKE_BUILD_TYPE=Release -DHAKMEM_HARDENED=ON -DHAKMEM_OVERRIDE=ON \
	  -DHAKMEM_TESTS=ON -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/hardened -j $(JOBS) --target hakmem
	bash bench/gate

# The hardened variant (SECURITY.md): its own tests make each fault it
# catches happen on purpose; the unit tests (but the bad-free ones, whose
# answer it changes from "count and ignore" to "abort") and the real programs
# run on it too, and so do the property tests against the heap model (which
# knows the hardened canary) but the bad-free ones and the "smallest class
# that fits" table property (the hardened variant's smallest class is 16 B).
hardened:
	$(CMAKE) -S . -B $(BUILD)/hardened -DCMAKE_BUILD_TYPE=Release -DHAKMEM_HARDENED=ON -DHAKMEM_OVERRIDE=ON \
	  -DHAKMEM_TESTS=ON -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/hardened -j $(JOBS)
	cd $(BUILD)/hardened && ctest --output-on-failure -j $(JOBS) -E 'prop\.prop_bad_free|prop\.prop_tables\.SizeClass'

# Mutation testing (tests/mutate/run): small bugs injected into core/ one at
# a time in a private copy of the tree, each built and run against a fast
# test set; prints killed / survived / not compiled / not in this build and
# writes build/mutate-report.md; each survivor's verdict goes by hand into
# tests/mutate/REPORT.md, the record of the samples. About 20-60 s a mutant; 150 by default
# (MUTATE_ARGS="--max N --seed S --files core/x/y.cc").
mutate:
	python3 tests/mutate/run $(MUTATE_ARGS)

# The library and the stress tests built by clang++, warnings as errors.
clang:
	$(CMAKE) -S . -B $(BUILD)/clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DHAKMEM_BENCH=OFF -DHAKMEM_TESTS=ON >/dev/null
	$(CMAKE) --build $(BUILD)/clang -j $(JOBS) --target hakmem hakmem_static test_stress
	cd $(BUILD)/clang && ctest --output-on-failure -L stress

# Release code with every contract checker compiled in, and the tests that
# make each checker fire; then proof that the release hot path does not pay
# for them (equal callgrind counts with and without their code in the tree).
contracts:
	$(CMAKE) -S . -B $(BUILD)/contracts -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_CONTRACTS=ON \
	  -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/contracts -j $(JOBS) --target hakmem hakmem_static test_contracts
	cd $(BUILD)/contracts && ctest --output-on-failure -R 'contract|Contract'
	bash contracts/zero_cost

# Sanitizer builds: the stress tests (and the property tests) on the prefixed
# API, hakmem's free memory poisoned for ASan; everything instrumented for TSan.
asan:
	$(CMAKE) -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_SANITIZE=address \
	  -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/asan -j $(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -E contract_d

# UBSan alone: hakmem stays the process's malloc, so the unit tests run here
# too (with the stress and property tests), every UB report fatal.
ubsan:
	$(CMAKE) -S . -B $(BUILD)/ubsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_SANITIZE=undefined \
	  -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/ubsan -j $(JOBS)
	cd $(BUILD)/ubsan && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) \
	  -LE programs -E contract_d

# The stress tests, and the unit tests of threads, stats and trim on the
# prefixed API (label tsan_unit: stats snapshots and trims beside refills
# found the slab count race). The suppressions name the one race kept on
# purpose, stats reading live threads' cache counters.
# Not here: fork while threads allocate. A child forked from a threaded
# process under TSan can hang in TSan's own runtime (its locks are not taken
# around fork in this clang; llvm-project PR 96600), which failed a run of
# ours once in about twenty; and it reports the parent's threads, gone in
# the child, as leaked (the fork during the first allocation: a quarter of
# its children). The clang, asan, hardened and release builds run those
# tests, and fork safety's unit tests.
tsan:
	$(CMAKE) -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_SANITIZE=thread \
	  -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/tsan -j $(JOBS)
	cd $(BUILD)/tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/unit/tsan_suppressions.txt" \
	  ctest --output-on-failure -j $(JOBS) -L 'stress|tsan_unit' -E 'ForkWhileThreadsAllocate|ForkDuringTheFirstAllocation'

# Valgrind memcheck over programs on the prefixed API, hakmem describing its
# blocks with client requests: clean runs, and a leak and a use after free caught.
valgrind:
	$(CMAKE) -S . -B $(BUILD)/valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_VALGRIND=ON -DHAKMEM_OVERRIDE=OFF -DHAKMEM_TESTS=ON \
	  -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/valgrind -j $(JOBS) --target vg_workload
	cd $(BUILD)/valgrind && ctest --output-on-failure -L valgrind

# libFuzzer harnesses on the prefixed API (ASan owns malloc there), each run
# for FUZZ_SECONDS from the checked-in corpus; crashes are kept as regressions.
# The op-sequence harness runs a second time on the hardened variant.
fuzz:
	$(CMAKE) -S . -B $(BUILD)/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DHAKMEM_OVERRIDE=OFF -DHAKMEM_FUZZ=ON -DHAKMEM_TESTS=OFF \
	  -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/fuzz -j $(JOBS)
	bash fuzz/run $(BUILD)/fuzz $(FUZZ_SECONDS)
	$(CMAKE) -S . -B $(BUILD)/fuzz-hardened -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DHAKMEM_OVERRIDE=OFF -DHAKMEM_FUZZ=ON -DHAKMEM_HARDENED=ON -DHAKMEM_TESTS=OFF \
	  -DHAKMEM_BENCH=OFF >/dev/null
	$(CMAKE) --build $(BUILD)/fuzz-hardened -j $(JOBS) --target ops_fuzzer
	FUZZ_HARNESSES=ops_fuzzer bash fuzz/run $(BUILD)/fuzz-hardened $(FUZZ_SECONDS)

deps:
	bash ci/install-deps

clean:
	rm -rf $(BUILD)
