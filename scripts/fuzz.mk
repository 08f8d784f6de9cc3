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
#   miri        Miri on the unit, integration and property tests (reduced
#               sizes under cfg(miri)), with and without debug checks
#   miri-smoke  the Miri subset CI runs (the buddy and slab suites)
#   faults      the fault matrix, with and without debug checks
#   setup-fuzz  install the pinned nightly, Miri and cargo-fuzz

FUZZ_SECONDS ?= 60
NIGHTLY ?= nightly-2026-05-20
export NIGHTLY

# Miri: the allocator deals in addresses (`alloc_pages` returns a `usize`,
# `add_slab` takes one, as in 0.6), so pointers are rebuilt from integers
# that were exposed when the region came in: exposed (permissive)
# provenance, not strict. Test arenas are leaked on purpose (the heap owns
# them until the process ends): leaks are not errors.
MIRIFLAGS_ALLOC := -Zmiri-permissive-provenance -Zmiri-ignore-leaks
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

miri: setup-fuzz
	$(MIRI) --lib --test buddy --test slab --test global --test faults --test model --test stress
	$(MIRI) --features debug-checks --test faults --test slab

# Under Miri the exhaustive reciprocal unit test takes ~3 min and the slab
# and fault suites several; CI runs the buddy suite (37 s) only.
miri-smoke: setup-fuzz
	$(MIRI) --test buddy --test slab
