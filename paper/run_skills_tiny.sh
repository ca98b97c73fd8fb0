#!/usr/bin/env bash
# The paper's experiments on the embedded default (tiny Llama, built-in skills), 5 seeds each,
# one MLflow experiment. Then `python -m mosgym.compare --experiment paper-skills-tiny`.
# Usage: bash paper/run_skills_tiny.sh [agent ...]   (default: every agent below, in order)
# Cost: about 1 to 2 minutes per run on one CPU core, 5 runs per agent. No checkpoints (a sweep
# restarts per agent); run two copies with disjoint agent lists to use two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEEDS=${SEEDS:-0-4}
EXPERIMENT=${EXPERIMENT:-paper-skills-tiny}
ENV=${ENV:-skills-tiny}   # e.g. ENV=mos-demo-smollm2 for the paper's demo files on SmolLM2
table2="static-prop static-temp static-uni multidds multiuat mos-cossim mos-cossim-ema mos-diff mos-diff-ema"
table3="mos-prior-tau1 mos-prior-tau10"   # tau = inf is mos-cossim-ema (mos-prior-uni is the same)
table5="mospec-cossim mospec-diff"
rl="odm ppo a2c sac"   # ppo-from-sim: paper/sim_to_real.sh; odm-discrete also exists
agents=${*:-$table2 $table3 $table5 $rl}
for agent in $agents; do
  echo "== $agent ($(date +%H:%M:%S))"
  $PY -m mosgym.run --env "$ENV" --agent "$agent" --seeds "$SEEDS" --experiment "$EXPERIMENT" --checkpoint-every 0 --no-progress -q
done
