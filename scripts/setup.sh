#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages, .venv, trelab + test extras.
# Re-running it is cheap: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  swtpm swtpm-tools tpm2-tools libtss2-dev        # lab TPM + tpm2-pytss build
  tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon dbus-bin  # resource manager on a private bus
  pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools # PC/SC stack + virtual reader driver
  pkg-config swig build-essential python3-dev      # building tpm2-pytss / pyscard
  openssl libssl-dev socat                         # libssl-dev: native Milenage kernel
  postgresql libpq5 acl                            # operator store; acl: setfacl for its cluster
  cardpeek cardpeek-data                           # card tooling the emulated card is read with
)

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.trelab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing trelab with test extras into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
