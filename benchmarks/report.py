"""What every benchmark entry point shares: its argument parser (``--help`` from the module docstring,
``--out``), latency percentiles, and writing the machine-readable report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import REPO_ROOT

REPORTS = REPO_ROOT / "reports" / "bench"  # where every benchmark writes its JSON report by default


def parser(module: str, doc: str | None, out: Path) -> argparse.ArgumentParser:
    """``python -m benchmarks.<module>``'s parser, described by ``doc``, with ``--out`` (default ``out``)."""
    made = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("--out", type=Path, default=out, help="where the JSON report goes (default: %(default)s)")
    return made


def latency_ms(milliseconds: Iterable[float], digits: int = 3) -> dict[str, float]:
    """``p50_ms`` and ``p99_ms`` of timings already in milliseconds."""
    ms = np.asarray(list(milliseconds), dtype=np.float64)
    return {"p50_ms": round(float(np.percentile(ms, 50)), digits), "p99_ms": round(float(np.percentile(ms, 99)), digits)}


def write(out: Path, result: Mapping[str, Any]) -> None:
    """The report as indented JSON at ``out`` (parents created); says where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out}")
