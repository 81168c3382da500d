"""Shared fixtures: Pulumi mocks (unit tests) and real servers (integration tests).

Unit tests run the program under ``pulumi.runtime.set_mocks``; the
:class:`RecordingMocks` keeps every registered resource so a test can compare
the exact set against the spec.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS = ("prod", "staging", "dr", "local")
CANARY_DB_PASSWORD = "CANARY-db-root-7c1e0f5b9a"  # planted; must never leave a secret


@dataclass
class Registered:
    """One resource the program registered under mocks."""

    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs back as outputs and remember every resource and invoke."""

    resources: list[Registered] = field(default_factory=list)
    calls: list[pulumi.runtime.MockCallArgs] = field(default_factory=list)
    call_results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.provider))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append(args)
        return self.call_results.get(args.token, {})

    def of_type(self, typ: str) -> dict[str, Registered]:
        return {r.name: r for r in self.resources if r.typ == typ}


@dataclass
class MockRun:
    """A mocks session: the recorder and the monitor (which knows every URN)."""

    mocks: RecordingMocks
    monitor: pulumi.runtime.mocks.MockMonitor

    @property
    def urns(self) -> list[str]:
        return list(self.monitor.resources)


@pytest.fixture
def pulumi_mocks() -> Callable[..., MockRun]:
    """Return a factory that installs fresh mocks for ``stack`` (and config)."""

    def install(stack: str, config: dict[str, str] | None = None,
                secret_keys: list[str] | None = None) -> MockRun:
        mocks = RecordingMocks()
        monitor = pulumi.runtime.mocks.MockMonitor(mocks)
        pulumi.runtime.set_mocks(mocks, project="tradepulse-vault", stack=stack, preview=False,
                                 monitor=monitor)
        pulumi.runtime.set_all_config(config or {}, secret_keys or [])
        return MockRun(mocks, monitor)

    return install


def audit_answer(devices: dict[str, str]) -> dict[str, Any]:
    """The provider's getSecret result for ``sys/audit`` with ``{path: type}`` enabled."""
    data = {f"{path}/": {"type": typ, "options": {}} for path, typ in devices.items()}
    return {"dataJson": json.dumps(data), "data": {}}


@pytest.fixture
def repo_root() -> Iterator[Path]:
    yield REPO_ROOT
