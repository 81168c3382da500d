"""Render audit devices as OpenBao server configuration (declarative audit).

OpenBao >= 2.3.2 refuses audit devices created through the API unless the
server sets ``unsafe_allow_api_audit_creation``; since 2.4 they are declared
in the server config instead. For the ``openbao`` flavour the program exports
these stanzas, and ``python -m infra.audit_config --stack local`` writes them
for the server that ``make up`` and the end-to-end tests start.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from kernel.spec.model import AuditDevice


def _hcl_string(value: str) -> str:
    # JSON string escaping is a subset HCL accepts for quoted strings.
    return json.dumps(value)


def render_audit_hcl(devices: Sequence[AuditDevice]) -> str:
    """Return ``audit "<type>" "<path>" { ... }`` stanzas for every device, in order."""
    blocks: list[str] = []
    for dev in devices:
        lines = [f"audit {_hcl_string(dev.type)} {_hcl_string(dev.path)} {{"]
        if dev.description:
            lines.append(f"  description = {_hcl_string(dev.description)}")
        lines.append("  options {")
        lines.extend(f"    {key} = {_hcl_string(value)}"
                     for key, value in sorted(dev.options.items()))
        lines.append("  }")
        lines.append("}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Print (or write) the audit stanzas of a stack; exit 2 on a bad stack file."""
    from kernel import paths
    from kernel.spec import SpecError, load_stack_file

    parser = argparse.ArgumentParser(
        prog="python -m infra.audit_config",
        description="Render a stack's audit devices as OpenBao server config (HCL).",
    )
    parser.add_argument("--stack", required=True, help="stack name, e.g. local")
    parser.add_argument("--output", help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        spec = load_stack_file(paths.stack_file(args.stack))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render_audit_hcl(spec.audit.devices)
    if args.output:
        from kernel.atomic import write_text_atomic

        write_text_atomic(args.output, text, mode=0o644)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
