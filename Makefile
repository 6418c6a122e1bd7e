# most: one target per pipeline stage. `make demo` runs them all on the embedded default.
#   make <stage> RUN=runs/<name> RECIPE=recipes/<family> ARGS="--section.key=value ..."
#   OVERLAY=recipes/<extra> adds <extra>/<stage>.yaml after the recipe where it exists (recipes/music);
#   several, in order: OVERLAY="recipes/uniaudio recipes/multiscale"
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MOST := $(BIN)/most
RUN ?= runs/demo
ABLATION ?= runs/ablation
RECIPE ?= recipes/tiny
ARGS ?=
OVERLAY ?=
STAMP := $(VENV)/.installed

STAGES := data units judge base adapt stage1 stage2 stage3 eval release

.PHONY: setup test test-slow test-gpu lint format demo ablation ablation-adapter curriculum ablation-curriculum bench clean $(STAGES)

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
# is a no-op unless FORCE=1. stage3 (DPO on the model's own samples, with a before/after compare)
# is optional: `make stage3` after stage2; `make demo` does not run it.
$(STAGES): setup
	$(MOST) $@ --config $(RECIPE)/$@.yaml $(foreach o,$(OVERLAY),$(if $(wildcard $(o)/$@.yaml),--config $(o)/$@.yaml)) \
		--run $(RUN) $(if $(FORCE),--force=true) $(ARGS)

# The whole pipeline on the embedded default, one stage a line. Each line runs `most <stage>` with
# RECIPE/<stage>.yaml and appends its wall time to RUN/timings.tsv; `--beside S` runs stage S on
# half the cores while the stages after it run in turn on the other half (small models train
# about 1.6x as fast on two threads as on one). A finished stage is a no-op, so
# an interrupted demo resumes where it stopped. ARGS reaches every stage and ARGS_<stage> one stage
# (split with shell quoting, never run as shell code), e.g. ARGS_stage1="--trainer.max_steps=4800".
STAGE = $(BIN)/python -m most.tools.timed --most "$(MOST)" --recipe $(RECIPE) --run $(RUN) \
	$(foreach o,$(OVERLAY),--overlay $(o))
export ARGS $(foreach s,$(STAGES),ARGS_$(s))

demo: setup
	@$(STAGE) data     # text world + espeak-ng speech, QA, instructions          (~2 min)
	@$(STAGE) units    # CTC phoneme recogniser -> speech units for all audio     (~4 min)
# judge (the independent CTC recogniser that scores TTS; output in RUN/logs/judge.log) on one core,
# beside base (pretrain the tiny Qwen3-MoE text LM) then adapt (add unit tokens, split the experts
# into text/speech groups) on the other
	@$(STAGE) --beside judge base adapt                                        # (~7 min)
	@$(STAGE) stage1   # ASR + TTS + text LM + speech LM                          (~15 min)
	@$(STAGE) stage2   # spoken QA and instructions, with ASR/TTS replay          (~3 min)
	@$(STAGE) eval     # ASR, TTS, spoken QA, audio LM, text perplexity, routing  (~2 min)
	@$(STAGE) release  # HF folder + model card + reload check                    (<1 min)
	@-$(MOST) summary --run $(RUN)  # the quality bar, pass/fail per row (a miss does not fail make)

# adapt -> stage1 -> eval once per experts variant, from the finished $(RUN) (run `make demo`
# first); the table lands in $(ABLATION)/report.md. Takes ~30-75 min; not in CI.
ablation: setup
	$(MOST) ablation --config $(RECIPE)/ablation.yaml --source $(RUN) --run $(ABLATION) \
		--recipes $(RECIPE) $(if $(FORCE),--force=true) $(ARGS)

# MoE adapter vs dense adapter vs discrete units (adapt -> stage1 -> stage2 per variant and seed,
# scored on ASR, S->T and the paralinguistic tasks) from $(RUN) through `make adapt`; the table
# lands in $(ABLATION)/adapter.md, rewritten after each run. ARGS="--max_steps=N --stage2_steps=M".
ablation-adapter: setup
	$(MOST) adapter_ablation --source $(RUN) --run $(ABLATION)/adapter --recipes $(RECIPE) \
		--out $(ABLATION) $(if $(FORCE),--force=true) $(ARGS)

# UniMoE-Audio's curriculum in place of `make stage1` (after `make adapt` on a run with music):
# a specialist per modality -> their expert groups merged -> routers warmed up -> joint training,
# which writes RUN/stage1 (stage2 and eval continue from it). Resumes like every stage.
CURRICULUM ?= $(RECIPE)/stage1.yaml recipes/music/stage1.yaml recipes/curriculum/curriculum.yaml
curriculum: setup
	$(MOST) curriculum $(foreach c,$(CURRICULUM),--config $(c)) --run $(RUN) \
		$(if $(FORCE),--force=true) $(ARGS)

# The curriculum against naive joint training at the same total steps, from $(RUN)'s adapted
# model (a run with music, through `make adapt`); the table lands in $(ABLATION)/curriculum/report.md.
ablation-curriculum: setup
	$(MOST) curriculum_ablation --config recipes/curriculum/curriculum_ablation.yaml --source $(RUN) \
		--run $(ABLATION)/curriculum $(if $(FORCE),--force=true) $(ARGS)

bench: setup
	@mkdir -p runs/bench
	@for b in benchmarks/*.py; do \
		n=$$(basename $$b .py); echo "=== bench $$n ==="; \
		$(BIN)/python $$b > runs/bench/$$n.json || exit $$?; cat runs/bench/$$n.json; \
	done

clean:
	rm -rf runs/demo
