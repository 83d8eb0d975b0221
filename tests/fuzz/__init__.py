"""Coverage-guided fuzzing (atheris, libFuzzer) of every decoder and state machine that takes
outside bytes. One module ``fuzz_<target>.py`` per target, each with ``test_one_input(data)``
and ``starting_inputs()`` (real messages built by the project's own encoders, as the tests produce them).

The oracle is the project's contract: an exception outside :mod:`trelab.errors` escaping a
harness, an input that takes over 1 s, or a mutated signed object accepted is a finding.

Run one: ``python -m tests.fuzz.run TARGET [libFuzzer flags]``; all: ``make fuzz``
(``FUZZ_SECONDS`` each); briefly on every ``make test``: ``tests/fuzz/test_fuzz_briefly.py``.
"""
