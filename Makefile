# memori workspace. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
LOCOMO ?= ../shared/datasets/locomo/locomo10.json
PLUGINS := integrations/langchain integrations/pydantic_ai integrations/agno integrations/llamaindex
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.DEFAULT_GOAL := help
.PHONY: help install demo test test-remote test-reliability lint eval bench clean record docs dist dashboard

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# the CPU build of torch first, so nothing pulls CUDA packages
	$(PIP) install -q torch==2.13.0
	# each plugin with its `test` extra: what its own tests need (framework extras, fakes)
	$(PIP) install -q -e ".[local,torch,bundled-model,postgres,mysql,django,openai,anthropic,google,mcp,server,dev,docs]" \
		$(foreach p,$(PLUGINS),-e "./$(p)[test]")
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the workspace (editable)

demo: $(STAMP) ## two users, two personas, offline, on the embedded default ./memori.db
	$(VENV)/bin/memori demo

# test files run in parallel, one file per worker (pytest-xdist); WORKERS=0 runs them in one process
WORKERS ?= 2
test: $(STAMP) ## the test suite against real SQLite, PostgreSQL and MariaDB
	$(PY) -m pytest -q -m "not reliability" -p no:cacheprovider -n $(WORKERS) --dist loadfile

test-remote: $(STAMP) ## the plugin and wrapper suites once more against a real memori serve (remote mode)
	$(PY) -m pytest -q -m "not reliability" -p no:cacheprovider --memori-remote \
		$(addprefix tests/,$(PLUGINS)) tests/llm

test-reliability: $(STAMP) ## the long fault-injection tests (marked reliability)
	$(PY) -m pytest -q -m reliability -p no:cacheprovider

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check memori_core integrations tests benchmarks
	$(VENV)/bin/mypy

# NO_MKDOCS_2_WARNING: Material 9.7+ prints a banner about MkDocs 2 on every build
docs: $(STAMP) ## the documentation site into site/ (mkdocs build --strict: a broken link or reference fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# DIST names the folder (emptied first); tests/integrations/test_clean_install.py builds through here
DIST ?= dist
dist: $(STAMP) ## wheels and sdists of memori-core and each plugin into dist/ (python -m build), twine check --strict
	rm -rf $(DIST)
	for folder in . $(PLUGINS); do $(PY) -m build -q --outdir $(DIST) $$folder || exit 1; done
	$(PY) -m twine check --strict $(DIST)/*

eval: $(STAMP) ## memori eval locomo on the shared LoCoMo data
	$(VENV)/bin/memori eval locomo --data $(LOCOMO)

bench: $(STAMP) ## the benchmarks in benchmarks/
	$(PY) benchmarks/recall_latency.py
	$(PY) benchmarks/recall_memory.py
	$(PY) benchmarks/capture_overhead.py
	$(PY) benchmarks/load.py
	$(PY) benchmarks/server_load.py
	$(PY) benchmarks/locomo_ablation.py
	$(PY) benchmarks/rule_fragments.py
	$(PY) benchmarks/cold_recall.py
	$(PY) benchmarks/pgvector_agreement.py
	$(PY) benchmarks/recall_scale.py
	$(PY) benchmarks/dashboard_api.py
	$(PY) benchmarks/dashboard_browser.py

# the built files are committed: run after changing memori_core/server/dashboard/frontend/src
DASHBOARD := memori_core/server/dashboard/frontend
dashboard: ## the dashboard's front end (npm ci, esbuild) into memori_core/server/dashboard/static
	cd $(DASHBOARD) && npm ci --no-audit --no-fund && npm run build

# RECORD narrows it, e.g. make record RECORD="tests/llm/test_openai.py -k chat"
RECORD ?= tests/llm
record: $(STAMP) ## re-record provider cassettes with real keys (OPENAI_, ANTHROPIC_, GEMINI_, XAI_, DEEPSEEK_API_KEY)
	$(PY) -m pytest -q $(RECORD) -m "not authored" --record-mode=rewrite -p no:cacheprovider

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
