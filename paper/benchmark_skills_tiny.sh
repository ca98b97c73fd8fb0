#!/usr/bin/env bash
# The data-scheduling benchmark on skills-tiny (issue 15): which RL algorithm schedules data
# best? Trained in the calibrated simulator (envs/sim-skills-tiny.yaml), deployed frozen on the
# real env (envs/skills-tiny.yaml) beside PROP, TEMP, UNI and MoS; leaderboard into README.md.
#   STAGE=tune bash paper/benchmark_skills_tiny.sh   # Optuna: agents/bench/skills-tiny/*.yaml
#   bash paper/benchmark_skills_tiny.sh              # sim, real, report (the default: all)
#   STAGE=sim|real|report bash paper/benchmark_skills_tiny.sh
#   STAGE=real-train REAL_TRAIN_ALGOS="ppo sac" REAL_EPISODES=10 bash paper/benchmark_skills_tiny.sh
#     # the other route: trained on the real env itself (after sim), deployed as ppo-real
#   STAGE=offline OFFLINE_ALGOS="cql iql" bash paper/benchmark_skills_tiny.sh
#     # offline RL (d3rlpy) from the real runs already in MLflow (after sim), as cql-offline
# Run tune first (it writes the entries the other stages read; a changed entry is a new
# benchmark). Every stage is resumable: after an interruption rerun the same command. The real
# stage can run as two processes on two cores: SHARD=0/2 ... & SHARD=1/2 ... (STAGE=real).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
ALGOS=${ALGOS:-ppo a2c sac td3 dqn mos odm ppo-dr sac-dr}
# shellcheck disable=SC2206  # ALGOS is a space-separated list on purpose
ARGS=(--suite skills-tiny --algos $ALGOS --seeds "${SEEDS:-0-4}" --budget "${BUDGET:-200000}"
      --real-seeds "${REAL_SEEDS:-0-4}" --pairing "${PAIRING:-cross}")
bench() { $PY -m mosgym.benchmark "${ARGS[@]}" "$@"; }
case "${STAGE:-all}" in
  tune) bench --stage tune --trials "${TRIALS:-30}" --tune-budget "${TUNE_BUDGET:-50000}" ;;
  sim) bench --stage sim ;;
  real) bench --stage real ${SHARD:+--shard "$SHARD"} ;;
  # shellcheck disable=SC2086  # REAL_TRAIN_ALGOS is a space-separated list on purpose
  real-train) bench --stage real-train --real-episodes "${REAL_EPISODES:-8}" \
    ${REAL_TRAIN_ALGOS:+--real-train-algos $REAL_TRAIN_ALGOS} ${SHARD:+--shard "$SHARD"} ;;
  # shellcheck disable=SC2086  # OFFLINE_ALGOS is a space-separated list on purpose
  offline) bench --stage offline --offline-algos ${OFFLINE_ALGOS:-cql iql} \
    --offline-steps "${OFFLINE_STEPS:-3000}" ${SHARD:+--shard "$SHARD"} ;;
  report) bench --stage report --readme paper/README.md ;;
  all) bench --stage sim && bench --stage real && bench --stage report --readme paper/README.md ;;
  *) echo "STAGE must be tune, sim, real, real-train, offline, report or all" >&2; exit 2 ;;
esac
