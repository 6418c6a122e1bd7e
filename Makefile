# most: one target per pipeline stage. `make demo` runs them all on the embedded default.
#   make <stage> RUN=runs/<name> RECIPE=recipes/<family> ARGS="--section.key=value ..."
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MOST := $(BIN)/most
RUN ?= runs/demo
ABLATION ?= runs/ablation
RECIPE ?= recipes/tiny
ARGS ?=
STAMP := $(VENV)/.installed

STAGES := data units judge base adapt stage1 stage2 eval release
# ARGS_<stage> reach the demo loop's shell, which reads them with shell quoting (see demo).
export $(foreach s,$(STAGES),ARGS_$(s))

.PHONY: setup test test-slow test-gpu lint format demo ablation bench clean $(STAGES)

setup: $(STAMP)

# System packages first (espeak-ng speaks the corpus, sox inspects audio), then the venv.
$(STAMP): pyproject.toml
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null || { \
		echo "installing espeak-ng and sox (Debian)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng sox >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: any other torch spec resolves to a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# CUDA checks (tests marked gpu; they fail, not skip, without a CUDA device): grouped experts and
# the adapted model against the CPU, greedy decoding, bf16-mixed stage-1 training vs fp32 on CPU.
test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each stage reads $(RUN)/<previous stage> and writes $(RUN)/<stage>; re-running a finished stage
# is a no-op unless FORCE=1.
$(STAGES): setup
	$(MOST) $@ --config $(RECIPE)/$@.yaml --run $(RUN) $(if $(FORCE),--force=true) $(ARGS)

# The whole pipeline on the embedded default, stage by stage. Finished stages are skipped, so an
# interrupted demo resumes; each stage's wall time goes to $(RUN)/timings.tsv (the summary takes
# the last line per stage; a stage skipped as already finished keeps the time of the call that ran
# it, so a resumed demo still reports the whole pipeline's time). The summary marks the quality bar
# pass/fail; a missed target does not fail the target (the pipeline worked). ARGS_<stage> adds
# arguments to one stage only, e.g. ARGS_stage1="--trainer.max_steps=4800" (README).
demo: setup
	@mkdir -p $(RUN); touch $(RUN)/timings.tsv
	@for s in $(STAGES); do \
		if [ -f $(RECIPE)/$$s.yaml ]; then \
			echo "=== most $$s ($$(date +%H:%M:%S)) ==="; t0=$$(date +%s); \
			v=ARGS_$$s; eval "extra=( $${!v} )" || exit $$?; \
			$(MOST) $$s --config $(RECIPE)/$$s.yaml --run $(RUN) $(ARGS) "$${extra[@]}" || exit $$?; \
			dt=$$(( $$(date +%s) - t0 )); \
			if [ $$dt -ge 15 ] || ! awk -F'\t' -v s=$$s '$$1 == s {f = 1} END {exit !f}' \
				$(RUN)/timings.tsv; then printf '%s\t%s\n' $$s $$dt >> $(RUN)/timings.tsv; fi; \
		fi; \
	done
	@$(BIN)/python -m most.eval.summary $(RUN)/eval/report.json $(RUN)/timings.tsv || true
	@echo "report: $(RUN)/eval/report.md   release: $(RUN)/release"

# Issue 8: adapt -> stage1 -> eval once per experts variant, from the finished $(RUN) (run
# `make demo` first); the table lands in $(ABLATION)/report.md. Takes ~40-75 min; not in CI.
ablation: setup
	$(MOST) ablation --config $(RECIPE)/ablation.yaml --source $(RUN) --run $(ABLATION) \
		--recipes $(RECIPE) $(if $(FORCE),--force=true) $(ARGS)

bench: setup
	@mkdir -p runs/bench
	@for b in benchmarks/*.py; do \
		n=$$(basename $$b .py); echo "=== bench $$n ==="; \
		$(BIN)/python $$b > runs/bench/$$n.json || exit $$?; cat runs/bench/$$n.json; \
	done

clean:
	rm -rf runs/demo
