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

.PHONY: setup test test-py310 test-all lint demo fleet-demo bench eval-alignment gpu-check clean

setup: $(STAMP)

# torch is pinned and installed first so the CPU build is used and nothing pulls the CUDA wheels.
$(STAMP): setup.py requirements-ros.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,onnx,fleet]' -r requirements-ros.txt
	touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check depth_ft_ros test launch
	$(VENV)/bin/mypy
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-py310

# ROS Humble on a Jetson runs Python 3.10: the core (no torch, no rclpy) is tested on a real 3.10 interpreter
# where one is installed (pyenv's is found too); skipped with a message otherwise.
VENV310 := .venv310
PY310_TESTS := test/test_alignment.py test/test_camera.py test/test_cloud.py test/test_colorize.py \
	test/test_config.py test/test_frame_sync.py test/test_lidar_sim.py test/test_local_alignment.py \
	test/test_metrics.py test/test_middlebury.py test/test_sparse.py test/test_temporal.py \
	test/test_eval_alignment.py test/test_demo_bag.py test/test_middleware.py test/test_aligner_paths.py \
	test/test_import_graph.py test/test_metric_aligner.py test/test_confidence.py test/test_rectify.py \
	test/test_transform_in_time.py test/test_bag_compat.py
test-py310:
	@py=$$(for c in python3.10 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10 2>/dev/null); do \
		$$c -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo $$c && break; done); \
	if [ -z "$$py" ]; then echo "test-py310: no Python 3.10 interpreter found: skipped"; exit 0; fi; \
	test -x $(VENV310)/bin/python || $$py -m venv $(VENV310); \
	$(VENV310)/bin/python -m pip install -q --disable-pip-version-check numpy scipy opencv-python-headless \
		scikit-image pyyaml pytest rosbags mcap mcap-ros2-support && \
	$(VENV310)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . && \
	$(VENV310)/bin/python -m pytest -q $(PY310_TESTS)

# Also the tests marked slow (on demand, longer than the CI budget allows).
test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

lint: setup
	$(VENV)/bin/ruff check depth_ft_ros test launch
	$(VENV)/bin/mypy

# Tiny random checkpoints -> the Middlebury demo bag -> lossless replay through the node -> summary, output bag
# and previews under $(OUT). Real checkpoints: DEPTH_MODEL=... NORMALS_MODEL=... (on a CPU, FRAMES=5 keeps it short).
demo: setup
	$(VENV)/bin/depth-ft-ros demo --out $(OUT) $(if $(DEPTH_MODEL),--depth-model $(DEPTH_MODEL)) $(if $(NORMALS_MODEL),--normals-model $(NORMALS_MODEL)) $(if $(FRAMES),--frames $(FRAMES))

# Demo bags -> the tiny checkpoint fine-tuned on some (cached under out/fleet-demo) -> `fleet` with base and
# fine-tuned over the others -> out/fleet-demo/report/compare.md (held-out LiDAR AbsRel per bag, interval, preview).
fleet-demo: setup
	$(VENV)/bin/depth-ft-ros fleet-demo --out out/fleet-demo

bench: setup
	$(VENV)/bin/depth-ft-ros bench

eval-alignment: setup
	$(VENV)/bin/depth-ft-ros eval-alignment

# The GPU measurements in one command (< 8 min on one GPU): out/gpu-check/gpu-check.{json,md}. Without CUDA each
# CUDA part says "no CUDA" and the same code runs on the CPU with tiny checkpoints (< 2 min). `make setup` installs
# the CPU torch: on a GPU machine point GPU_PY at an interpreter with CUDA torch (+ onnxruntime-gpu, TensorRT).
GPU_PY ?= $(PY)
gpu-check:
	@test -x $(GPU_PY) || command -v $(GPU_PY) >/dev/null || $(MAKE) --no-print-directory setup
	$(GPU_PY) -m depth_ft_ros.bench.gpu_check --out out/gpu-check

clean:
	rm -rf $(VENV) $(VENV310) out build *.egg-info
