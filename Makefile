# Everything runs inside .venv, created from the pinned requirements.lock.
PY      := .venv/bin/python
STAMP   := .venv/.installed

.PHONY: venv report run bench-memory test test-fast lint bench fuzz-long zoo zoo-timm-all clean

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

## Any rfgraph command line from the .venv: make run ARGS="torchvision:resnet18 --stages"
## (the same as .venv/bin/rfgraph torchvision:resnet18 --stages).
run: $(STAMP)
	.venv/bin/rfgraph $(ARGS)

## Peak RSS and time of analyses and probes at huge inputs (benchmarks/memory.py).
bench-memory: $(STAMP)
	$(PY) benchmarks/memory.py $(ARGS)

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

## The zoo: docs/zoo.md is exactly what `make zoo` writes (its header repeats the command; tests/zoo/test_docs.py
## checks the two agree).  Per-family logs in build/zoo_logs: an interrupted `make zoo` continues where it stopped.
ZOO_ARGS := --timm --third-party --validate-families monai,torchaudio,open_clip --jobs 2 --timeout 900 --validate-timeout 300 --resume --no-progress --readme-marker zoo-summary
zoo: $(STAMP)
	$(PY) benchmarks/zoo.py $(ZOO_ARGS)

## Every architecture of timm.list_models() (hours on 2 cores): docs/zoo_timm_all.md.
## The sweep continues build/zoo_logs/timm-all.jsonl; the table is then written from that log (a partial log says so).
ZOO_TIMM_ALL_ARGS := --families timm-all --from-logs --readme-marker zoo-summary-timm-all -o docs/zoo_timm_all.md
zoo-timm-all: $(STAMP)
	$(PY) -m rfgraph zoo --family timm-all --jobs 2 --timeout 300 --resume --no-progress -o build/zoo_logs/timm-all.jsonl
	$(PY) benchmarks/zoo.py $(ZOO_TIMM_ALL_ARGS)

## 10 000 random networks, symbolic vs numeric (stops at the first disagreement and shrinks it).
## benchmarks/fuzz_long.py runs the same check without stopping, over several processes.
fuzz-long: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py -k test_symbolic_equals_measured \
		--hypothesis-profile=long --hypothesis-show-statistics

clean:
	rm -rf .venv .pytest_cache .ruff_cache
