"""The environment spec: typed model and the one loader that builds it."""

from kernel.spec.loader import (
    SpecError,
    load_stack_file,
    parse_spec,
)
from kernel.spec.model import EnvironmentSpec

__all__ = ["EnvironmentSpec", "SpecError", "load_stack_file", "parse_spec"]
