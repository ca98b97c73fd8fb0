#!/usr/bin/env bash
# Real runs of the embedded default under varied fixed mixtures, then the simulator's calibration
# from them (envs/sim-skills-tiny.yaml), holding out the last HOLDOUT mixtures for the report.
# Usage: bash paper/calibrate_skills_tiny.sh            (runs, then calibrates)
#        STAGE=calibrate bash paper/calibrate_skills_tiny.sh   (calibrate from logged runs only)
#        FROM=10 bash paper/calibrate_skills_tiny.sh   (add mix10.. to an experiment holding
#                                                       mix00..mix09: the draws are sequential)
# Cost on 2 CPU cores: about one minute per run, N_MIX runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
N_MIX=${N_MIX:-30}
FROM=${FROM:-0}
HOLDOUT=${HOLDOUT:-6}
EXPERIMENT=${EXPERIMENT:-calib-skills-tiny}
if [ "${STAGE:-all}" != calibrate ]; then
  # Mixtures drawn from a flat Dirichlet over the six skills (seeded), one run each: named
  # mix00..mixNN so that calibration groups (and holds out) whole mixtures.
  $PY - "$N_MIX" <<'EOF' > /tmp/mosgym-calib-mixtures.txt
import sys
import numpy as np
rng = np.random.default_rng(2024)
for k in range(int(sys.argv[1])):
    w = rng.dirichlet(np.ones(6))
    print(f"mix{k:02d}", "[" + ",".join(f"{x:.4f}" for x in w) + "]")
EOF
  tail -n +"$((FROM + 1))" /tmp/mosgym-calib-mixtures.txt | while read -r name weights; do
    echo "== $name $weights ($(date +%H:%M:%S))"
    $PY -m mosgym.run --agent static-fixed --set "agent.name=$name" --set "agent.params.weights=$weights" \
      --seeds 0 --experiment "$EXPERIMENT" --checkpoint-every 0 --no-progress -q
  done
fi
$PY -m mosgym.calibrate --experiment "$EXPERIMENT" --holdout "$HOLDOUT" \
  --base envs/sim-skills-tiny.yaml --out envs/sim-skills-tiny.yaml
