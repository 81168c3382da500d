"""The ACL capability matrix: what each policy must allow and deny, asked of a real engine.

``policies/acl/expectations.yaml`` (schema: ``expectations.schema.json`` beside
it) lists, per policy file ``policies/acl/<name>.hcl``:

* ``allow``: a path and the *exact* capabilities the policy grants there.
  Exact, because granting more than expected is the loosening a reviewer must
  see (``read`` becoming ``read, update`` fails the matrix).
* ``deny``: a path the policy must not reach at all (the engine answers
  ``deny``), or, with ``capabilities``, capabilities it must not hold there.

and, for all policies, ``sudo.probe_paths``: paths on which no policy except
``sudo.holders`` (break-glass) may hold ``sudo``.

:func:`check_matrix` writes every policy into a Vault/OpenBao server, creates
one token per policy (without the ``default`` policy, so each file is judged
alone), and asks the server's own policy engine through ``sys/capabilities``;
nothing here re-implements ACL matching. :func:`evaluate` compares the answers
with the expectations and is pure, so the comparison is testable on its own.
A policy file without expectations, or expectations for a policy with no file,
is a violation too (:func:`coverage_violations`, also run by the offline gate).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import hvac
import jsonschema
import yaml

from kernel import paths
from rotation.vault import response_data, vault_errors

EXPECTATIONS_FILE = paths.POLICY_DIR / "expectations.yaml"
SCHEMA_NAME = "expectations.schema.json"
NO_CAPABILITY = "deny"
# What sys/capabilities answers for the root token; never expected of a policy.
ROOT_CAPABILITY = "root"


class ExpectationsError(ValueError):
    """The expectations file is missing, not YAML, or does not match its schema."""


@dataclass(frozen=True)
class Allow:
    """The policy grants exactly ``capabilities`` on ``path``."""

    path: str
    capabilities: frozenset[str]


@dataclass(frozen=True)
class Deny:
    """The policy grants nothing on ``path`` (``capabilities`` empty) or none of them."""

    path: str
    capabilities: frozenset[str]


@dataclass(frozen=True)
class PolicyExpectations:
    """Everything one policy must allow and deny."""

    name: str
    allow: tuple[Allow, ...]
    deny: tuple[Deny, ...]


@dataclass(frozen=True)
class Expectations:
    """The whole capability matrix."""

    source: str
    sudo_holders: frozenset[str]
    sudo_probe_paths: tuple[str, ...]
    policies: Mapping[str, PolicyExpectations]

    def probe_paths(self, policy: str) -> list[str]:
        """Return every path whose capabilities must be asked for ``policy``, sorted, unique."""
        exp = self.policies.get(policy)
        found = set(self.sudo_probe_paths)
        if exp is not None:
            found |= {a.path for a in exp.allow} | {d.path for d in exp.deny}
        return sorted(found)


@dataclass(frozen=True)
class Violation:
    """One way a policy differs from its expectations."""

    policy: str
    path: str
    rule: str  # "allow", "deny", "sudo" or "coverage"
    expected: str
    actual: tuple[str, ...] = ()

    def render(self) -> str:
        """Return a one-line, reviewer-readable description."""
        if self.rule == "coverage":
            return f"{self.policy}: {self.expected}"
        granted = [c for c in self.actual if c != NO_CAPABILITY]
        got = ", ".join(granted) or "nothing"
        return f"{self.policy}: {self.path}: expected {self.expected}; the engine grants {got}"


@dataclass
class MatrixReport:
    """The result of checking every policy against the engine."""

    policies: list[str] = field(default_factory=list)
    checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every expectation held and every policy was covered."""
        return not self.violations

    def render(self) -> str:
        """Return the report as text, one violation a line."""
        head = (f"capability matrix: {len(self.policies)} policies, {self.checked} "
                f"expectations checked, {len(self.violations)} violations")
        return "\n".join([head, *(f"  {v.render()}" for v in self.violations)])


@functools.cache
def _validator(schema_path: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def load_expectations(path: Path = EXPECTATIONS_FILE) -> Expectations:
    """Read and validate the expectations file; :class:`ExpectationsError` names every problem."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExpectationsError(f"{path.name}: file does not exist") from None
    except yaml.YAMLError as exc:
        raise ExpectationsError(f"{path.name}: not valid YAML: {str(exc).splitlines()[0]}") \
            from None
    schema_path = path.with_name(SCHEMA_NAME)
    if not schema_path.is_file():
        raise ExpectationsError(f"{path.name}: its schema {SCHEMA_NAME} is missing")
    errors = sorted(_validator(schema_path).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        lines = [f"{path.name}: {'.'.join(str(p) for p in e.absolute_path) or '(top)'}: "
                 f"{e.message[:200]}" for e in errors]
        raise ExpectationsError("\n".join(lines))
    data = cast(Mapping[str, Any], doc)
    policies = {
        name: PolicyExpectations(
            name=name,
            allow=tuple(Allow(a["path"], frozenset(a["capabilities"]))
                        for a in body.get("allow", [])),
            deny=tuple(Deny(d["path"], frozenset(d.get("capabilities", [])))
                       for d in body.get("deny", [])),
        )
        for name, body in data["policies"].items()
    }
    return Expectations(
        source=path.name,
        sudo_holders=frozenset(data["sudo"]["holders"]),
        sudo_probe_paths=tuple(data["sudo"]["probe_paths"]),
        policies=policies,
    )


def policy_files(policy_dir: Path = paths.POLICY_DIR) -> dict[str, Path]:
    """Return ``{policy name: path}`` for every ``*.hcl`` in ``policy_dir``."""
    return {p.stem: p for p in sorted(policy_dir.glob("*.hcl"))}


def coverage_violations(expectations: Expectations, policy_names: Sequence[str]) -> list[Violation]:
    """Every policy needs expectations, and every expectation needs a policy file."""
    out: list[Violation] = []
    names = set(policy_names)
    for name in sorted(names):
        exp = expectations.policies.get(name)
        if exp is None or not (exp.allow or exp.deny):
            out.append(Violation(name, "", "coverage",
                                 f"{name}.hcl has no expectations in {expectations.source}; "
                                 "add what it must allow and deny"))
    for name in sorted(set(expectations.policies) - names):
        out.append(Violation(name, "", "coverage",
                             f"{expectations.source} has expectations but there is no "
                             f"{name}.hcl"))
    for name in sorted(expectations.sudo_holders - names):
        out.append(Violation(name, "", "coverage",
                             f"sudo.holders names {name} but there is no {name}.hcl"))
    return out


def evaluate(
    expectations: Expectations, policy: str, answers: Mapping[str, Sequence[str]]
) -> tuple[int, list[Violation]]:
    """Compare the engine's ``answers`` (path -> capabilities) for ``policy``.

    Returns the number of expectations checked and the violations.
    """
    out: list[Violation] = []
    checked = 0
    exp = expectations.policies.get(policy)

    def got(path: str) -> tuple[str, ...]:
        return tuple(sorted(answers.get(path, [NO_CAPABILITY])))

    if exp is not None:
        for allow in exp.allow:
            checked += 1
            actual = got(allow.path)
            if set(actual) != set(allow.capabilities):
                out.append(Violation(policy, allow.path, "allow",
                                     f"exactly {', '.join(sorted(allow.capabilities))}", actual))
        for deny in exp.deny:
            checked += 1
            actual = got(deny.path)
            if not deny.capabilities:
                if actual != (NO_CAPABILITY,):
                    out.append(Violation(policy, deny.path, "deny", "no access", actual))
            elif (set(actual) & deny.capabilities) or ROOT_CAPABILITY in actual:
                out.append(Violation(policy, deny.path, "deny",
                                     f"none of {', '.join(sorted(deny.capabilities))}", actual))
    if policy not in expectations.sudo_holders:
        for path in expectations.sudo_probe_paths:
            checked += 1
            actual = got(path)
            if "sudo" in actual or ROOT_CAPABILITY in actual:
                out.append(Violation(policy, path, "sudo",
                                     "no sudo (only " + ", ".join(sorted(
                                         expectations.sudo_holders)) + " may hold it)", actual))
    return checked, out


def capabilities_of(client: hvac.Client, token: str, probe: list[str]) -> dict[str, list[str]]:
    """Ask ``sys/capabilities`` what ``token`` may do on each path (one request)."""
    answer = client.adapter.post("/v1/sys/capabilities", json={"token": token, "paths": probe})
    data = response_data(answer)
    return {path: list(data.get(path, [NO_CAPABILITY])) for path in probe}


def check_matrix(
    client: hvac.Client,
    expectations: Expectations,
    policy_dir: Path = paths.POLICY_DIR,
    *,
    token_ttl: str = "10m",  # noqa: S107 - a duration, not a token
) -> MatrixReport:
    """Write every policy in ``policy_dir`` to the server and check it against the matrix.

    ``client`` must be allowed to write ACL policies, create tokens with any
    policy and read ``sys/capabilities`` (a dev server's root token). The
    tokens are revoked before returning.
    """
    files = policy_files(policy_dir)
    report = MatrixReport(policies=sorted(files))
    report.violations.extend(coverage_violations(expectations, list(files)))
    address = str(getattr(client, "url", "the server"))
    tokens: list[str] = []
    try:
        for name, path in files.items():
            with vault_errors(address, f"writing policy {name}"):
                client.sys.create_or_update_acl_policy(
                    name=name, policy=path.read_text(encoding="utf-8"))
        for name in files:
            with vault_errors(address, f"creating a token with policy {name}"):
                created = client.auth.token.create(policies=[name], no_default_policy=True,
                                                   ttl=token_ttl, renewable=False)
            token = str(created["auth"]["client_token"])
            tokens.append(token)
            with vault_errors(address, f"reading capabilities of policy {name}"):
                answers = capabilities_of(client, token, expectations.probe_paths(name))
            checked, violations = evaluate(expectations, name, answers)
            report.checked += checked
            report.violations.extend(violations)
    finally:
        for token in tokens:
            with vault_errors(address, "revoking a matrix token"):
                client.auth.token.revoke(token)
    return report
