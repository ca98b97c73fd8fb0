"""`python -m mosgym.run`: run a data-scheduling agent on a MixtureOfSkills env, log to MLflow.

With no arguments: the embedded default (a tiny Llama fine-tuned on the built-in skills, the
MoS COSSIM+EMA scorer), offline, a few minutes on a laptop CPU.

Every env step is checkpointed (./checkpoints/RUN_NAME, the last 2 kept; removed once the run
has finished, unless --keep-checkpoints). Ctrl-C or SIGTERM finishes the current env step, saves
it, marks the MLflow run KILLED and exits 130 / 143; `--resume DIR` continues exactly where the
checkpoint left off, in the same MLflow runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from mosgym.errors import MosgymError
from mosgym.experiment.request import (
    DEFAULT_AGENT,
    DEFAULT_ENV,
    RunRequest,
    list_configs,
    resolve_request,
    resolve_resume,
)
from mosgym.records.store import setup_cli_logging


class _Parser(argparse.ArgumentParser):
    """Argument mistakes are MosgymErrors too: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise MosgymError(f"{message} (see python -m mosgym.run --help)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_seed_step_set_args(p: argparse.ArgumentParser, seeds_help: str, set_help: str) -> None:
    """--seeds, --steps and --set, shared by `mosgym.run` and `mosgym.sweep`."""
    p.add_argument("--seeds", default=None, help=seeds_help)
    p.add_argument(
        "--steps", type=positive_int, default=None, help="total optimizer steps T (>= 1)"
    )
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=set_help
    )


def build_parser() -> argparse.ArgumentParser:
    envs = ", ".join(list_configs("envs")) or "(none found)"
    agents = ", ".join(list_configs("agents")) or "(none found)"
    p = _Parser(
        prog="python -m mosgym.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"env configs: {envs}\nagent configs: {agents}\n\n"
        "Examples:\n  python -m mosgym.run --agent static-temp --seeds 0-4\n"
        "  python -m mosgym.run --env mos-demo-tiny --agent ppo --set train.total_steps=200\n"
        "  python -m mosgym.run --resume checkpoints/skills-tiny__mos-cossim-ema__s0",
    )
    p.add_argument("--env", default=None, help=f"env config name or path (default {DEFAULT_ENV})")
    p.add_argument("--agent", default=None, help=f"agent config (default {DEFAULT_AGENT})")
    add_seed_step_set_args(
        p,
        seeds_help="seed, range or list: 0 | 0-4 | 0,3,7",
        set_help="override a config key, e.g. train.lr=3e-4, reward.type=diff, "
        "agent.params.lr=1e-3",
    )
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: env name)")
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="where checkpoints go (default ./checkpoints/RUN_NAME)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="K",
        help="checkpoint every K env steps (default 1; 0: never)",
    )
    p.add_argument("--keep", type=int, default=None, metavar="K", help="checkpoints kept (2)")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the last checkpoints after the run has finished (default: removed)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run checkpointed in DIR (same configs, same MLflow runs)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return p


def _interrupted(signum: int, req: RunRequest | None) -> str:
    """The one line printed when a signal stopped the run."""
    from mosgym.experiment.checkpoint import CheckpointDir

    line = f"mosgym: interrupted ({signal.Signals(signum).name}); the MLflow run is marked KILLED"
    if req is not None and req.checkpoint_dir:
        if CheckpointDir(Path(req.checkpoint_dir)).latest() is not None:
            line += f"; continue it with: python -m mosgym.run --resume {req.checkpoint_dir}"
    return line


def _run(args: argparse.Namespace) -> int:
    """Run the request; under torchrun, only rank 0 prints (errors are the same on every rank:
    the same configs)."""
    from mosgym.experiment import faults
    from mosgym.learner import distributed

    req: RunRequest | None = None
    with faults.signal_handlers():
        try:
            distributed.init()
            if not distributed.is_main():
                logging.getLogger("mosgym").setLevel(logging.ERROR)
            from mosgym.experiment.runner import run_request

            if args.resume:
                req, state = resolve_resume(args)
                results = run_request(req, state)
            else:
                req = resolve_request(args)
                results = run_request(req)
        except MosgymError as e:
            if distributed.is_main():
                print(f"mosgym: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            signum = int(getattr(e, "signum", signal.SIGINT))
            if distributed.is_main():
                print(_interrupted(signum, req), file=sys.stderr)
            return 128 + signum
        finally:
            distributed.teardown()
    if not distributed.is_main():
        return 0
    from mosgym.experiment.summary import print_summary

    kept = req.checkpoint_dir if req is not None and req.keep_checkpoints else None
    print_summary(results, kept)
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_cli_logging()
    try:
        args = build_parser().parse_args(argv)
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    if args.quiet:
        logging.getLogger("mosgym").setLevel(logging.ERROR)
        logging.getLogger("mosgym.security").setLevel(logging.WARNING)  # trust_* warnings
    return _run(args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
