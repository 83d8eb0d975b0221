# The two commands of the README: `make bench` (main job) and `make test` (the test suite).
# Both run scripts/setup.sh first: apt packages, .venv, trelab with its test extras (idempotent).
.PHONY: setup bench test test-tpm-fronts lint fuzz clean

VENV := .venv/bin
# The TPM test modules, run again with the lab's TPM behind tpm2-abrmd and as each real part.
TPM_TESTS := tests/integration/test_tpm_mid.py tests/integration/test_tpm_identity.py \
	tests/integration/test_tpm_bus_protection.py tests/integration/test_tpm_lifecycle_index.py \
	tests/integration/test_attest.py
# The lean session layer's modules (a swtpm of their own each): again behind tpm2-abrmd only,
# since a part's profile changes the lab's TPM, not theirs.
LEAN_TESTS := tests/integration/test_tpm_lean.py tests/integration/test_tpm_lean_mid.py \
	tests/integration/test_tpm_lean_provisioning.py
TPM_PROFILES = $(shell $(VENV)/python -c "from firmware_stubs.tpm_proxy.profiles import names; print(*names())")

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
	$(MAKE) --no-print-directory test-tpm-fronts

test-tpm-fronts: setup
	$(VENV)/python -m pytest -q --resource-manager abrmd $(TPM_TESTS) $(LEAN_TESTS)
	for part in $(TPM_PROFILES); do \
		$(VENV)/python -m pytest -q --tpm-profile $$part $(TPM_TESTS) || exit 1; \
	done

# Every fuzz harness of tests/fuzz for FUZZ_SECONDS each (all of them, or FUZZ_TARGETS): the
# growing corpus stays in .fuzz-corpus/, each finding is saved as fuzz-findings/TARGET-crash-*
# (or -timeout-*, -oom-*); replay one with `.venv/bin/python -m tests.fuzz.run TARGET FILE`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(shell $(VENV)/python -m tests.fuzz.run --list 2>/dev/null)
fuzz: setup
	@mkdir -p fuzz-findings; failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p .fuzz-corpus/$$t; echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(VENV)/python -m tests.fuzz.run $$t -max_total_time=$(FUZZ_SECONDS) -timeout=1 \
	    -print_final_stats=1 -artifact_prefix=fuzz-findings/$$t- \
	    .fuzz-corpus/$$t tests/fuzz/corpus/$$t 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==[0-9]+== ERROR|artifact_prefix)" \
	    || true; \
	  if ls fuzz-findings/$$t-* >/dev/null 2>&1; then failed="$$failed $$t"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in:$$failed (see fuzz-findings/)"; exit 1; fi

clean:
	rm -rf build *.egg-info .mypy_cache .ruff_cache .pytest_cache .import_linter_cache reports aka/*.so .fuzz-corpus
