"""A kv-put write whose answer is lost: settled by reading version cas+1, never written twice.

The loss is real: a TCP proxy between hvac and a real OpenBao dev server
forwards the write to the server and then resets the connection instead of
passing the answer back (the active node dying after it applied the write),
or resets it before the write reaches the server (dying before). Either way
the secret ends with exactly one new version, and the result says a write's
answer was lost. When Vault stays away the error says the write may or may
not have been applied, and running the same put again writes nothing more.
"""

from __future__ import annotations

import threading
from typing import Any

import hvac
import pytest

from rotation import kvwrite
from rotation.errors import VaultUnavailable
from tests.reliability.support import FaultProxy

pytestmark = pytest.mark.integration

MOUNT = "secret"
PATH = "teams/lost-answer"
WRITE = 3  # the request number of the write: mount check, read, write


class LosingProxy(FaultProxy):
    """Reset the connection right after request ``lose_answer_of`` went to the server."""

    def __init__(self, upstream_port: int, *, lose_answer_of: int = 0,
                 lose_request: int = 0, restore_after: float | None = 0.3) -> None:
        self.lose_answer_of = lose_answer_of
        self.restore_after = restore_after
        self._armed = False
        super().__init__(upstream_port)
        if lose_request:
            self.before_request(lose_request, self._drop)

    def _drop(self) -> None:
        self.cut()
        if self.restore_after is not None:
            threading.Timer(self.restore_after, self.restore).start()
        raise OSError("request dropped before it reached the server")

    def _before_forward(self, chunk: bytes, to_server: bool) -> None:
        super()._before_forward(chunk, to_server)
        if to_server and self.lose_answer_of and self.requests == self.lose_answer_of:
            self._armed = True
        elif not to_server and self._armed:
            self._armed = False
            self._drop()


def version(client: hvac.Client) -> int:
    meta = client.secrets.kv.v2.read_secret_metadata(path=PATH, mount_point=MOUNT)
    return int(meta["data"]["current_version"])


@pytest.fixture
def seeded(openbao: Any) -> hvac.Client:
    root = openbao.client()
    root.secrets.kv.v2.configure(cas_required=True, mount_point=MOUNT)
    root.secrets.kv.v2.create_or_update_secret(path=PATH, secret={"other": "x"}, cas=0,
                                               mount_point=MOUNT)
    return root


def test_answer_lost_after_the_write_applied_counts_it_once(openbao: Any,
                                                            seeded: hvac.Client) -> None:
    with LosingProxy(openbao.port, lose_answer_of=WRITE) as proxy:
        client = hvac.Client(url=proxy.address, token=openbao.root_token, timeout=5)
        result = kvwrite.cas_put(client, MOUNT, PATH, {"k": "v"}, unavailable_timeout=10)
    assert (result.written, result.old_version, result.new_version) == (True, 1, 2)
    assert result.unanswered_writes == 1 and result.attempts == 1
    assert version(seeded) == 2  # one write, not two
    data = seeded.secrets.kv.v2.read_secret_version(path=PATH, mount_point=MOUNT,
                                                    raise_on_deleted_version=True)
    assert data["data"]["data"] == {"other": "x", "k": "v"}


def test_request_lost_before_the_server_is_sent_again(openbao: Any,
                                                      seeded: hvac.Client) -> None:
    with LosingProxy(openbao.port, lose_request=WRITE) as proxy:
        client = hvac.Client(url=proxy.address, token=openbao.root_token, timeout=5)
        result = kvwrite.cas_put(client, MOUNT, PATH, {"k": "v"}, unavailable_timeout=10)
    assert (result.written, result.new_version, result.unanswered_writes) == (True, 2, 1)
    assert result.attempts == 2  # the lost one and the one that was answered
    assert version(seeded) == 2


def test_vault_staying_away_says_undecided_and_a_rerun_writes_nothing(
    openbao: Any, seeded: hvac.Client
) -> None:
    with LosingProxy(openbao.port, lose_answer_of=WRITE, restore_after=None) as proxy:
        client = hvac.Client(url=proxy.address, token=openbao.root_token, timeout=5)
        with pytest.raises(VaultUnavailable) as caught:
            kvwrite.cas_put(client, MOUNT, PATH, {"k": "v"}, unavailable_timeout=0)
    assert "may or may not have been applied" in str(caught.value)
    assert caught.value.hint and "not repeated" in caught.value.hint
    assert version(seeded) == 2  # it was applied
    again = kvwrite.cas_put(seeded, MOUNT, PATH, {"k": "v"})
    assert (again.written, again.new_version) == (False, 2)
    assert version(seeded) == 2
