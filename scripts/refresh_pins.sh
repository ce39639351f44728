#!/usr/bin/env bash
# Move the pins on purpose: install the newest versions the dependency ranges of
# pyproject.toml allow into a scratch venv, and write them to constraints.txt.
# Then run ./dev test (it reinstalls from the new pins) and commit constraints.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-python3}" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --upgrade pip
"$scratch/venv/bin/python" -m pip install -q -e ".[dev]"
{
  sed -n '/^#/p' constraints.txt
  "$scratch/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^-e '
} > "$scratch/constraints.txt"
if diff -u constraints.txt "$scratch/constraints.txt"; then
  echo "refresh_pins: constraints.txt is current"
else
  cp "$scratch/constraints.txt" constraints.txt
  echo "refresh_pins: constraints.txt updated; run ./dev test, then commit it"
fi
