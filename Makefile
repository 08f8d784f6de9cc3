# buddy-slab-allocator — build, test and run.
#
# Variables (ArceOS conventions; used by the kernel targets):
#   ARCH   target architecture: riscv64 | aarch64 | x86_64   (default riscv64)
#   SMP    number of CPUs QEMU emulates                        (default 4)
#   MEM    QEMU memory size                                   (default 128M)
#   LOG    kernel log level: off|error|warn|info|debug|trace  (default warn)
#   ALLOC  kernel heap backend: buddy-slab | tlsf             (default buddy-slab)
#
# Targets:
#   test        everything CI runs (the README's test command)
#   host-test   formatting, lints, host unit/integration/property/stress tests
#   axalloc-test  the axalloc member under every feature set (scripts/axalloc.mk)
#   ax-alloc-test the ax-alloc member (tgoskits line) under every feature set,
#               its API checked against the published crate (scripts/ax-alloc.mk)
#   cross       no_std builds for the three kernel targets
#   bench       side-by-side benchmark (scripts/bench.mk)
#   fuzz, loom, miri, faults   robustness checks (scripts/fuzz.mk)
#   run         boot an ArceOS kernel with this heap (scripts/kernel.mk)
#   kernel-apps the ArceOS apps of tests/kernel on QEMU, test_cmd lines on
#               three arches, both backends (scripts/kernel.mk; in `test`);
#               kernel-apps-full: every test_cmd line (see scripts/kernel.mk)
#   scale       1/16/64 GiB arenas, 64 threads, per-CPU memory figures
#               (optimised, printed; ~10 s; not part of `test`)
#   churn       CHURN_SECS (default 180) of churn: plot/results/churn.csv and
#               plot/results/churn.svg (not part of `test`)
#   kernel-test-bigmem, kernel-test-smp: see scripts/kernel.mk
#   bench-kernel  in-kernel benchmark on QEMU, buddy-slab vs tlsf (scripts/kernel.mk)
#   kernel-tgoskits-test, kernel-tgoskits-ci, bench-kernel-tgoskits, tgoskits-run,
#   tgoskits-all  the same for the tgoskits line, ax-std 0.7 / ax-alloc 0.9
#               (scripts/kernel-tgoskits.mk)

ARCH ?= riscv64
SMP ?= 4
MEM ?= 128M
LOG ?= warn
ALLOC ?= buddy-slab

CROSS_TARGETS := riscv64gc-unknown-none-elf aarch64-unknown-none-softfloat x86_64-unknown-none

.PHONY: test host-test setup-host fmt-check clippy doc unit config-test cross scale churn

CHURN_SECS ?= 180

test: host-test axalloc-test cross faults loom miri-smoke fuzz-smoke bench-smoke kernel-apps bench-kernel-smoke kernel-config-test ax-alloc-test kernel-tgoskits-ci

host-test: setup-host fmt-check clippy doc unit config-test

setup-host:
	@scripts/setup-host.sh

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# The crate docs (README included) build without broken links.
doc:
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p buddy-slab-allocator

# Debug build first (debug assertions on), then the heavy property and
# stress tests again optimised, and the CPU-time comparison with glibc.
unit:
	cargo test --workspace
	cargo test --release --test model --test stress --test oversubscription

# The knob layers reach the build (build.rs): the same test built against a
# second file, then with a kernel axconfig on top, must see their values
# (a target dir apart from the default build's: no rebuild ping-pong); a
# misspelt or mistyped knob in a kernel's table fails the build, naming it.
CONFIG_LAYERS := $(CURDIR)/tests/config-layers
config-test:
	BUDDY_SLAB_CONFIG=$(CURDIR)/configs/seed-classes.toml BSA_EXPECT_CLASSES=9 \
		CARGO_TARGET_DIR=target/config-test cargo test --test config
	BUDDY_SLAB_CONFIG=$(CURDIR)/configs/seed-classes.toml BSA_EXPECT_CLASSES=9 BSA_EXPECT_KERNEL=1 \
		AX_CONFIG_PATH=$(CONFIG_LAYERS)/kernel.axconfig.toml \
		CARGO_TARGET_DIR=target/config-test cargo test --test config
	@for bad in misspelt:page-cache-hihg mistyped:page-cache-high; do \
		out=$$(AX_CONFIG_PATH=$(CONFIG_LAYERS)/$${bad%%:*}.axconfig.toml \
			CARGO_TARGET_DIR=target/config-test cargo build --lib 2>&1) && \
			{ echo "config-test: $${bad%%:*} knob accepted"; exit 1; }; \
		echo "$$out" | grep -q "buddy-slab-cpu.$${bad##*:}" || \
			{ echo "config-test: $${bad%%:*} knob not named:"; echo "$$out" | tail -5; exit 1; }; \
	done; echo "config-test: misspelt and mistyped kernel knobs fail the build"

cross:
	@for t in $(CROSS_TARGETS); do \
		echo "cargo build --no-default-features --target $$t"; \
		cargo build --no-default-features --target $$t || exit 1; \
	done

scale:
	cargo test --release --test scale --test contention --test percpu_memory -- \
		--include-ignored --nocapture --test-threads 1

churn:
	CHURN_SECS=$(CHURN_SECS) CHURN_CSV=$(CURDIR)/plot/results/churn.csv \
		cargo test --release --test churn churn_long -- --ignored --nocapture
	cargo run --release -q -p scale-plot -- plot/results/churn.csv plot/results/churn.svg

-include scripts/axalloc.mk
-include scripts/kernel.mk
-include scripts/ax-alloc.mk
-include scripts/kernel-tgoskits.mk
-include scripts/bench.mk
-include scripts/fuzz.mk
