#!/usr/bin/env bash
# Simulator experiments on a calibrated envs/sim-<env>.yaml (after paper/calibrate.sh):
#  1. fidelity: static heuristics and MoS on the simulator, same seeds as the real runs;
#  2. sim-to-real: PPO trained in the simulator (policies/ppo-sim-<env>.zip and
#     agents/<DEPLOY_AGENT>.yaml), then deployed on the real env.
# Usage: bash paper/sim_to_real.sh                      (skills-tiny, 5 seeds)
#        ENV=skills-smollm2 SEEDS=0-2 DEPLOY_AGENT=ppo-from-sim-smollm2 \
#          AGENTS="static-prop static-temp static-uni mos-cossim-ema mos-diff-ema mos-prior-tau1 odm" \
#          bash paper/sim_to_real.sh                    (the pretrained model)
#        STAGE=sim | STAGE=deploy                       (only the simulator part / the deployment)
#        STAGE=fidelity                                 (only the agents on the simulator)
#        SIM_ENV_FILE=paper/results/calibration-smollm2-variants/corners13.yaml \
#          SIM_ENV=sim-skills-smollm2-corners13 SIM_EXPERIMENT=paper-sim-skills-smollm2-corners13
#                                  (another calibration of the same env; SIM_ENV names the policy)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SEEDS=${SEEDS:-0-4}
ENV=${ENV:-skills-tiny}
SIM_ENV=${SIM_ENV:-sim-$ENV}
SIM_ENV_FILE=${SIM_ENV_FILE:-envs/$SIM_ENV.yaml}   # another file: SIM_ENV names its outputs
EXPERIMENT=${EXPERIMENT:-paper-$ENV}
SIM_EXPERIMENT=${SIM_EXPERIMENT:-paper-sim-$ENV}
AGENTS=${AGENTS-static-prop static-temp static-uni mos-cossim-ema}   # AGENTS="": none
DEPLOY_AGENT=${DEPLOY_AGENT:-ppo-from-sim}
if [ "${STAGE:-all}" != deploy ]; then
  for agent in $AGENTS; do
    $PY -m mosgym.run --env "$SIM_ENV_FILE" --agent "$agent" --seeds "$SEEDS" \
      --experiment "$SIM_EXPERIMENT" --checkpoint-every 0 --no-progress -q > /dev/null
  done
  [ "${STAGE:-all}" = fidelity ] && exit 0
  $PY -m mosgym.sim2real --env "$SIM_ENV_FILE" --agent agents/ppo.yaml \
    --timesteps 200000 --n-envs 16 --seed 0 --set reward.type=mean_progress \
    --set params.hyperparams.gamma=0.99 --set params.hyperparams.n_steps=64 \
    --set params.hyperparams.batch_size=256 --threads 1 \
    --out "policies/ppo-$SIM_ENV.zip" --agent-out "agents/$DEPLOY_AGENT.yaml"
fi
if [ "${STAGE:-all}" != sim ]; then
  $PY -m mosgym.run --env "$ENV" --agent "$DEPLOY_AGENT" --seeds "$SEEDS" \
    --experiment "$EXPERIMENT" --checkpoint-every 0 --no-progress -q
fi
