#!/usr/bin/env bash
# Issue 15, item 4: more decisions per run. The online learners on the real default with the
# interval S = 10 (100 scheduler decisions in 1000 steps) instead of S = 50 (20 decisions);
# their S = 50 runs are in paper-skills-tiny (bash paper/run_skills_tiny.sh).
#   bash paper/decisions_per_run.sh            (ppo sac odm mos-cossim-ema, seeds 0-2)
#   AGENTS="ppo" SEEDS=0-4 bash paper/decisions_per_run.sh
# Resumable per run: an agent and seed that finished (marker in runs/decisions-s$S/) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
S=${S:-10}
SEEDS=${SEEDS:-0-2}
AGENTS=${AGENTS:-ppo sac odm mos-cossim-ema}
EXPERIMENT=${EXPERIMENT:-paper-skills-tiny-s$S}
DONE=runs/decisions-s$S
mkdir -p "$DONE"
for agent in $AGENTS; do
  for seed in $(seq "${SEEDS%-*}" "${SEEDS#*-}"); do
    marker="$DONE/$agent-$seed.done"
    if [ -f "$marker" ]; then echo "== $agent seed $seed: done before"; continue; fi
    echo "== $agent seed $seed, S = $S ($(date +%H:%M:%S))"
    $PY -m mosgym.run --agent "$agent" --seeds "$seed" --set "train.interval=$S" \
      --experiment "$EXPERIMENT" --checkpoint-every 0 --no-progress -q
    touch "$marker"
  done
done
