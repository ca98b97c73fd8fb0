#!/usr/bin/env bash
# Real runs of an env under varied fixed mixtures, then the simulator's calibration from them
# (envs/sim-<env>.yaml), holding out the last HOLDOUT mixtures for the report.
# Usage: bash paper/calibrate.sh                       (skills-tiny: 30 runs, then calibrates)
#        ENV=skills-smollm2 N_MIX=12 HOLDOUT=3 bash paper/calibrate.sh   (the pretrained model)
#        STAGE=calibrate bash paper/calibrate.sh       (calibrate from logged runs only)
#        STAGE=runs FROM=8 TO=16 bash paper/calibrate.sh   (only mix08..mix15: the draws are
#                                                  sequential, so two streams can split them)
# Cost: about one minute per skills-tiny run on 2 CPU cores; about 5 minutes per
# skills-smollm2 run on one core (262-405 s measured, two runs at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
ENV=${ENV:-skills-tiny}
N_MIX=${N_MIX:-30}
FROM=${FROM:-0}
TO=${TO:-$N_MIX}
HOLDOUT=${HOLDOUT:-6}
EXPERIMENT=${EXPERIMENT:-calib-$ENV}
# The base keeps the reward, the action and the simulator keys that are not fitted.
BASE=${BASE:-envs/sim-skills-tiny.yaml}
OUT=${OUT:-envs/sim-$ENV.yaml}
if [ "${STAGE:-all}" != calibrate ]; then
  # Mixtures drawn from a flat Dirichlet over the six skills (seeded), one run each: named
  # mix00..mixNN so that calibration groups (and holds out) whole mixtures.
  mixtures=$(mktemp)
  $PY - "$N_MIX" <<'PYEOF' > "$mixtures"
import sys
import numpy as np
rng = np.random.default_rng(2024)
for k in range(int(sys.argv[1])):
    w = rng.dirichlet(np.ones(6))
    print(f"mix{k:02d}", "[" + ",".join(f"{x:.4f}" for x in w) + "]")
PYEOF
  sed -n "$((FROM + 1)),${TO}p" "$mixtures" | while read -r name weights; do
    echo "== $name $weights ($(date +%H:%M:%S))"
    $PY -m mosgym.run --env "$ENV" --agent static-fixed --set "agent.name=$name" \
      --set "agent.params.weights=$weights" --seeds 0 --experiment "$EXPERIMENT" \
      --checkpoint-every 0 --no-progress -q
  done
  rm -f "$mixtures"
fi
[ "${STAGE:-all}" = runs ] && exit 0
$PY -m mosgym.calibrate --experiment "$EXPERIMENT" --holdout "$HOLDOUT" --base "$BASE" --out "$OUT"
