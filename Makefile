# pimodule — laptop side and tests. `make demo` and `make test` work on a fresh Debian 12 machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DATA    ?= data
RUNS    ?= runs
OUT     ?= out
# Minutes of training per instrument for `make models` (the DDSP issue's budget is 15).
TRAIN_MINUTES ?= 14

.PHONY: help demo test lint format results models small-models int8-models fx-models fx-eval transfer-eval bench venv system-deps clean-venv

help:
	@echo "make demo          set up, then timbre transfer + a few seconds of the daemon (writes $(OUT)/)"
	@echo "make test          lint (ruff), the results page up to date, and the test suite"
	@echo "make lint          ruff check and ruff format --check"
	@echo "make format        ruff format and the safe fixes"
	@echo "make results       docs/results.md from docs/results/*.json"
	@echo "make models        render data, train, export export/violin.onnx and export/flute.onnx (about 30 min)"
	@echo "make small-models  the GRU-64 voices export/*-small.onnx"
	@echo "make int8-models   the violin with int8 weights, export/violin-int8.onnx, and its held-out score"
	@echo "make fx-models     train and export the effect estimators (about 8 h)"
	@echo "make fx-eval       score the shipped effect estimators on held-out cases and real recordings (about 1.5 h)"
	@echo "make bench         real-time response of the models in export/ on this machine"
	@echo "make transfer-eval transfer mode's analysis on the module against every-frame analysis, real recordings"
	@echo "make pi-root       the emulated Raspberry Pi: an arm64 Debian 12 root under QEMU (as root)"
	@echo "make pi-check      provision.sh -> the service plays on the emulated Pi, SIGILL matrix, device tests"
	@echo "make pi-bench      executed aarch64 instructions per second of audio (docs/results/pi_bench.json)"

$(BIN)/pimodule: pyproject.toml
	@command -v fluidsynth >/dev/null && command -v jackd >/dev/null || $(MAKE) system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[device,train,dev]'
	# the real-time engine into numba's cache now, not at the first start (about a minute)
	$(BIN)/python -m pimodule.device.rt.warm
	touch $@

venv: $(BIN)/pimodule

system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $$(grep -v '^#' apt-packages.txt) >/dev/null; \
	else \
	  echo "install these Debian packages first: $$(grep -v '^#' apt-packages.txt | tr '\n' ' ')"; \
	fi

test: venv lint
	$(BIN)/python -m pimodule.laptop.results_page --check
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check pimodule tests
	$(BIN)/ruff format --check pimodule tests

format: venv
	$(BIN)/ruff check --fix pimodule tests
	$(BIN)/ruff format pimodule tests

results: venv
	$(BIN)/python -m pimodule.laptop.voice_variants
	$(BIN)/python -m pimodule.laptop.results_page

export/violin.onnx export/flute.onnx: | venv
	$(MAKE) models

models: venv
	$(BIN)/pimodule data render --program violin --out $(DATA)/violin --seed 0 --n-phrases 80
	$(BIN)/pimodule data render --program flute --out $(DATA)/flute --seed 100 --n-phrases 80
	# both voices train at once, one thread each (configs/ddsp.toml): the two cores are used fully
	$(MAKE) -j2 train-violin train-flute
	$(BIN)/pimodule eval ddsp export/violin.onnx export/flute.onnx --data $(DATA)/violin $(DATA)/flute --json docs/results/ddsp_eval.json
	$(BIN)/python -m pimodule.laptop.results_page --stamp docs/results/ddsp_eval.json --kind ddsp_eval \
		--title "DDSP voices: held-out resynthesis" --command "make models"

# The violin with int8 weights (the compiled engine reads them as int8: 384 kB, inside a
# Cortex-A53's L2), scored side by side with the float32 violin on the same held-out phrases
export/violin-int8.onnx: export/violin.onnx | venv
	$(BIN)/pimodule quantize export/violin.onnx --out export/violin-int8.onnx

int8-models: export/violin-int8.onnx
	test -d $(DATA)/violin || $(BIN)/pimodule data render --program violin --out $(DATA)/violin --seed 0 --n-phrases 80
	$(BIN)/pimodule eval ddsp export/violin-int8.onnx export/violin.onnx --data $(DATA)/violin $(DATA)/violin --json docs/results/ddsp_int8_eval.json
	$(BIN)/python -m pimodule.laptop.results_page --stamp docs/results/ddsp_int8_eval.json --kind ddsp_eval \
		--title "DDSP voices, int8 weights, beside float32 (one run)" --command "make int8-models"

# Smaller voices (GRU 64 instead of 128) for tight real-time budgets: export/<voice>-small.onnx
small-models: venv
	$(MAKE) -j2 small-violin small-flute
	$(BIN)/pimodule eval ddsp export/violin-small.onnx export/flute-small.onnx --data $(DATA)/violin $(DATA)/flute --json docs/results/ddsp_small_eval.json
	$(BIN)/python -m pimodule.laptop.results_page --stamp docs/results/ddsp_small_eval.json --kind ddsp_eval \
		--title "DDSP voices, GRU 64 (-small)" --command "make small-models"

small-%: venv
	$(BIN)/pimodule train ddsp --data $(DATA)/$* --out $(RUNS)/$*_small --config configs/ddsp_small.toml --max-minutes 12
	$(BIN)/pimodule export $(RUNS)/$*_small --out export/$*-small.onnx

train-%: venv
	$(BIN)/pimodule train ddsp --data $(DATA)/$* --out $(RUNS)/$* --config configs/ddsp.toml --max-minutes $(TRAIN_MINUTES)
	$(BIN)/pimodule export $(RUNS)/$* --out export/$*.onnx

# The effect estimators: the recipes in configs/fx_*.toml (what ships and the runs it is compared
# with: audio vs parameter loss, blind / dry / reference conditioning); about 8 h on 2 cores.
FX_RUNS = fx_blind fx_blind_param fx_dry fx_dry_param fx_ref
fx-models: venv
	for r in $(FX_RUNS); do $(BIN)/pimodule train fx --out $(RUNS)/$$r --config configs/$$r.toml || exit 1; done
	$(BIN)/pimodule export $(RUNS)/fx_blind --out export/fx.onnx  # the world recipe starts from it
	rm -rf $(RUNS)/fx_dry_wide && cp -r $(RUNS)/fx_dry $(RUNS)/fx_dry_wide
	$(BIN)/pimodule train fx --out $(RUNS)/fx_dry_wide --resume --config configs/fx_dry_wide.toml
	$(BIN)/pimodule export $(RUNS)/fx_dry_wide --out export/fx-dry.onnx
	$(BIN)/pimodule eval fx $(addprefix $(RUNS)/,$(FX_RUNS) fx_dry_wide) --n-examples 256 --out $(OUT)/fx_eval_runs
	# trained for real recordings from those weights (pedalboard and Faust chains; at most 150 min
	# each); chosen on tuning examples (training recordings through those families), never on the
	# benchmark: both ship (experiments.md)
	for r in fx_blind_world fx_dry_world; do $(BIN)/pimodule train fx --out $(RUNS)/$$r --config configs/$$r.toml || exit 1; done
	$(BIN)/pimodule export $(RUNS)/fx_dry_world --out export/fx-dry.onnx
	$(BIN)/pimodule export $(RUNS)/fx_blind_world --out export/fx.onnx
	$(BIN)/python -m pimodule.laptop.fx.calibrate export/fx.onnx
	# the reference-conditioned estimator (style transfer), from scratch, 45 min at most
	$(BIN)/pimodule train fx --out $(RUNS)/fx_ref_world --config configs/fx_ref_world.toml
	$(BIN)/pimodule export $(RUNS)/fx_ref_world --out export/fx-ref.onnx --name fx-ref
	$(MAKE) fx-eval

# The shipped estimators as the module runs them (onnxruntime): on the project's held-out cases (256
# examples per case; fx-dry.onnx also checked as the daemon checks it and refined as the laptop
# does, on the first 64), and on the real-recording benchmark (--real: recordings never trained on,
# from alsa-utils, puredata-doc, supercollider-common and pyo, through chains of pedalboard, the sox
# CLI and dasp-pytorch; SoX and dasp-pytorch are never seen in training or tuning). About 1.5 h.
FX_EVAL_MODELS ?= export/fx.onnx export/fx-dry.onnx export/fx-ref.onnx
transfer-eval: venv
	$(BIN)/python -m pip install -q pyo==1.1.0
	$(BIN)/python -m pimodule.laptop.analysis_eval --json docs/results/transfer_analysis.json
	$(BIN)/python -m pimodule.laptop.results_page --stamp docs/results/transfer_analysis.json --kind transfer_analysis \
		--title "Transfer mode's analysis: knots against every frame" --command "make transfer-eval"

fx-eval: venv
	$(BIN)/python -m pip install -q pyo==1.1.0 dasp-pytorch==0.0.1
	$(BIN)/pimodule eval fx $(FX_EVAL_MODELS) --n-examples 256 --improve-examples 64 --check --refine --real \
		--out $(OUT)/fx_eval
	cp $(OUT)/fx_eval/results.json docs/results/fx_eval.json
	cp $(OUT)/fx_eval/real.json docs/results/fx_real.json
	$(BIN)/python -m pimodule.laptop.results_page --stamp docs/results/fx_eval.json --kind fx_eval \
		--title "Effect estimators on the project's held-out cases" --command "make fx-eval"
	$(BIN)/python -m pimodule.laptop.results_page --stamp docs/results/fx_real.json --kind fx_real \
		--title "Effect estimators on real recordings through third-party effects" --command "make fx-eval"

demo: venv export/violin.onnx export/flute.onnx
	$(BIN)/pimodule demo --out $(OUT)

# Response of every shipped voice on this machine, both engines, idle and loaded, and a 10-minute
# soak of the compiled engine under every load (about 20 min): docs/results/bench.json
bench: venv
	# the soak plays the first voice at the first block size: violin at 128 frames
	$(BIN)/pimodule bench export/violin.onnx export/flute.onnx export/violin-small.onnx export/flute-small.onnx \
		export/violin-int8.onnx export/fx.onnx export/fx-dry.onnx --block-sizes 128 64 256 --realtime-server --soak 600 --out docs/results/bench.json
	$(BIN)/python -m pimodule.laptop.results_page --stamp docs/results/bench.json --kind bench \
		--title "Real-time response (pimodule bench)" --command "make bench"
	$(MAKE) results  # the variants table reads the bench's p99

include firmware/emu/pi.mk

clean-venv:
	rm -rf $(VENV)
