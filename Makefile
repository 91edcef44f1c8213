# The two set-up commands of the README, each working on a fresh machine.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install

$(BIN)/visionfleet: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/visionfleet

# Label scikit-image's bundled photos with the embedded default (no server).
demo: install
	$(BIN)/python -m bench.samples ./photos
	$(BIN)/visionfleet relabel ./photos --output ./labels --wait

test: install
	$(BIN)/python -m pytest -q

# The edit-test loop: every test but those marked slow (about a minute).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"
