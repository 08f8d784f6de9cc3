# Kernel targets of the tgoskits ArceOS line (ax-std 0.7.5, ax-runtime
# 0.13.5, ax-alloc 0.9; tests/kernel-tgoskits), included by the top
# Makefile (`-include scripts/kernel-tgoskits.mk`). The 0.3 line's are in
# scripts/kernel.mk.
#
# Variables (the top Makefile may set them first):
#   ARCH   riscv64 | aarch64 | x86_64                         (default riscv64)
#   SMP    number of CPUs, also the kernel's CPU capacity     (default 4)
#   MEM    QEMU memory size                                    (default 128M)
#   LOG    kernel log level: off|error|warn|info|debug|trace   (default warn)
#   ALLOC  heap: buddy-slab (this crate, ax-alloc/ patched in) | tlsf
#          (ax-alloc/'s stock TLSF) | seed | seed-tlsf (the published
#          ax-alloc's own backends, unpatched)           (default buddy-slab)
#
# Targets:
#   tgoskits-run       build tests/kernel-tgoskits for ARCH and boot it in
#                      QEMU, output on the terminal, no checks
#   kernel-tgoskits-test  build, boot and check the suite on riscv64,
#                      aarch64 and x86_64 with SMP=4, for tlsf and buddy-slab
#                      (6 kernels; about 25 minutes from clean on 2 cores,
#                      2-3 minutes when built). Fails on the first failure.
#   kernel-tgoskits-ci the CI-sized subset that `make test` runs: riscv64
#                      with both heaps and the benchmark smoke (about 9
#                      minutes from clean, 2 when built; see the README's
#                      Testing section for the measurement)
#   bench-kernel-tgoskits  in-kernel benchmark on ARCH
#                      (scripts/kernel-tgoskits-bench.sh): buddy-slab, tlsf
#                      and the published ax-alloc's buddy-slab backend (the
#                      seed), BENCH_RUNS boots each (default 3), medians and
#                      ratios, written to tests/kernel-tgoskits/results/
#   bench-kernel-tgoskits-all  the benchmark on the three arches
#   bench-kernel-tgoskits-smoke  the benchmark with iteration counts / 100
#                      on riscv64, buddy-slab, one boot: checks that it runs
#                      to `bench done` (in the tests' profile: right after
#                      the tests only the app crate is rebuilt)
#   tgoskits-all       everything of the line: ax-alloc-test, the full suite
#                      matrix and the benchmark on every arch (over an hour)
#   tgoskits-setup     install the pinned nightly, libclang-dev, OVMF and
#                      QEMU; the other targets do it too
#
# Everything they need is installed by scripts/setup-tgoskits.sh and
# scripts/setup-qemu.sh (idempotent, fast when done). One cargo target dir
# (tests/kernel-tgoskits/target) is shared by every arch and heap.

ARCH ?= riscv64
SMP ?= 4
MEM ?= 128M
LOG ?= warn
ALLOC ?= buddy-slab
BENCH_RUNS ?= 3

TGOSKITS_ARCHS ?= riscv64 aarch64 x86_64
TGOSKITS_ALLOCS ?= tlsf buddy-slab

.PHONY: tgoskits-setup tgoskits-run kernel-tgoskits-test kernel-tgoskits-ci bench-kernel-tgoskits bench-kernel-tgoskits-all bench-kernel-tgoskits-smoke tgoskits-all

tgoskits-setup:
	@scripts/setup-tgoskits.sh >/dev/null
	@scripts/setup-qemu.sh >/dev/null

tgoskits-run:
	MEM=$(MEM) MODE=run scripts/kernel-tgoskits-test.sh $(ARCH) $(ALLOC) $(SMP) $(LOG)

kernel-tgoskits-test:
	@for alloc in $(TGOSKITS_ALLOCS); do \
		for arch in $(TGOSKITS_ARCHS); do \
			MEM=$(MEM) scripts/kernel-tgoskits-test.sh $$arch $$alloc 4 info || exit 1; \
		done; \
	done
	@echo "kernel-tgoskits-test: all passed ($(TGOSKITS_ARCHS) x $(TGOSKITS_ALLOCS), SMP=4)"

kernel-tgoskits-ci:
	@$(MAKE) --no-print-directory kernel-tgoskits-test TGOSKITS_ARCHS=riscv64
	@$(MAKE) --no-print-directory bench-kernel-tgoskits-smoke

bench-kernel-tgoskits:
	SMP=$(SMP) MEM=$(MEM) scripts/kernel-tgoskits-bench.sh $(ARCH) $(BENCH_RUNS)

bench-kernel-tgoskits-all:
	@for arch in $(TGOSKITS_ARCHS); do \
		SMP=$(SMP) MEM=$(MEM) scripts/kernel-tgoskits-bench.sh $$arch $(BENCH_RUNS) || exit 1; \
	done

bench-kernel-tgoskits-smoke:
	SMOKE=1 SMP=4 MEM=$(MEM) scripts/kernel-tgoskits-bench.sh riscv64

tgoskits-all: ax-alloc-test kernel-tgoskits-test bench-kernel-tgoskits-all
