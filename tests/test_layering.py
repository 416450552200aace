"""Imports run one way: each package may import only packages of lower layers (issue 18).

The layers, from the bottom:

    common                          contracts, paths, lake I/O, registry, supervision
    ingest, simulation              data in: a business's files, the synthetic worlds
    models, feature_repo            the model library (towers, ranker, evaluation, releases); Feast
    spark_jobs, beam_jobs           batch and streaming jobs (they train and feed the models)
    experiments                     assignment, A/B statistics, the dashboard
    serving                         the online service
    orchestration                   the nightly DAG's tasks, building a whole release
    loop                            the closed-loop simulation (drives serving and the night)
    cli, dags                       the command line and the Airflow DAG files
    benchmarks

Packages of one layer may not import each other. A package's ``cli.py`` or ``__main__.py`` is its
piece of the command line: it belongs to the ``cli`` layer, whatever its folder. Every import counts,
including one inside a function (a lazy import is still a dependency). A new top-level package must
be given a layer here before its code can land.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS: tuple[tuple[str, ...], ...] = (
    ("common",),
    ("ingest", "simulation"),
    ("models", "feature_repo"),
    ("spark_jobs", "beam_jobs"),
    ("experiments",),
    ("serving",),
    ("orchestration",),
    ("loop",),
    ("cli", "dags"),
    ("benchmarks",),
)
COMMAND_LINE_FILES = ("cli.py", "__main__.py")  # a package's piece of the command line: the cli layer
NOT_CODE = {"tests", "config", "examples", "scripts", "reports"}


def _imported_packages(source: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def back_edges(root: Path, layers: Sequence[Sequence[str]]) -> list[str]:
    """Every import under ``root`` that runs against ``layers``, as ``file:line: a -> b (why)``."""
    level = {package: i for i, packages in enumerate(layers) for package in packages}
    command_line = level["cli"]
    problems = []
    for package in sorted(level):
        for source in sorted((root / package).rglob("*.py")):
            here = command_line if source.name in COMMAND_LINE_FILES else level[package]
            for line, target in _imported_packages(source):
                if target == package or target not in level:
                    continue
                where = f"{source.relative_to(root)}:{line}: {package} -> {target}"
                if level[target] > here:
                    problems.append(f"{where} (imports a higher layer)")
                elif level[target] == here and source.name not in COMMAND_LINE_FILES:
                    problems.append(f"{where} (packages of one layer are independent)")
    return problems


def test_every_package_has_a_layer() -> None:
    folders = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")
               and any(p.rglob("*.py")) and p.name not in NOT_CODE and not p.name.endswith(".egg-info")}
    placed = {package for packages in LAYERS for package in packages}
    assert folders == placed, f"give these a layer in LAYERS: {sorted(folders - placed)}; gone: {sorted(placed - folders)}"


def test_imports_run_one_way() -> None:
    problems = back_edges(REPO, LAYERS)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_the_check_finds_a_back_edge_and_a_peer_import(tmp_path: Path) -> None:
    files = {
        "low/a.py": "import os\nfrom low import b\n",
        "low/b.py": "def f():\n    from high.x import y  # lazy, still counted\n",
        "mid/m.py": "import low.a\nimport peer\n",
        "peer/p.py": "",
        "mid/cli.py": "from high import x\nimport peer\n",  # the command line may import anything
        "high/x.py": "from mid import m\n",
        "cli/main.py": "import high\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = back_edges(tmp_path, [("low",), ("mid", "peer"), ("high",), ("cli",)])
    assert problems == ["low/b.py:2: low -> high (imports a higher layer)",
                        "mid/m.py:2: mid -> peer (packages of one layer are independent)"]
