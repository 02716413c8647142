# Two entry points for a fresh machine: `make demo` and `make test`. Both build .venv first.
VENV    ?= .venv
PYTHON  ?= python3
# torch and torchvision must come as a matching pair; these two lie on this project's machines' disk.
TORCH   ?= torch==2.14.1 torchvision==0.29.1
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.fxtract-installed
PYTEST  := $(PY) -m pytest
export TQDM_DISABLE ?= 1

.PHONY: venv demo test test-slow lint format bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

# The graph page is tested in headless chromium (tests/test_viz_browser.py).
browser:
	{ command -v chromium && command -v chromedriver; } >/dev/null || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$S apt-get update && $$S apt-get install -y chromium chromium-driver; }

test: lint browser
	$(PYTEST) -m "not slow" -n 2 --dist loadgroup -q

test-slow: $(STAMP)
	$(PYTEST) -m slow -n 2 -q

# The generated-model sweep alone (2,000 models; FXTRACT_SWEEP_EXAMPLES=N for another count),
# in 20 chunks over both cores, one torch thread each; counts summed from each worker's report.
SWEEP_REPORT := $(CURDIR)/.sweep/stats.json
.PHONY: test-sweep
test-sweep: $(STAMP)
	rm -rf .sweep && mkdir -p .sweep
	OMP_NUM_THREADS=1 FXTRACT_SWEEP_REPORT=$(SWEEP_REPORT) $(PYTEST) tests/test_generated.py -m slow -n 2 -q; \
	rc=$$?; $(PY) -m tests.sweep_stats $(SWEEP_REPORT); exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/naming.py
	$(PY) benchmarks/extractor.py
	$(PY) benchmarks/pruning.py
	$(PY) benchmarks/strategies.py
	$(PY) benchmarks/extract.py
	$(PY) benchmarks/distributed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
