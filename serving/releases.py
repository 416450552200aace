"""Releases: load ``CURRENT`` per domain at start, hot-swap new ones, refuse broken ones.

Each release is loaded and checked by :class:`serving.release_loader.ReleaseLoader`. A release it
refuses is logged (ERROR), counted, reported by ``/healthz``/``/readyz`` (``refused``) and
``recsys_release_refused``, and the release that was serving keeps serving. A swap replaces one dict
entry, so a request that already holds the old release finishes on it.

A deterministic refusal (the same release fails the same way) is not tried again until ``CURRENT``
changes; a transient one is retried with a backoff that doubles from one poll up to
:data:`MAX_RETRY_SECONDS`.

A domain with no live release whose ``CURRENT`` is refused or unreadable (garbage, empty) serves its
last-known-good release: the newest release of the registry's live stack (promotes minus rollbacks,
from ``HISTORY``) that loads. It is reported as degraded until ``CURRENT``'s release loads. A domain
with nothing that loads (none promoted yet, or none that loads) is served by its lake fallback
(:mod:`serving.fallback`): the watcher builds it, rebuilds it every ``refresh_seconds`` and drops it
once a release goes live.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from common.registry import ArtifactRegistry, RegistryError
from serving.fallback import FallbackManager, LakeFallback
from serving.features import ReadAhead
from serving.metrics import ServingMetrics
from serving.release_loader import Release, ReleaseRefused

log = logging.getLogger(__name__)
REFRESH_AHEAD_POLLS = 3  # the watcher reads item features that go stale within this many polls
MAX_RETRY_SECONDS = 300.0  # the longest wait before a transiently refused release is tried again


@dataclass(frozen=True)
class Refusal:
    """Why the release ``CURRENT`` names is not serving (``version`` None: ``CURRENT`` is unreadable)."""

    version: str | None
    reason: str
    transient: bool
    attempts: int = 1
    retry_at: float = math.inf  # time.monotonic() of the next try; inf: not before CURRENT changes

    def as_dict(self) -> dict[str, object]:
        return {"version": self.version, "reason": self.reason, "retrying": self.transient}


class ReleaseManager:
    """The live release of every served domain, and the watcher that swaps in new ones."""

    def __init__(
        self,
        domains: tuple[str, ...],
        registry: ArtifactRegistry,
        loader: Callable[[str, str], Release],
        metrics: ServingMetrics,
        poll_seconds: float = 1.0,
        on_loaded: Callable[[bool], None] | None = None,
        fallbacks: FallbackManager | None = None,
    ) -> None:
        """``on_loaded(replaced)`` is called after each release goes live (``replaced``: a hot swap);
        ``fallbacks`` serves the domains without a live release (None: they get nothing)."""
        self.domains = domains
        self.fallbacks = fallbacks
        self.registry = registry
        self.loader = loader
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.on_loaded = on_loaded
        self.refusals: dict[str, Refusal] = {}  # domain -> why CURRENT's release is not the one serving now
        self._pointers: dict[str, tuple[str | None, str | None]] = {}  # domain -> (CURRENT, why unreadable)
        # domain -> version -> why that last-known-good candidate was refused under the present CURRENT
        self._candidates_refused: dict[str, dict[str, Refusal]] = {d: {} for d in domains}
        self._live: dict[str, Release] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read_ahead = ReadAhead("item-read-ahead")  # the polls' item-feature refreshes, off the watcher thread

    def get(self, domain: str) -> Release | None:
        return self._live.get(domain)

    def versions(self) -> dict[str, str]:
        return {d: r.version for d, r in self._live.items()}

    def serving(self, domain: str) -> Release | LakeFallback | None:
        """What answers ``domain`` now: its live release, else its lake fallback, else nothing."""
        release = self._live.get(domain)
        if release is not None:
            return release
        fallback = self.fallbacks.get(domain) if self.fallbacks is not None else None
        # the watcher drops a fallback only after the release went live: look again before giving up
        return fallback if fallback is not None else self._live.get(domain)

    def missing(self) -> list[str]:
        """Domains that can answer nothing: no live release and no lake fallback."""
        return [d for d in self.domains if self.serving(d) is None]

    def degraded(self) -> list[str]:
        """Domains answered by their lake fallback (no live release) or by a last-known-good release
        (``CURRENT``'s release was refused, see :meth:`refusal_report`)."""
        return [d for d in self.domains
                if self.serving(d) is not None and (d not in self._live or d in self.refusals)]

    def refusal_report(self) -> dict[str, dict[str, object]]:
        """Domain -> the refused version ``CURRENT`` names (None: unreadable), why, and whether it is retried."""
        return {d: r.as_dict() for d in self.domains if (r := self.refusals.get(d)) is not None}

    def maintain_fallbacks(self) -> None:
        """Build, rebuild when due, or drop the lake fallbacks (only domains without a live release keep one)."""
        if self.fallbacks is not None:
            self.fallbacks.maintain([d for d in self.domains if d not in self._live])

    def poll_once(self) -> dict[str, str]:
        """Load ``CURRENT`` of every domain where it changed or a transient refusal is due for another try,
        and a last-known-good release where nothing serves; returns domain -> outcome for those."""
        outcomes: dict[str, str] = {}
        for domain in self.domains:
            try:
                outcome = self._poll(domain)
            except Exception:  # one domain's failure must not stop the others (nor start-up)
                log.exception("%s: release poll failed", domain)
                outcome = "failed"
            if outcome is not None:
                outcomes[domain] = outcome
        return outcomes

    def _poll(self, domain: str) -> str | None:
        wanted, unreadable = self._read_pointer(domain)
        if self._pointers.get(domain) != (wanted, unreadable):
            self._pointers[domain] = (wanted, unreadable)
            self._clear_refusal(domain)  # CURRENT changed: every release gets a fresh try
        live = self._live.get(domain)
        outcome: str | None = None
        if unreadable is not None:
            if domain not in self.refusals:
                self._refuse(domain, Refusal(None, unreadable, transient=False))
                outcome = "unreadable"
        elif wanted is None or (live is not None and live.version == wanted):
            return None
        else:
            previous = self.refusals.get(domain)  # of this same version: a new CURRENT cleared it above
            if previous is None or time.monotonic() >= previous.retry_at:
                outcome = self._swap(domain, wanted, previous.attempts if previous else 0)
        if domain not in self._live and self._load_last_known_good(domain):
            outcome = "last_known_good"
        return outcome

    def _read_pointer(self, domain: str) -> tuple[str | None, str | None]:
        """(the version ``CURRENT`` names or None, None) or (None, why it cannot be read)."""
        try:
            return self.registry.current(domain), None
        except (RegistryError, OSError) as err:
            return None, f"CURRENT is unreadable: {err}"

    def _swap(self, domain: str, version: str, attempts_before: int = 0) -> str:
        try:
            release = self.loader(domain, version)
        except ReleaseRefused as err:
            self.metrics.release_loads.labels(domain, "refused").inc()
            self._refuse(domain, self._refused(version, err, attempts_before))
            return "refused"
        self._go_live(domain, release)
        self._clear_refusal(domain)
        return "loaded"

    def _refused(self, version: str, err: ReleaseRefused, attempts_before: int) -> Refusal:
        """The refusal of ``version``'s load number ``attempts_before + 1``: due for another try after
        :meth:`retry_delay` if its cause is transient, else not before ``CURRENT`` changes."""
        attempts = attempts_before + 1
        retry_at = time.monotonic() + self.retry_delay(attempts) if err.transient else math.inf
        return Refusal(version, str(err), err.transient, attempts, retry_at)

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next try of a release refused ``attempts`` times in a row for a transient
        cause: one poll, doubling, at most :data:`MAX_RETRY_SECONDS`."""
        return min(self.poll_seconds * 2.0 ** min(attempts - 1, 32), MAX_RETRY_SECONDS)

    def _load_last_known_good(self, domain: str) -> bool:
        """Load the newest release of the live stack (from ``HISTORY``) other than the refused one; each
        candidate is tried once per ``CURRENT``, or again after the backoff of :meth:`retry_delay` when
        it was refused for a transient cause. Whether one went live."""
        refusal = self.refusals.get(domain)
        if refusal is None:
            return False
        try:
            stack = self.registry.live_stack(domain)
        except (RegistryError, OSError) as err:
            log.error("%s: no last-known-good release: HISTORY is unreadable: %s", domain, err)
            return False
        refused = self._candidates_refused[domain]
        for version in dict.fromkeys(reversed(stack)):  # newest first, each once
            earlier = refused.get(version)
            if version == refusal.version or (earlier is not None and time.monotonic() < earlier.retry_at):
                continue
            try:
                release = self.loader(domain, version)
            except ReleaseRefused as err:
                self.metrics.release_loads.labels(domain, "refused").inc()
                refused[version] = self._refused(version, err, earlier.attempts if earlier else 0)
                log.error("%s: last-known-good candidate refused too (%s): %s", domain,
                          "retried later" if err.transient else "not retried until CURRENT changes", err)
                continue
            self._go_live(domain, release)
            log.error("%s: serving last-known-good release %s because CURRENT's release %s is refused: %s",
                      domain, version, refusal.version or "(unreadable)", refusal.reason)
            return True
        return False

    def _go_live(self, domain: str, release: Release) -> None:
        replaced = domain in self._live
        self._live[domain] = release  # one reference swap: in-flight requests keep their release
        self.metrics.release_loads.labels(domain, "loaded").inc()
        self.metrics.set_release(domain, release.version)
        log.info("serving %s release %s", domain, release.version)
        if self.on_loaded is not None:
            self.on_loaded(replaced)

    def _refuse(self, domain: str, refusal: Refusal) -> None:
        self.refusals[domain] = refusal
        self.metrics.release_refused.labels(domain).set(1)
        kept = self._live.get(domain)
        retry = (f"retry in {refusal.retry_at - time.monotonic():.1f} s (attempt {refusal.attempts})"
                 if refusal.transient else "not retried until CURRENT changes")
        log.error("%s: refused release %s (%s; %s), serving %s", domain, refusal.version or "(CURRENT unreadable)",
                  refusal.reason, retry, kept.version if kept else "no release (looking for a last-known-good)")

    def _clear_refusal(self, domain: str) -> None:
        self._candidates_refused[domain].clear()
        if self.refusals.pop(domain, None) is not None:
            self.metrics.release_refused.labels(domain).set(0)
            log.info("%s: CURRENT's release is no longer refused", domain)

    def start(self) -> None:
        """Load what is current now (and the lake fallback of domains left without a release), then
        watch ``CURRENT`` in a background thread."""
        self.poll_once()
        self.maintain_fallbacks()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="release-watcher", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # never let the watcher die: the next poll retries
                log.exception("release watcher poll failed")
            try:
                self.maintain_fallbacks()
            except Exception:
                log.exception("lake fallback maintenance failed")
            # the periodic item refresh runs on the read-ahead's thread: the watcher reads the store only
            # during a release load (its warm-up, ReleaseLoader._smoke_test) or a lake fallback build,
            # bounded by the store timeout and the circuit breaker, so swaps and rollbacks go on
            self._read_ahead.submit(self._refresh_items_ahead)

    def _refresh_items_ahead(self) -> None:
        """Read the item features due soon of every live release and lake fallback, off the request path."""
        within = REFRESH_AHEAD_POLLS * self.poll_seconds
        if self.fallbacks is not None:
            self.fallbacks.refresh_items(within=within)
        for domain, release in list(self._live.items()):
            try:
                release.items.refresh_ahead(within=within)
            except Exception as err:  # the store is down: requests fall back as they would anyway
                log.warning("%s item feature refresh failed: %s: %s", domain, type(err).__name__, err)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
