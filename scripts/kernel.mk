# ArceOS kernel targets, included by the top Makefile (`-include scripts/kernel.mk`).
#
# Variables (ArceOS conventions; the top Makefile may set them first):
#   ARCH   riscv64 | aarch64 | x86_64                         (default riscv64)
#   SMP    number of CPUs, also the kernel's max-cpu-num       (default 4)
#   MEM    QEMU memory size                                    (default 128M)
#   LOG    kernel log level: off|error|warn|info|debug|trace   (default warn)
#   ALLOC  heap backend: buddy-slab (this crate, via axalloc's
#          `buddy-slab` feature) | tlsf (stock ArceOS)         (default buddy-slab)
#
# Targets:
#   kernel-run    build tests/kernel for ARCH and boot it in QEMU, output on
#                 the terminal, no checks (`run` is an alias)
#   kernel-test   build, boot and check tests/kernel on riscv64, aarch64 and
#                 x86_64 with SMP=4, for every backend in KERNEL_TEST_ALLOCS
#                 (tlsf and buddy-slab); LOG=debug so the expect files can
#                 check axalloc's init line. Fails on the first failure.
#   kernel-config-test  build riscv64 with configs/seed-classes.toml as the
#                 allocator's knobs file and check that the kernel reports
#                 its 9 size classes (a TOML change changes the kernel)
#   kernel-setup  install the pinned nightly, axconfig-gen and a
#                 project-local QEMU (tools/); the other targets do it too.
#
# Everything they need is installed by scripts/setup-toolchain.sh and
# scripts/setup-qemu.sh (idempotent, fast when done), so a fresh machine
# needs only rustup and apt. One cargo target dir (tests/kernel/target) is
# shared by all arches and backends; nothing is cleaned between them.

ARCH ?= riscv64
SMP ?= 4
MEM ?= 128M
LOG ?= warn
ALLOC ?= buddy-slab

KERNEL_TEST_ARCHS ?= riscv64 aarch64 x86_64
KERNEL_TEST_ALLOCS ?= tlsf buddy-slab

.PHONY: kernel-setup kernel-run run kernel-test kernel-config-test

kernel-setup:
	@scripts/setup-toolchain.sh >/dev/null
	@scripts/setup-qemu.sh >/dev/null

kernel-run:
	MEM=$(MEM) MODE=run scripts/kernel-test.sh $(ARCH) $(ALLOC) $(SMP) $(LOG)

run: kernel-run

kernel-test:
	@for alloc in $(KERNEL_TEST_ALLOCS); do \
		for arch in $(KERNEL_TEST_ARCHS); do \
			MEM=$(MEM) scripts/kernel-test.sh $$arch $$alloc 4 debug || exit 1; \
		done; \
	done
	@echo "kernel-test: all passed ($(KERNEL_TEST_ARCHS) x $(KERNEL_TEST_ALLOCS), SMP=4)"

kernel-config-test:
	BUDDY_SLAB_CONFIG=$(CURDIR)/configs/seed-classes.toml \
		EXPECT=$(CURDIR)/tests/kernel/expect/buddy-slab-seed-classes.out \
		MEM=$(MEM) scripts/kernel-test.sh riscv64 buddy-slab 4 info
