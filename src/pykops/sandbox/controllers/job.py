"""Job controller (simulation of upstream's, reduced to fixed completion counts).

Keeps ``min(parallelism, completions - succeeded)`` pods active until ``completions`` pods succeeded (then
condition Complete with ``completionTime``), or until more than ``backoffLimit`` failed (condition Failed,
reason BackoffLimitExceeded; active pods are deleted). ``suspend`` keeps none active;
``ttlSecondsAfterFinished`` deletes a finished Job. The simulated kubelet runs a Job's pods to completion
(see :mod:`pykops.sandbox.controllers.kubelet`), so Jobs finish in the sandbox.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykops.sandbox.controllers.common import Obj, PerObject, owned_by, pod_from_template, status_differs
from pykops.sandbox.controllers.kube import JOB, POD, Kube
from pykops.sandbox.scheduler import (
    condition,
    format_time,
    is_terminating,
    meta,
    parse_time,
    pod_is_ready,
    set_condition,
    spec,
    status,
)

log = logging.getLogger(__name__)

JOB_LABELS = (
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "job-name",
)


@dataclass
class JobPlan:
    create: int = 0
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)
    delete_job: bool = False


def finished(job: Mapping[str, Any]) -> str | None:
    """ "Complete" or "Failed" when the Job has that condition True."""
    for type_ in ("Complete", "Failed"):
        cond = condition(job, type_)
        if cond is not None and cond.get("status") == "True":
            return type_
    return None


def plan_job(job: Mapping[str, Any], pods: Sequence[Obj], now: float) -> JobPlan:
    """Pure: pods to create or delete and the Job's status."""
    s = spec(job)
    uid = meta(job).get("uid", "")
    ns = meta(job).get("namespace", "default")
    completions = int(s["completions"]) if s.get("completions") is not None else 1
    parallelism = int(s["parallelism"]) if s.get("parallelism") is not None else 1
    backoff_limit = int(s["backoffLimit"]) if s.get("backoffLimit") is not None else 6
    now_str = format_time(now)
    mine = [p for p in pods if meta(p).get("namespace", "default") == ns and owned_by(p, uid)]
    succeeded = sum(1 for p in mine if status(p).get("phase") == "Succeeded")
    failed = sum(1 for p in mine if status(p).get("phase") == "Failed")
    active = [
        p for p in mine if not is_terminating(p) and status(p).get("phase") not in ("Succeeded", "Failed")
    ]
    plan = JobPlan()
    old = status(job)
    conds: list[Obj] = list(old.get("conditions") or [])
    new_status: Obj = {"startTime": old.get("startTime") or now_str}
    done = finished(job)
    if done is None and succeeded >= completions:
        done = "Complete"
        conds = set_condition(
            conds, {"type": "Complete", "status": "True", "lastProbeTime": now_str}, now_str
        )
        new_status["completionTime"] = now_str
    elif done is None and failed > backoff_limit:
        done = "Failed"
        failed_cond = {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastProbeTime": now_str,
        }
        conds = set_condition(conds, failed_cond, now_str)
    if done is not None or s.get("suspend"):
        plan.delete = list(active)
    else:
        want = min(parallelism, completions - succeeded)
        if len(active) < want:
            plan.create = want - len(active)
        elif len(active) > want:
            plan.delete = sorted(active, key=lambda p: meta(p).get("creationTimestamp") or "", reverse=True)[
                : len(active) - want
            ]
    if old.get("completionTime"):
        new_status["completionTime"] = old["completionTime"]
    new_status.update(
        active=len(active) - len(plan.delete) + plan.create,
        ready=sum(1 for p in active if p not in plan.delete and pod_is_ready(p)),
        succeeded=succeeded,
        failed=failed,
    )
    if conds:
        new_status["conditions"] = conds
    plan.status = new_status
    ttl = s.get("ttlSecondsAfterFinished")
    if done is not None and ttl is not None:
        ended = parse_time(new_status.get("completionTime")) or parse_time(
            (condition({"status": new_status}, done) or {}).get("lastTransitionTime")
        )
        plan.delete_job = ended is not None and now - ended >= int(ttl)
    return plan


def sync_jobs(kube: Kube, now: float) -> None:
    """One pass over every Job."""
    jobs = kube.list(JOB)
    if not jobs:
        return
    pods = kube.list(POD)
    errors = PerObject("job")
    for job in jobs:
        with errors.guard(job):
            m = meta(job)
            if m.get("deletionTimestamp"):
                continue
            ns, name = m.get("namespace", "default"), m.get("name", "")
            plan = plan_job(job, pods, now)
            if plan.delete_job:
                kube.delete(JOB, ns, name, uid=m.get("uid"))
                continue
            template = spec(job).get("template") or {}
            extra = dict(zip(JOB_LABELS, (m.get("uid", ""), name, m.get("uid", ""), name), strict=True))
            for _ in range(plan.create):
                kube.create(
                    POD, ns, pod_from_template(job, template, generate_name=f"{name}-", extra_labels=extra)
                )
            for pod in plan.delete:
                kube.delete(POD, ns, meta(pod).get("name", ""), uid=meta(pod).get("uid"))
            if status_differs(status(job), plan.status):
                kube.patch(JOB, ns, name, {"status": plan.status}, status=True)
    errors.raise_first()
