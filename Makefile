# egress-guard: `make run` serves the webhook locally, `make test` runs every check CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8443
PYTEST_ARGS ?=
BENCH_ARGS ?=
IMAGE_TEST_ARGS ?=

MUTATION_SCOPE ?= webhook.core webhook.reconcile.plan
MUTATION_GATE ?= $(if $(filter webhook.core,$(MUTATION_SCOPE)),--min-score 92 --strict,)

.PHONY: run test lint typecheck unit lock clean bench bench-smoke bench-reconcile bench-flows image image-test browser mutation

# Python 3.11 or newer, checked before anything is installed; a .venv made by another
# interpreter (or a broken one) is made again rather than reused.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "egress-guard needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1 || echo missing)." \
	  "Install one and run: make PYTHON=python3.11 ..." >&2; exit 2; }
	@if [ -d $(VENV) ] && ! $(BIN)/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) and sys.version_info[:2] == tuple(map(int, sys.argv[1].split("."))) else 1)' \
	    "$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" 2>/dev/null; then \
	  echo "$(VENV) was made by another Python (or is broken): making it again" >&2; rm -rf $(VENV); fi
	@echo "installing the pinned dependencies into $(VENV) (first run only, about a minute)" >&2
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## serve the webhook on https://127.0.0.1:$(PORT), dev certificates in certs/, no cluster
	$(BIN)/egress-guard serve --cluster none --port $(PORT)

test: lint typecheck unit  ## everything CI checks

lint: $(STAMP)
	$(BIN)/ruff check webhook tests bench tools
	$(BIN)/ruff format --check webhook tests bench tools
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP)  ## the benchmark beside an nginx floor (installs wrk, hey, nginx-light if root)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-smoke: $(STAMP)  ## every benchmark scenario for 2 s, the reconciler on 200 namespaces, flows, the backends' hot path (CI)
	$(BIN)/python -m bench --quick
	$(BIN)/python -m bench.reconcile_scale --quick
	$(BIN)/python -m bench.flows_throughput --quick
	$(BIN)/python -m bench.backends_hot_path --quick

bench-reconcile: $(STAMP)  ## the reconciler on 2,000 namespaces x 25 workloads (about 2 minutes)
	$(BIN)/python -m bench.reconcile_scale

bench-flows: $(STAMP)  ## egress-guard flows over 1,000,000 synthetic Hubble flows (about 1.2 GB, a minute)
	$(BIN)/python -m bench.flows_throughput

$(VENV)/.mutation-installed: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,mutation]'
	touch $@

mutation: $(VENV)/.mutation-installed  ## mutation testing, minutes (not in CI); MUTATION_SCOPE=webhook.admission, webhook.cli
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 $(foreach scope,$(MUTATION_SCOPE),'$(scope).*')
	$(BIN)/python -m tools.mutation_report --scope $(MUTATION_SCOPE) $(MUTATION_GATE)

lock: $(STAMP)  ## refresh constraints.txt from the current environment
	{ head -1 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^egress-guard'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis mutants

image:  ## build the container image (Docker with BuildKit; behind a private index see README, "The image")
	DOCKER_BUILDKIT=1 docker build -t egress-guard:$$(sed -n 's/^__version__ = "\(.*\)"/\1/p' webhook/__init__.py) .

image-test: $(STAMP)  ## build the image and run it as deploy/ does (installs Docker as root if missing; ~2 min)
	$(BIN)/python -m tools.image_test $(IMAGE_TEST_ARGS)

browser:  ## Debian's Chromium for the report page's browser tests (as root; present: nothing to do)
	command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
