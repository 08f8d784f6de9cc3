# ArceOS kernel targets, included by the top Makefile (`-include scripts/kernel.mk`).
#
# Variables (ArceOS conventions; the top Makefile may set them first):
#   ARCH   riscv64 | aarch64 | x86_64                         (default riscv64)
#   SMP    number of CPUs, also the kernel's max-cpu-num       (default 4)
#   MEM    QEMU memory size                                    (default 128M)
#   LOG    kernel log level: off|error|warn|info|debug|trace   (default warn)
#   ALLOC  heap backend: buddy-slab (this crate, via axalloc's
#          `buddy-slab` feature) | tlsf (stock ArceOS)         (default buddy-slab)
#   A      app directory for kernel-run, as ArceOS's A=    (default tests/kernel;
#          the others: tests/kernel/apps/memtest, tests/kernel/apps/parallel)
#
# Targets:
#   kernel-run    build the app A (tests/kernel) for ARCH and boot it in QEMU,
#                 output on the terminal, no checks (`run` is an alias)
#   kernel-apps   what `make test` runs (scripts/kernel-apps.sh): every ArceOS
#                 app of the tests/kernel workspace (the in-kernel suite,
#                 tests/kernel/apps/memtest, tests/kernel/apps/parallel), each
#                 line of its test_cmd on riscv64, aarch64 and x86_64 with both
#                 backends; the preemptive lines (FEATURES=sched-rr: axtask's
#                 `preempt`) only on KERNEL_PREEMPT_ARCHS (riscv64) with
#                 buddy-slab. 18 + 3 runs, 7 kernel configurations.
#   kernel-apps-full  every line of every app on every arch with both
#                 backends, preemptive lines included: 36 runs, 12 kernel
#                 configurations. Not part of `make test`.
#   kernel-test   the in-kernel suite alone (tests/kernel/test_cmd), its
#                 non-preemptive lines: riscv64, aarch64 and x86_64 with SMP=4
#                 for every backend in KERNEL_TEST_ALLOCS (tlsf and
#                 buddy-slab); LOG=debug so the expect files can check
#                 axalloc's init line
#   kernel-test-bigmem  the same suite with BIGMEM of RAM (default 16G) on
#                 every arch: buddy-slab must pass; the stock backend (tlsf,
#                 bitmap page allocator capped at 256 MiB) is expected to
#                 panic at boot, and the target checks that it does and
#                 shows the line. About 6 minutes (rebuilds for the config);
#                 not part of `make test`.
#   kernel-test-smp  the suite with the most CPUs each QEMU machine takes
#                 here (KERNEL_SMP_MAX: riscv64 8 (the platform config maps
#                 the PLIC for 8 harts; 16 faults at boot), aarch64 8 (GICv2),
#                 x86_64 16), buddy-slab only, with SMP_MEM (512M) of RAM:
#                 at 128M x86_64 with 16 CPUs fails vec_3m's 16 MiB
#                 allocation. Not part of `make test`.
#   kernel-config-test  build riscv64 with configs/seed-classes.toml as the
#                 allocator's knobs file and check that the kernel reports
#                 its 9 size classes (a TOML change changes the kernel)
#   kernel-harness-test  the runner's own checks on canned outputs, no QEMU
#                 (scripts/kernel-harness-test.sh): a wrong expect line, a
#                 `not ok`, a missing KTAP result, a panic each fail; run
#                 first by kernel-apps
#   bench-kernel  in-kernel benchmark (scripts/kernel-bench.sh): builds the
#                 app's `bench` feature for buddy-slab and tlsf, boots each
#                 BENCH_RUNS times (default 3) on ARCH with SMP CPUs, prints
#                 the medians and the ratio and writes
#                 tests/kernel/results/bench-ARCH.md. Not part of `make test`.
#   bench-kernel-all  bench-kernel for riscv64, aarch64 and x86_64
#   bench-kernel-smoke  the benchmark with iteration counts / 100 on riscv64,
#                 buddy-slab, one boot: checks that it runs to `bench done`.
#                 Built in the tests' release profile: right after
#                 kernel-apps only the app crate is rebuilt (`make test`
#                 runs it before kernel-config-test, which changes the
#                 allocator's knobs and so rebuilds the stack).
#   kernel-setup  install the pinned nightly, axconfig-gen and a
#                 project-local QEMU (tools/); the other targets do it too.
#
# Everything they need is installed by scripts/setup-toolchain.sh and
# scripts/setup-qemu.sh (idempotent, fast when done), so a fresh machine
# needs only rustup and apt. One cargo target dir (tests/kernel/target) is
# shared by all apps, arches and backends; nothing is cleaned between them.

ARCH ?= riscv64
SMP ?= 4
MEM ?= 128M
LOG ?= warn
ALLOC ?= buddy-slab
A ?= tests/kernel

KERNEL_TEST_ARCHS ?= riscv64 aarch64 x86_64
KERNEL_TEST_ALLOCS ?= tlsf buddy-slab
KERNEL_PREEMPT_ARCHS ?= riscv64
KERNEL_APPS := scripts/kernel-apps.sh --arch "$(KERNEL_TEST_ARCHS)" --alloc "$(KERNEL_TEST_ALLOCS)"
BENCH_RUNS ?= 3

.PHONY: kernel-setup kernel-run run kernel-apps kernel-apps-full kernel-test kernel-harness-test kernel-config-test bench-kernel bench-kernel-all bench-kernel-smoke kernel-test-bigmem kernel-test-smp

BIGMEM ?= 16G
KERNEL_SMP_MAX ?= riscv64:8 aarch64:8 x86_64:16
SMP_MEM ?= 512M

kernel-setup:
	@scripts/setup-toolchain.sh >/dev/null
	@scripts/setup-qemu.sh >/dev/null

kernel-run:
	APP=$(A) MEM=$(MEM) MODE=run scripts/kernel-test.sh $(ARCH) $(ALLOC) $(SMP) $(LOG)

run: kernel-run

# In `make test`: this heap on every arch; the stock TLSF heap, the control,
# on riscv64 only (kernel-apps-full runs it everywhere), for CI time.
KERNEL_CONTROL_ARCHS ?= riscv64
kernel-apps: kernel-harness-test
	@scripts/kernel-apps.sh --arch "$(KERNEL_TEST_ARCHS)" --alloc buddy-slab --skip FEATURES=sched-rr
	@scripts/kernel-apps.sh --arch "$(KERNEL_CONTROL_ARCHS)" --alloc tlsf --skip FEATURES=sched-rr
	@scripts/kernel-apps.sh --arch "$(KERNEL_PREEMPT_ARCHS)" --alloc buddy-slab --only FEATURES=sched-rr

kernel-apps-full:
	@$(KERNEL_APPS)

kernel-test:
	@$(KERNEL_APPS) --skip FEATURES=sched-rr tests/kernel

kernel-harness-test:
	@scripts/kernel-harness-test.sh

kernel-test-bigmem:
	@for arch in $(KERNEL_TEST_ARCHS); do \
		MEM=$(BIGMEM) TIMEOUT=600 scripts/kernel-test.sh $$arch buddy-slab 4 info || exit 1; \
	done
	@for arch in $(KERNEL_TEST_ARCHS); do \
		log=tests/kernel/target/kernel-test/kernel-$$arch-tlsf-smp4-mem$(BIGMEM).log; \
		if MEM=$(BIGMEM) TIMEOUT=600 scripts/kernel-test.sh $$arch tlsf 4 info >/dev/null 2>&1; then \
			echo "kernel-test-bigmem: stock tlsf passed on $$arch with $(BIGMEM): update the README"; exit 1; \
		fi; \
		grep -a -m1 'bitmap capacity exceeded' $$log || { echo "kernel-test-bigmem: stock tlsf on $$arch failed otherwise, see $$log"; exit 1; }; \
	done
	@echo "kernel-test-bigmem: buddy-slab passed with $(BIGMEM) on $(KERNEL_TEST_ARCHS); stock tlsf panics at boot (256 MiB bitmap)"

kernel-test-smp:
	@for pair in $(KERNEL_SMP_MAX); do \
		MEM=$(SMP_MEM) TIMEOUT=900 scripts/kernel-test.sh $${pair%%:*} buddy-slab $${pair##*:} info || exit 1; \
	done
	@echo "kernel-test-smp: buddy-slab passed with $(KERNEL_SMP_MAX)"

# The knobs come from a table of the kernel's own axconfig.
kernel-config-test:
	EXTRA_CONFIG=$(CURDIR)/tests/kernel/configs/seed-classes.toml \
		EXPECT=$(CURDIR)/tests/kernel/expect_info_smp4_fifo_seed-classes.out \
		MEM=$(MEM) scripts/kernel-test.sh riscv64 buddy-slab 4 info

bench-kernel:
	SMP=$(SMP) MEM=$(MEM) scripts/kernel-bench.sh $(ARCH) $(BENCH_RUNS)

bench-kernel-all:
	@for arch in $(KERNEL_TEST_ARCHS); do \
		SMP=$(SMP) MEM=$(MEM) scripts/kernel-bench.sh $$arch $(BENCH_RUNS) || exit 1; \
	done

bench-kernel-smoke:
	SMOKE=1 SMP=4 MEM=$(MEM) scripts/kernel-bench.sh riscv64
