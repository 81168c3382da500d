"""Entry point: ``python -m rotation <command> ...``."""

from rotation.cli import main

raise SystemExit(main())
