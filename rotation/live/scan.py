"""Every declared secret's live metadata, read concurrently by a few workers on one event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rotation.kv import LiveMetadata
from rotation.live.declared import Declared, SecretState, declare
from rotation.stacks import StackTarget
from rotation.vault import VaultTarget, read_token

if TYPE_CHECKING:  # aiohttp takes ~0.2 s to import: only a command that reads pays it
    import aiohttp

MAX_WORKERS = 8  # requests in flight (docs/benchmarks.md has the measurements behind it)
CHUNK = 32  # secrets a worker takes at a time (fewer for small runs)

Advance = Callable[[int, int], None]  # (how many more secrets were read, how many in all)
T = TypeVar("T")


def _run_apart(main: Callable[[], Coroutine[Any, Any, T]], stop: Callable[[], None]) -> T:
    """Run ``main()`` on an event loop in a thread of its own; return or raise what it did.

    The caller's thread keeps its event-loop state: ``asyncio.run`` there would
    leave it with no current loop, and Pulumi's runtime (the program, its unit
    tests in the same process) asks for the current loop. An interrupt of the
    caller (Ctrl-C, or SIGTERM raised as an exception) calls ``stop`` and waits
    for the loop to end: each worker finishes the request it is in and the
    sockets are closed, none is left half-read.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(main()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="vault-reads", daemon=True)
    thread.start()
    try:
        thread.join()
    finally:
        stop()
        thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _tokens(vaults: Iterable[VaultTarget]) -> dict[VaultTarget, str]:
    """Each Vault's token, and the trust files, checked before any request (exit 2 if bad)."""
    from rotation.live.transport import check_ca_files, check_token

    tokens = {vault: read_token(vault.token_env) for vault in dict.fromkeys(vaults)}
    if tokens:
        for vault, token in tokens.items():
            check_token(token, vault.token_env)
        check_ca_files()
    return tokens


class _Scan:
    """Shared state of one :func:`read_live` run: the work left, the results, the first failure.

    Workers (coroutines on one event loop) take chunks of secrets from one
    iterator, keep their results in their own dict and report progress once
    per chunk. The first failure is kept and stops every worker before its
    next secret.
    """

    def __init__(self, declared: Sequence[Declared], *, chunk: int,
                 tokens: dict[VaultTarget, str], advance: Advance) -> None:
        self._total = len(declared)
        self._chunks = iter([declared[i:i + chunk] for i in range(0, len(declared), chunk)])
        self._tokens = tokens
        self._advance = advance
        self.stop = False
        self.failure: BaseException | None = None
        self.parts: list[dict[tuple[str, str], LiveMetadata | None]] = []

    def _next_chunk(self) -> Sequence[Declared] | None:
        """Return the next chunk of secrets, or None when none is left or the run stopped."""
        return None if self.stop else next(self._chunks, None)

    def fail(self, exc: BaseException) -> None:
        """Keep ``exc`` if it is the first failure, and stop every worker."""
        if self.failure is None:
            self.failure = exc
        self.stop = True

    async def work(self, sessions: Callable[[str], aiohttp.ClientSession]) -> None:
        """One worker: read chunks until none is left, or a failure stops the run."""
        from rotation.live.transport import mapped_error, read_one
        mine: dict[tuple[str, str], LiveMetadata | None] = {}
        self.parts.append(mine)
        try:
            while (chunk := self._next_chunk()) is not None:
                for d in chunk:
                    if self.stop:
                        return
                    try:
                        mine[d.key] = await read_one(sessions(d.vault.address), d,
                                                     self._tokens[d.vault])
                    except Exception as exc:  # noqa: BLE001 - mapped, kept, raised by read_live
                        self.fail(mapped_error(d.vault.address, f"reading metadata of "
                                               f"{d.secret.id} ({d.stack})", exc))
                        return
                self._advance(len(chunk), self._total)
        except Exception as exc:  # noqa: BLE001 - e.g. a progress callback failing: kept, raised
            self.fail(exc)

    async def run(self, workers: int) -> None:
        """Run ``workers`` workers; each Vault gets one session of that many connections."""
        from rotation.live.transport import vault_session
        opened: dict[str, aiohttp.ClientSession] = {}

        def sessions(address: str) -> aiohttp.ClientSession:
            if address not in opened:
                opened[address] = vault_session(address, workers)
            return opened[address]

        try:
            await asyncio.gather(*(self.work(sessions) for _ in range(workers)))
        finally:  # also on an interrupt: the sockets are closed, not left to the collector
            for session in opened.values():
                await session.close()


def read_live(
    declared: Sequence[Declared], *, advance: Advance | None = None,
) -> dict[tuple[str, str], LiveMetadata | None]:
    """Read every secret's live metadata concurrently; ``None`` where it does not exist.

    Tokens are resolved up front (a missing variable is exit 2 before any
    request). ``MAX_WORKERS`` workers on one event loop take chunks of
    secrets from a shared list, through one aiohttp session per Vault with
    as many keep-alive connections (:func:`vault_session`). The first failure
    (unreachable, sealed, denied) stops the run with its documented exit
    code. ``advance`` (once per chunk, from the reader's own thread:
    :func:`_run_apart`) is how a command shows progress.
    """
    tokens = _tokens(d.vault for d in declared)
    results: dict[tuple[str, str], LiveMetadata | None] = {}
    if not declared:
        return results
    workers = max(1, min(MAX_WORKERS, len(declared)))
    chunk = max(1, min(CHUNK, len(declared) // (workers * 4)))
    scan = _Scan(declared, chunk=chunk, tokens=tokens, advance=advance or (lambda _n, _total: None))
    _run_apart(lambda: scan.run(workers), lambda: setattr(scan, "stop", True))
    if scan.failure is not None:
        raise scan.failure
    for part in scan.parts:
        results.update(part)
    return results


def paths_exist(vault: VaultTarget, paths: Sequence[str]) -> dict[str, bool | BaseException]:
    """Whether each Vault API path exists (200) or not (404), read ``MAX_WORKERS`` at a time.

    A path whose read fails has the error instead, mapped as hvac's would be
    (:func:`rotation.vault.vault_errors`): the caller decides which it can
    report (a denied read) and which it raises (an unreachable Vault).
    """
    from rotation.live.transport import mapped_error, path_exists

    if not paths:
        return {}
    token = _tokens([vault])[vault]
    workers = max(1, min(MAX_WORKERS, len(paths)))

    async def run() -> dict[str, bool | BaseException]:
        from rotation.live.transport import vault_session

        gate = asyncio.Semaphore(workers)

        async def one(path: str) -> bool | BaseException:
            async with gate:
                if stopped:
                    return asyncio.CancelledError()
                try:
                    return await path_exists(session, vault.address, path, token)
                except Exception as exc:  # noqa: BLE001 - mapped and handed to the caller
                    return mapped_error(vault.address, f"reading {path}", exc)

        async with vault_session(vault.address, workers) as session:
            found = await asyncio.gather(*(one(p) for p in paths))
        return dict(zip(paths, found, strict=True))

    stopped: list[bool] = []  # set by an interrupt of the caller: no new request starts
    return _run_apart(run, lambda: stopped.append(True))


def secret_states(root: Path, target: StackTarget, *,
                  advance: Advance | None = None) -> list[SecretState]:
    """Read live metadata for every static secret of ``target`` (concurrently)."""
    declared = declare(root, [target])
    live = read_live(declared, advance=advance)
    return [SecretState(d.secret, d.version or 0, live[d.key]) for d in declared]
