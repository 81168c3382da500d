"""Entry point: ``python -m rotation <command> ...``.

A newcomer's first run is often ``python3 -m rotation`` with the system Python,
which has none of the pinned packages: that is a one-line error naming what to
run (exit 2), never a ``ModuleNotFoundError`` traceback. This file therefore
uses only syntax and modules every Python 3 has.
"""

import sys
from pathlib import Path

_SETUP_HINT = ("hint: run `make setup` in the repository (it creates .venv with the pinned "
               "packages), then use `.venv/bin/python -m rotation ...` or "
               "`source .venv/bin/activate`\n")


def _run() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - the system Python may be older
        sys.stderr.write("error: python -m rotation needs Python 3.11 or newer; "
                         f"{sys.executable} is {sys.version.split()[0]}\n" + _SETUP_HINT)
        return 2
    try:
        from rotation.cli import main

        return main()
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] in ("rotation", "infra"):
            raise
        venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
        where = f" ({venv} exists: use it)" if venv.exists() else ""
        sys.stderr.write(f"error: the package providing {exc.name!r} is not installed for "
                         f"{sys.executable}{where}\n" + _SETUP_HINT)
        return 2


raise SystemExit(_run())
