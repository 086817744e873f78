"""Apply a plan: run its changes on a thread pool as soon as what they depend on is done.

Scheduling is a ready queue, not waves. Each change becomes one task (a replacement two: create the new
resource then delete the old one, or the reverse when its kind sets ``replace_delete_first``):

* a create, an update or the create half of a replacement waits for the changes of the desired resources it
  references (props or ``depends_on``); Refs are resolved when it starts, from the attrs of the resources
  changed so far and then from the actual attrs;
* a delete (or the delete half of a replacement) waits for the changes of every actual resource whose props
  mention its id or arn (:func:`graph.actual_references`): the resources that used it are deleted or moved
  off it first. Such an ordering is dropped when it would contradict the ones above (a deadlock).

Among ready tasks, the one earlier in the given change list starts first (``plan_changes`` lists them in
dependency order), at most ``parallelism`` at a time.

A :class:`RetryableError` is retried with exponential backoff and jitter (``RetryPolicy``: 0.2 s doubling up
to 5 s, at most 10 attempts and 300 s per change; an error with a ``max_attempts`` attribute lowers the
attempt bound, for codes that may be real mistakes); any other exception fails the change at once. When a
change fails, the changes depending on it are not started, independent ones run to completion, and
:class:`ApplyError` is raised with what was done and what failed.

Optional class attribute read from a :class:`Kind` (not in the protocol): ``replace_delete_first: bool``
(default True): replace by deleting the old resource before creating the new one, as needed when the new
one would clash with the old one's name. False creates the new one first, moves the resources that
reference it over, then deletes the old one (no gap).
"""

from __future__ import annotations

import heapq
import logging
import random as _random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from pykops.engine.diff import compare_props, index_actual, kind_unordered, resolve
from pykops.engine.graph import Key, actual_references, key_str, topological_order
from pykops.engine.types import (
    Action,
    Actual,
    ApplyError,
    Change,
    FieldChange,
    Kind,
    Ref,
    Resource,
    RetryableError,
)
from pykops.errors import PykopsError

log = logging.getLogger(__name__)

Phase = Literal["create", "update", "delete"]
EventStatus = Literal["started", "retrying", "done", "failed", "skipped"]


@dataclass(frozen=True)
class RetryPolicy:
    """How :class:`RetryableError` is retried.

    The sleep after failed attempt ``n`` (1-based) is ``min(cap, base * factor ** (n - 1))`` scaled by a
    jitter factor in ``[0.5, 1)`` (``0.5 + 0.5 * jitter()``). A change gives up after ``attempts`` attempts,
    or when the next sleep would take it past ``timeout`` seconds since it started. ``sleep``, ``clock``
    and ``jitter`` are injectable so tests run instantly and deterministically.
    """

    attempts: int = 10
    base: float = 0.2
    factor: float = 2.0
    cap: float = 5.0
    timeout: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = _random.random

    def delay(self, attempt: int) -> float:
        """The sleep after failed attempt number ``attempt``."""
        ceiling = min(self.cap, self.base * self.factor ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self.jitter())


@dataclass(frozen=True)
class Event:
    """Progress of one change, for display.

    ``started``: a task of the change starts (``phase`` says which half of a replacement);
    ``retrying``: attempt ``attempt`` failed with a retryable ``error``, next try in ``delay`` seconds;
    ``done``: the whole change is done; ``failed``: it failed for good (``error``); ``skipped``: it was not
    started because a change it depends on failed. ``elapsed`` is seconds since the change started.
    """

    status: EventStatus
    kind: str
    name: str
    action: Action
    phase: Phase
    attempt: int = 1
    elapsed: float = 0.0
    delay: float = 0.0
    error: BaseException | None = None

    @property
    def key(self) -> Key:
        return (self.kind, self.name)

    def __str__(self) -> str:
        text = f"{self.kind}/{self.name}: {self.action} {self.status}"
        if self.action == "replace" and self.status == "started":
            text += f" ({self.phase})"
        if self.status == "retrying":
            text += f" after attempt {self.attempt} ({_one_line(self.error)}), next in {self.delay:.1f}s"
        elif self.status == "failed":
            text += f": {_one_line(self.error)}"
        elif self.status == "done":
            text += f" in {self.elapsed:.1f}s"
        return text


@dataclass
class ApplyResult:
    """``done``: the changes completed, in completion order; ``attrs``: the attrs of every resource that
    exists after the apply (created, changed, untouched or shared), by (kind, name); ``elapsed`` seconds."""

    done: list[Change]
    attrs: dict[Key, dict[str, Any]]
    elapsed: float


class RetriesExhausted(Exception):
    """A retryable failure that kept happening; ``last`` is the last error (also the ``__cause__``)."""

    def __init__(self, last: RetryableError, *, attempts: int, elapsed: float) -> None:
        super().__init__(f"{_one_line(last)} (gave up after {attempts} attempts in {elapsed:.1f}s)")
        self.last = last
        self.attempts = attempts
        self.elapsed = elapsed


def _one_line(err: BaseException | None) -> str:
    if err is None:
        return ""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def kind_replace_delete_first(kind: Kind) -> bool:
    return bool(getattr(kind, "replace_delete_first", True))


# --- tasks --------------------------------------------------------------------------------------------------

TaskState = Literal["pending", "running", "done", "failed", "skipped"]


@dataclass(eq=False)
class _Task:
    index: int
    change: Change
    phase: Phase
    deps: set[int] = field(default_factory=set)
    dependents: set[int] = field(default_factory=set)
    waiting: int = 0
    state: TaskState = "pending"


def _build_tasks(
    changes: Sequence[Change], kinds: Mapping[str, Kind], actual: Sequence[Actual]
) -> list[_Task]:
    tasks: list[_Task] = []
    by_change: dict[Key, list[int]] = {}
    provider: dict[Key, int] = {}  # the task after which a desired resource's new attrs are known

    def add(change: Change, phase: Phase) -> int:
        tasks.append(_Task(len(tasks), change, phase))
        by_change.setdefault(change.key, []).append(len(tasks) - 1)
        return len(tasks) - 1

    def edge(task: int, waits_for: int) -> None:
        tasks[task].deps.add(waits_for)
        tasks[waits_for].dependents.add(task)

    for change in changes:
        if change.key in by_change:
            raise ValueError(f"two changes for {key_str(change.key)}")
        if change.action != "create" and change.actual is None:
            raise ValueError(f"{change.action} of {key_str(change.key)} without its actual resource")
        if change.action != "delete" and change.desired is None:
            raise ValueError(f"{change.action} of {key_str(change.key)} without its desired resource")
        if change.kind not in kinds:
            raise PykopsError(f"no implementation for resource kind {change.kind!r}")
        if change.action in ("create", "update"):
            provider[change.key] = add(change, "create" if change.action == "create" else "update")
        elif change.action == "delete":
            add(change, "delete")
        elif kind_replace_delete_first(kinds[change.kind]):
            first = add(change, "delete")
            provider[change.key] = add(change, "create")
            edge(provider[change.key], first)
        else:
            provider[change.key] = add(change, "create")
            edge(add(change, "delete"), provider[change.key])

    # Hard: a resource is created or changed after the resources it references (never in a cycle).
    topological_order(
        {
            c.key: {r.key for r in c.desired.refs() if r.key in provider} if c.desired is not None else set()
            for c in changes
        }
    )
    for task in tasks:
        if task.phase != "delete" and task.change.desired is not None:
            for ref in task.change.desired.refs():
                if ref.key in provider and ref.key != task.change.key:
                    edge(task.index, provider[ref.key])

    def waits_on(start: int, target: int) -> bool:
        stack, seen = [start], {start}
        while stack:
            for dep in tasks[stack.pop()].deps:
                if dep == target:
                    return True
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return False

    # Soft: a resource is deleted after the changes of the actual resources that reference it.
    references = actual_references(actual)
    referrers: dict[Key, set[Key]] = {}
    for owner, targets in references.items():
        for target in targets:
            referrers.setdefault(target, set()).add(owner)
    for task in tasks:
        if task.phase != "delete" or task.change.actual is None:
            continue
        for owner in sorted(referrers.get(task.change.actual.key, ())):
            for other in by_change.get(owner, ()):
                if other != task.index and other not in task.deps and not waits_on(other, task.index):
                    edge(task.index, other)

    for task in tasks:
        task.waiting = len(task.deps)
    return tasks


# --- the scheduler ------------------------------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        changes: Sequence[Change],
        kinds: Mapping[str, Kind],
        cloud: Any,
        desired: Sequence[Resource],
        actual: Sequence[Actual],
        parallelism: int,
        retry: RetryPolicy,
        on_event: Callable[[Event], None] | None,
    ) -> None:
        self.kinds = kinds
        self.cloud = cloud
        self.parallelism = parallelism
        self.retry = retry
        self.on_event = on_event
        self.event_lock = threading.Lock()
        self.found = index_actual(desired, actual)
        self.tasks = _build_tasks(changes, kinds, actual)
        self.remaining: dict[Key, int] = {}
        for task in self.tasks:
            self.remaining[task.change.key] = self.remaining.get(task.change.key, 0) + 1
        self.results: dict[Key, dict[str, Any]] = {}  # new attrs of created/updated resources
        self.attrs: dict[Key, dict[str, Any]] = {k: dict(a.attrs) for k, a in self.found.items()}
        self.started_at: dict[Key, float] = {}
        self.done: list[Change] = []
        self.failed: list[tuple[Change, BaseException]] = []
        self.skipped: list[Change] = []
        self.total = len(changes)

    # events are serialized, and a failing callback never fails a change
    def emit(self, event: Event) -> None:
        if self.on_event is None:
            return
        with self.event_lock:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed for %s", event)

    def event(self, status: EventStatus, task: _Task, **extra: Any) -> Event:
        change = task.change
        started = self.started_at.get(change.key)
        elapsed = self.retry.clock() - started if started is not None else 0.0
        return Event(status, change.kind, change.name, change.action, task.phase, elapsed=elapsed, **extra)

    def lookup_for(self, owner: Change) -> Callable[[Ref], Any]:
        def lookup(ref: Ref) -> Any:
            attrs = self.results.get(ref.key)
            if attrs is None and ref.key in self.found:
                attrs = self.found[ref.key].attrs
            if attrs is None:
                raise PykopsError(f"{key_str(owner.key)} references {ref}, which does not exist")
            if ref.attr not in attrs:
                raise PykopsError(
                    f"{key_str(owner.key)} references {ref}, which has no attribute {ref.attr!r}"
                )
            return attrs[ref.attr]

        return lookup

    def prepare(self, task: _Task) -> tuple[dict[str, Any], list[FieldChange]]:
        """The resolved props (and, for an update, the field changes) a task runs with."""
        change = task.change
        if task.phase == "delete" or change.desired is None:
            return {}, []
        props: dict[str, Any] = resolve(change.desired.props, self.lookup_for(change))
        if task.phase == "create" or change.actual is None:
            return props, []
        unordered = kind_unordered(self.kinds[change.kind])
        return props, compare_props(change.actual.props, props, unordered=unordered)

    def perform(self, task: _Task, props: dict[str, Any], fields: list[FieldChange]) -> dict[str, Any]:
        change = task.change
        kind = self.kinds[change.kind]
        if task.phase == "create":
            assert change.desired is not None
            attrs = kind.create(self.cloud, change.desired, props)
            if not isinstance(attrs, Mapping) or "id" not in attrs:
                raise PykopsError(f"{change.kind}.create returned no id for {key_str(change.key)}: {attrs!r}")
            return dict(attrs)
        assert change.actual is not None
        if task.phase == "update":
            if not fields:
                return dict(change.actual.attrs)
            attrs = kind.update(self.cloud, change.actual, props, fields)
            return {**change.actual.attrs, **(attrs or {})}
        kind.delete(self.cloud, change.actual)
        return {}

    def attempt(self, task: _Task, props: dict[str, Any], fields: list[FieldChange]) -> dict[str, Any]:
        """Run a task in a worker thread, retrying retryable errors."""
        started = self.started_at[task.change.key]
        attempt = 1
        while True:
            try:
                return self.perform(task, props, fields)
            except RetryableError as err:
                elapsed = self.retry.clock() - started
                delay = self.retry.delay(attempt)
                limit = min(self.retry.attempts, getattr(err, "max_attempts", None) or self.retry.attempts)
                if attempt >= limit or elapsed + delay > self.retry.timeout:
                    raise RetriesExhausted(err, attempts=attempt, elapsed=elapsed) from err
                self.emit(self.event("retrying", task, attempt=attempt, delay=delay, error=err))
                self.retry.sleep(delay)
                attempt += 1

    def finish(self, task: _Task, attrs: dict[str, Any]) -> list[int]:
        """Record a task's success; return the tasks it made ready."""
        task.state = "done"
        change = task.change
        if task.phase == "delete":
            if change.key not in self.results:  # not the old half of a create-first replacement
                self.attrs.pop(change.key, None)
        else:
            self.results[change.key] = attrs
            self.attrs[change.key] = attrs
        self.remaining[change.key] -= 1
        if self.remaining[change.key] == 0:
            self.done.append(change)
            self.emit(self.event("done", task))
        ready = []
        for i in sorted(task.dependents):
            dependent = self.tasks[i]
            dependent.waiting -= 1
            if dependent.waiting == 0 and dependent.state == "pending":
                ready.append(i)
        return ready

    def fail(self, task: _Task, err: BaseException) -> None:
        """Record a task's failure and skip everything that waits on it."""
        task.state = "failed"
        self.failed.append((task.change, err))
        self.emit(self.event("failed", task, error=err))
        failed_keys = {c.key for c, _ in self.failed}
        stack = sorted(task.dependents)
        while stack:
            dependent = self.tasks[stack.pop()]
            if dependent.state != "pending":
                continue
            dependent.state = "skipped"
            key = dependent.change.key
            if key not in failed_keys and all(c.key != key for c in self.skipped):
                self.skipped.append(dependent.change)
                self.emit(self.event("skipped", dependent))
            stack.extend(sorted(dependent.dependents))

    def run(self) -> ApplyResult:
        clock_start = self.retry.clock()
        ready = [t.index for t in self.tasks if t.waiting == 0]
        heapq.heapify(ready)
        running: dict[Future[dict[str, Any]], _Task] = {}
        pool = ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="pykops-apply")
        try:
            while ready or running:
                while ready and len(running) < self.parallelism:
                    task = self.tasks[heapq.heappop(ready)]
                    if task.state != "pending":
                        continue
                    self.started_at.setdefault(task.change.key, self.retry.clock())
                    try:
                        props, fields = self.prepare(task)
                    except Exception as err:
                        self.fail(task, err)
                        continue
                    task.state = "running"
                    self.emit(self.event("started", task))
                    running[pool.submit(self.attempt, task, props, fields)] = task
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: running[f].index):
                    task = running.pop(future)
                    try:
                        attrs = future.result()
                    except Exception as err:
                        self.fail(task, err)
                    else:
                        for i in self.finish(task, attrs):
                            heapq.heappush(ready, i)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        stuck = [t for t in self.tasks if t.state == "pending"]
        if stuck:  # impossible unless the task graph has a cycle
            raise PykopsError(f"apply could not order: {', '.join(key_str(t.change.key) for t in stuck)}")
        elapsed = self.retry.clock() - clock_start
        if self.failed:
            raise ApplyError(self.message(), done=self.done, failed=self.failed)
        return ApplyResult(done=self.done, attrs=self.attrs, elapsed=elapsed)

    def message(self) -> str:
        failures = "; ".join(f"{c.action} {key_str(c.key)}: {_one_line(err)}" for c, err in self.failed)
        text = f"apply failed: {len(self.failed)} of {self.total} changes failed ({failures})"
        if self.skipped:
            names = ", ".join(key_str(c.key) for c in self.skipped[:5])
            more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            text += f"; {len(self.skipped)} not started as they depend on a failure ({names}{more})"
        return text + f"; {len(self.done)} done"


def apply(
    changes: Sequence[Change],
    kinds: Mapping[str, Kind],
    cloud: Any,
    *,
    desired: Sequence[Resource],
    actual: Sequence[Actual],
    parallelism: int = 8,
    retry: RetryPolicy = RetryPolicy(),
    on_event: Callable[[Event], None] | None = None,
) -> ApplyResult:
    """Run ``changes`` (from :func:`diff.plan_changes` on ``desired`` and ``actual``) with ``kinds``.

    ``on_event`` is called for progress (from worker threads, one call at a time; its exceptions are logged
    and ignored). Raises :class:`ApplyError` when a change failed, after every change that does not depend
    on a failure has run; its ``done`` and ``failed`` say what happened.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be at least 1, not {parallelism}")
    return _Run(changes, kinds, cloud, desired, actual, parallelism, retry, on_event).run()
