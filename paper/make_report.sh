#!/usr/bin/env bash
# Rebuild every table and figure of paper/README.md from the logged runs (nothing typed by hand):
# compare per table into paper/results/<table>/ (comparison.md, .csv, PNGs), the simulator's
# fidelity and calibration report, then the README's generated blocks.
# The runs are read from the run archive paper/archive when it exists (no MLflow store needed),
# else from MLflow. ARCHIVE=DIR reads another archive; ARCHIVE= (empty) reads MLflow even when
# paper/archive exists. To refresh the archive after re-running: python -m mosgym.export
#   --experiment paper-skills-tiny --experiment calib-skills-tiny
#   --experiment paper-sim-skills-tiny --out paper/archive
# Prerequisites for MLflow: bash paper/run_skills_tiny.sh, bash paper/calibrate.sh,
# bash paper/sim_to_real.sh (the same MLFLOW_TRACKING_URI for all).
# RESULTS and README name other output places, N_BOOT the bootstrap samples (the tests use them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
EXP=${EXPERIMENT:-paper-skills-tiny}
SIM_EXP=${SIM_EXPERIMENT:-paper-sim-skills-tiny}
SMOLLM2_EXP=${SMOLLM2_EXPERIMENT:-paper-skills-smollm2}
SMOLLM2_SIM_EXP=${SMOLLM2_SIM_EXPERIMENT:-paper-sim-skills-smollm2-corners13-ridge}
SMOLLM2_FIDELITY_AGENTS="static-prop static-temp static-uni mos-cossim-ema mos-diff-ema mos-prior-tau1 odm"
OUT=${RESULTS:-paper/results}
README=${README:-paper/README.md}
if [[ -z ${ARCHIVE+set} && -d paper/archive ]]; then ARCHIVE=paper/archive; fi
SRC=()
if [[ -n ${ARCHIVE:-} ]]; then SRC=(--archive "$ARCHIVE"); echo "== runs from archive $ARCHIVE"; fi
mkdir -p "$OUT"
cmp() {
  local name=$1; shift
  echo "== $name"
  $PY -m mosgym.compare ${SRC[@]+"${SRC[@]}"} --experiment "$EXP" --out "$OUT/$name" \
    --reference static-temp --n-boot "${N_BOOT:-2000}" "$@" >/dev/null
}
table2="static-prop static-temp static-uni multidds multiuat mos-cossim mos-cossim-ema mos-diff mos-diff-ema"
cmp table2 --agents $table2
cmp table3 --agents static-temp mos-prior-tau1 mos-prior-tau10 mos-cossim-ema
cmp table5 --agents static-temp mos-cossim-ema mospec-cossim mospec-diff
cmp rl --agents static-temp mos-cossim-ema mos-prior-tau1 odm ppo a2c sac ppo-from-sim
echo "== smollm2"   # the pretrained model (issue 16); kept as it is when those runs are absent
if ! err=$($PY -m mosgym.compare ${SRC[@]+"${SRC[@]}"} --out "$OUT/smollm2" \
    --experiment "$SMOLLM2_EXP" --reference static-prop \
    --n-boot "${N_BOOT:-2000}" 2>&1 >/dev/null); then
  echo "smollm2: block kept ($err)"
fi
echo "== fidelity"
$PY -m mosgym.fidelity ${SRC[@]+"${SRC[@]}"} --real "$EXP" --sim "$SIM_EXP" \
  --agents static-prop static-temp static-uni mos-cossim-ema > "$OUT/fidelity.md"
cp envs/sim-skills-tiny.report.md "$OUT/calibration.md"
echo "== SmolLM2 simulator: calibration and fidelity"   # kept as they are when absent
if [[ -f envs/sim-skills-smollm2.report.md ]]; then
  cp envs/sim-skills-smollm2.report.md "$OUT/calibration-smollm2.md"
fi
# block NAME CMD...: CMD's output becomes $OUT/NAME.md (the README block NAME). It is written to
# a temporary file first, so a command that fails (its runs are absent) leaves the block as it
# was, and never half a table.
block() {
  local name=$1 err; shift
  if err=$("$@" 2>&1 >"$OUT/.$name"); then
    mv "$OUT/.$name" "$OUT/$name.md"
  else
    rm -f "$OUT/.$name"
    echo "$name: block kept (${err##*$'\n'})"
  fi
}
block fidelity-smollm2 $PY -m mosgym.fidelity ${SRC[@]+"${SRC[@]}"} --real "$SMOLLM2_EXP" \
  --sim "$SMOLLM2_SIM_EXP" --agents $SMOLLM2_FIDELITY_AGENTS
# The SmolLM2 simulator's calibrations side by side: the first one (flat draws, no penalty),
# each remedy alone, both (envs/sim-skills-smollm2.yaml).
V=paper/results/calibration-smollm2-variants
block calibration-variants-smollm2 $PY paper/calibration_variants.py ${SRC[@]+"${SRC[@]}"} \
  --real "$SMOLLM2_EXP" --agents $SMOLLM2_FIDELITY_AGENTS \
  --variant "9 flat draws=$V/flat9.yaml:paper-sim-skills-smollm2" \
  --variant "9 flat, ridge (CV)=$V/flat9-ridge.yaml:paper-sim-skills-smollm2-flat9-ridge" \
  --variant "9 flat + 4 corners=$V/corners13.yaml:paper-sim-skills-smollm2-corners13" \
  --variant "9 flat + 4 corners, ridge (CV)=envs/sim-skills-smollm2.yaml:$SMOLLM2_SIM_EXP"
# Issue 15 item 4: the online learners at S = 50 and S = 10 (paper/decisions_per_run.sh).
block decisions $PY paper/decisions_table.py ${SRC[@]+"${SRC[@]}"} \
  --agents ppo sac odm mos-cossim-ema --interval "50=$EXP" --interval "10=$EXP-s10" --seeds 0 1 2
$PY paper/fill_readme.py ${SRC[@]+"${SRC[@]}"} --experiments "$EXP" calib-skills-tiny "$SIM_EXP" \
  "$SMOLLM2_EXP" calib-skills-smollm2 paper-sim-skills-smollm2 paper-sim-skills-smollm2-flat9-ridge \
  paper-sim-skills-smollm2-corners13 "$SMOLLM2_SIM_EXP" "$EXP-s10" bench-skills-tiny-real \
  --results "$OUT" "$README"
