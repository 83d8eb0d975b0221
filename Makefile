# The two commands of the README: `make bench` (main job) and `make test` (the test suite).
# Both run scripts/setup.sh first: apt packages, .venv, trelab with its test extras (idempotent).
.PHONY: setup bench test lint clean

VENV := .venv/bin

setup:
	@bash scripts/setup.sh

bench: setup
	$(VENV)/trelab bench run --out reports

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/lint-imports --no-cache  # the layer contract in pyproject.toml

test: setup lint
	$(VENV)/python -m pytest

clean:
	rm -rf build *.egg-info .mypy_cache .ruff_cache .pytest_cache .import_linter_cache reports aka/*.so
