"""Root rotation beside other database requests: how many of them OpenBao fails.

Why the program applies ``rotate-root`` after every other rotation of the
database engine (``infra/components/database_engine.py``, README "The root
rotation goes last"): one OpenBao dev server and one PostgreSQL, the local
stack's database engine as the program declares it (configured the way
``tests/integration/test_credential_rotations.py`` does). Each round issues a few
leases, then sends ``rotate-root`` and, at the same moment from threads of
their own, a ``rotate-role``, a ``revoke-prefix`` (sync) and a credential
issue. The baseline, in the same run and on the same servers, sends the same
requests one after another. The table counts, per request, the rounds in
which it failed and why (the reason the rotation CLI maps the error to, never
the driver's text).

    .venv/bin/python bench/rotate_root_race.py [--rounds 10] [--json]
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hvac
import hvac.exceptions

from bench.common import REPO, emit
from kernel.spec import EnvironmentSpec, load_stack_file
from rotation.dynamic.leases import database_failure
from tests.integration.test_credential_rotations import configure_like_the_program
from tests.servers import start_openbao, start_postgres, temporary_dir

REQUESTS = ("rotate-root", "rotate-role", "revoke-prefix", "issue")  # the round's order


def names(spec: EnvironmentSpec) -> tuple[str, str, str, str]:
    """Return the local stack's mount, connection, first dynamic role and first static role."""
    db = spec.database
    assert db is not None and db.roles and db.static_roles
    return db.mount, db.connection.name, db.roles[0].name, db.static_roles[0].name


def run_rounds(client: hvac.Client, declared: tuple[str, str, str, str], rounds: int,
               together: bool) -> tuple[Counter[str], Counter[str]]:
    """Run ``rounds`` rounds; return failed rounds per request and the reasons seen."""
    mount, connection, role, static = declared
    failed: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    send_one: dict[str, Callable[[], object]] = {
        "rotate-root": lambda: client.write_data(f"{mount}/rotate-root/{connection}", data={}),
        "rotate-role": lambda: client.write_data(f"{mount}/rotate-role/{static}", data={}),
        "revoke-prefix": lambda: client.write_data(
            f"sys/leases/revoke-prefix/{mount}/creds/{role}", data={"sync": True}),
        "issue": lambda: client.secrets.database.generate_credentials(role, mount_point=mount),
    }

    def send(name: str) -> None:
        try:
            send_one[name]()
        except hvac.exceptions.VaultError as exc:
            failed[name] += 1
            reasons[database_failure(str(exc)) or type(exc).__name__] += 1

    for _ in range(rounds):
        for _ in range(3):  # leases for the revocation to find
            client.secrets.database.generate_credentials(role, mount_point=mount)
        threads = [threading.Thread(target=send, args=(name,)) for name in REQUESTS]
        for thread in threads:
            thread.start()
            if not together:
                thread.join()
        for thread in threads:
            thread.join()
    return failed, reasons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with temporary_dir("tp-race-pg-") as pg_dir, temporary_dir("tp-race-bao-") as bao_dir:
        postgres = start_postgres(pg_dir)
        server = start_openbao(bao_dir)
        try:
            client = server.client()
            spec = load_stack_file(REPO / "Pulumi.local.yaml")
            configure_like_the_program(client, spec, postgres)
            apart, apart_reasons = run_rounds(client, names(spec), args.rounds, together=False)
            beside, beside_reasons = run_rounds(client, names(spec), args.rounds, together=True)
        finally:
            server.stop()
            postgres.stop()
    rows = [[name, args.rounds, apart[name], beside[name]] for name in REQUESTS]
    notes = [f"one after another: {dict(apart_reasons) or 'no failure'}",
             f"beside rotate-root: {dict(beside_reasons) or 'no failure'}",
             "a request fails while OpenBao rotates the root password when it opens a database "
             "connection with the stored one; the program orders rotate-root last in an apply"]
    emit("rotate-root beside other database requests", [
        "request", "rounds", "failed, one after another", "failed, beside rotate-root"],
        rows, notes, args.json, {"apart": dict(apart), "beside": dict(beside)})
    # The baseline is the claim the program relies on: in order, nothing fails.
    return 1 if sum(apart.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
