# pimodule — laptop side and tests. `make demo` and `make test` work on a fresh Debian 12 machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DATA    ?= data
RUNS    ?= runs
OUT     ?= out
# Minutes of training per instrument for `make models` (the DDSP issue's budget is 15).
TRAIN_MINUTES ?= 14

.PHONY: demo test models small-models fx-models fx-eval venv system-deps clean-venv bench eval help

help:
	@echo "make demo    set up, then timbre transfer + a few seconds of the daemon (writes $(OUT)/)"
	@echo "make test    the test suite"
	@echo "make models  render data, train, export export/violin.onnx and export/flute.onnx"
	@echo "make bench   real-time benchmark of the models in export/"
	@echo "make fx-eval score the shipped effect estimators on held-out material (~30 min)"

$(BIN)/pimodule: pyproject.toml
	@command -v fluidsynth >/dev/null && command -v jackd >/dev/null || $(MAKE) system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[device,train,dev]'
	touch $@

venv: $(BIN)/pimodule

system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $$(grep -v '^#' apt-packages.txt) >/dev/null; \
	else \
	  echo "install these Debian packages first: $$(grep -v '^#' apt-packages.txt | tr '\n' ' ')"; \
	fi

test: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider

export/violin.onnx export/flute.onnx: | venv
	$(MAKE) models

models: venv
	$(BIN)/pimodule data render --program violin --out $(DATA)/violin --seed 0 --n-phrases 80
	$(BIN)/pimodule data render --program flute --out $(DATA)/flute --seed 100 --n-phrases 80
	# both voices train at once, one thread each (configs/ddsp.toml): the two cores are used fully
	$(MAKE) -j2 train-violin train-flute
	$(BIN)/pimodule eval ddsp export/violin.onnx export/flute.onnx --data $(DATA)/violin $(DATA)/flute --json export/ddsp_eval.json

# Smaller voices (GRU 64 instead of 128) for tight real-time budgets: export/<voice>-small.onnx
small-models: venv
	$(MAKE) -j2 small-violin small-flute
	$(BIN)/pimodule eval ddsp export/violin-small.onnx export/flute-small.onnx --data $(DATA)/violin $(DATA)/flute --json export/ddsp_small_eval.json

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
	$(BIN)/pimodule export $(RUNS)/fx_blind --out export/fx.onnx
	rm -rf $(RUNS)/fx_dry_wide && cp -r $(RUNS)/fx_dry $(RUNS)/fx_dry_wide
	$(BIN)/pimodule train fx --out $(RUNS)/fx_dry_wide --resume --config configs/fx_dry_wide.toml
	$(BIN)/pimodule export $(RUNS)/fx_dry_wide --out export/fx-dry.onnx
	$(BIN)/pimodule eval fx $(addprefix $(RUNS)/,$(FX_RUNS) fx_dry_wide) --n-examples 256 --out $(OUT)/fx_eval_runs
	$(MAKE) fx-eval

# The shipped estimators as the module runs them (onnxruntime), on 256 held-out examples;
# fx-dry.onnx also checked as the daemon checks it (--check, numpy twins) and refined by analysis
# by synthesis on the laptop (--refine, torch): about 30 min on 2 cores.
fx-eval: venv
	$(BIN)/pimodule eval fx export/fx.onnx export/fx-dry.onnx --n-examples 256 --check --refine --out $(OUT)/fx_eval
	cp $(OUT)/fx_eval/results.json export/fx_eval.json

demo: venv export/violin.onnx export/flute.onnx
	$(BIN)/pimodule demo --out $(OUT)

bench: venv
	$(BIN)/pimodule bench --out $(OUT)/bench.json

clean-venv:
	rm -rf $(VENV)
