#!/usr/bin/env bash
# Performance figures on a GPU machine (one H100/H200 class GPU), in under 8 minutes: training
# throughput against the HF Trainer (with MFU and peak memory) and the MoS overhead at the
# paper's cadence (probe 64 per skill, S = 100, batch 64: bench/overhead.py's defaults; each MoS
# run against a static run replaying its mixture path, 3 repeats, with the in-run phase-timer
# ratio beside it), for
#   - the tiny model (0.9M parameters) on the built-in skills;
#   - a model with Qwen1.5-0.5B's transformer dimensions (hidden 1024, 24 layers, 16 heads, MLP
#     2816; random weights built from a config, byte vocabulary: 0.31B parameters) on the
#     built-in skills (short sequences) and on the paper's four demo files (up to 512 tokens);
#   - SmolLM2-135M-Instruct itself when its weights are there (bash bench/gpu_smollm2.sh carries
#     them in pieces and puts them back together), else a model of SmolLM2-135M's dimensions
#     (hidden 576, 30 layers, 9 heads, MLP 1536; random weights).
# Throughput and overhead do not depend on the weights' values, which is why random weights of
# the right shape stand in for checkpoints that cannot reach an offline machine.
# Results go to ${OUT:-bench-results}/gpu.txt.  QUICK=1 shrinks every run (a dry run on CPU).
#
# The GPU machine of this workplace has torch and transformers but no network: carry wheels of
# the rest (bash bench/fetch_gpu_wheels.sh here; then carry .whl) and the demo files
# (mkdir -p .gpu && cp -r ../shared/data/mos-demo .gpu/; then carry .gpu).
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
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/mosgym-cache}
run() { echo "+ $*" | tee -a "$log"; timeout "${LIMIT:-150}" "$@" 2>&1 | grep -v "^WARN\|INFO" | tee -a "$log"; }
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; \
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } 2>&1 | tee "$log"

# OT: optimizer steps of an overhead run on the tiny model, QT on the 0.31B one (one probe round
# per S steps either way; 12 runs each: 2 variants x 3 repeats x MoS and replay).
if [ "${QUICK:-0}" = 1 ]; then T=20; W=4; R=1; OT=20; QT=20; OS=10; OR=1
else T=60; W=10; R=2; OT=300; QT=100; OS=100; OR=3; fi
qwen05=(model.hidden_size=1024 model.num_layers=24 model.num_heads=16 model.intermediate_size=2816)
smol_arch=(model.hidden_size=576 model.num_layers=30 model.num_heads=9 model.intermediate_size=1536)
demo=()
for s in general math medical p3; do demo+=("skills.${#demo[@]}.path=$PWD/.gpu/mos-demo/$s.jsonl"); done

echo "== tiny model, built-in skills" | tee -a "$log"
run python3 bench/throughput.py --batch 64 --steps $T --warmup $W --repeats $R
run python3 bench/overhead.py --steps $OT --interval $OS --repeats $OR

echo "== Qwen1.5-0.5B dimensions, built-in skills (the paper's cadence: batch 64, probe 64, S=100)" | tee -a "$log"
run python3 bench/throughput.py --batch 64 --steps $T --warmup $W --repeats $R --set "${qwen05[@]}"
LIMIT=300 run python3 bench/overhead.py --steps $QT --interval $OS --repeats $OR --set "${qwen05[@]}"

if [ -d .gpu/mos-demo ]; then
  echo "== Qwen1.5-0.5B dimensions, the paper's demo files (max 512 tokens)" | tee -a "$log"
  run python3 bench/throughput.py --env envs/mos-demo-tiny.yaml --batch 16 --steps $T --warmup $W \
    --repeats $R --set "${qwen05[@]}" "${demo[@]}"
fi

smol_gguf=.gpu/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$smol_gguf" ]; then
  echo "== SmolLM2-135M-Instruct (pretrained, $smol_gguf), its skills config" | tee -a "$log"
  smol=(--env envs/skills-smollm2.yaml --set model.name="$PWD/.gpu/smollm2"
        model.gguf_file="$(basename "$smol_gguf")")
else
  echo "== SmolLM2-135M dimensions (random weights: no pretrained file), built-in skills" | tee -a "$log"
  smol=(--set "${smol_arch[@]}")
fi
run python3 bench/throughput.py --batch 64 --steps $T --warmup $W --repeats $R "${smol[@]}"
echo "done: $log"
