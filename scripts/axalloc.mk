# Host tests of the axalloc member (ArceOS's drop-in allocator crate),
# included by the root Makefile.
#
# Targets:
#   axalloc-test  scripts/axalloc-test.sh: `cargo test -p axalloc` (API,
#                 facade and tracking tests) under every feature set ArceOS
#                 forwards and with the buddy-slab backend, the API test
#                 also checked against the published axalloc 0.3.0-preview.3,
#                 clippy with buddy-slab / hv / tracking / level-1 and the
#                 core's `arceos` binding, the docs, a no_std check of
#                 tracking and hv. Part of `make test`. AXALLOC_SETS="hv tracking" runs
#                 only those feature sets' tests.

AXALLOC_SETS ?=

.PHONY: axalloc-test

axalloc-test:
	scripts/axalloc-test.sh $(AXALLOC_SETS)
