"""The editor schema accepts the real stack files; audit stanzas render as valid HCL."""

from __future__ import annotations

import json
from pathlib import Path

import hcl2
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from infra.audit_config import main as audit_main
from infra.audit_config import render_audit_hcl
from infra.components.audit_devices import AuditDeviceMissingError, check_devices_present
from kernel import paths
from kernel.spec import load_stack_file
from tests.conftest import STACKS


def stack_validator() -> jsonschema.Draft202012Validator:
    registry: Registry = Registry()
    for name in ("environment.schema.json", "stack.schema.json"):
        schema = json.loads((paths.SCHEMA_DIR / name).read_text())
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    stack_schema = json.loads((paths.SCHEMA_DIR / "stack.schema.json").read_text())
    return jsonschema.Draft202012Validator(stack_schema, registry=registry)


@pytest.mark.parametrize("stack", STACKS)
def test_editor_schema_accepts_each_stack_file(stack: str) -> None:
    doc = yaml.safe_load(paths.stack_file(stack).read_text())
    errors = list(stack_validator().iter_errors(doc))
    assert errors == []


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_declare_the_editor_schema(stack: str) -> None:
    first = paths.stack_file(stack).read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=kernel/schema/stack.schema.json"


def test_editor_schema_rejects_an_unknown_spec_key() -> None:
    doc = yaml.safe_load(paths.stack_file("prod").read_text())
    doc["config"][paths.SPEC_CONFIG_KEY]["colour"] = "blue"
    assert list(stack_validator().iter_errors(doc))


def test_editor_schema_rejects_a_plain_value_where_an_object_is_not_secure() -> None:
    doc = yaml.safe_load(paths.stack_file("prod").read_text())
    doc["config"]["tradepulse-vault:databaseRootPassword"] = {"plain": "x"}
    assert list(stack_validator().iter_errors(doc))


@pytest.mark.parametrize("stack", STACKS)
def test_audit_stanzas_parse_back_to_the_spec(stack: str) -> None:
    spec = load_stack_file(paths.stack_file(stack))
    parsed = hcl2.loads(render_audit_hcl(spec.audit.devices))
    got = []
    for block in parsed["audit"]:
        for typ, by_path in block.items():
            for path, body in by_path.items():
                options = {k: v.strip('"') for k, v in body["options"][0].items()
                           if k != "__is_block__"}
                got.append((typ.strip('"'), path.strip('"'), options))
    assert got == [(d.type, d.path, dict(d.options)) for d in spec.audit.devices]


def test_audit_config_cli_writes_the_local_stanzas(tmp_path: Path) -> None:
    out = tmp_path / "audit.hcl"
    assert audit_main(["--stack", "local", "--output", str(out)]) == 0
    assert 'audit "file" "file-local"' in out.read_text()


def test_audit_config_cli_rejects_an_unknown_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_main(["--stack", "nope"]) == 2
    assert "Pulumi.nope.yaml" in capsys.readouterr().err


def test_check_devices_present_accepts_trailing_slashes_and_names_what_is_missing() -> None:
    spec = load_stack_file(paths.stack_file("prod"))
    enabled = {"file-primary/": {"type": "file"}, "syslog-secondary/": {"type": "syslog"}}
    assert check_devices_present(spec.audit.devices, enabled, "Pulumi.prod.yaml") == [
        "file-primary", "syslog-secondary"]
    with pytest.raises(AuditDeviceMissingError, match=r"syslog-secondary \(syslog\)"):
        check_devices_present(spec.audit.devices, {"file-primary/": {"type": "file"}}, "x")
