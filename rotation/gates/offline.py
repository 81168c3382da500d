"""The offline gate: what a pull request must pass before anything is previewed or applied.

Five checks, each independent, run in seconds with no organisation Vault and no
Pulumi CLI (the capability diff starts its own throwaway OpenBao on loopback):

``stack-files``
    every ``Pulumi.<stack>.yaml`` validates (schema and cross-references), its
    declared versions are canonical integers, and every strict stack declares
    at least two audit devices.
``acl-policies``
    every ``policies/acl/*.hcl`` parses as an ACL policy, and the capability
    matrix (``expectations.yaml``) is valid and covers every policy file.
``rotation-plan``
    the pull request's diff (``--head`` against its merge base with
    ``--base``): a version moves only by +1 and is a canonical integer, a
    provided secret's ciphertext changes if and only if its version does and
    is not replayed; every other change is classified (configuration,
    privilege, weakening, destructive) and, on a throwaway OpenBao, each
    principal's capability gains and losses are computed. In strict stacks
    privilege gains, weakening and destructive changes fail unless
    acknowledged, and a rotation mixed with any other change fails.
``secrets``
    no plaintext secret in any tracked file (:mod:`rotation.gates.secret_scan`).
``dr-mirrors``
    dr's mirrors exist in prod and prod's published secrets are mirrored; dr
    has prod's mounts, policies, roles, auth methods and audit devices.

The tree checks read the working tree (CI checks out the pull request head);
``--head`` only selects the head of the plan diff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kernel import dr, paths
from kernel.policy_files import PolicyParseError, parse_policy
from kernel.rules import MIN_AUDIT_DEVICES
from kernel.spec import EnvironmentSpec, SpecError, load_stack_file
from kernel.spec.loader import read_stack_document
from kernel.spec.stackfile import YamlDocument
from kernel.spec.versions import version_literal_problems
from rotation import gitutil
from rotation.errors import CheckFailed
from rotation.gates import capabilities, secret_scan
from rotation.planning import build_plan, engine_likely_needed
from rotation.review.engine import Engine

CHECK_NAMES = ("stack-files", "acl-policies", "rotation-plan", "secrets", "dr-mirrors")
MAX_SHOWN = 40  # per list in the text report; --json has everything


@dataclass
class CheckResult:
    """One check: its one-line summary, errors (fail), warnings and notes (shown)."""

    name: str
    summary: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """A check passes when it has no errors."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"name": self.name, "ok": self.ok, "summary": self.summary,
                "errors": self.errors, "warnings": self.warnings, "notes": self.notes,
                "seconds": round(self.seconds, 3)}


@dataclass
class GateReport:
    """Every check of one gate run."""

    repo: str
    base: str
    head: str
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The gate passes when every check does."""
        return all(c.ok for c in self.checks)

    def check(self, name: str) -> CheckResult:
        """Return the check called ``name``."""
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form for ``--json``."""
        return {"ok": self.ok, "repo": self.repo, "base": self.base, "head": self.head,
                "seconds": round(self.seconds, 3),
                "failed": [c.name for c in self.checks if not c.ok],
                "checks": [c.to_json() for c in self.checks]}

    def render(self, out: TextIO) -> None:
        """Write the readable report."""
        failed = [c for c in self.checks if not c.ok]
        warnings = sum(len(c.warnings) for c in self.checks)
        verdict = "passed" if not failed else f"FAILED ({len(failed)} of {len(self.checks)} " \
            "checks failed)"
        out.write(f"gate {verdict}, {warnings} warning(s), in {self.seconds:.1f} s\n")
        out.write(f"  repository {self.repo}; plan {self.base} -> {self.head}\n\n")
        width = max(len(c.name) for c in self.checks)
        for check in self.checks:
            mark = "FAIL" if not check.ok else ("WARN" if check.warnings else "ok  ")
            out.write(f"{mark} {check.name:<{width}}  {check.summary}\n")
            for label, items in (("error", check.errors), ("warning", check.warnings),
                                 ("note", check.notes)):
                for item in items[:MAX_SHOWN]:
                    out.write(f"       {label}: {item}\n")
                if len(items) > MAX_SHOWN:
                    out.write(f"       ... {len(items) - MAX_SHOWN} more {label}s (--json)\n")
        if failed:
            out.write("\nfix the errors above and run `python -m rotation gate` again\n")


def stack_paths(root: Path) -> list[Path]:
    """Return every ``Pulumi.<stack>.yaml`` in ``root`` (not the project file)."""
    return sorted(root.glob("Pulumi.*.yaml"))


def read_stack_files(root: Path) -> tuple[CheckResult, dict[str, EnvironmentSpec],
                                          dict[str, YamlDocument]]:
    """Parse each stack file once and validate it; return the check, specs and documents.

    A name like a stack file that is not a regular file (a directory, a
    symlink) is an error, never followed.
    """
    result = CheckResult("stack-files")
    specs: dict[str, EnvironmentSpec] = {}
    documents: dict[str, YamlDocument] = {}
    files = stack_paths(root)
    if not files:
        result.errors.append(f"no Pulumi.<stack>.yaml in {root}")
    for path in files:
        stack = path.name[len("Pulumi."):-len(".yaml")]
        if path.is_symlink() or not path.is_file():
            kind = "a symlink" if path.is_symlink() else "a directory or special file"
            result.errors.append(f"{path.name}: {kind}, not a stack file; stack files must be "
                                 "regular files: remove or rename it")
            continue
        try:
            document = read_stack_document(path)
            documents[path.name] = document
            specs[stack] = load_stack_file(path, policy_dir=paths.policy_dir(root),
                                           document=document)
        except SpecError as exc:
            result.errors.extend(str(exc).splitlines())
            continue
        problems = version_literal_problems(document.text, path.name, root=document.root)
        if problems:
            result.errors.extend(problems)
            del specs[stack]
            continue
        devices = specs[stack].audit.devices
        if specs[stack].strict and len(devices) < MIN_AUDIT_DEVICES:
            result.errors.append(
                f"{path.name}: {paths.SPEC_CONFIG_KEY}.audit.devices: "
                f"{specs[stack].environment} declares {len(devices)} audit device(s) "
                f"({', '.join(d.path for d in devices) or 'none'}); it needs at least "
                f"{MIN_AUDIT_DEVICES}, because Vault refuses every request once no device can "
                "log: add a second device")
    result.summary = (f"{len(specs)} of {len(files)} stack files validate"
                      + (f": {', '.join(sorted(specs))}" if specs else ""))
    return result, specs, documents


def check_acl_policies(root: Path) -> CheckResult:
    """Parse every policy file and check that the capability matrix covers each."""
    result = CheckResult("acl-policies")
    policy_dir = paths.policy_dir(root)
    files = capabilities.policy_files(policy_dir)
    if not files:
        result.errors.append(f"no ACL policy files in {policy_dir}")
    parsed = 0
    for path in files.values():
        try:
            parse_policy(path.read_text(encoding="utf-8"), path.name)
            parsed += 1
        except PolicyParseError as exc:
            result.errors.append(str(exc))
        except UnicodeDecodeError as exc:
            result.errors.append(f"{path.name}: not UTF-8 text (byte {exc.start}); save the "
                                 "policy as UTF-8")
    covered = "no capability matrix"
    try:
        matrix = capabilities.load_expectations(policy_dir / "expectations.yaml")
    except capabilities.ExpectationsError as exc:
        result.errors.extend(str(exc).splitlines())
    else:
        gaps = capabilities.coverage_violations(matrix, list(files))
        result.errors.extend(v.render() for v in gaps)
        entries = sum(len(p.allow) + len(p.deny) for p in matrix.policies.values())
        covered = (f"capability matrix: {entries} expectations, "
                   f"{len(files) - len({v.policy for v in gaps} & set(files))} of {len(files)} "
                   "policies covered")
        result.notes.append("the matrix itself is proven against a real policy engine by "
                            "tests/integration/test_capability_matrix.py")
    result.summary = f"{parsed} of {len(files)} policies parse; {covered}"
    return result


def check_rotation_plan(root: Path, base: str, head: str | None, *,
                        acknowledge: frozenset[str] = frozenset(),
                        engine: Engine | None = None) -> CheckResult:
    """Check the plan of the pull request's diff (from the merge base), with the capability diff.

    Errors (rotation rules, unacknowledged risk in strict stacks, mixed
    pull requests) fail; every classified change is a warning, each principal
    whose capabilities change a note.
    """
    result = CheckResult("rotation-plan")
    plan = build_plan(root, base, head, acknowledge=acknowledge, with_privilege=True,
                      engine=engine)
    for finding in plan.findings:
        target = result.errors if finding.severity == "error" else result.warnings
        target.append(f"{finding.stack}: {finding.message}")
    result.warnings.extend(c.render() for c in plan.changes)
    rotations = [f"{r.stack} {r.secret} v{r.old_version}->v{r.new_version}"
                 + (f" (rollback: restores v{r.restores})" if r.restores is not None else "")
                 + (f" (follows {r.follows})" if r.follows else "") for r in plan.rotations]
    result.notes.extend(f"rotation: {r}" for r in rotations)
    report = plan.privilege
    if report.note:
        result.notes.append(f"capabilities: {report.note}")
    for diff in report.diffs:
        result.notes.append(
            f"capabilities: {diff.principal.stack} {diff.principal.label}: gains "
            f"{sum(len(c) for c in diff.gained.values())} and loses "
            f"{sum(len(c) for c in diff.lost.values())} capabilities on "
            f"{len(set(diff.gained) | set(diff.lost))} path(s) (plan --json for every path)")
    result.notes.append(f"diff from the merge base {plan.merge_base[:12]} of {base} and "
                        f"{head or 'the working tree'}")
    if plan.acknowledged:
        result.notes.append(f"acknowledged: {', '.join(plan.acknowledged)}")
    asked = (f", capability diff on OpenBao ({report.tokens} tokens, {report.paths} paths)"
             if report.ran else "")
    result.summary = (f"{len(plan.rotations)} rotation(s), {len(result.errors)} error(s), "
                      f"{len(plan.changes)} change(s) that are not rotations{asked}")
    return result


def _secret_message(finding: secret_scan.Finding) -> str:
    """Say what a scan finding means and what to do about it."""
    if finding.detector == secret_scan.STRUCTURAL:
        return (f"{finding.render()}: project config other than the spec must be `secure:` "
                "ciphertext (pulumi config set --secret)")
    if finding.detector == secret_scan.NOT_CIPHERTEXT:
        return (f"{finding.render()}: a `secure:` value must be Pulumi ciphertext "
                f"({finding.note}); set it with pulumi config set --secret")
    if finding.detector == secret_scan.UNSCANNABLE:
        return (f"{finding.render()}: {finding.note}; fix it, or if it holds no secret add a "
                "whole_file allowlist entry with the reason")
    return (f"{finding.render()}: possible plaintext secret; remove it (and rotate it if it "
            "was real) or, if it is not a secret, add an allowlist entry with the reason")


def check_secrets(root: Path, allowlist: Path,
                  documents: dict[str, YamlDocument] | None = None) -> CheckResult:
    """Scan the tracked tree for plaintext secrets (``documents``: stack files parsed already)."""
    result = CheckResult("secrets")
    entries = secret_scan.load_allowlist(allowlist)
    scan = secret_scan.scan_tree(root, entries, documents=documents)
    result.errors.extend(_secret_message(f) for f in scan.findings)
    result.notes.extend(f"allowlist entry matched nothing: {e.describe()}" for e in scan.unused)
    result.summary = (f"{scan.files} tracked files scanned, {len(scan.findings)} finding(s), "
                      f"{len(scan.allowlisted)} allowlisted")
    return result


def check_dr(root: Path, specs: dict[str, EnvironmentSpec]) -> CheckResult:
    """Check that dr mirrors what prod publishes and has prod's structure."""
    result = CheckResult("dr-mirrors")
    present = {p.name[len("Pulumi."):-len(".yaml")] for p in stack_paths(root)}
    if not {"prod", "dr"} <= present:
        result.summary = "no prod and dr stack pair: nothing to compare"
        return result
    if "prod" not in specs or "dr" not in specs:
        bad = [s for s in ("prod", "dr") if s not in specs]
        result.errors.append(f"cannot compare: {', '.join(f'Pulumi.{s}.yaml' for s in bad)} "
                             "does not validate (see stack-files)")
        result.summary = "not compared"
        return result
    prod, dr_spec = specs["prod"], specs["dr"]
    result.errors.extend(dr.mirror_problems(prod, dr_spec))
    result.errors.extend(dr.parity_problems(prod, dr_spec))
    mirrors = sum(1 for s in dr_spec.static_secrets if s.mirror_of)
    result.summary = (f"{mirrors} dr mirror(s) of prod; dr has "
                      + ("every" if not result.errors else "NOT every")
                      + " prod mount, policy, role, auth method and audit device")
    return result


def _timed(check: Callable[[], CheckResult]) -> CheckResult:
    start = time.perf_counter()
    result = check()
    result.seconds = time.perf_counter() - start
    return result


def _early_engine(root: Path, base: str, head: str | None) -> Engine | None:
    """Start the throwaway OpenBao now if the plan will need it, else return None.

    None too if it cannot start: the plan then tries itself and reports why.
    """
    if not engine_likely_needed(root, base, head):
        return None
    try:
        return Engine()
    except CheckFailed:
        return None


def run_gate(
    root: Path, base: str, head: str | None, *,
    allowlist: Path = secret_scan.ALLOWLIST_FILE,
    acknowledge: frozenset[str] = frozenset(),
) -> GateReport:
    """Run every check on the repository at ``root``; raise BadInput for unknown revisions."""
    start = time.perf_counter()
    gitutil.rev_parse(root, base)
    report = GateReport(repo=str(root), base=base, head=head or "working tree")
    started = time.perf_counter()
    stack_result, specs, documents = read_stack_files(root)
    stack_result.seconds = time.perf_counter() - started
    report.checks.append(stack_result)
    report.checks.append(_timed(lambda: check_acl_policies(root)))
    # A policy edit will need the throwaway OpenBao: start it (a Popen) before the secret
    # scan, so it comes up while the scan runs; the plan then finds it ready.
    engine = _early_engine(root, base, head)
    try:
        secrets_result = _timed(lambda: check_secrets(root, allowlist, documents))
        plan_result = _timed(lambda: check_rotation_plan(root, base, head,
                                                         acknowledge=acknowledge, engine=engine))
    finally:
        if engine is not None:
            engine.stop()
    if head is not None and gitutil.rev_parse(root, head) != gitutil.rev_parse(root, "HEAD"):
        plan_result.notes.append(f"the other checks read the working tree, not {head}: check "
                                 f"out {head} to run them on it")
    report.checks.append(plan_result)
    report.checks.append(secrets_result)
    report.checks.append(_timed(lambda: check_dr(root, specs)))
    report.seconds = time.perf_counter() - start
    return report
