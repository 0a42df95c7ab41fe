"""The simulation chart: load, replicas and p99 over time per policy, as a PNG (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from honed.plan.simulate import LATENCY_CAP_MS, SimResult


def write_chart(results: Sequence[SimResult], slo_p99_ms: float, path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    fig, axes = plt.subplots(3, 1, figsize=(12, 8.5), sharex=True, constrained_layout=True)
    first = results[0]
    hours = (first.times - first.times[0]) / 3600.0
    axes[0].plot(hours, first.load, color="black", linewidth=0.8)
    axes[0].set_ylabel("load (requests/s)")
    for r in results:
        h = (r.times - r.times[0]) / 3600.0
        s = r.summary
        label = f"{r.policy}: {s.slo_violation_minutes} SLO-violation min, {s.replica_hours:.1f} replica-h"
        axes[1].step(h, r.replicas, where="post", linewidth=1.0, label=label)
        axes[2].plot(h, r.p99, linewidth=0.8, label=r.policy)
    axes[1].set_ylabel("replicas (incl. starting)")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].axhline(slo_p99_ms, color="red", linestyle="--", linewidth=1.0, label=f"SLO {slo_p99_ms:g} ms")
    axes[2].set_yscale("log")
    worst = max(float(np.percentile(r.p99, 99.9)) for r in results)
    axes[2].set_ylim(top=min(LATENCY_CAP_MS * 1.5, max(4 * slo_p99_ms, 1.5 * worst)))
    axes[2].set_ylabel("p99 latency (ms, log)")
    axes[2].set_xlabel("hours")
    axes[2].legend(loc="upper left", fontsize=8)
    if title:
        axes[0].set_title(title)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
