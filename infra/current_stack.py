"""The spec of the stack Pulumi is running, read from Pulumi config.

It lives in the program, not the kernel: the kernel imports no Pulumi SDK, so
the rotation CLI and the policy pack load specs without paying for it.
"""

from __future__ import annotations

import pulumi

from kernel import paths
from kernel.spec import EnvironmentSpec, SpecError, parse_spec
from kernel.spec.loader import Problem


def load_current_stack() -> EnvironmentSpec:
    """Load the spec of the stack Pulumi is running, from Pulumi config."""
    stack = pulumi.get_stack()
    raw = pulumi.Config(paths.PROJECT_NAME).get_object("spec")
    source = f"Pulumi.{stack}.yaml"
    if raw is None:
        raise SpecError(source, [Problem((), "required key is missing")])
    return parse_spec(raw, source=source, stack=stack)
