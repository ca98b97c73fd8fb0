#!/usr/bin/env bash
# Simulator experiments on the calibrated envs/sim-skills-tiny.yaml (after calibrate_skills_tiny.sh):
#  1. fidelity: PROP, TEMP, UNI and MoS on the simulator, same seeds as the real runs;
#  2. sim-to-real: PPO trained in the simulator (policies/ppo-sim-skills-tiny.zip and
#     agents/ppo-from-sim.yaml), then deployed on the real env for 5 seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEEDS=${SEEDS:-0-4}
EXPERIMENT=${EXPERIMENT:-paper-skills-tiny}
SIM_EXPERIMENT=${SIM_EXPERIMENT:-paper-sim-skills-tiny}
if [ "${STAGE:-all}" != deploy ]; then
  for agent in static-prop static-temp static-uni mos-cossim-ema; do
    $PY -m mosgym.run --env sim-skills-tiny --agent "$agent" --seeds "$SEEDS" \
      --experiment "$SIM_EXPERIMENT" --checkpoint-every 0 --no-progress -q > /dev/null
  done
  $PY -m mosgym.sim2real --env envs/sim-skills-tiny.yaml --agent agents/ppo.yaml \
    --timesteps 200000 --n-envs 16 --seed 0 --set reward.type=mean_progress \
    --set params.hyperparams.gamma=0.99 --set params.hyperparams.n_steps=64 \
    --set params.hyperparams.batch_size=256 --threads 1 \
    --out policies/ppo-sim-skills-tiny.zip --agent-out agents/ppo-from-sim.yaml
fi
if [ "${STAGE:-all}" != sim ]; then
  $PY -m mosgym.run --agent ppo-from-sim --seeds "$SEEDS" --experiment "$EXPERIMENT" \
    --checkpoint-every 0 --no-progress -q
fi
