"""Many managers' leases kept alive by one dispatcher thread and a small worker pool."""

from __future__ import annotations

import functools
import heapq
import itertools
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

from rotation.dynamic.manager import CloseReport, DynamicCredentialManager
from rotation.dynamic.policy import Clock


class ManagerGroup:
    """Keep many managers' leases alive with one dispatcher thread and a worker pool.

    Each manager sits in a heap keyed by its next action time; the dispatcher
    hands due managers to the pool and puts them back with the time their
    :meth:`~DynamicCredentialManager.step` returned, so a manager is never
    stepped by two workers at once. The first exception a manager raises (an
    escalation, a bad token) stops the group; :meth:`run` closes every
    manager and then re-raises it.
    """

    def __init__(self, *, workers: int = 8, clock: Clock = time.monotonic) -> None:
        self._workers = workers
        self._clock = clock
        self._heap: list[tuple[float, int, DynamicCredentialManager]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopping = False
        self._failure: BaseException | None = None
        self._inflight: set[Future[float]] = set()
        self.managers: list[DynamicCredentialManager] = []

    def add(self, manager: DynamicCredentialManager) -> None:
        """Start keeping ``manager``'s lease alive (it may have issued already)."""
        with self._cond:
            self.managers.append(manager)
            heapq.heappush(self._heap, (manager.next_action_at, next(self._seq), manager))
            self._cond.notify()

    def stop(self) -> None:
        """Make :meth:`run` return once the steps in flight have finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _done(self, manager: DynamicCredentialManager, future: Future[float]) -> None:
        with self._cond:
            self._inflight.discard(future)
            exc = future.exception()
            if exc is not None:
                if self._failure is None:
                    self._failure = exc
                self._stopping = True
            else:
                heapq.heappush(self._heap, (future.result(), next(self._seq), manager))
            self._cond.notify_all()

    def _next_due(self, deadline: float | None) -> list[DynamicCredentialManager]:
        """Block until some managers are due (returned) or the group stops (empty list)."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                if deadline is not None and now >= deadline:
                    self._stopping = True
                    break
                if self._heap and self._heap[0][0] <= now:
                    due = []
                    while self._heap and self._heap[0][0] <= now:
                        due.append(heapq.heappop(self._heap)[2])
                    return due
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                self._cond.wait(wait)
            return []

    def run(self, duration: float | None = None) -> list[CloseReport]:
        """Dispatch until :meth:`stop`, ``duration`` seconds, or a failure; then close all."""
        deadline = None if duration is None else self._clock() + duration
        with ThreadPoolExecutor(self._workers, thread_name_prefix="lease") as pool:
            while due := self._next_due(deadline):
                for manager in due:
                    future = pool.submit(manager.step)
                    with self._cond:
                        self._inflight.add(future)
                    future.add_done_callback(functools.partial(self._done, manager))
            with self._cond:
                inflight = list(self._inflight)
            wait_futures(inflight)
            failed = self._failure is not None

            def close(manager: DynamicCredentialManager) -> CloseReport:
                policy = manager.policy
                return manager.close(revoke=policy.revoke_on_failure if failed
                                     else policy.revoke_on_stop)

            reports = list(pool.map(close, self.managers))
        if self._failure is not None:
            raise self._failure
        return reports
