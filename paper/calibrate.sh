#!/usr/bin/env bash
# Real runs of an env under varied fixed mixtures, then the simulator's calibration from them
# (envs/sim-<env>.yaml), holding out the last HOLDOUT mixtures for the report.
# Usage: bash paper/calibrate.sh                       (skills-tiny: 30 runs, then calibrates)
#        ENV=skills-smollm2 N_MIX=12 HOLDOUT=3 bash paper/calibrate.sh   (the pretrained model)
#        STAGE=calibrate bash paper/calibrate.sh       (calibrate from logged runs only)
#        STAGE=calibrate ENV=skills-smollm2 HOLDOUT=3 TRANSFER_RIDGE=cv bash paper/calibrate.sh
#        STAGE=runs FROM=8 TO=16 bash paper/calibrate.sh   (only mix08..mix15: the draws are
#                                                  sequential, so two streams can split them)
#        STAGE=runs ENV=skills-smollm2 PREFIX=corner ALPHA=0.3 DRAW_SEED=2025 N_MIX=4 \
#          bash paper/calibrate.sh   (sparse draws: mixtures near the corners where policies go,
#                                     e.g. PROP's half on one skill, which flat draws rarely give;
#                                     corner* sorts before mix*, so --holdout still holds out mix*)
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
PREFIX=${PREFIX:-mix}
ALPHA=${ALPHA:-1}
DRAW_SEED=${DRAW_SEED:-2024}
EXPERIMENT=${EXPERIMENT:-calib-$ENV}
# The base keeps the reward, the action and the simulator keys that are not fitted.
BASE=${BASE:-envs/sim-skills-tiny.yaml}
OUT=${OUT:-envs/sim-$ENV.yaml}
if [ "${STAGE:-all}" != calibrate ]; then
  # Mixtures drawn from a Dirichlet(ALPHA) over the six skills (seeded; ALPHA 1 is flat), one
  # run each: named PREFIX00..PREFIXNN so that calibration groups (and holds out) whole mixtures.
  mixtures=$(mktemp)
  $PY - "$N_MIX" "$PREFIX" "$ALPHA" "$DRAW_SEED" <<'PYEOF' > "$mixtures"
import sys
import numpy as np
n_mix, prefix, alpha, seed = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(seed)
for k in range(n_mix):
    w = rng.dirichlet(np.full(6, alpha))
    print(f"{prefix}{k:02d}", "[" + ",".join(f"{x:.4f}" for x in w) + "]")
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
# TRANSFER_RIDGE=cv (or a number) keeps transfer coefficients the runs leave undetermined near 0.
$PY -m mosgym.calibrate --experiment "$EXPERIMENT" --holdout "$HOLDOUT" --base "$BASE" --out "$OUT" \
  ${TRANSFER_RIDGE:+--transfer-ridge "$TRANSFER_RIDGE"}
