# Host tests of the ax-alloc member (the tgoskits line's drop-in for the
# published ax-alloc 0.9.2), included by the root Makefile.
#
# Targets:
#   ax-alloc-test  scripts/ax-alloc-test.sh: `cargo test -p ax-alloc` (unit,
#                  API and heap tests) under every feature set the line
#                  forwards, the API test also checked against the published
#                  ax-alloc 0.9.2, clippy, the docs, the core's `tgoskits`
#                  binding and a warnings-denied no_std check for riscv64.
#                  Part of `make test`. AX_ALLOC_SETS="tlsf buddy-slab" runs
#                  only those feature sets' tests.

AX_ALLOC_SETS ?=

.PHONY: ax-alloc-test

ax-alloc-test:
	scripts/ax-alloc-test.sh $(AX_ALLOC_SETS)
