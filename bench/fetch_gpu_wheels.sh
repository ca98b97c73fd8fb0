#!/usr/bin/env bash
# Download, here, the wheels bench/gpu.sh needs on an offline GPU machine (Python 3.12,
# x86_64) into .whl/ (git-ignored). The machine already has torch, transformers, numpy, scipy,
# PyYAML, tqdm and matplotlib.
set -euo pipefail
cd "$(dirname "$0")/.."
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
# gguf reads SmolLM2's weights; the weights themselves (94 MiB, over the 64 MiB a device call
# carries) go in pieces: bash bench/gpu_smollm2.sh pieces.
for pkg in gymnasium farama-notifications stable-baselines3 gguf; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" -d .whl "$pkg"
done
ls -la .whl
