"""Reading honed's live series back from Prometheus: a small client over its HTTP API and the PromQL it issues.

:class:`PrometheusReader` speaks ``/api/v1/query`` and ``/api/v1/query_range`` (httpx) and turns the answers
into :class:`Series` (one labelled series of ``(time, value)`` samples). The queries name only the series
``honed serve`` exports, taken from its metrics contract (:mod:`honed.serve.contract`), so a renamed metric
breaks here at import, not silently in production:

* request rate per model and version: ``sum by (model, version) (rate(honed_requests_total[w]))``;
* error rate: the same over every ``outcome`` but ``success``;
* latency quantiles: ``histogram_quantile(q, sum by (model, version, le) (rate(<duration>_bucket[w])))``;
* CPU per replica: the server process's CPU-seconds per second, per scrape target, from the standard process
  collector (``rate(process_cpu_seconds_total[w])``, joined on ``instance`` and ``job`` to the targets that serve the
  model: all the process's CPU counts for each model it serves, and a ``honed deploy`` pod serves one); where a
  target exports no process series (a server older than the collector, or not on Linux), the busy seconds the
  model's instances spent computing (``rate(honed_instance_busy_seconds_total[w])`` by ``instance``), CPU-seconds
  per second at one thread each, which leaves out decoding, batching and the framework around the model.

An unreachable server, an HTTP error or an answer that is not a Prometheus success is
:class:`~honed.errors.Unavailable` with one line saying which URL and what went wrong.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from honed.errors import InvalidArgument, Unavailable
from honed.serve.contract import BUSY_SECONDS, PROCESS_CPU, REQUEST_DURATION, REQUESTS, SUCCESS

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MODEL_LABELS = ("model", "version")
MIN_DEFAULT_STEP_S = 60.0


def parse_duration(text: str, flag: str = "--since") -> float:
    """``"24h"`` -> 86400.0; Prometheus' units (ms, s, m, h, d, w), one number and one unit."""
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise InvalidArgument(f"{flag} takes a positive duration like 90s, 30m, 24h or 7d; got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, flag: str = "--until") -> float:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise) -> Unix seconds."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"{flag} takes Unix seconds or an ISO 8601 time like 2026-01-31T12:00Z, got {text!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def promql_duration(seconds: float) -> str:
    """A PromQL range (``[...]``) of at least one second."""
    return f"{max(1, round(seconds))}s"


def _selector(metric: str, model: str | None, extra: str = "") -> str:
    matchers = [m for m in (f'model="{_escape(model)}"' if model is not None else "", extra) if m]
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def request_rate_query(window_s: float, model: str | None = None) -> str:
    sel = _selector(REQUESTS.name, model)
    return f"sum by (model, version) (rate({sel}[{promql_duration(window_s)}]))"


def error_rate_query(window_s: float, model: str | None = None) -> str:
    sel = _selector(REQUESTS.name, model, f'outcome!="{SUCCESS}"')
    return f"sum by (model, version) (rate({sel}[{promql_duration(window_s)}]))"


def latency_quantile_query(quantile: float, window_s: float, model: str | None = None) -> str:
    if not 0 < quantile < 1:
        raise InvalidArgument(f"a latency quantile must be between 0 and 1, got {quantile}")
    sel = _selector(f"{REQUEST_DURATION.name}_bucket", model)
    return f"histogram_quantile({quantile:g}, sum by (model, version, le) (rate({sel}[{promql_duration(window_s)}])))"


CPU_METRICS = (PROCESS_CPU.name, BUSY_SECONDS.name)
"""Where CPU per replica is read from, preferred first (plan.json's ``cpu_metric`` names the one used)."""


def cpu_per_replica_query(window_s: float, model: str | None = None) -> str:
    """Busy CPU-seconds per second of the model's instances, per model, version and replica (the fallback)."""
    sel = _selector(BUSY_SECONDS.name, model)
    return f"sum by (model, version, instance) (rate({sel}[{promql_duration(window_s)}]))"


def process_cpu_per_replica_query(window_s: float, model: str | None = None) -> str:
    """CPU-seconds per second of each server process that serves the model, per model and replica."""
    serving = f"group by (model, instance, job) ({_selector(REQUESTS.name, model)})"
    cpu = f"rate({PROCESS_CPU.name}[{promql_duration(window_s)}])"
    return f"sum by (model, instance) ({serving} * on (instance, job) group_left () {cpu})"


@dataclass(frozen=True)
class Series:
    """One series of a Prometheus answer: its labels and its samples (Unix seconds, value), NaNs dropped."""

    labels: dict[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def model(self) -> str:
        return self.labels.get("model", "")

    @property
    def version(self) -> str:
        return self.labels.get("version", "")

    def key(self, *names: str) -> tuple[str, ...]:
        return tuple(self.labels.get(n, "") for n in names)


@dataclass
class PrometheusReader:
    """Instant and range queries against one Prometheus server (``url`` without ``/api/v1``)."""

    url: str
    step_s: float | None = None
    """Spacing of range-query samples; None: the window / 1,500, at least 60 s (rate() then spans 4 minutes,
    four samples of a 60 s scrape interval; give a smaller step for a faster scrape)."""
    timeout_s: float = 10.0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise InvalidArgument(f"--prometheus takes an http(s) URL like http://127.0.0.1:9090, got {self.url!r}")
        if self.step_s is not None and self.step_s <= 0:
            raise InvalidArgument(f"--step must be > 0 s, got {self.step_s}")

    def _get(self, path: str, params: dict[str, str]) -> Any:
        where = f"Prometheus at {self.url}"
        try:
            response = httpx.get(f"{self.url}{path}", params=params, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where} is unreachable: {exc or type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            raise Unavailable(f"{where} answered HTTP {response.status_code} that is not Prometheus JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise Unavailable(f"{where} refused {params.get('query', path)!r}: {error or response.status_code}")
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise Unavailable(f"{where} answered {params.get('query', path)!r} without a result list")
        return data

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        """An instant query; each series holds its one sample."""
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        data = self._get("/api/v1/query", params)
        if data.get("resultType") == "scalar":
            t, v = data["result"]
            return [Series({}, (float(t),), (float(v),))]
        return [_series(item, "value", promql, self.url) for item in data["result"]]

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[Series]:
        """A range query from ``start`` to ``end`` (Unix seconds) every ``step_s``."""
        if end <= start or step_s <= 0:
            raise InvalidArgument(f"a range query needs start < end and step > 0, got {start}..{end} step {step_s}")
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        data = self._get("/api/v1/query_range", params)
        return [_series(item, "values", promql, self.url) for item in data["result"]]

    def rate_range(self, promql: str, scraped: str, start: float, end: float, step_s: float) -> list[Series]:
        """A range query of ``rate()`` over :func:`rate_window` of the step, keeping only the samples whose whole
        window lies where the series was scraped (:func:`complete_windows`); ``scraped`` is the matching
        :func:`scraped_query`. Series left without samples are dropped."""
        rates = self.query_range(promql, start, end, step_s)
        if not rates:
            return rates
        seen = self.query_range(scraped, start, end, step_s)
        steps = (start, start + math.floor((end - start) / step_s + 1e-9) * step_s, step_s)
        kept = [complete_windows(s, _matching(s, seen), *steps, rate_window(step_s)) for s in rates]
        return [s for s in kept if s.times]

    def window(
        self, since_s: float, step_s: float | None = None, end: float | None = None
    ) -> tuple[float, float, float]:
        """(start, end, step) for ``since_s`` seconds up to ``end`` (now), every ``step_s`` (the reader's default)."""
        if since_s <= 0:
            raise InvalidArgument(f"a window must be > 0 s, got {since_s}")
        end = self.clock() if end is None else end
        step = step_s or self.step_s or max(MIN_DEFAULT_STEP_S, math.ceil(since_s / 1500.0))
        return end - since_s, end, step

    def request_rates(
        self, since_s: float, *, step_s: float | None = None, model: str | None = None, end: float | None = None
    ) -> list[Series]:
        """Requests per second per model and version over the last ``since_s``."""
        start, end, step = self.window(since_s, step_s, end)
        scraped = scraped_query(REQUESTS.name, MODEL_LABELS, model)
        return self.rate_range(request_rate_query(rate_window(step), model), scraped, start, end, step)

    def error_rates(
        self, since_s: float, *, step_s: float | None = None, model: str | None = None, end: float | None = None
    ) -> list[Series]:
        """Failed requests (every outcome but success) per second per model and version."""
        start, end, step = self.window(since_s, step_s, end)
        scraped = scraped_query(REQUESTS.name, MODEL_LABELS, model, f'outcome!="{SUCCESS}"')
        return self.rate_range(error_rate_query(rate_window(step), model), scraped, start, end, step)

    def latency_quantiles(
        self,
        quantile: float,
        since_s: float,
        *,
        step_s: float | None = None,
        model: str | None = None,
        end: float | None = None,
    ) -> list[Series]:
        """The ``quantile`` of request latency (seconds) per model and version, from the histogram."""
        start, end, step = self.window(since_s, step_s, end)
        scraped = scraped_query(f"{REQUEST_DURATION.name}_bucket", MODEL_LABELS, model)
        promql = latency_quantile_query(quantile, rate_window(step), model)
        return self.rate_range(promql, scraped, start, end, step)

    def cpu_per_replica(
        self, since_s: float, *, step_s: float | None = None, model: str | None = None, end: float | None = None
    ) -> list[Series]:
        """CPU-seconds per second per model and replica (scrape target): the process collector's where the target
        exports it, else the busy seconds of the model's instances (per version too)."""
        start, end, step = self.window(since_s, step_s, end)
        window = rate_window(step)
        # A process serves the model while its request counters are scraped.
        serving = scraped_query(REQUESTS.name, ("model", "instance"), model)
        process = self.rate_range(process_cpu_per_replica_query(window, model), serving, start, end, step)
        seen = {s.key("model", "instance") for s in process}
        scraped = scraped_query(BUSY_SECONDS.name, (*MODEL_LABELS, "instance"), model)
        busy = self.rate_range(cpu_per_replica_query(window, model), scraped, start, end, step)
        return process + [s for s in busy if s.key("model", "instance") not in seen]


def rate_window(step_s: float) -> float:
    """The ``rate()`` range for a step: four steps, at least 4 s (so a 1 s scrape gives rate() several samples)."""
    return max(4.0, 4.0 * step_s)


def scraped_query(metric: str, by: Sequence[str], model: str | None = None, extra: str = "") -> str:
    """At each step, the time of the newest scrape of ``metric``'s series, per ``by`` labels (within Prometheus'
    look-back, and not after a target went away)."""
    return f"max by ({', '.join(by)}) (timestamp({_selector(metric, model, extra)}))"


def _matching(rates: Series, seen: list[Series]) -> Series | None:
    return next((s for s in seen if s.labels.items() <= rates.labels.items()), None)


def complete_windows(
    series: Series, scraped: Series | None, first_step: float, last_step: float, step_s: float, window_s: float
) -> Series:
    """``series`` without the ``rate()`` samples whose window reaches outside the time its counters were scraped.

    A counter that stops being scraped (a server stopped, a version rolled back, backfilled history that ends) still
    has ``rate()`` samples for one window after its last scrape, and one that starts inside the range has them from
    its second scrape on; those windows hold only part of the series, so they read low. ``scraped`` holds, at each
    step, the time of the series' newest scrape (:func:`scraped_query`). When the newest of them is more than a step
    before the range's last step, the samples after it go; when the series was not scraped at the range's first step,
    the samples less than a window after its oldest scrape go. Without ``scraped``, ``series`` is kept whole.
    """
    if scraped is None or not scraped.values or not series.times:
        return series
    newest, oldest = max(scraped.values), min(scraped.values)
    high = newest if newest < last_step - step_s else math.inf
    low = oldest + window_s if scraped.times[0] > first_step + step_s / 2 else -math.inf
    keep = [i for i, t in enumerate(series.times) if low <= t <= high]
    return Series(series.labels, tuple(series.times[i] for i in keep), tuple(series.values[i] for i in keep))


def _series(item: Any, key: str, promql: str, url: str) -> Series:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise Unavailable(f"Prometheus at {url} answered {promql!r} with a malformed series")
    raw = [item[key]] if key == "value" else item.get(key)
    if not isinstance(raw, list):
        raise Unavailable(f"Prometheus at {url} answered {promql!r} with a series without samples")
    times: list[float] = []
    values: list[float] = []
    for sample in raw:
        try:
            t, v = float(sample[0]), float(sample[1])
        except (TypeError, ValueError, IndexError):
            raise Unavailable(f"Prometheus at {url} answered {promql!r} with a malformed sample") from None
        if math.isfinite(v):
            times.append(t)
            values.append(v)
    labels = {str(k): str(v) for k, v in item["metric"].items()}
    return Series(labels, tuple(times), tuple(values))
