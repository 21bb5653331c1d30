# Every target sets up what it needs in .venv, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The versions CI last passed with (a constraints file: it pins, it adds nothing).
# `make lock` resolves pyproject.toml's ranges anew and rewrites it.
LOCK ?= requirements-lock.txt
PIP := $(BIN)/pip install --quiet --disable-pip-version-check $(if $(LOCK),-c $(LOCK))

.PHONY: demo demo-image test lint format bench lock clean

# The bundled default model tracks the shapes of the bundled held-out clip and prints J&F;
# with CHECKPOINT=sam2.1_hiera_tiny.pt (a released model) it tracks two children instead.
demo: $(VENV)/.runtime  ## track the objects of the bundled clip -> out/demo/overlay.mp4
	$(BIN)/sam2-jax track-video $(if $(CHECKPOINT),sample --checkpoint $(CHECKPOINT),shapes) \
		--out out/demo --overwrite

demo-image: $(VENV)/.runtime  ## segment an object in the bundled image from two clicks
	$(BIN)/sam2-jax segment-image sample --point 400,300 --point 600,100,0 --out out/demo-image --overwrite \
		$(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))

test: $(VENV)/.test  ## lint + the whole test suite, parity against the reference included
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SAM2_JAX_CHECK_LOCK=1 $(BIN)/python -m pytest -ra -n 2 --dist loadfile --max-worker-restart=0 --durations=60

lint: $(VENV)/.test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(VENV)/.test
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: $(VENV)/.test  ## side-by-side timings against the reference
	$(BIN)/python -m bench

$(VENV)/.runtime: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

# The reference `sam2` is built from source: without its CUDA extension, and without build
# isolation so that it builds against the torch installed here (pinned in pyproject.toml).
$(VENV)/.test: $(VENV)/.runtime
	$(PIP) "torch==2.14.1" "torchvision==0.29.1" "setuptools>=68" wheel
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation "sam2==1.1.0"
	# SAMURAI's fork of SAM 2, the oracle of the "samurai" memory policy, installs a second
	# top-level `sam2`: into its own folder, which only its test's subprocess puts on the path.
	rm -rf $(VENV)/samurai
	SAM2_BUILD_CUDA=0 $(PIP) --no-deps --no-build-isolation --target $(VENV)/samurai \
		"absolutely-not-samurai==1.0.0" "loguru==0.7.3"
	$(PIP) -e ".[test]"
	touch $@

# A clean venv installed from pyproject.toml's ranges alone (no lock), then frozen: the newest
# versions the ranges allow today. Run `make test` afterwards; commit the lock if it passes.
lock:  ## refresh requirements-lock.txt
	rm -rf .venv-lock
	$(MAKE) VENV=.venv-lock LOCK= .venv-lock/.test
	head -4 requirements-lock.txt > .venv-lock/lock.txt
	.venv-lock/bin/pip freeze --all --exclude-editable | grep -v '^pip==' >> .venv-lock/lock.txt
	mv .venv-lock/lock.txt requirements-lock.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV)
