#!/usr/bin/env bash
# Packages whose declared dependencies do not resolve (promptsource says python<3.10) or are
# not needed: installed without them, as requirements-nodeps.txt does for the venv.
set -euo pipefail
pip install --no-deps --ignore-requires-python -r "$(dirname "$0")/../requirements-nodeps.txt"
