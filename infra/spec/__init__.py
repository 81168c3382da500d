"""The environment spec: typed model and the one loader that builds it."""

from infra.spec.loader import (
    SpecError,
    load_current_stack,
    load_stack_file,
    parse_spec,
)
from infra.spec.model import EnvironmentSpec

__all__ = ["EnvironmentSpec", "SpecError", "load_current_stack", "load_stack_file", "parse_spec"]
