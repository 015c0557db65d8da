# Everything runs inside .venv, created from the pinned requirements.lock.
PY      := .venv/bin/python
STAMP   := .venv/.installed

.PHONY: venv report test test-fast lint bench fuzz-long zoo clean

venv: $(STAMP)

$(STAMP): requirements.lock requirements-zoo.lock pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	# Third-party zoo libraries: the complete pinned closure, --no-deps so that torch keeps its pin.
	$(PY) -m pip install --quiet --no-deps -r requirements-zoo.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## Per-layer receptive-field table of torchvision ResNet-50.
report: $(STAMP)
	$(PY) -m rfgraph torchvision:resnet50 --input-size 224

## Full test suite (slow-marked tests included).
test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check rfgraph tests benchmarks
	.venv/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/speed.py

## Every torchvision model family, symbolic only; writes docs/zoo.md (add ARGS=--validate for the probe).
zoo: $(STAMP)
	$(PY) benchmarks/zoo.py $(ARGS)

## 10 000 random networks, symbolic vs numeric (stops at the first disagreement and shrinks it).
## benchmarks/fuzz_long.py runs the same check without stopping, over several processes.
fuzz-long: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py -k test_symbolic_equals_measured \
		--hypothesis-profile=long --hypothesis-show-statistics

clean:
	rm -rf .venv .pytest_cache .ruff_cache
