"""Every declared secret's live metadata, read concurrently by a few worker threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import urllib3

from rotation.kv import LiveMetadata
from rotation.live.declared import Declared, SecretState, declare
from rotation.live.transport import (
    check_ca_files,
    check_token,
    mapped_error,
    read_one,
    worker_pool,
)
from rotation.stacks import StackTarget
from rotation.vault import VaultTarget, read_token

MAX_WORKERS = 8  # threads (docs/benchmarks.md has the measurements behind the choice)
CHUNK = 32  # secrets a worker takes at a time (fewer for small runs)

Advance = Callable[[int, int], None]  # (how many more secrets were read, how many in all)


class _Scan:
    """Shared state of one :func:`read_live` run: the work left, the results, the first failure.

    Workers take chunks of secrets from one iterator (under a lock), keep their
    results in their own dict and report progress once per chunk.
    The first failure is kept and stops every worker before its next secret.
    """

    def __init__(self, declared: Sequence[Declared], *, chunk: int,
                 tokens: dict[VaultTarget, str], advance: Advance) -> None:
        self._total = len(declared)
        self._chunks = iter([declared[i:i + chunk] for i in range(0, len(declared), chunk)])
        self._tokens = tokens
        self._advance = advance
        self._lock = threading.Lock()
        self.stop = False
        self.failure: BaseException | None = None
        self.parts: list[dict[tuple[str, str], LiveMetadata | None]] = []

    def _next_chunk(self) -> Sequence[Declared] | None:
        """Return the next chunk of secrets, or None when none is left or the run stopped."""
        with self._lock:
            return None if self.stop else next(self._chunks, None)

    def fail(self, exc: BaseException) -> None:
        """Keep ``exc`` if it is the first failure, and stop every worker."""
        with self._lock:
            if self.failure is None:
                self.failure = exc
            self.stop = True

    def work(self) -> None:
        """One worker thread: read chunks until none is left, or a failure stops the run."""
        mine: dict[tuple[str, str], LiveMetadata | None] = {}
        with self._lock:
            self.parts.append(mine)
        pools: dict[str, urllib3.PoolManager] = {}
        try:
            while (chunk := self._next_chunk()) is not None:
                for d in chunk:
                    if self.stop:
                        return
                    try:
                        pool = pools.get(d.vault.address)
                        if pool is None:
                            pool = pools[d.vault.address] = worker_pool(d.vault.address)
                        mine[d.key] = read_one(pool, d, self._tokens[d.vault])
                    except Exception as exc:  # noqa: BLE001 - mapped, kept, raised by read_live
                        self.fail(mapped_error(d, exc))
                        return
                self._advance(len(chunk), self._total)
        except BaseException as exc:  # noqa: BLE001 - e.g. a progress callback failing: kept, raised
            self.fail(exc)
        finally:
            for pool in pools.values():
                pool.clear()


def read_live(
    declared: Sequence[Declared], *, advance: Advance | None = None,
) -> dict[tuple[str, str], LiveMetadata | None]:
    """Read every secret's live metadata concurrently; ``None`` where it does not exist.

    Tokens are resolved up front (a missing variable is exit 2 before any
    request). ``MAX_WORKERS`` threads take chunks of secrets from a shared
    list; each keeps one urllib3 pool (one keep-alive connection) per Vault
    (:func:`worker_pool`). The first failure (unreachable, sealed, denied)
    stops the run with its documented exit code. ``advance`` (from worker
    threads, once per chunk) is how a command shows progress.
    """
    tokens = {d.vault: read_token(d.vault.token_env) for d in declared}
    results: dict[tuple[str, str], LiveMetadata | None] = {}
    if not declared:
        return results
    for vault, token in tokens.items():  # refused before any request
        check_token(token, vault.token_env)
    check_ca_files()
    workers = max(1, min(MAX_WORKERS, len(declared)))
    chunk = max(1, min(CHUNK, len(declared) // (workers * 4)))
    scan = _Scan(declared, chunk=chunk, tokens=tokens, advance=advance or (lambda _n, _total: None))
    threads = [threading.Thread(target=scan.work, name=f"kv-metadata-{i}", daemon=True)
               for i in range(workers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:  # an interrupt: let the workers finish their request and close their sockets
        scan.stop = True
        for thread in threads:
            if thread.ident is not None:
                thread.join()
    if scan.failure is not None:
        raise scan.failure
    for part in scan.parts:
        results.update(part)
    return results


def secret_states(root: Path, target: StackTarget, *,
                  advance: Advance | None = None) -> list[SecretState]:
    """Read live metadata for every static secret of ``target`` (concurrently)."""
    declared = declare(root, [target])
    live = read_live(declared, advance=advance)
    return [SecretState(d.secret, d.version or 0, live[d.key]) for d in declared]
