"""The queueing model shared by sizing and simulation: p99 latency of one replica at a given load.

A replica runs ``instances`` model instances; each takes a batch of ``batch`` items and holds it for the
measured batch latency. Queued requests wait for a free instance (Erlang C, an M/M/c queue over batches,
which is conservative for the near-deterministic service of a model). The p99 of a request is the
measured p99 of its batch plus the p99 of that wait:

    a = c * rho,  C = ErlangC(c, a),  P(W > t) = C * exp(-(T - lambda) * t / B)
    p99 = p99_batch + max(0, ln(C / 0.01)) * B / (T - lambda)

with ``T`` the measured items/s of the replica at saturation and ``lambda`` the items/s it receives. At or
above saturation the steady state does not exist: the caller (the simulator) tracks the backlog instead.
"""

from __future__ import annotations

import math

from honed.plan.document import OperatingPoint


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with ``offered`` load (in servers) < ``servers``."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    # Erlang B by the stable recursion, then C from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    return b / (1 - rho + rho * b)


def queue_wait_p99_s(point: OperatingPoint, rate: float) -> float:
    """p99 seconds a request waits for an instance at ``rate`` items/s; inf at or above saturation."""
    if rate <= 0:
        return 0.0
    if rate >= point.throughput:
        return math.inf
    rho = rate / point.throughput
    c = erlang_c(point.instances, point.instances * rho)
    if c <= 0.01:
        return 0.0
    return math.log(c / 0.01) * point.batch / (point.throughput - rate)


def p99_ms(point: OperatingPoint, rate: float) -> float:
    """Expected p99 latency (ms) of one replica receiving ``rate`` items/s in steady state."""
    return point.p99_ms + 1000.0 * queue_wait_p99_s(point, rate)
