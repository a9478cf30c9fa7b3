# The emulated Raspberry Pi (firmware/emu/README.md), included by the Makefile. All three need
# root (debootstrap, chroot, binfmt_misc); pi-check and pi-bench also the host venv (make venv).
PI_EMU := firmware/emu
PI_CHECK_ARGS ?=
PI_BENCH_ARGS ?=

.PHONY: pi-root pi-check pi-bench

# the arm64 Debian 12 root, cached outside the repository, built when missing (3-13 min)
pi-root:
	$(PI_EMU)/pi-root.sh

# provision.sh -> the service plays -> parity with x86_64 -> SIGILL matrix -> device tests
# (.ci/run runs it beside make test; its time is in docs/results.md)
pi-check: venv
	$(PI_EMU)/pi-check.sh $(PI_CHECK_ARGS)

# executed aarch64 instructions per second of audio, per frame and to first sound (about 2 h)
pi-bench: venv
	$(PI_EMU)/pi-bench.sh $(PI_BENCH_ARGS)
