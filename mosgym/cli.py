"""`mosgym <command> ...`: one entry point for every command, in the style of `accelerate`.

Each command is the `main(argv)` of the module that owns it; the module is imported only when
its command runs, so `mosgym --help` is instant. `python -m mosgym.<command>` runs the same code.
"""

from __future__ import annotations

import importlib
import os
import sys

# command -> ("module:function" that runs it with argv, one line for the overview)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("mosgym.experiment.run:main", "run an agent on an env (fine-tuning), log to MLflow"),
    "compare": ("mosgym.analysis.compare:main", "IQM, bootstrap intervals, plots across seeds"),
    "sweep": ("mosgym.experiment.sweep:main", "agents x seeds x envs as trials, Ray or in turn"),
    "calibrate": ("mosgym.sim.calibrate:main", "fit the simulator to logged real runs"),
    "sim2real": ("mosgym.experiment.sim2real:main", "train an SB3 policy in the simulator"),
    "fidelity": ("mosgym.sim.fidelity:main", "does the simulator rank agents as the real env?"),
    "benchmark": ("mosgym.benchmark.cli:main", "RL algorithms trained in the simulator, ranked"),
    "export": ("mosgym.records.archive:export_main", "MLflow runs -> a plain-file run archive"),
    "import": ("mosgym.records.archive:import_main", "a run archive -> any MLflow store"),
}

USAGE = """usage: mosgym <command> [options]
(mosgym <command> --help: its options and examples)

commands:
{commands}

Examples:
  mosgym run                                    # the embedded default: tiny LM, MoS COSSIM+EMA
  mosgym run --agent static-temp --seeds 0-4
  mosgym compare --experiment skills-tiny
  mosgym sweep --envs sim-skills-tiny --agents mos-cossim static-temp --seeds 0-4
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"mosgym: error: unknown command {name!r} (valid: {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    module, function = COMMANDS[name][0].split(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
