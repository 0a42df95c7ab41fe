"""Canary rollouts kept in the registry database: start, pause, resume, abort and approve one; record the
observations servers make; and take each interval's decision under a controller lease.

A rollout moves ``NAME@production`` from its current version to a candidate through increasing traffic
weights (``steps``). Its state lives in the ``rollouts`` table, so it survives a restart and every server on the
same registry follows it; at most one rollout per model is active at a time. Every transition (start, advance,
promote, rollback, pause, resume, abort, waiting for approval) writes its audit entry in the same transaction, and
a promotion moves the alias in that transaction too. The decisions themselves are the pure functions of
:mod:`honed.registry.rollout_policy`.

Statuses: ``running``, ``paused`` and ``awaiting_approval`` are active; ``promoted``, ``rolled_back`` and
``aborted`` are final.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from honed.canonical import canonical_json
from honed.errors import AlreadyExists, InvalidArgument, NotFound, ResidencyViolation
from honed.fields import as_dict
from honed.registry import audit as audit_chain
from honed.registry import db, schema
from honed.registry import rollout_policy as policy
from honed.registry.records import ModelVersion
from honed.registry.refs import Ref, check_name
from honed.registry.store import Registry, _aware

RUNNING, PAUSED, AWAITING_APPROVAL = "running", "paused", "awaiting_approval"
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"
ACTIVE = (RUNNING, PAUSED, AWAITING_APPROVAL)

_R = schema.rollouts
_RV = schema.rollout_verdicts
_RO = schema.rollout_observations
_RL = schema.rollout_leases
_PRODUCTION = "production"


@dataclass(frozen=True)
class Verdict:
    """One interval's decision and the figures behind it."""

    at: datetime
    actor: str
    step: int
    weight: int
    verdict: str
    action: str
    reasons: tuple[str, ...]
    figures: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class Rollout:
    id: int
    name: str
    from_version: int
    to_version: int
    settings: policy.RolloutSettings
    step: int
    status: str
    failures: int
    reason: str
    started_at: datetime
    started_by: str
    last_decision_at: datetime
    ended_at: datetime | None
    verdicts: tuple[Verdict, ...] = ()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def weight(self) -> int:
        """The candidate's share of unversioned traffic, in percent."""
        if self.active:
            return self.settings.steps[self.step]
        return 100 if self.status == PROMOTED else 0

    @property
    def weights(self) -> dict[int, int]:
        """Version -> percent of unversioned requests."""
        return {self.from_version: 100 - self.weight, self.to_version: self.weight}

    @property
    def progress(self) -> policy.Progress:
        return policy.Progress(self.step, self.failures, self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self) | {"weight": self.weight, "weights": {str(v): w for v, w in self.weights.items()}}


class Rollouts:
    """The rollouts of one registry."""

    def __init__(self, registry: Registry) -> None:
        self._reg = registry
        self._engine = registry.engine

    # -- reading -----------------------------------------------------------------------------------------------
    def get(self, name: str) -> Rollout:
        """The model's active rollout, else its most recent one; NotFound when it never had one."""
        check_name(name)
        with db.read_transaction(self._engine) as conn:
            model_id = self._reg.model_id_in(conn, name)
            row = conn.execute(
                select(_R).where(_R.c.model_id == model_id).order_by(_R.c.active_model_id.is_(None), _R.c.id.desc())
            ).first()
            if row is None:
                raise NotFound(f"{name} has no rollout; start one with honed rollout start {name} --to VERSION")
            return self._load(conn, name, row)

    def active(self, name: str) -> Rollout | None:
        check_name(name)
        with db.read_transaction(self._engine) as conn:
            model_id = self._reg.model_id_in(conn, name)
            row = conn.execute(select(_R).where(_R.c.active_model_id == model_id)).first()
            return None if row is None else self._load(conn, name, row)

    # -- what people do ----------------------------------------------------------------------------------------
    def start(
        self,
        name: str,
        to_version: int,
        settings: policy.RolloutSettings,
        *,
        actor: str,
        reason: str,
        agreement_from_optimize: bool = False,
    ) -> Rollout:
        """Start rolling ``name:to_version`` out in place of ``name@production``.

        With ``agreement_from_optimize``, ``settings.min_agreement`` is the fallback: when one of the two versions
        is the other's optimized child and the gate optimize judged it by is the rollout's agreement metric with a
        ``--min`` (:func:`optimize_agreement`), that bound is the rollout's, and the start's audit entry says whose.
        """
        check_name(name)
        settings = settings.validate()
        actor = audit_chain.check_actor(actor)
        if not isinstance(to_version, int) or isinstance(to_version, bool) or to_version < 1:
            raise InvalidArgument(f"--to takes a version number (1 or more); got {to_version!r}")
        with db.write_transaction(self._engine) as conn:
            now = self._reg.now()
            model_id = self._reg.model_id_in(conn, name)
            current = conn.execute(select(_R.c.id, _R.c.to_version).where(_R.c.active_model_id == model_id)).first()
            if current is not None:
                raise AlreadyExists(
                    f"{name} already has an active rollout (to version {current.to_version}); "
                    f"finish it or stop it with honed rollout abort {name}"
                )
            production = self._reg.resolve_in(conn, Ref(name, alias=_PRODUCTION))
            candidate = self._reg.resolve_in(conn, Ref(name, version=to_version))
            if candidate.version == production.version:
                raise InvalidArgument(f"{name}:{to_version} already serves as {name}@production: nothing to roll out")
            _check_residency(production, candidate)
            gate_of = optimize_agreement(production, candidate, settings) if agreement_from_optimize else None
            if gate_of is not None:
                settings = replace(settings, min_agreement=gate_of[0]).validate()
            rollout_id = db.insert_row(
                conn,
                _R,
                model_id=model_id,
                active_model_id=model_id,
                from_version=production.version,
                to_version=candidate.version,
                settings=canonical_json(settings.to_dict()),
                step=0,
                status=RUNNING,
                failures=0,
                reason=reason,
                started_at=now,
                started_by=actor,
                last_decision_at=now,
            )
            audit_chain.append(
                conn,
                key=self._reg.audit_key,
                at=now,
                actor=actor,
                action="rollout.start",
                target=candidate.ref,
                details={
                    "rollout": rollout_id,
                    "from": production.version,
                    "to": candidate.version,
                    "reason": reason,
                    "settings": settings.to_dict(),
                    **({"min_agreement_from": f"{gate_of[1]} (honed optimize)"} if gate_of is not None else {}),
                },
            )
            return self._load_id(conn, name, rollout_id)

    def pause(self, name: str, *, actor: str, reason: str = "") -> Rollout:
        """Hold the current weights; no decision is taken until :meth:`resume`."""
        return self._set_status(name, actor, reason, "rollout.pause", (RUNNING,), PAUSED)

    def resume(self, name: str, *, actor: str, reason: str = "") -> Rollout:
        """Continue a paused rollout; its next interval starts now."""
        return self._set_status(name, actor, reason, "rollout.resume", (PAUSED,), RUNNING)

    def abort(self, name: str, *, actor: str, reason: str = "") -> Rollout:
        """Stop the rollout: all traffic goes back to the production version, which never moved."""
        return self._set_status(name, actor, reason, "rollout.abort", ACTIVE, ABORTED)

    def approve(self, name: str, *, actor: str, reason: str = "") -> Rollout:
        """Promote a rollout that passed its last step and waits for approval."""
        actor = audit_chain.check_actor(actor)
        with db.write_transaction(self._engine) as conn:
            row = self._active_row(conn, name)
            if row.status != AWAITING_APPROVAL:
                raise InvalidArgument(
                    f"the rollout of {name} is {row.status.replace('_', ' ')}, not waiting for approval"
                    + ("" if self._settings(row).require_approval else " (it was started without --require-approval)")
                )
            now = self._reg.now()
            self._promote(conn, name, row, actor, now, {"reason": reason})
            self._apply(conn, row, actor=actor, now=now, status=PROMOTED, action="rollout.approve", details={})
            return self._load_id(conn, name, row.id)

    # -- what servers do ---------------------------------------------------------------------------------------
    def record(self, rollout_id: int, step: int, source: str, observation: policy.Observation) -> None:
        """Store one server's observation of one interval (``source`` names the server)."""
        if not source or len(source) > 200:
            raise InvalidArgument("an observation needs a source (the server's name), up to 200 characters")
        stats = {
            "production": _stats_dict(observation.production),
            "candidate": _stats_dict(observation.candidate),
            "pairs": observation.pairs,
            "agreement_sum": observation.agreement_sum,
        }
        with db.write_transaction(self._engine) as conn:
            conn.execute(
                insert(_RO).values(
                    rollout_id=rollout_id, source=source, step=step, at=self._reg.now(), stats=canonical_json(stats)
                )
            )

    def observation(self, rollout: Rollout) -> policy.Observation:
        """Everything servers recorded for the rollout's current step since its last decision."""
        with db.read_transaction(self._engine) as conn:
            return self._observation(conn, rollout.id, rollout.step, _aware(rollout.last_decision_at))

    # -- the controller ----------------------------------------------------------------------------------------
    def tick(self, name: str, *, holder: str, lease_s: float | None = None) -> policy.Decision | None:
        """Take the interval's decision if it is due and ``holder`` holds (or can take) the controller lease.

        Returns the decision taken, or None (not due, not running, or another controller holds the lease).
        """
        holder = audit_chain.check_actor(holder)
        with db.write_transaction(self._engine) as conn:
            model_id = self._reg.model_id_in(conn, name)
            row = conn.execute(select(_R).where(_R.c.active_model_id == model_id)).first()
            if row is None or row.status != RUNNING:
                return None
            settings = self._settings(row)
            now = self._reg.now()
            if not self._take_lease(conn, row.id, holder, now, lease_s or 3 * settings.interval_s):
                return None
            last = _aware(row.last_decision_at)
            started = _aware(row.started_at)
            overdue = now - started >= timedelta(seconds=settings.deadline_s)
            if not policy.due(last, settings, now) and not overdue:
                return None
            obs = self._observation(conn, row.id, row.step, last)
            decision = policy.decide(policy.Progress(row.step, row.failures, started), obs, settings, now)
            # The verdict keeps the figures; the rows behind them are spent (servers write one a second).
            conn.execute(delete(_RO).where(_RO.c.rollout_id == row.id, _RO.c.at <= now))
            conn.execute(
                insert(_RV).values(
                    rollout_id=row.id,
                    at=now,
                    actor=holder,
                    step=row.step,
                    weight=settings.steps[row.step],
                    verdict=decision.verdict,
                    action=decision.action,
                    details=canonical_json({"reasons": list(decision.reasons), "figures": decision.figures}),
                )
            )
            details = {"verdict": decision.verdict, "reasons": list(decision.reasons), "figures": decision.figures}
            if decision.action == policy.PROMOTE:
                self._promote(conn, name, row, holder, now, details)
            status = {
                policy.PROMOTE: PROMOTED,
                policy.ROLLBACK: ROLLED_BACK,
                policy.AWAIT_APPROVAL: AWAITING_APPROVAL,
            }.get(decision.action, RUNNING)
            conn.execute(update(_R).where(_R.c.id == row.id).values(failures=decision.failures))
            if decision.action == policy.HOLD:
                conn.execute(update(_R).where(_R.c.id == row.id).values(last_decision_at=now))
            else:
                self._apply(
                    conn,
                    row,
                    actor=holder,
                    now=now,
                    status=status,
                    action=f"rollout.{decision.action.replace('_', '-')}",
                    details=details,
                    step=decision.step,
                )
            return decision

    def release_lease(self, rollout_id: int, holder: str) -> None:
        with db.write_transaction(self._engine) as conn:
            conn.execute(delete(_RL).where(_RL.c.rollout_id == rollout_id, _RL.c.holder == holder))

    # -- internals ---------------------------------------------------------------------------------------------
    @staticmethod
    def _take_lease(conn: Connection, rollout_id: int, holder: str, now: datetime, lease_s: float) -> bool:
        lease = conn.execute(select(_RL).where(_RL.c.rollout_id == rollout_id)).first()
        expires = now + timedelta(seconds=lease_s)
        if lease is None:
            conn.execute(insert(_RL).values(rollout_id=rollout_id, holder=holder, expires_at=expires))
            return True
        if lease.holder != holder and _aware(lease.expires_at) > now:
            return False
        conn.execute(update(_RL).where(_RL.c.rollout_id == rollout_id).values(holder=holder, expires_at=expires))
        return True

    def _promote(
        self, conn: Connection, name: str, row: Row[Any], actor: str, now: datetime, details: dict[str, Any]
    ) -> None:
        self._reg.move_alias_in(
            conn,
            Ref(name, version=row.to_version),
            _PRODUCTION,
            actor=actor,
            action="promote",
            now=now,
            details={"rollout": row.id, **details},
        )

    def _set_status(
        self, name: str, actor: str, reason: str, action: str, allowed: tuple[str, ...], status: str
    ) -> Rollout:
        actor = audit_chain.check_actor(actor)
        with db.write_transaction(self._engine) as conn:
            row = self._active_row(conn, name)
            if row.status not in allowed:
                verb = action.split(".")[1]
                raise InvalidArgument(f"cannot {verb} the rollout of {name}: it is {row.status.replace('_', ' ')}")
            self._apply(
                conn, row, actor=actor, now=self._reg.now(), status=status, action=action, details={"reason": reason}
            )
            return self._load_id(conn, name, row.id)

    def _apply(
        self,
        conn: Connection,
        row: Row[Any],
        *,
        actor: str,
        now: datetime,
        status: str,
        action: str,
        details: dict[str, Any],
        step: int | None = None,
    ) -> None:
        """One transition: the row's new status (and step) and its audit entry."""
        ended = status not in ACTIVE
        values: dict[str, Any] = {"status": status, "last_decision_at": now}
        if step is not None:
            values["step"] = step
        if ended:
            values.update(active_model_id=None, ended_at=now)
        conn.execute(update(_R).where(_R.c.id == row.id).values(**values))
        if ended:
            conn.execute(delete(_RL).where(_RL.c.rollout_id == row.id))
        settings = self._settings(row)
        new_step = row.step if step is None else step
        name = conn.execute(select(schema.models.c.name).where(schema.models.c.id == row.model_id)).scalar_one()
        audit_chain.append(
            conn,
            key=self._reg.audit_key,
            at=now,
            actor=actor,
            action=action,
            target=f"{name}:{row.to_version}",
            details={
                "rollout": row.id,
                "from": row.from_version,
                "to": row.to_version,
                "status": status,
                "step": new_step,
                "weight": settings.steps[new_step],
                **details,
            },
        )

    def _active_row(self, conn: Connection, name: str) -> Row[Any]:
        model_id = self._reg.model_id_in(conn, name)
        row = conn.execute(select(_R).where(_R.c.active_model_id == model_id)).first()
        if row is None:
            raise NotFound(f"{name} has no active rollout (honed rollout status {name} shows the last one)")
        return row

    @staticmethod
    def _settings(row: Row[Any]) -> policy.RolloutSettings:
        return policy.RolloutSettings.from_dict(json.loads(row.settings))

    @staticmethod
    def _observation(conn: Connection, rollout_id: int, step: int, since: datetime) -> policy.Observation:
        total = policy.Observation()
        for text in conn.execute(
            select(_RO.c.stats).where(_RO.c.rollout_id == rollout_id, _RO.c.step == step, _RO.c.at > since)
        ).scalars():
            data = json.loads(text)
            total = total + policy.Observation(
                _stats_from(data["production"]),
                _stats_from(data["candidate"]),
                int(data["pairs"]),
                float(data["agreement_sum"]),
            )
        return total

    def _load_id(self, conn: Connection, name: str, rollout_id: int) -> Rollout:
        return self._load(conn, name, conn.execute(select(_R).where(_R.c.id == rollout_id)).one())

    def _load(self, conn: Connection, name: str, row: Row[Any]) -> Rollout:
        verdicts = tuple(
            Verdict(
                at=_aware(v.at),
                actor=v.actor,
                step=v.step,
                weight=v.weight,
                verdict=v.verdict,
                action=v.action,
                reasons=tuple(json.loads(v.details)["reasons"]),
                figures=json.loads(v.details)["figures"],
            )
            for v in conn.execute(select(_RV).where(_RV.c.rollout_id == row.id).order_by(_RV.c.id))
        )
        return Rollout(
            id=row.id,
            name=name,
            from_version=row.from_version,
            to_version=row.to_version,
            settings=self._settings(row),
            step=row.step,
            status=row.status,
            failures=row.failures,
            reason=row.reason,
            started_at=_aware(row.started_at),
            started_by=row.started_by,
            last_decision_at=_aware(row.last_decision_at),
            ended_at=None if row.ended_at is None else _aware(row.ended_at),
            verdicts=verdicts,
        )


def _stats_dict(stats: policy.VersionStats) -> dict[str, Any]:
    return {"requests": stats.requests, "errors": stats.errors, "latency_counts": list(stats.latency_counts)}


def _stats_from(data: dict[str, Any]) -> policy.VersionStats:
    return policy.VersionStats(
        int(data["requests"]), int(data["errors"]), tuple(int(n) for n in data["latency_counts"])
    )


_AGREEMENT_OF_GATE = {"agreement": "top1", "cosine": "cosine"}  # optimize's --metric -> the rollout's --agreement


def optimize_agreement(
    production: ModelVersion, candidate: ModelVersion, settings: policy.RolloutSettings
) -> tuple[float, str] | None:
    """The ``--min`` of the optimize run that made one of the two versions from the other, when that run's
    ``--metric`` is the rollout's agreement metric (optimize's ``agreement`` is top-1 agreement, its ``cosine``
    the rollout's ``cosine``), with the ref of the version that records it; None otherwise, or when the rollout
    mirrors nothing (no agreement is measured)."""
    if settings.mirror <= 0:
        return None
    for child, parent in ((candidate, production), (production, candidate)):
        gate = child.optimize_gate if child.parent == parent.ref else None
        if (
            gate is not None
            and gate.min is not None
            and _AGREEMENT_OF_GATE.get(gate.metric) == settings.agreement_metric
        ):
            return gate.min, child.ref
    return None


def _check_residency(production: ModelVersion, candidate: ModelVersion) -> None:
    """The servers that serve production are where the candidate would run: a candidate whose residency does not
    cover every jurisdiction production may run in is refused before anything is written (the servers would
    refuse to load it, and the rollout could only time out)."""
    if not production.residency:
        return
    outside = [j for j in production.residency if j not in candidate.residency]
    if outside:
        where = (
            f"may run only in {', '.join(candidate.residency)}" if candidate.residency else "carries no residency label"
        )
        raise ResidencyViolation(
            f"{candidate.ref} {where}, but {production.ref} (production) serves in "
            f"{', '.join(outside)}: label it with `honed registry label {candidate.ref} --residency ...` first"
        )
