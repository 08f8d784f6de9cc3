# Robustness targets (issue 5), included by the root Makefile.
#
# Variables:
#   FUZZ_SECONDS  seconds per fuzz target for `make fuzz`        (default 60)
#   NIGHTLY       toolchain for cargo-fuzz and Miri  (default nightly-2026-05-20)
#   LOOM_MAX_PREEMPTIONS  loom's preemption bound               (default 5)
#
# Targets:
#   fuzz        each cargo-fuzz target (buddy, slab, global) for FUZZ_SECONDS
#   fuzz-smoke  each target for 15 s (CI)
#   fuzz-seeds  minimise each target's corpus (cargo fuzz cmin) and store it
#               as the committed seeds, fuzz/seeds.tar.gz
#   loom        the loom model of the remote-free path (tests/loom.rs)
#   miri        Miri (strict provenance) on the unit, integration, property
#               and stress tests (reduced sizes under cfg(miri)), with and
#               without debug checks
#   miri-smoke  the Miri subset CI runs: the same suites without debug
#               checks
#   faults      the fault matrix, with and without debug checks
#   setup-fuzz  install the pinned nightly, Miri and cargo-fuzz

FUZZ_SECONDS ?= 60
NIGHTLY ?= nightly-2026-05-20
export NIGHTLY

# Miri with strict provenance: the allocator never turns an integer into a
# pointer; every pointer into a region is derived (`with_addr`) from the
# pointer the region came in as. The tests use the pointer-typed entry
# points (`alloc_pages_ptr`, `add_slab_ptr`); the 0.6 address-typed
# `add_slab` rebuilds its pointer from exposed provenance, so its one test
# is ignored under Miri. Test arenas are leaked on purpose (the heap owns
# them until the process ends): leaks are not errors.
MIRIFLAGS_ALLOC := -Zmiri-strict-provenance -Zmiri-ignore-leaks
MIRI := MIRIFLAGS="$(MIRIFLAGS_ALLOC)" cargo +$(NIGHTLY) miri test
LOOM := RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom

.PHONY: fuzz fuzz-smoke fuzz-seeds loom miri miri-smoke faults setup-fuzz

setup-fuzz:
	@scripts/setup-fuzz.sh

fuzz: setup-fuzz
	scripts/fuzz-run.sh $(FUZZ_SECONDS)

fuzz-smoke: setup-fuzz
	scripts/fuzz-run.sh 15

fuzz-seeds: setup-fuzz
	cd fuzz && for t in buddy slab global; do \
		cargo +$(NIGHTLY) fuzz cmin $$t corpus/$$t || exit 1; \
	done && tar -czf seeds.tar.gz -C corpus buddy slab global

loom:
	$(LOOM) -- --nocapture --test-threads 1

faults:
	cargo test --test faults
	cargo test --features debug-checks --test faults

MIRI_SUITES := --lib --test buddy --test slab --test global --test faults --test model --test stress \
	--test stats --test misuse

miri: setup-fuzz
	$(MIRI) $(MIRI_SUITES)
	$(MIRI) --features debug-checks --test faults --test slab

# Measured on 2 shared cores (seconds of Miri): unit 2 (the exhaustive
# object-index test, pure arithmetic, is skipped), buddy 23, slab 20,
# facade 80, faults 51, model 43, stress 63: about 4.5 minutes in all.
miri-smoke: setup-fuzz
	$(MIRI) $(MIRI_SUITES)
