"""Stack-file errors name the line as well as the file and key path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from kernel.spec import SpecError, load_stack_file
from kernel.spec.marks import duplicate_keys, line_of
from tests.conftest import REPO_ROOT

TEXT = """\
config:
  a:
    list:
      - x: 1
      - x: 2
        y: 3
"""


def test_line_of_follows_keys_and_indices_and_stops_at_the_deepest_existing_node() -> None:
    root = yaml.compose(TEXT)
    assert line_of(root, ("config", "a", "list", 1, "y")) == 6
    assert line_of(root, ("config", "a", "list", 0)) == 4
    assert line_of(root, ("config", "a", "missing", 3)) == 2  # where it would be added
    assert line_of(root, ("config", "a", "list", 9)) == 3
    assert line_of(None, ("config",)) is None


def test_a_schema_error_in_a_stack_file_names_file_key_path_and_line(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "policies", tmp_path / "policies")
    text = (REPO_ROOT / "Pulumi.local.yaml").read_text()
    lines = text.splitlines()
    target = next(i for i, line in enumerate(lines) if line.strip() == "version: 1")
    lines[target] = lines[target].replace("version: 1", "version: one")
    path = tmp_path / "Pulumi.local.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as caught:
        load_stack_file(path, policy_dir=tmp_path / "policies" / "acl")
    first = str(caught.value).splitlines()[0]
    assert first.startswith("Pulumi.local.yaml: tradepulse-vault:spec.static_secrets[")
    assert first.endswith(f"'one' is not of type 'integer' (line {target + 1})")


def test_duplicate_keys_are_found_with_both_lines() -> None:
    root = yaml.compose("a:\n  x: 1\n  y: 2\n  x: 3\nb: [ {k: 1, k: 2} ]\n")
    assert duplicate_keys(root) == [(("a", "x"), 4, 2), (("b", 0, "k"), 5, 5)]
    assert duplicate_keys(yaml.compose("a: 1\nb: 2\n")) == []
    assert duplicate_keys(None) == []


def test_a_duplicate_key_in_a_stack_file_is_refused_by_the_loader_naming_field_and_lines(
        tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "policies", tmp_path / "policies")
    lines = (REPO_ROOT / "Pulumi.local.yaml").read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if line.strip() == "version: 1")
    lines.insert(target + 1, lines[target].replace("1", "7"))
    path = tmp_path / "Pulumi.local.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as caught:
        load_stack_file(path, policy_dir=tmp_path / "policies" / "acl")
    message = str(caught.value)
    assert message.startswith("Pulumi.local.yaml: tradepulse-vault:spec.static_secrets[")
    assert message.endswith(f".version: duplicate key (first at line {target + 1}); "
                            f"YAML would keep only the last (line {target + 2})")


def test_a_duplicate_key_outside_the_spec_is_named_by_its_place_in_the_file(
        tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.local.yaml"
    path.write_text("config:\n  vault:address: a\n  vault:address: b\n")
    with pytest.raises(SpecError) as caught:
        load_stack_file(path, policy_dir=REPO_ROOT / "policies" / "acl")
    assert str(caught.value) == (
        "Pulumi.local.yaml: tradepulse-vault:spec: duplicate key `config.vault:address` "
        "(first at line 2); YAML would keep only the last (line 3)")
