"""``rotation.gitutil.show_many``: one ``git cat-file --batch`` reads what ``show`` reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rotation.errors import BadInput
from rotation.gitutil import _batch_objects, show, show_many


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_show_many_reads_each_file_at_the_revision_as_show_does(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    files = {
        "policies/a.hcl": b'path "secret/*" {\n  capabilities = ["read"]\n}\n',
        "policies/empty.hcl": b"",
        "policies/blob.bin": b"\x00\xffnot text\n\n missing\n",  # newlines and a fake header
        "policies/odd\nname.hcl": b"named with a newline\n",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "files")
    (root / "policies/a.hcl").write_bytes(b"changed in the working tree only\n")

    asked = [*files, "policies/gone.hcl", "policies"]
    got = show_many(root, "HEAD", asked)

    assert got == {**files, "policies/gone.hcl": None, "policies": None}
    assert got["policies/a.hcl"] == (show(root, "HEAD", "policies/a.hcl") or "").encode()


def test_a_tree_among_the_paths_does_not_shift_the_files_after_it(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "policies" / "dir.hcl").mkdir(parents=True)
    (root / "policies" / "dir.hcl" / "inner").write_bytes(b"inside a directory\n")
    (root / "policies" / "after.hcl").write_bytes(b"the file after the tree\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "files")
    got = show_many(root, "HEAD", ["policies/dir.hcl", "policies/after.hcl"])
    assert got == {"policies/dir.hcl": None, "policies/after.hcl": b"the file after the tree\n"}


@pytest.mark.parametrize("output", [
    b"",  # ended before the first header
    b"0123abcd blob 40\nshort\n",  # ended inside the content
    b"not a header at all\n",
])
def test_batch_output_that_breaks_the_protocol_is_bad_input(output: bytes) -> None:
    with pytest.raises(BadInput, match="git cat-file --batch at 0123456789ab"):
        _batch_objects(output, ["policies/a.hcl"], "0123456789abcdef")
