"""`python -m mosgym.benchmark` (`mosgym benchmark`): which algorithm schedules data best?

For one suite (a real env and its calibrated simulator): every algorithm x seed is trained in
the simulator for a budget of simulated env steps and scored every K steps on held-out simulator
episodes (learning curves); every final policy is then deployed frozen on the real env beside
the static heuristics and MoS, and a leaderboard is read back from MLflow. Rerunning the same
command skips what is finished.

Stages (--stage): sim (train and score in the simulator), real (deploy), report (leaderboard
from MLflow alone), all (the three in turn, the default), tune (Optuna search of each
algorithm's entry in the simulator; writes agents/bench/<suite>/<algo>.yaml), real-train (the
other route, not in 'all': each SB3 algorithm trained on the real env itself across
--real-episodes fine-tuning runs, then deployed as <algo>-real; mosgym.benchmark.real_train),
offline (not in 'all' either: CQL and IQL learnt from the real runs already in MLflow, then
deployed as <algo>-offline; mosgym.benchmark.offline).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from mosgym.benchmark.protocol import PAIRINGS, Settings
from mosgym.benchmark.suite import BASELINES, DEFAULT_ALGOS, check_algos, load_entry, load_suite
from mosgym.benchmark.train import StageCounts
from mosgym.errors import MosgymError
from mosgym.experiment.request import parse_seeds
from mosgym.records.store import setup_cli_logging

log = logging.getLogger("mosgym.benchmark")
STAGES = ("all", "sim", "real", "report", "tune", "real-train", "offline")

EXAMPLES = """Examples:
  mosgym benchmark --suite skills-tiny --stage sim          # train and score in the simulator
  mosgym benchmark --suite skills-tiny --stage real         # deploy on the real env
  mosgym benchmark --suite skills-tiny --stage report --readme paper/README.md
  mosgym benchmark --suite skills-tiny --algos ppo ppo-dr mos --seeds 0-2 --budget 50000
  mosgym benchmark --suite skills-tiny --stage tune --algos ppo mos --trials 30
  mosgym benchmark --suite skills-tiny --algos ppo sac --stage real-train --real-episodes 8
  mosgym benchmark --suite skills-tiny --stage offline --offline-algos cql iql
"""


class _Parser(argparse.ArgumentParser):
    """Argument mistakes are MosgymErrors too: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise MosgymError(f"{message} (see mosgym benchmark --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mosgym benchmark",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--suite", default="skills-tiny", help="suite name: envs/SUITE.yaml + envs/sim-SUITE.yaml")
    a("--real-env", default=None, help="real env config (default: the suite's)")
    a("--sim-env", default=None, help="calibrated simulator config (default: sim-SUITE)")
    a(
        "--algos",
        nargs="+",
        default=list(DEFAULT_ALGOS),
        metavar="ALGO",
        help=f"algorithms (default: {' '.join(DEFAULT_ALGOS)}; ppo-dr etc.: randomised sims)",
    )
    a("--seeds", default="0-4", help="training seeds (default 0-4)")
    a("--budget", type=int, default=200_000, help="simulated env steps per training run")
    a("--eval-every", type=int, default=None, help="env steps between evaluations (budget/10)")
    a("--eval-episodes", type=int, default=32, help="held-out simulated episodes per evaluation")
    a("--real-seeds", default="0-4", help="seeds of the real deployments (default 0-4)")
    a(
        "--pairing",
        choices=PAIRINGS,
        default="cross",
        help="cross: every policy on every real seed; zip: training seed i on real seed i",
    )
    a(
        "--baselines",
        nargs="*",
        default=list(BASELINES),
        metavar="AGENT",
        help=f"agent configs deployed beside them (default: {' '.join(BASELINES)})",
    )
    a(
        "--dr-spread",
        type=float,
        default=0.1,
        help="relative log-std of randomised simulator parameters (-dr algorithms; default 0.1)",
    )
    a("--hparams", default=None, metavar="DIR", help="entries folder (default agents/bench/SUITE)")
    a(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env override applied to both envs, e.g. train.total_steps=200",
    )
    a("--stage", choices=STAGES, default="all", help="what to run (default all)")
    a("--out", type=Path, default=None, help="policies and report (default benchmarks/SUITE)")
    a("--experiment", default=None, help="MLflow experiment of the parent (bench-SUITE)")
    a("--real-experiment", default=None, help="experiment of the deployments (bench-SUITE-real)")
    a(
        "--shard",
        default=None,
        metavar="I/N",
        help="real stages: run only deployments (real-train: chains; offline: algorithm x "
        "seed) k with k %% N == I",
    )
    a(
        "--real-episodes",
        type=int,
        default=8,
        help="real-train: real fine-tuning runs each SB3 algorithm x seed learns from (8)",
    )
    a(
        "--real-train-algos",
        nargs="+",
        default=None,
        metavar="ALGO",
        help="real-train: only these of --algos (default: every SB3 one)",
    )
    a(
        "--offline-algos",
        nargs="+",
        default=["cql", "iql"],
        metavar="ALGO",
        help="offline: d3rlpy algorithms learnt from the logged real runs (cql iql)",
    )
    a(
        "--offline-steps",
        type=int,
        default=3000,
        help="offline: gradient steps per algorithm x seed (3000)",
    )
    a("--readme", type=Path, default=None, help="report: fill its benchmark-SUITE block")
    a("--n-boot", type=int, default=2000, help="bootstrap samples (default 2000)")
    a("--threads", type=int, default=1, help="torch threads (default 1: tiny networks)")
    t = p.add_argument_group("tuning (--stage tune)")
    t.add_argument("--trials", type=int, default=30, help="Optuna trials per algorithm")
    t.add_argument(
        "--tune-budget",
        type=int,
        default=None,
        help="simulated env steps per trial (default: --budget / 4)",
    )
    t.add_argument("--tune-seeds", default="0", help="training seeds per trial (default 0)")
    t.add_argument("--tune-episodes", type=int, default=16, help="episodes scoring a trial")
    t.add_argument("--tune-out", type=Path, default=None, help="default agents/bench/SUITE")
    t.add_argument(
        "--tune-storage",
        default=None,
        help="Optuna storage URL (default sqlite in --out: resumable)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Everything the user gave, checked, before any MLflow run or training."""
    algos = check_algos(args.algos)
    suite = load_suite(args.suite, args.real_env, args.sim_env, args.sets)
    entries = {a: load_entry(a, args.suite, args.hparams) for a in algos}
    eval_every = args.eval_every if args.eval_every is not None else max(1, args.budget // 10)
    settings = Settings(
        suite=suite,
        entries=entries,
        seeds=parse_seeds(args.seeds),
        budget=args.budget,
        eval_every=eval_every,
        eval_episodes=args.eval_episodes,
        real_seeds=parse_seeds(args.real_seeds),
        pairing=args.pairing,
        dr_spread=args.dr_spread,
        baselines=_baselines(args.baselines),
        out=args.out or Path("benchmarks") / args.suite,
        experiment=args.experiment or f"bench-{args.suite}",
        real_experiment=args.real_experiment or f"bench-{args.suite}-real",
    )
    settings.check()
    parse_shard(args.shard)
    if args.readme is not None and args.stage in ("all", "report"):
        from mosgym.benchmark.report import block_name, check_block

        check_block(args.readme, block_name(settings))  # now, not after hours of training
    if args.n_boot < 100:
        raise MosgymError(f"--n-boot {args.n_boot}: use at least 100 bootstrap samples")
    if args.threads < 1:
        raise MosgymError(f"--threads {args.threads}: must be >= 1")
    if args.real_episodes < 1:
        raise MosgymError(f"--real-episodes {args.real_episodes}: must be >= 1")
    if args.offline_steps < 1:
        raise MosgymError(f"--offline-steps {args.offline_steps}: must be >= 1")
    if args.stage == "offline":
        from mosgym.benchmark.offline import check_algos as check_offline

        check_offline(args.offline_algos)
    if args.stage == "real-train":
        from mosgym.benchmark.real_train import trainable

        trainable(settings, args.real_train_algos)  # nothing to train: an error now
    return settings


def parse_shard(text: str | None) -> tuple[int, int]:
    """'1/2' -> (1, 2); None -> (0, 1)."""
    if text is None:
        return 0, 1
    i, sep, n = text.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise MosgymError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/2")
    return shard


def _baselines(names: list[str]) -> list[str]:
    from mosgym.benchmark.suite import baseline_agent
    from mosgym.experiment.request import list_configs

    for name in names:  # a missing or invalid file is an error now, not after training
        try:
            baseline_agent(name)
        except MosgymError as e:
            if "no such config" not in str(e):
                raise
            raise MosgymError(
                f"--baselines {name}: no such agent config (known: "
                f"{', '.join(list_configs('agents'))})"
            ) from None
    if len(set(names)) != len(names):
        raise MosgymError(f"--baselines {' '.join(names)}: name each agent once")
    return list(names)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen stages; returns what each did (StageCounts, the report, the tuning)."""
    import torch

    from mosgym.benchmark import tracking as bt
    from mosgym.experiment.tracking import check_tracking_server
    from mosgym.records.runs import make_client

    settings = settings_from_args(args)
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {}
    if args.stage == "tune":  # Optuna's own storage; nothing goes to MLflow
        from mosgym.benchmark.tune import tune_from_args

        out["tune"] = tune_from_args(args, settings)
        return out
    check_tracking_server()
    client = make_client(None)
    if args.stage in ("all", "sim"):
        from mosgym.benchmark.train import run_sim_stage

        name = f"benchmark__{settings.suite.name}"
        parent = bt.open_parent(
            client, settings.experiment, settings.bench_id, settings.spec(), name
        )
        try:
            out["sim"] = run_sim_stage(client, parent, settings)
        except KeyboardInterrupt:
            bt.close_parent(client, parent, "KILLED")
            raise
        except BaseException:
            bt.close_parent(client, parent, "FAILED")
            raise
        bt.close_parent(client, parent, "FINISHED")
        _summary("simulator", out["sim"])
    if args.stage in ("all", "real"):
        from mosgym.benchmark.deploy import run_real_stage

        out["real"] = run_real_stage(client, settings, parse_shard(args.shard))
        _summary("real", out["real"])
    if args.stage == "real-train":
        from mosgym.benchmark.real_train import run_real_train_stage

        shard = parse_shard(args.shard)
        out["real-train"] = run_real_train_stage(
            client, settings, args.real_episodes, shard, args.real_train_algos
        )
        _summary("real-train", out["real-train"])
    if args.stage == "offline":
        from mosgym.benchmark.offline import run_offline_stage

        shard = parse_shard(args.shard)
        out["offline"] = run_offline_stage(
            client, settings, args.offline_algos, args.offline_steps, shard
        )
        _summary("offline", out["offline"])
    if args.stage in ("all", "report"):
        from mosgym.benchmark.report import run_report_stage

        out["report"] = run_report_stage(client, settings, args.readme, args.n_boot)
    return out


def _summary(stage: str, counts: StageCounts) -> None:
    log.info(
        "%s stage: %d done, %d skipped (finished before)",
        stage,
        len(counts.done),
        len(counts.skipped),
    )


def main(argv: list[str] | None = None) -> int:
    from mosgym.experiment import faults

    setup_cli_logging("%(message)s")
    with faults.signal_handlers():  # SIGTERM too marks the current run KILLED before exiting
        try:
            args = build_parser().parse_args(argv)
            given = sys.argv[1:] if argv is None else list(argv)
            args.command = "mosgym benchmark " + " ".join(given)
            if not args.quiet:
                logging.getLogger("mosgym.benchmark").setLevel(logging.INFO)
            out = run(args)
        except MosgymError as e:
            print(f"mosgym: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(
                "mosgym: interrupted; rerun the same command to continue (finished parts are "
                "skipped)",
                file=sys.stderr,
            )
            return 128 + int(getattr(e, "signum", signal.SIGINT))
    if "report" in out:
        print(out["report"].markdown, end="")
        print(f"wrote {out['report'].folder}/", file=sys.stderr)
    if "tune" in out:
        for path in out["tune"]:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
