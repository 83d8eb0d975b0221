"""A TPM proxy that makes the lab's swtpm present a named real part.

It sits between trelab and swtpm as a real process speaking swtpm's TCP protocol (raw TPM
commands on port P, the control channel on P + 1), so ESYS's swtpm TCTI, tpm2-tools and a
kept socket all work through it. :mod:`.wire` decides (pure), :mod:`.server` moves bytes,
:mod:`.profiles` loads the parts' declarative profiles from ``profiles/*.toml``.

Run: ``python -m firmware_stubs.tpm_proxy --profile slb9670 --port P --swtpm-port S``.
"""
