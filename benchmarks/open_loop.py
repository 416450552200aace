"""An open-loop HTTP load generator: request ``n`` is sent at its due time whether or not earlier ones
were answered, and its latency is ``answer time - due time``, so queueing in the generator, the kernel
or the server counts (no coordinated omission). It runs in its own process (asyncio on uvloop, a
minimal keep-alive HTTP/1.1 client: :class:`HttpPool`)."""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx
import numpy as np
import orjson

QUANTILES = (0.5, 0.95, 0.99)


def open_loop_schedule(rate: float, seconds: float, arrivals: str = "poisson",
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """Due times (seconds from the start, ascending, all < ``seconds``) of requests at ``rate`` per second.

    ``poisson``: exponential gaps (bursts happen, as with independent users); ``uniform``: one
    every ``1/rate`` seconds.
    """
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    if arrivals == "uniform":
        return np.arange(int(math.ceil(rate * seconds))) / rate
    if arrivals != "poisson":
        raise ValueError(f"arrivals must be 'poisson' or 'uniform', got {arrivals!r}")
    rng = rng or np.random.default_rng()
    gaps = rng.exponential(1.0 / rate, size=int(rate * seconds * 1.5) + 100)
    times = np.cumsum(gaps) - gaps[0]
    while times[-1] < seconds:  # (practically never) too few gaps drawn
        more = rng.exponential(1.0 / rate, size=len(gaps))
        times = np.concatenate([times, times[-1] + np.cumsum(more)])
    return times[times < seconds]


@dataclass(frozen=True)
class Outcome:
    due: float  # seconds from the start of the run
    latency: float  # answer time - due time (seconds); NaN when no answer came
    status: str  # "200", another status code, or the transport error's name
    path: str  # the serving path of a 200 answer ("" otherwise)
    items: int  # items in a 200 answer
    lag: float  # send time - due time: the generator's own delay (included in ``latency``)
    degraded: bool = False  # a 200 answer that says it is degraded (its ``degraded`` field)


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one server: a minimal client for JSON POSTs.

    The generator shares the 2 cores with the server it measures, so it has to be cheap: this costs
    a fraction of what a general client does per request (no header objects, no URL parsing). It
    needs a ``Content-Length`` on every answer (uvicorn always sends one for JSON bodies).
    """

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port, self.path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._head = (f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
                      "content-type: application/json\r\ncontent-length: ").encode()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Status and body of one POST; a keep-alive connection the server closed meanwhile is replaced."""
        while self._idle:
            connection = self._idle.pop()
            try:
                return await self._exchange(connection, body)
            except (ConnectionError, asyncio.IncompleteReadError, _Closed):
                connection[1].close()  # stale: the server closed it while idle; try the next one
        return await self._exchange(await asyncio.open_connection(self.host, self.port), body)

    async def _exchange(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        body: bytes) -> tuple[int, bytes]:
        reader, writer = connection
        try:
            writer.write(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status_line = await reader.readline()
            if not status_line:
                raise _Closed
            length, close = None, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if length is None:
                raise ValueError("an answer without content-length")
            content = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self._idle.append(connection)
        return int(status_line.split(b" ", 2)[1]), content

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class _Closed(ConnectionError):
    """The server closed a kept-alive connection before answering."""


async def _one(pool: HttpPool, body: bytes, due: float, start: float, timeout_s: float) -> Outcome:
    lag = time.perf_counter() - start - due
    try:
        async with asyncio.timeout(timeout_s):
            status, content = await pool.post(body)
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as err:
        return Outcome(due, math.nan, type(err).__name__, "", 0, lag)
    latency = time.perf_counter() - start - due
    if status != 200:
        return Outcome(due, latency, str(status), "", 0, lag)
    answer = orjson.loads(content)
    return Outcome(due, latency, "200", str(answer.get("path", "")), len(answer.get("items", ())), lag,
                   bool(answer.get("degraded", False)))


async def _drive(urls: Sequence[str], bodies: Sequence[bytes], offsets: Sequence[float],
                 timeout_s: float) -> list[Outcome]:
    pools = [HttpPool(url) for url in urls]
    start = time.perf_counter() + 0.01
    tasks = []
    try:
        for n, due in enumerate(offsets):
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(pools[n % len(pools)], bodies[n], float(due), start, timeout_s)))
        return list(await asyncio.gather(*tasks))
    finally:
        for pool in pools:
            pool.close()


def run_open_loop(urls: Sequence[str], bodies: Sequence[bytes], offsets: Sequence[float],
                  timeout_s: float) -> tuple[list[Outcome], float]:
    """Send ``bodies[n]`` at ``offsets[n]`` (round-robin over ``urls``); the outcomes and the CPU seconds
    this process used. Runs in the generator process (uvloop when installed, as uvicorn uses). The
    garbage collector is off meanwhile: its full collections over the run's growing list of outcomes
    would pause the loop for milliseconds, counted as the server's latency."""
    cpu = time.process_time()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    gc.collect()
    gc.disable()
    try:
        with runner:
            outcomes = runner.run(_drive(urls, bodies, offsets, timeout_s))
    finally:
        gc.enable()
    return outcomes, time.process_time() - cpu


def percentiles_ms(latencies: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds (None when there is nothing to summarise)."""
    ms = np.asarray([x for x in latencies if math.isfinite(x)], dtype=np.float64) * 1000.0
    if len(ms) == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    out = {f"p{round(q * 100)}": float(np.percentile(ms, q * 100)) for q in QUANTILES}
    out.update(max=float(ms.max()), mean=float(ms.mean()))
    return {k: round(v, 2) for k, v in out.items()}
