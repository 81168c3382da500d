"""DynamicCredentialManager, its journal and ManagerGroup, against real servers.

(The schedule's arithmetic is tests/rotation/dynamic/test_schedule.py.) Every
test runs against a real OpenBao whose database engine creates real
PostgreSQL roles: credentials are proven by logging in, revocation by the
login failing and the role being gone. Outages are real too - a loopback TCP
proxy the test cuts, and an OpenBao with on-disk storage that is stopped,
started and unsealed again. Nothing talks to a mocked Vault.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotation.dynamic.group import ManagerGroup
from rotation.dynamic.journal import LeaseJournal, recover_journal
from rotation.dynamic.manager import Credential, DynamicCredentialManager
from rotation.dynamic.policy import Clocks, LeasePolicy
from rotation.errors import BadInput, Escalation, VaultUnavailable
from tests.rotation.dynamic_support import (
    MOUNT,
    PersistentBao,
    can_login,
    captured_rotation_logs,
    configure_database,
    lease_live,
    live_leases,
    pg_role_exists,
    wait_until,
)
from tests.rotation.tcp_proxy import TcpProxy

# -- fixtures -----------------------------------------------------------------------------


class Handover:
    """The hand-over callback: records every credential, optionally fails on chosen calls."""

    def __init__(self, fail_on: dict[int, BaseException] | None = None) -> None:
        self.creds: list[Credential] = []
        self.calls = 0
        self.fail_on = fail_on or {}
        self.lock = threading.Lock()

    def __call__(self, cred: Credential) -> None:
        with self.lock:
            self.calls += 1
            self.creds.append(cred)
            if self.calls in self.fail_on:
                raise self.fail_on[self.calls]

    @property
    def passwords(self) -> list[str]:
        return [c.password for c in self.creds]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_roles(openbao: Any, postgres: Any, **roles: tuple[int, int]) -> Any:
    """Configure the engine with ``roles`` (underscores become dashes); return a root client."""
    client = openbao.client()
    configure_database(client, postgres, {k.replace("_", "-"): v for k, v in roles.items()})
    return client


def assert_dead(client: Any, postgres: Any, cred: Credential) -> None:
    assert not lease_live(client, cred.lease_id), f"lease {cred.lease_id} is still live"
    assert not pg_role_exists(postgres, cred.username)
    assert not can_login(postgres, cred.username, cred.password)


_running: list[tuple[DynamicCredentialManager, threading.Thread]] = []


def run_in_thread(manager: DynamicCredentialManager) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``manager`` in a thread; the autouse fixture stops it if the test does not."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["report"] = manager.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    _running.append((manager, thread))
    return thread, outcome


@pytest.fixture(autouse=True)
def _stop_managers() -> Iterator[None]:
    """A failed assertion must not leave a manager thread renewing into the next test."""
    yield
    while _running:
        manager, thread = _running.pop()
        manager.stop()
        thread.join(15)


# -- the schedule against a real server, with an injected clock ---------------------------

@pytest.mark.integration
def test_schedule_with_an_injected_clock_renews_then_replaces_at_max_ttl(
    openbao: Any, postgres: Any
) -> None:
    # ttl == max_ttl: the first renewal comes back a little shorter than asked.
    client = make_roles(openbao, postgres, capped=(600, 600))
    clock, handover = FakeClock(), Handover()
    manager = DynamicCredentialManager(client, role="capped", on_credential=handover,
                                       policy=LeasePolicy(refresh_margin=250),
                                       clocks=Clocks(monotonic=clock, rng=random.Random(5)))
    first = manager.issue()
    assert can_login(postgres, first.username, first.password)
    grace = manager.grace
    assert 60 <= grace < 120 and manager.lead == 250
    # Vault's sleep would be 2/3 * 600 + grace/3 (420..440 s); the margin pulls it to 350 s
    assert manager.next_action_at == pytest.approx(clock.now + 350)
    assert manager.step() == manager.next_action_at  # not due yet: nothing happens
    assert manager.stats.renewals == 0

    # Vault counts the lease's age in whole seconds: let one pass so the cap shows
    time.sleep(1.1)
    clock.now = manager.next_action_at
    manager.step()
    assert manager.stats.renewals == 1
    assert manager.final, "a renewal shorter than asked means max_ttl was reached"
    assert manager.current is not None and manager.current.lease_id == first.lease_id
    assert manager.current.lease_duration < 600
    # no more renewals: new credentials are due `lead` seconds before expiry
    assert manager.next_action_at == pytest.approx(manager.expires_at_clock - 250)

    clock.now = manager.next_action_at
    manager.step()
    second = manager.current
    assert second is not None and second.lease_id != first.lease_id
    assert [c.lease_id for c in handover.creds] == [first.lease_id, second.lease_id]
    assert manager.stats.replacements == 1 and manager.stats.late_replacements == 0
    assert can_login(postgres, second.username, second.password)
    assert_dead(client, postgres, first)  # replaced_lease="revoke" (the default)

    report = manager.close(revoke=True)
    assert report.revoked == [second.lease_id] and report.not_revoked == []
    assert_dead(client, postgres, second)


@pytest.mark.integration
def test_outage_backs_off_then_escalates_on_the_injected_clock(openbao: Any,
                                                               postgres: Any) -> None:
    client = make_roles(openbao, postgres, steady=(600, 3600))
    with TcpProxy(openbao.port) as proxy:
        via_proxy = openbao.client()
        via_proxy.url = proxy.address
        clock = FakeClock()
        manager = DynamicCredentialManager(
            via_proxy, role="steady", on_credential=Handover(),
            policy=LeasePolicy(escalate_after=300, backoff_initial=1, backoff_max=60),
            clocks=Clocks(monotonic=clock, rng=random.Random(2)))
        cred = manager.issue()
        proxy.cut()
        clock.now = first_failure = manager.next_action_at
        delays: list[float] = []
        for _ in range(100):
            try:
                manager.step()
            except Escalation as exc:
                escalation = exc
                break
            delays.append(manager.next_action_at - clock.now)
            clock.now = manager.next_action_at
        else:
            pytest.fail("Vault stayed unreachable but the manager never escalated")
        assert escalation.exit_code == 4
        assert clock.now - first_failure == pytest.approx(300), "escalates right at the limit"
        assert cred.lease_id in str(escalation) and "limit 300s" in str(escalation)
        assert cred.password not in str(escalation) and cred.username not in str(escalation)
        # exponential (1, 2, 4, 8 s +-50%), never over 60 s, and tighter as expiry nears
        assert 0.5 <= delays[0] <= 1.5 and 4 <= delays[3] <= 12 and max(delays) <= 60
        assert len(delays) <= 25, delays
        assert manager.stats.unavailable_errors == len(delays) + 1
        assert manager.stats.renewals == 0
    # only ~1 s really passed: the lease is alive; the injected clock thinks otherwise
    client.sys.revoke_lease(cred.lease_id)
    assert_dead(client, postgres, cred)


# -- real time, real servers --------------------------------------------------------------


@pytest.mark.integration
def test_issued_credentials_log_in_and_stop_working_once_revoked(openbao: Any,
                                                                  postgres: Any) -> None:
    client = make_roles(openbao, postgres, tradepulse_execution=(30, 60))
    handover = Handover()
    manager = DynamicCredentialManager(client, role="tradepulse-execution",
                                       on_credential=handover)
    cred = manager.issue()
    assert handover.creds == [cred]
    assert cred.lease_id.startswith(f"{MOUNT}/creds/tradepulse-execution/")
    assert cred.lease_duration == 30 and cred.renewable
    assert cred.expires_at - cred.issued_at == 30
    assert can_login(postgres, cred.username, cred.password)
    assert cred.password not in repr(cred) and cred.username not in repr(cred)
    assert set(cred.document()) >= {"username", "password", "lease_id", "lease_duration",
                                    "renewable", "issued_at", "expires_at", "role", "mount"}
    report = manager.close(revoke=True)
    assert report.revoked == [cred.lease_id]
    assert_dead(client, postgres, cred)


@pytest.mark.integration
@pytest.mark.parametrize("replaced_lease", ["revoke", "expire"])
def test_renewals_then_new_credentials_before_max_ttl(openbao: Any, postgres: Any,
                                                      replaced_lease: str) -> None:
    # ttl 4 s, max_ttl 7 s, margin 2 s: renewals ~2 s apart, new credentials ~5 s in
    client = make_roles(openbao, postgres, short=(4, 7))
    handover = Handover()
    renewals: list[Credential] = []
    with captured_rotation_logs() as logs:
        manager = DynamicCredentialManager(
            client, role="short", on_credential=handover, on_renewal=renewals.append,
            policy=LeasePolicy(refresh_margin=2,
                               replaced_lease=replaced_lease))  # type: ignore[arg-type]
        thread, outcome = run_in_thread(manager)
        wait_until(lambda: len(handover.creds) >= 2, 9, "new credentials at max_ttl")
        old, new = handover.creds[0], handover.creds[1]
        # the old lease's expiry as its last renewal reported it (never later than Vault's)
        old_expiry = max(r.expires_at for r in renewals if r.lease_id == old.lease_id)
        assert time.time() < old_expiry, "new credentials must arrive before the old expire"
        assert can_login(postgres, new.username, new.password)
        if replaced_lease == "revoke":
            wait_until(lambda: not lease_live(client, old.lease_id), 1, "old lease revoked")
            assert time.time() < old_expiry, "revoked, not merely expired"
            assert not can_login(postgres, old.username, old.password)
        else:
            assert lease_live(client, old.lease_id)
            assert can_login(postgres, old.username, old.password)
            wait_until(lambda: not can_login(postgres, old.username, old.password), 5,
                       "the old credentials to expire")
            assert time.time() >= old_expiry - 0.5, "left alive until its expiry"
            assert f"{old.lease_id} with {new.lease_id}; the old one is left to expire" \
                in logs.getvalue()
        manager.stop()
        thread.join(10)
    assert "error" not in outcome, outcome
    assert {r.lease_id for r in renewals} >= {old.lease_id}
    assert manager.stats.renewals >= 2 and manager.stats.late_renewals == 0
    assert manager.stats.late_replacements == 0
    final = manager.current
    assert final is not None and outcome["report"].revoked == [final.lease_id]
    assert_dead(client, postgres, final)
    assert live_leases(client, "short") == [] or replaced_lease == "expire"
    for secret in [*handover.passwords, *(c.username for c in handover.creds)]:
        assert secret not in logs.getvalue()
    assert old.lease_id in logs.getvalue()


@pytest.mark.integration
@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_lease_that_cannot_be_handed_over_is_revoked(openbao: Any, postgres: Any,
                                                       failure: BaseException,
                                                       tmp_path: Path) -> None:
    client = make_roles(openbao, postgres, r=(60, 120))
    handover = Handover(fail_on={1: failure})
    journal = LeaseJournal(tmp_path / "journal.json")
    manager = DynamicCredentialManager(client, role="r", on_credential=handover,
                                       journal=journal)
    with pytest.raises(type(failure)):
        manager.issue()
    (cred,) = handover.creds
    assert_dead(client, postgres, cred)
    assert live_leases(client, "r") == []
    assert not journal.path.exists(), "a revoked lease leaves no journal entry"


@pytest.mark.integration
def test_a_replacement_that_cannot_be_handed_over_is_revoked_and_the_watch_fails(
    openbao: Any, postgres: Any
) -> None:
    client = make_roles(openbao, postgres, capped=(600, 600))
    clock = FakeClock()
    handover = Handover(fail_on={2: RuntimeError("disk full")})
    manager = DynamicCredentialManager(client, role="capped", on_credential=handover,
                                       policy=LeasePolicy(revoke_on_failure=True),
                                       clocks=Clocks(monotonic=clock))
    first = manager.issue()
    time.sleep(1.1)  # a whole second of lease age, so the renewal comes back short
    clock.now = manager.next_action_at
    manager.step()
    assert manager.final
    clock.now = manager.next_action_at
    with pytest.raises(RuntimeError):
        manager.step()
    new = handover.creds[1]
    assert_dead(client, postgres, new)
    assert manager.current is not None and manager.current.lease_id == first.lease_id
    assert can_login(postgres, first.username, first.password), "old lease still serves"
    manager.close(revoke=manager.policy.revoke_on_failure)
    assert_dead(client, postgres, first)


@pytest.mark.integration
def test_journal_recovery_revokes_leases_a_killed_run_left_behind(openbao: Any, postgres: Any,
                                                                  tmp_path: Path) -> None:
    client = make_roles(openbao, postgres, r=(60, 120))
    leftover = client.secrets.database.generate_credentials("r", mount_point=MOUNT)
    handed = client.secrets.database.generate_credentials("r", mount_point=MOUNT)
    journal = LeaseJournal(tmp_path / "journal.json")
    journal.add(leftover["lease_id"])
    journal.add(handed["lease_id"])
    assert recover_journal(client, journal, keep=handed["lease_id"]) == [leftover["lease_id"]]
    assert not lease_live(client, leftover["lease_id"])
    assert lease_live(client, handed["lease_id"]), "the lease the output holds is kept"
    assert journal.pending() == [] and not journal.path.exists()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BadInput, match="not a lease journal"):
        LeaseJournal(tmp_path / "bad.json").pending()


@pytest.mark.integration
def test_proxy_outage_longer_than_a_renewal_interval_backs_off_and_renews(
    openbao: Any, postgres: Any
) -> None:
    client = make_roles(openbao, postgres, r=(6, 120))
    with TcpProxy(openbao.port) as proxy:
        via_proxy = openbao.client()
        via_proxy.url = proxy.address
        handover = Handover()
        manager = DynamicCredentialManager(via_proxy, role="r", on_credential=handover,
                                           policy=LeasePolicy(backoff_initial=0.3, backoff_max=2))
        thread, outcome = run_in_thread(manager)
        wait_until(lambda: manager.current is not None, 5, "the first issue")
        cred = manager.current
        assert cred is not None
        first_renewal_due = manager.next_action_at - time.monotonic()
        proxy.cut()
        # down past the first renewal (4 s in: 6 s lease, 2 s lead), longer than that interval
        time.sleep(first_renewal_due + 0.6)
        assert manager.stats.renewals == 0 and manager.stats.unavailable_errors >= 1
        proxy.restore()
        wait_until(lambda: manager.stats.renewals >= 1, 3, "a renewal after the outage")
        assert manager.current is not None and manager.current.lease_id == cred.lease_id
        assert handover.creds == [cred], "the lease survived: no new credentials needed"
        assert can_login(postgres, cred.username, cred.password)
        assert proxy.refused >= 1
        manager.stop()
        thread.join(10)
    assert "error" not in outcome, outcome
    assert_dead(client, postgres, cred)


@pytest.mark.integration
def test_proxy_outage_longer_than_the_lease_issues_fresh_credentials(openbao: Any,
                                                                     postgres: Any) -> None:
    client = make_roles(openbao, postgres, r=(2, 120))
    with TcpProxy(openbao.port) as proxy, captured_rotation_logs() as logs:
        via_proxy = openbao.client()
        via_proxy.url = proxy.address
        handover = Handover()
        manager = DynamicCredentialManager(via_proxy, role="r", on_credential=handover,
                                           policy=LeasePolicy(backoff_initial=0.2, backoff_max=1))
        thread, outcome = run_in_thread(manager)
        wait_until(lambda: manager.current is not None, 5, "the first issue")
        old = handover.creds[0]
        proxy.cut()
        # Vault itself revokes the lease at expiry (it is up; only our path is cut)
        wait_until(lambda: not lease_live(client, old.lease_id), 6, "the old lease to expire")
        assert not can_login(postgres, old.username, old.password)
        proxy.restore()
        wait_until(lambda: len(handover.creds) == 2, 4, "fresh credentials after the outage")
        new = handover.creds[1]
        assert can_login(postgres, new.username, new.password)
        manager.stop()
        thread.join(10)
    assert "error" not in outcome, outcome
    assert manager.stats.unavailable_errors >= 1 and manager.stats.replacements == 1
    assert_dead(client, postgres, new)
    for cred in handover.creds:
        assert cred.password not in logs.getvalue()
    assert "answers again" in logs.getvalue()


@pytest.mark.integration
def test_escalation_stops_the_manager_with_exit_code_4(openbao: Any, postgres: Any) -> None:
    # a 4 s lease: the first renewal (2 s in) fails, escalation 1 s later, lease alive
    client = make_roles(openbao, postgres, r=(4, 120))
    with TcpProxy(openbao.port) as proxy, captured_rotation_logs() as logs:
        via_proxy = openbao.client()
        via_proxy.url = proxy.address
        handover = Handover()
        manager = DynamicCredentialManager(via_proxy, role="r", on_credential=handover,
                                           policy=LeasePolicy(escalate_after=1.0,
                                                              backoff_initial=0.2))
        thread, outcome = run_in_thread(manager)
        wait_until(lambda: manager.current is not None, 5, "the first issue")
        proxy.cut()
        started = time.monotonic()
        thread.join(25)
        assert not thread.is_alive()
        assert isinstance(outcome.get("error"), Escalation), outcome
        assert outcome["error"].exit_code == 4
        assert time.monotonic() - started < 20
        cred = handover.creds[0]
        # the escalation says what to do about the lease it could not revoke
        assert f"revoke --lease-id {cred.lease_id}" in (outcome["error"].hint or "")
        assert cred.password not in logs.getvalue() + str(outcome["error"])
    assert lease_live(client, cred.lease_id)
    client.sys.revoke_lease(cred.lease_id)


@pytest.fixture
def persistent_bao(tmp_path: Path, postgres: Any) -> Iterator[PersistentBao]:
    server = PersistentBao(tmp_path / "bao")
    server.start()
    try:
        server.initialize()
        # "slow": 10 s leases renewed ~7 s in, so an outage longer than that still leaves
        # ~1.5 s of lease for the restart and unseal
        configure_database(server.client(), postgres, {"r": (2, 120), "slow": (10, 120)})
        yield server
    finally:
        server.stop()


@pytest.mark.integration
def test_server_restart_with_on_disk_storage_the_lease_survives_and_is_renewed(
    persistent_bao: PersistentBao, postgres: Any
) -> None:
    handover = Handover()
    manager = DynamicCredentialManager(persistent_bao.client(), role="slow",
                                       on_credential=handover,
                                       policy=LeasePolicy(backoff_initial=0.3, backoff_max=2))
    thread, outcome = run_in_thread(manager)
    wait_until(lambda: manager.current is not None, 5, "the first issue")
    cred = handover.creds[0]
    first_renewal_due = manager.next_action_at - time.monotonic()
    persistent_bao.stop()
    time.sleep(first_renewal_due + 0.4)  # down across the first renewal
    assert manager.stats.renewals == 0 and manager.stats.unavailable_errors >= 1
    persistent_bao.start()  # sealed: renewals now fail with "Vault is sealed"
    time.sleep(0.3)
    persistent_bao.unseal()
    wait_until(lambda: manager.stats.renewals >= 1, 4, "a renewal after unseal")
    assert handover.creds == [cred], "the lease was restored from storage and renewed"
    assert can_login(postgres, cred.username, cred.password)
    manager.stop()
    thread.join(10)
    assert "error" not in outcome, outcome
    assert_dead(persistent_bao.client(), postgres, cred)


@pytest.mark.integration
def test_server_restart_after_the_lease_died_issues_fresh_credentials(
    persistent_bao: PersistentBao, postgres: Any
) -> None:
    handover = Handover()
    manager = DynamicCredentialManager(persistent_bao.client(), role="r",
                                       on_credential=handover,
                                       policy=LeasePolicy(backoff_initial=0.2, backoff_max=1))
    thread, outcome = run_in_thread(manager)
    wait_until(lambda: manager.current is not None, 5, "the first issue")
    old = handover.creds[0]
    persistent_bao.stop()
    time.sleep(3)  # past the 2 s lease
    assert manager.stats.unavailable_errors >= 1
    persistent_bao.start()
    persistent_bao.unseal()
    wait_until(lambda: len(handover.creds) == 2, 5, "fresh credentials after the restart")
    new = handover.creds[1]
    assert new.lease_id != old.lease_id
    assert can_login(postgres, new.username, new.password)
    client = persistent_bao.client()
    # on unseal Vault restores the expired lease and revokes it: the role is dropped
    # (PostgreSQL's VALID UNTIL alone would let it in a few seconds longer)
    wait_until(lambda: not pg_role_exists(postgres, old.username), 5, "old role dropped")
    assert not lease_live(client, old.lease_id)
    assert not can_login(postgres, old.username, old.password)
    manager.stop()
    thread.join(10)
    assert "error" not in outcome, outcome
    assert_dead(client, postgres, new)


@pytest.mark.integration
def test_first_issue_fails_fast_when_vault_is_unreachable(openbao: Any, postgres: Any) -> None:
    make_roles(openbao, postgres, r=(30, 60))
    with TcpProxy(openbao.port) as proxy:
        proxy.cut()
        client = openbao.client()
        client.url = proxy.address
        manager = DynamicCredentialManager(client, role="r", on_credential=Handover())
        with pytest.raises(VaultUnavailable):
            manager.issue()
    assert live_leases(openbao.client(), "r") == []


@pytest.mark.integration
def test_a_group_keeps_many_leases_alive_and_revokes_them_on_stop(openbao: Any,
                                                                   postgres: Any) -> None:
    # 4 s leases are renewed every 2 s (the 2 s lead) and are late only past the last
    # 0.4-0.8 s (their grace): a renewal may start up to 1.2 s behind and still count as on
    # time, so three test workers beside it do not make it late (2 s leases left 0.6 s).
    client = make_roles(openbao, postgres, fleet=(4, 600))
    group = ManagerGroup(workers=4)
    reports: list[Any] = []
    # the group runs while the leases are issued, as in a real process (and the benchmark)
    runner = threading.Thread(target=lambda: reports.extend(group.run(duration=7)))
    runner.start()
    managers = []
    for _ in range(20):
        manager = DynamicCredentialManager(client, role="fleet", on_credential=Handover())
        manager.issue()
        group.add(manager)
        managers.append(manager)
    runner.join(20)
    assert not runner.is_alive()
    assert all(m.stats.renewals >= 2 for m in managers), [m.stats.renewals for m in managers]
    assert sum(m.stats.late_renewals for m in managers) == 0
    assert sum(len(r.revoked) for r in reports) == 20
    assert live_leases(client, "fleet") == []
