# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
TORCH_VERSION ?= 2.13.0
OUT ?= out/demo
DEPTH_MODEL ?=
NORMALS_MODEL ?=
FRAMES ?=

.PHONY: setup test test-all lint demo bench eval-alignment clean

setup: $(STAMP)

# torch is pinned and installed first so the CPU build is used and nothing pulls the CUDA wheels.
$(STAMP): setup.py requirements-ros.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' -r requirements-ros.txt
	touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check depth_ft_ros test launch
	$(PY) -m pytest -q

# Also the tests marked slow (on demand, longer than the CI budget allows).
test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

lint: setup
	$(VENV)/bin/ruff check depth_ft_ros test launch

# Tiny random checkpoints -> the Middlebury demo bag -> lossless replay through the node -> summary, output bag
# and previews under $(OUT). Real checkpoints: DEPTH_MODEL=... NORMALS_MODEL=... (on a CPU, FRAMES=5 keeps it short).
demo: setup
	$(VENV)/bin/depth-ft-ros demo --out $(OUT) $(if $(DEPTH_MODEL),--depth-model $(DEPTH_MODEL)) $(if $(NORMALS_MODEL),--normals-model $(NORMALS_MODEL)) $(if $(FRAMES),--frames $(FRAMES))

bench: setup
	$(VENV)/bin/depth-ft-ros bench

eval-alignment: setup
	$(VENV)/bin/depth-ft-ros eval-alignment

clean:
	rm -rf $(VENV) out build *.egg-info
