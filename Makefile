# The two commands of the quick start: `make demo` and `make test`.
# Each first creates whatever is missing (scripts/setup.sh), then does its job.
VENV ?= .venv
PY := $(VENV)/bin/python
MIDIARR := $(VENV)/bin/midiarr
OUT ?= out

.PHONY: setup demo test lint fuzz bench-prepare bench-render clean

setup:
	@bash scripts/setup.sh

demo: setup
	@mkdir -p $(OUT)
	@echo "== the bundled example's tracks and roles"
	$(MIDIARR) stems examples/band.mid --describe
	@echo "== take the bass out: the song a songwriter brings"
	$(MIDIARR) subtract examples/band.mid --stem bass -o $(OUT)/band_without_bass.mid
	@echo "== midiarr writes the missing bass, steered by an instruction"
	$(MIDIARR) insert $(OUT)/band_without_bass.mid --stem bass --instruction "busy syncopated bass, soft" --seed 1 -o $(OUT)/band_new_bass.mid
	$(MIDIARR) stems $(OUT)/band_new_bass.mid
	@echo "== render it: the mix and one file per stem"
	$(MIDIARR) render $(OUT)/band_new_bass.mid --stems -o $(OUT)/audio
	@echo "== and as MusicXML for a notation program"
	$(MIDIARR) convert $(OUT)/band_new_bass.mid -o $(OUT)/band_new_bass.musicxml

test: setup
	$(PY) -m pytest -q

# The long fuzz tier (docs/reliability.md): hostile inputs, options and paths through the real CLI,
# two processes at a time; rewrites the numbers table of docs/reliability.md and docs/reliability.json.
FUZZ_SEEDS ?= 0 1
fuzz: setup
	$(PY) -m tests.fuzz --tier long $(foreach s,$(FUZZ_SEEDS),--seed $(s)) --report docs/reliability.json --doc docs/reliability.md

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-prepare: setup
	$(PY) benchmarks/bench_prepare.py ../shared/data

CACHE ?= cache
bench-render: setup
	$(PY) benchmarks/bench_render.py --cache $(CACHE) --n 20

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
