"""The package's shape: imports flow one way, from the experiment layer down to data.

Every import of every module (function-level ones included) is read with `ast`; a module may
import only from its own stage or the stages below it, and no two modules import each other,
directly or through others. The stage order is the one the subpackages' docstrings state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mosgym"

# Lowest first. A module's stage is the longest prefix of its dotted name listed here.
STAGES = [
    ("mosgym.errors", "mosgym.config", "mosgym.records", "mosgym.timing"),
    ("mosgym.data",),
    ("mosgym.learner",),
    ("mosgym.rewards",),
    ("mosgym.sim",),
    ("mosgym.envs",),
    ("mosgym.agents",),
    ("mosgym.experiment",),
    ("mosgym.analysis",),
    ("mosgym.integrations", "mosgym.benchmark"),
    # The entry points: the console script and the `python -m mosgym.X` shims.
    ("mosgym.cli", "mosgym.__main__", "mosgym.run", "mosgym.compare", "mosgym.sweep",
     "mosgym.calibrate", "mosgym.sim2real", "mosgym.fidelity", "mosgym.export",
     "mosgym.import"),
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int:
    best, rank = "", -1
    for i, names in enumerate(STAGES):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, rank = name, i
    return rank


def imports(path: Path) -> set[str]:
    """The mosgym modules `path` imports anywhere in its body (`from mosgym.x import y` counts
    as mosgym.x.y when that is a module, else mosgym.x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mosgym"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("mosgym"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if sub in MODULES else node.module)
    return found


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_stage() -> None:
    unplaced = sorted(m for m in MODULES if stage(m) < 0 and m != "mosgym")
    assert not unplaced, f"modules outside every stage (add them to STAGES): {unplaced}"


def test_imports_flow_down() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        if me == "mosgym":  # registers the envs by dotted strings; imports only errors
            assert imports(path) == {"mosgym.errors"}
            continue
        for target in imports(path):
            if target != "mosgym" and stage(target) > stage(me):
                upward.append(f"{me} -> {target}")
    assert not upward, "imports from a higher stage:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = {module_name(p): imports(p) & MODULES for p in PACKAGE.rglob("*.py")}
    # A package's __init__ importing its own modules is how packages export: not a cycle.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".") and d != name}
        if name in {"mosgym.agents", "mosgym.config", "mosgym.data", "mosgym.learner"}:
            graph[name] = {d for d in deps if not d.startswith(name + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*trail[trail.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modules_stay_small() -> None:
    """Over ~400 lines a module must say why at its top (the STYLE guide's limit)."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 420 and "Why this module is long" not in text[:3000]:
            long.append(f"{module_name(path)}: {text.count(chr(10))} lines")
    assert not long, "modules over ~400 lines without a reason at the top:\n" + "\n".join(long)


def test_every_folder_is_a_package() -> None:
    """A folder without __init__.py imports as a namespace package in a checkout but is left out
    of a wheel (setuptools' find_packages), and has no docstring saying what it owns."""
    folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(
        str(f.relative_to(PACKAGE)) for f in folders if not (f / "__init__.py").is_file()
    )
    assert not missing, f"folders without __init__.py: {missing}"
    for f in folders:
        doc = ast.get_docstring(ast.parse((f / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"{f.relative_to(PACKAGE)}/__init__.py: no docstring"


def test_the_console_script_runs_every_command_and_each_help_shows_examples(capsys) -> None:
    """`mosgym` as installed (pip install -e .) lists the commands; every command's --help
    has its examples; an unknown command is one error line and exit 2."""
    import shutil
    import subprocess
    import sys

    from mosgym import cli

    script = shutil.which("mosgym", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the console script is not installed next to this Python")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and all(name in out.stdout for name in cli.COMMANDS)
    bad = subprocess.run([script, "nosuch"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nosuch" in bad.stderr
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0, name
        assert "example" in capsys.readouterr().out.lower(), f"mosgym {name} --help has no examples"
