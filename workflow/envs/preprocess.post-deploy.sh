#!/usr/bin/env bash
# Snakemake runs this after creating the environment, from the working directory:
# install the paintssl package itself (its dependencies are pinned in the env file).
set -euo pipefail
pip install --no-deps "${PAINTSSL_SOURCE:-.}"
