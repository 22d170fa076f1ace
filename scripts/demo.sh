#!/usr/bin/env bash
# `make demo`: the default study on real Fashion-MNIST, ending with the report's path.
# The Makefile has already made .venv (torch==2.13.0 first, then the package).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${CONFIG:-configs/fashion_cnn4.yaml}"
DATA=/usr/share/datasets/fashion-mnist
if [ ! -d "$DATA" ] && [ -z "${CORRANALYSIS_DATA:-}" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing Debian's dataset-fashion-mnist (the real Fashion-MNIST files)"
        apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
            || echo "apt could not install it; corranalysis will download Fashion-MNIST instead"
    else
        echo "Fashion-MNIST not found in $DATA: corranalysis will download it (SHA-256 checked)"
    fi
fi
.venv/bin/corranalysis run "$CONFIG"
