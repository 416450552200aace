"""The artifact registry (common/registry.py): manifests, verification, atomic promotion, rollback."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import orjson
import pytest

from common.registry import (
    CURRENT,
    HISTORY,
    MANIFEST,
    ArtifactRegistry,
    PointerUnreadable,
    PromotionRefused,
    RegistryError,
)


@pytest.fixture
def registry(tmp_path: Path) -> ArtifactRegistry:
    return ArtifactRegistry(tmp_path / "artifacts")


def _release(registry: ArtifactRegistry, version: str, payload: bytes = b"weights", domain: str = "retail") -> str:
    staging = registry.stage(domain, version)
    (staging / "ranker").mkdir()
    (staging / "ranker" / "saved_model.pb").write_bytes(payload)
    (staging / "popularity.parquet").write_bytes(b"pop-" + payload)
    registry.finalize(domain, version, training_window=("2026-10-01", "2026-10-28"), metrics={"recall@100": 0.42})
    return version


def test_finalize_writes_manifest_with_checksums(registry: ArtifactRegistry) -> None:
    staging = registry.stage("retail", "v1")
    assert staging == registry.root / "retail" / ".staging" / "v1"
    (staging / "index").mkdir()
    (staging / "index" / "scann.bin").write_bytes(b"abc")
    manifest = registry.finalize("retail", "v1", training_window=("2026-10-01", "2026-10-28"),
                                 metrics={"ndcg@10": 0.31}, extra={"rows": 12})
    release = registry.root / "retail" / "v1"
    assert not staging.exists() and (release / "index" / "scann.bin").read_bytes() == b"abc"
    stored = orjson.loads((release / MANIFEST).read_bytes())
    assert stored["files"] == {"index/scann.bin": {"sha256": hashlib.sha256(b"abc").hexdigest(), "size": 3}}
    assert (stored["version"], stored["domain"], stored["training_window"]) == ("v1", "retail", ["2026-10-01", "2026-10-28"])
    assert stored["metrics"] == {"ndcg@10": 0.31} and stored["extra"] == {"rows": 12}
    assert stored["code_revision"] and stored["created_at"].endswith("Z")
    assert registry.load_manifest("retail", "v1") == manifest
    assert registry.verify("retail", "v1").ok


def test_default_versions_are_timestamps_and_unique(registry: ArtifactRegistry) -> None:
    first, second = registry.stage("retail"), registry.stage("retail")
    assert first.name != second.name
    assert len(first.name) == 16 and first.name[8] == "T" and first.name.endswith("Z")
    assert second.name.startswith(first.name[:16])


def test_version_names_are_checked_and_never_reused(registry: ArtifactRegistry) -> None:
    _release(registry, "v1")
    with pytest.raises(RegistryError, match="already exists"):
        registry.stage("retail", "v1")
    registry.stage("retail", "v2")
    with pytest.raises(RegistryError, match="already being staged"):
        registry.stage("retail", "v2")
    for bad in ("../evil", ".hidden", "CURRENT", "a/b", ""):
        with pytest.raises(RegistryError):
            registry.stage("retail", bad)
    with pytest.raises(RegistryError, match="no staged release"):
        registry.finalize("retail", "v9", training_window=None, metrics={})


def test_tampered_file_is_refused_and_current_unchanged(registry: ArtifactRegistry) -> None:
    registry.promote("retail", _release(registry, "v1"))
    _release(registry, "v2")
    (registry.root / "retail" / "v2" / "ranker" / "saved_model.pb").write_bytes(b"WEIGHTS")  # same size
    result = registry.verify("retail", "v2")
    assert not result.ok
    assert result.problems == (result.problems[0],) and result.problems[0].startswith("checksum mismatch: ranker/saved_model.pb")
    with pytest.raises(PromotionRefused, match="checksum mismatch"):
        registry.promote("retail", "v2")
    assert registry.current("retail") == "v1"


def test_size_change_missing_and_extra_files_are_listed(registry: ArtifactRegistry) -> None:
    release = registry.root / "retail" / _release(registry, "v1")
    (release / "popularity.parquet").write_bytes(b"longer than before")
    (release / "ranker" / "saved_model.pb").unlink()
    (release / "ranker" / "notes.txt").write_text("stray")
    problems = sorted(registry.verify("retail", "v1").problems)
    assert problems == [
        "file not in manifest: ranker/notes.txt",
        "missing file: ranker/saved_model.pb",
        "size mismatch: popularity.parquet (manifest 11 bytes, found 18)",
    ]
    with pytest.raises(PromotionRefused):
        registry.promote("retail", "v1")
    assert registry.current("retail") is None


def test_missing_or_broken_manifest(registry: ArtifactRegistry) -> None:
    release = registry.root / "retail" / _release(registry, "v1")
    (release / MANIFEST).write_text("{not json")
    assert "malformed manifest" in registry.verify("retail", "v1").problems[0]
    (release / MANIFEST).unlink()
    assert registry.verify("retail", "v1").problems == (f"release retail/v1 has no {MANIFEST}",)
    assert "does not exist" in registry.verify("retail", "v7").problems[0]
    assert registry.list_releases("retail") == []
    with pytest.raises(PromotionRefused):
        registry.promote("retail", "v7")


def test_manifest_of_another_release_is_refused(registry: ArtifactRegistry) -> None:
    _release(registry, "v1")
    os.rename(registry.root / "retail" / "v1", registry.root / "retail" / "v2")
    assert registry.verify("retail", "v2").problems == ("manifest names retail/v1, not retail/v2",)


def test_promote_rollback_and_history(registry: ArtifactRegistry) -> None:
    for v in ("v1", "v2", "v3"):
        _release(registry, v, payload=v.encode())
    assert registry.current("retail") is None
    with pytest.raises(RegistryError, match="no previously promoted"):
        registry.rollback("retail")
    assert registry.promote("retail", "v1") is None
    assert registry.promote("retail", "v2") == "v1"
    assert registry.promote("retail", "v2") == "v2"  # idempotent: no new history entry
    assert registry.promote("retail", "v3") == "v2"
    assert registry.rollback("retail") == "v2"
    assert registry.rollback("retail") == "v1"  # rolls further back, does not bounce to v3
    assert registry.current("retail") == "v1"
    with pytest.raises(RegistryError, match="no previously promoted"):
        registry.rollback("retail")
    assert [(h["action"], h["version"], h["previous"]) for h in registry.history("retail")] == [
        ("promote", "v1", None), ("promote", "v2", "v1"), ("promote", "v3", "v2"),
        ("rollback", "v2", "v3"), ("rollback", "v1", "v2"),
    ]


def test_rollback_refuses_a_damaged_previous_release(registry: ArtifactRegistry) -> None:
    registry.promote("retail", _release(registry, "v1"))
    registry.promote("retail", _release(registry, "v2"))
    (registry.root / "retail" / "v1" / "popularity.parquet").unlink()
    with pytest.raises(PromotionRefused, match="missing file"):
        registry.rollback("retail")
    assert registry.current("retail") == "v2"


def test_list_releases_oldest_first_and_per_domain(registry: ArtifactRegistry) -> None:
    for v in ("a", "b", "c"):
        _release(registry, v)
    _release(registry, "z", domain="banking")
    registry.stage("retail", "unfinished")
    listed = registry.list_releases("retail")
    assert [m.version for m in listed] == ["a", "b", "c"]
    assert all(m.metrics == {"recall@100": 0.42} and m.training_window == ("2026-10-01", "2026-10-28") for m in listed)
    assert [m.version for m in registry.list_releases("banking")] == ["z"]
    assert registry.list_releases("movielens") == []
    registry.discard("retail", "unfinished")
    assert not (registry.root / "retail" / ".staging" / "unfinished").exists()


def test_current_switch_is_atomic_for_concurrent_readers(registry: ArtifactRegistry) -> None:
    versions = [_release(registry, f"v{i}", payload=bytes([i])) for i in range(4)]
    domain_dir = registry.root / "retail"
    registry.promote("retail", versions[0])
    seen: list[str | None] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(registry.current("retail"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            registry.promote("retail", versions[i % 4])
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) <= set(versions)  # never empty, never a partial name
    assert all((domain_dir / v / MANIFEST).is_file() for v in set(seen))
    assert not list(domain_dir.glob("*.tmp"))


def test_failed_switch_leaves_current_and_no_temp_file(registry: ArtifactRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.promote("retail", _release(registry, "v1"))
    _release(registry, "v2")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("common.registry.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.promote("retail", "v2")
    monkeypatch.undo()
    domain_dir = registry.root / "retail"
    assert registry.current("retail") == "v1"
    assert (domain_dir / CURRENT).read_text() == "v1\n"
    assert sorted(p.name for p in domain_dir.iterdir() if p.name.startswith(".")) == [".lock", ".staging"]
    assert [h["version"] for h in registry.history("retail")] == ["v1"]


@pytest.mark.parametrize("content", [b"", b"\n", b"\x00\xff\xfe", b"../evil\n", b"CURRENT\n", b"v1 v2\n"])
def test_an_unreadable_current_is_an_error_and_promote_repairs_it(registry: ArtifactRegistry, content: bytes) -> None:
    registry.promote("retail", _release(registry, "v1"))
    (registry.root / "retail" / CURRENT).write_bytes(content)
    with pytest.raises(PointerUnreadable):
        registry.current("retail")
    assert registry.promote("retail", "v1") is None  # the pointer was unreadable: no previous version
    assert registry.current("retail") == "v1"
    assert [(h["action"], h["previous"]) for h in registry.history("retail")] == [("promote", None), ("promote", None)]


def test_history_appends_are_whole_lines_after_a_foreign_line(registry: ArtifactRegistry) -> None:
    registry.promote("retail", _release(registry, "v1"))
    with (registry.root / "retail" / HISTORY).open("ab") as fh:
        fh.write(b'["not an entry"]\n{"action": "promote"}\n')  # parseable, but not entries: skipped
    registry.promote("retail", _release(registry, "v2"))
    assert registry.live_stack("retail") == ["v1", "v2"]
