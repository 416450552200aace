"""The one scoring interface of every ranker export, and the export metadata both exports share.

An export directory holds the format's files plus ``ranker.json``: the format, the ranker config
(feature lists, structure, ...) and the SHA-256 of every other file of the export, checked on load,
so a truncated or corrupted export is refused with :class:`ExportError` instead of scoring garbage.
This module does not import TensorFlow (the fast export serves without it).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.ranking.config import RankerConfig

META_FILE = "ranker.json"
FORMAT_VERSION = 1
# Export parity (float32 NumPy vs TF differ by ~1e-7): the largest score difference allowed, as a share of
# the spread of the scores on the probe (see compare_scores), and its absolute floor (scores all alike).
PARITY_TOLERANCE = 1e-3
PARITY_ABSOLUTE_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    """A ranker export that cannot be loaded: missing, corrupt, or inconsistent with its metadata."""


def _file_digests(path: Path) -> dict[str, str]:
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*")) if f.is_file() and f.name != META_FILE
    }


def write_meta(path: Path, fmt: str, config: RankerConfig, extra: Mapping[str, Any] | None = None) -> None:
    """Write ``ranker.json`` last, after every other file of the export is in place."""
    meta = {"format": fmt, "format_version": FORMAT_VERSION, "config": config.to_dict(),
            "files": _file_digests(path), **(extra or {})}
    (path / META_FILE).write_text(json.dumps(meta, indent=1))


def read_meta(path: Path, fmt: str) -> tuple[dict[str, Any], RankerConfig]:
    """The metadata and config of the export at ``path``; raises :class:`ExportError` if it is not sound."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise ExportError(f"{path} is not a ranker export: {META_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        config = RankerConfig.from_dict(meta["config"])
        digests = meta["files"]
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ExportError(f"{meta_path} is corrupt: {exc}") from exc
    if meta.get("format") != fmt or meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path} holds format {meta.get('format')!r} v{meta.get('format_version')}, "
                          f"expected {fmt!r} v{FORMAT_VERSION}")
    if config.structure is None:
        raise ExportError(f"{meta_path}: the exported config names no structure")
    actual = _file_digests(Path(path))
    if actual != digests:
        bad = sorted(k for k in set(actual) | set(digests) if actual.get(k) != digests.get(k))
        raise ExportError(f"{path}: files missing, added or changed since export: {bad}")
    return meta, config


class Scorer(ABC):
    """Scores a batch of candidates. ``features`` maps every feature of :attr:`config` to a 1-D array
    (float for numeric features, str for categorical ones), one entry per candidate; other keys are
    ignored. There is no position input: position only ever enters training."""

    kind: str
    config: RankerConfig

    @abstractmethod
    def _predict(self, features: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """All outputs for ``n`` >= 1 validated candidates."""

    def predict(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``p_click``, ``p_conversion`` (if the ranker has the head) and ``score``, float32 arrays."""
        n = self._batch_size(features)
        if n == 0:
            return {k: np.zeros(0, np.float32) for k in self.outputs}
        return self._predict(features, n)

    def score(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ranking score of each candidate (higher ranks first)."""
        return self.predict(features)["score"]

    @property
    def outputs(self) -> list[str]:
        return ["p_click", *(["p_conversion"] if self.config.conversion_head else []), "score"]

    def _batch_size(self, features: Mapping[str, np.ndarray]) -> int:
        missing = [n for n in self.config.features if n not in features]
        if missing:
            raise KeyError(f"features missing for the ranker: {missing}")
        sizes = {n: len(features[n]) for n in self.config.features}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"feature arrays differ in length: {sizes}")
        return next(iter(sizes.values()))


def parity_tolerance(reference: np.ndarray) -> float:
    """The largest score difference two exports may show on ``reference``'s candidates:
    :data:`PARITY_TOLERANCE` of the spread of the scores (max - min), at least
    :data:`PARITY_ABSOLUTE_TOLERANCE`."""
    reference = np.asarray(reference, np.float64)
    spread = float(np.ptp(reference)) if reference.size else 0.0
    return max(PARITY_TOLERANCE * spread, PARITY_ABSOLUTE_TOLERANCE)


def compare_scores(reference: np.ndarray, candidate: np.ndarray, k: int = 10,
                   tolerance: float | None = None) -> dict[str, float | bool]:
    """Parity of two exports on one candidate set.

    ``max_abs_diff`` is compared with ``tolerance`` (default :func:`parity_tolerance`: relative to the
    spread of the reference scores, so what counts is whether the difference could move a candidate
    among the others, not the scores' absolute level). The top-k order must be identical up to ties:
    slot by slot, the item the candidate puts there scores (by the reference) within twice the tolerance
    of the reference's own item -- two exports that each differ by up to the tolerance may swap such a
    pair. Candidates with identical features (a 40-product banking catalog has many) tie exactly in one
    export and differ by ~1e-7 in the other; their order is arbitrary, not a disagreement.
    ``agree`` is both conditions."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ValueError(f"score arrays differ in shape: {reference.shape} vs {candidate.shape}")
    allowed = parity_tolerance(reference) if tolerance is None else float(tolerance)
    top = min(k, len(reference))
    by_reference = np.argsort(-reference, kind="stable")[:top]
    by_candidate = np.argsort(-candidate, kind="stable")[:top]
    same = bool(np.all(np.abs(reference[by_reference] - reference[by_candidate]) <= 2 * allowed))
    worst = float(np.max(np.abs(reference.astype(np.float64) - candidate), initial=0.0))
    spread = float(np.ptp(reference)) if reference.size else 0.0
    return {"max_abs_diff": worst, "spread": spread, "tolerance": allowed, f"top{k}_identical": same,
            "agree": same and worst <= allowed}
