"""No plaintext secret anywhere in the tracked tree: detect-secrets as configured, plus our rules.

* Every file git tracks (``git ls-files``, read from the working tree) is
  scanned by `detect-secrets <https://github.com/Yelp/detect-secrets>`_'s own
  scanner (``detect_secrets.core.scan.scan_file``, in a pool of spawned
  workers, one per usable core) with the configuration :data:`SETTINGS`: its
  high-entropy, keyword and token-format plugins, our Vault/OpenBao and
  Pulumi token plugins (:mod:`rotation.gates.secret_plugins`, loaded by file
  path as any custom plugin), and its default false-positive filters except
  two: the inline ``pragma: allowlist secret`` one, so that every exception
  is reviewed in the allowlist file, and the line filter
  ``is_indirect_reference``, which skips every plugin on a line such as
  ``client(key="AKIA...")``.
* detect-secrets reads YAML through its YAML transformer, which sees only the
  string values of mappings, and reads only quoted strings for entropy. So
  each YAML file is also scanned as a text copy with the same line numbers,
  where every line carries, quoted after it, the words of the YAML value
  scalars it holds (mapping values, sequence items, block and flow scalars,
  anchors): a value is read in every position. Files detect-secrets skips by their
  name (``.svg``, ``.lock``, ``.sum``...) are scanned as text copies too: a
  name does not make content safe.
* What cannot be scanned is a finding, never a silent skip: content that is
  not UTF-8 text, a file larger than :data:`MAX_FILE_BYTES`, a file name with
  control characters, a tracked entry that is not a regular file. A
  symlink's committed content is its target path, which is what is scanned.
* In ``Pulumi.<stack>.yaml`` every ``tradepulse-vault:*`` config key other
  than the spec must be a ``secure:`` value, and every ``secure:`` value must
  have the shape of Pulumi ciphertext for that stack's secrets provider
  (``v1:<nonce>:<ciphertext>`` for the passphrase and cloud KMS providers,
  the Pulumi Cloud service's base64 otherwise). Lines holding only such a
  ciphertext (or the provider's ``encryptionsalt`` / ``encryptedkey``) are
  the only lines exempt from the detectors.

Anything else that is not a secret is silenced only by an entry in the
allowlist file (``secret_allowlist.yaml`` beside this module, or
``--allowlist``): file globs, the detector, the exact shape of the line as a
regular expression (or a PEM block of public material, or a whole file that
cannot be scanned), and the reason. Findings name the file, line and
detector, never the matched text.
"""

from __future__ import annotations

import fnmatch
import functools
import multiprocessing
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import jsonschema
import yaml
from detect_secrets.core import scan
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters.heuristic import is_non_text_file
from detect_secrets.settings import (
    configure_settings_from_baseline,
    get_settings,
    transient_settings,
)

from kernel import paths
from kernel.spec.stackfile import LOADER, YamlDocument, read_yaml
from rotation.errors import BadInput

ALLOWLIST_FILE = Path(__file__).with_name("secret_allowlist.yaml")
PLUGIN_FILE = Path(__file__).with_name("secret_plugins.py")
MAX_FILE_BYTES = 2 * 1024 * 1024  # larger files fail unless allowlisted as a whole file
STRUCTURAL = "Plain config value"
NOT_CIPHERTEXT = "Not Pulumi ciphertext"
UNSCANNABLE = "Unscannable file"
NOT_GO_SUM = "Not a go.sum line"
OUR_RULES = frozenset({STRUCTURAL, NOT_CIPHERTEXT, UNSCANNABLE, NOT_GO_SUM})
# go.sum files are module hashes, one per line, all high entropy: instead of detectors they
# get a format rule, so that nothing but hash lines can sit in one.
GO_SUM_LINE = re.compile(r"\S+ v[0-9A-Za-z.+-]+(?:/go\.mod)? h1:[A-Za-z0-9+/]{43}=")
YAML_SUFFIXES = (".yaml", ".yml")
STACK_GLOB = "Pulumi.*.yaml"

# detect-secrets' configuration, as its baseline files spell it. Credentials this
# repository's world has: AWS (state, KMS), GitHub/GitLab (CI), Slack (the ops channel),
# database URLs, JWTs, keys, package tokens, Vault/OpenBao and Pulumi tokens.
SETTINGS: dict[str, Any] = {
    "plugins_used": [
        {"name": "Base64HighEntropyString", "limit": 4.5},
        {"name": "HexHighEntropyString", "limit": 3.0},
        {"name": "KeywordDetector", "keyword_exclude": ""},
        *({"name": name} for name in (
            "AWSKeyDetector", "ArtifactoryDetector", "AzureStorageKeyDetector",
            "BasicAuthDetector", "GitHubTokenDetector", "GitLabTokenDetector",
            "JwtTokenDetector", "NpmDetector", "OpenAIDetector", "PrivateKeyDetector",
            "PypiTokenDetector", "SlackDetector", "StripeDetector")),
        {"name": "VaultTokenDetector", "path": f"file://{PLUGIN_FILE}"},
        {"name": "PulumiAccessTokenDetector", "path": f"file://{PLUGIN_FILE}"},
    ],
    # detect-secrets' default filters without is_line_allowlisted (the inline pragma) and
    # without is_indirect_reference: that one is a line filter that skips every plugin on
    # a line shaped like `x = f(...)` or `x = y[...]`, so a token passed as an argument
    # (`boto3.client("s3", aws_access_key_id="AKIA...")`) was never read. The filters
    # kept judge a candidate secret, not the line around it.
    "filters_used": [{"path": f"detect_secrets.filters.heuristic.{name}"} for name in (
        "is_sequential_string", "is_potential_uuid", "is_likely_id_string",
        "is_templated_secret", "is_prefixed_with_dollar_sign",
        "is_lock_file", "is_not_alphanumeric_string", "is_swagger_file",
    )],
}

# The text copies of YAML files run without the keyword detector: detect-secrets' YAML
# pass applies it already, with YAML's syntax (on a copy it would read the quoted words).
COPY_SETTINGS: dict[str, Any] = {
    **SETTINGS,
    "plugins_used": [p for p in SETTINGS["plugins_used"] if p["name"] != "KeywordDetector"],
}

# Pulumi ciphertext per secrets provider. The passphrase and cloud KMS providers encrypt
# with AES-256-GCM under a data key: "v1:" + base64 of the 12-byte nonce (16 characters) +
# ":" + base64 of the ciphertext and its 16-byte tag. The Pulumi Cloud service returns its
# own versioned base64 blob.
_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
SYMMETRIC_CIPHERTEXT = re.compile(rf"v1:[A-Za-z0-9+/]{{16}}:(?=[A-Za-z0-9+/=]{{24}}){_B64}")
SERVICE_CIPHERTEXT = re.compile(rf"AAABA(?=[A-Za-z0-9+/=]{{24}}){_B64}")
CLOUD_PROVIDERS = ("awskms://", "azurekeyvault://", "gcpkms://", "hashivault://")
# The provider's own keys: the passphrase salt (itself "v1:<salt>:" + a symmetric
# ciphertext), and a cloud provider's data key encrypted by the KMS (its base64 blob).
SALT_VALUE = re.compile(rf"v1:[A-Za-z0-9+/=]+:{SYMMETRIC_CIPHERTEXT.pattern}")
ENCRYPTED_KEY_VALUE = re.compile(rf"(?=[A-Za-z0-9+/=]{{24}}){_B64}")
# A line holding nothing but a `secure:` value (alone, or inline as `key: {secure: ...}`),
# or a provider key: the only lines the detectors' findings are dropped on.
SECURE_LINE = re.compile(
    r"\s*(?:-\s*)?(?:[\w.:-]+:\s*)?(?:\{\s*secure:\s*\S+\s*\}|secure:\s*\S+)\s*(?:#.*)?")
PROVIDER_LINE = re.compile(r"(?:encryptionsalt|encryptedkey):\s*\S+\s*(?:#.*)?")
_WORD_EDGE = "\"'`,;()[]{}<>"

_ALLOWLIST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "entries"],
    "properties": {
        "version": {"const": 1},
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["paths", "reason"],
                "properties": {
                    "paths": {"type": "array", "minItems": 1,
                              "items": {"type": "string", "minLength": 1}},
                    "detector": {"type": "string", "minLength": 1},
                    "line": {"type": "string", "minLength": 1},
                    # Never PRIVATE KEY: only material that is public by construction.
                    "pem_block": {"enum": ["PUBLIC KEY", "CERTIFICATE"]},
                    # A file that cannot be scanned (too large, not text), by name.
                    "whole_file": {"const": True},
                    "reason": {"type": "string", "minLength": 20},
                },
                "oneOf": [{"required": ["line"]}, {"required": ["pem_block"]},
                          {"required": ["whole_file"]}],
            },
        },
    },
}


@dataclass(frozen=True)
class Finding:
    """A possible secret: where it is and which detector saw it (never the text).

    ``note`` says more for our own rules (why a file cannot be scanned).
    """

    path: str
    line: int
    detector: str
    note: str = ""

    def render(self) -> str:
        """Return ``path:line: detector`` (the path escaped if it holds control characters)."""
        shown = self.path if self.path.isprintable() else ascii(self.path)
        return f"{shown}:{self.line}: {self.detector}"


@dataclass(frozen=True)
class AllowEntry:
    """An allowlist entry: which findings it silences, and why."""

    paths: tuple[str, ...]
    detector: str | None
    line: re.Pattern[str] | None
    pem_block: str | None
    whole_file: bool
    reason: str

    def matches(self, finding: Finding, lines: Sequence[str]) -> bool:
        """Return whether ``finding`` (in a file reading ``lines``) is this entry's."""
        if not (any(fnmatch.fnmatchcase(finding.path, g) for g in self.paths)
                and self.detector in {None, finding.detector}):
            return False
        if finding.detector == UNSCANNABLE or self.whole_file:
            return self.whole_file and finding.detector == UNSCANNABLE
        if finding.detector in OUR_RULES:
            return False  # config and ciphertext rules are fixed in the file, not allowlisted
        if self.pem_block is not None:
            # Public material holds no private key, whatever block it sits in.
            return (finding.detector != "Private Key"
                    and finding.line in pem_block_lines(tuple(lines), self.pem_block))
        text = lines[finding.line - 1] if 0 < finding.line <= len(lines) else ""
        return self.line is not None and self.line.fullmatch(text.strip()) is not None

    def describe(self) -> str:
        """Return a short description for reports."""
        if self.pem_block is not None:
            return f"{', '.join(self.paths)} PEM {self.pem_block}"
        if self.whole_file:
            return f"{', '.join(self.paths)} (whole file)"
        return f"{', '.join(self.paths)} /{self.line.pattern if self.line else ''}/"


_PEM_BODY = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@functools.cache
def pem_block_lines(lines: tuple[str, ...], label: str) -> frozenset[int]:
    """Return the (1-based) line numbers inside PEM blocks labelled ``label``, markers included.

    A block counts only when every line between its markers is base64 (with
    the YAML or Markdown indentation around it): a block holding anything
    else, such as another PEM block, is not that label's material.
    """
    inside: set[int] = set()
    start: int | None = None
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if stripped == f"-----BEGIN {label}-----":
            start = number
        elif stripped == f"-----END {label}-----" and start is not None:
            inside.update(range(start, number + 1))
            start = None
        elif start is not None and not _PEM_BODY.fullmatch(stripped):
            start = None  # not a clean block of this label
    return frozenset(inside)


@dataclass
class ScanResult:
    """What the scan saw."""

    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    allowlisted: list[Finding] = field(default_factory=list)
    unused: list[AllowEntry] = field(default_factory=list)


def load_allowlist(path: Path = ALLOWLIST_FILE) -> list[AllowEntry]:
    """Read the allowlist; :class:`BadInput` naming the problem if it is malformed."""
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)  # noqa: S506 - safe
    except FileNotFoundError:
        raise BadInput(f"secret-scan allowlist {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"secret-scan allowlist {path} cannot be read "
                       f"({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{path.name}: not valid YAML: {str(exc).splitlines()[0]}") from None
    errors = list(jsonschema.Draft202012Validator(_ALLOWLIST_SCHEMA).iter_errors(doc))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top)"
        raise BadInput(f"{path.name}: {where}: {first.message[:200]}")
    entries = []
    for i, raw in enumerate(cast(Mapping[str, Any], doc)["entries"]):
        try:
            pattern = re.compile(raw["line"]) if "line" in raw else None
        except re.error as exc:
            raise BadInput(f"{path.name}: entries.{i}.line: not a regular expression "
                           f"({exc})") from None
        entries.append(AllowEntry(tuple(raw["paths"]), raw.get("detector"), pattern,
                                  raw.get("pem_block"), bool(raw.get("whole_file")),
                                  " ".join(raw["reason"].split())))
    return entries


def tracked_files(root: Path) -> list[str]:
    """Return every path git tracks under ``root`` that exists in the working tree.

    Names are decoded as the file system does (undecodable bytes kept), so a
    file with an odd name is still found and read.
    """
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"],
                             capture_output=True, check=True, timeout=60)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        raise BadInput(f"cannot list the files of {root}: not a git checkout? "
                       f"({type(exc).__name__})") from None
    names = sorted({os.fsdecode(n) for n in out.stdout.split(b"\0") if n})
    return [n for n in names if os.path.lexists(root / n)]


@functools.cache
def _lines(path: Path) -> list[str]:
    try:
        if path.is_symlink():
            return [os.readlink(path)]
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _read(root: Path, name: str) -> tuple[str | None, list[Finding]]:
    """Return the text of a tracked entry (None if it cannot be scanned) and its problems."""
    path = root / name
    problems = []
    if not name.isprintable():
        problems.append(Finding(name, 0, UNSCANNABLE, "the file name holds control characters "
                                "or bytes that are not UTF-8; rename it"))
    if path.is_symlink():
        return os.readlink(path), problems  # what git holds for a symlink: its target
    if not path.is_file():
        return None, [*problems, Finding(name, 0, UNSCANNABLE, "not a regular file (a "
                                         "directory or a submodule): not scanned")]
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        return None, [*problems, Finding(name, 0, UNSCANNABLE, f"{size} bytes, larger than "
                                         f"{MAX_FILE_BYTES // (1024 * 1024)} MiB: not scanned")]
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), problems
    except UnicodeDecodeError as exc:
        return None, [*problems, Finding(name, 0, UNSCANNABLE, f"not UTF-8 text ({exc.reason} "
                                         f"at byte {exc.start}): not scanned")]


def _yaml_words(text: str, parsed: YamlDocument | None = None) -> dict[int, list[str]] | None:
    """Return, per (0-based) line, the words of every YAML value scalar on it; None if not YAML.

    Block scalars are taken line by line from the text (each of their lines
    holds its own words); other scalars put their words on their first line.
    """
    try:
        roots = [parsed.root] if parsed is not None else list(yaml.compose_all(text,
                                                                              Loader=LOADER))
    except yaml.YAMLError:
        return None
    lines = text.splitlines()
    words: dict[int, list[str]] = {}
    seen: set[int] = set()
    todo: list[yaml.Node] = [r for r in roots if r is not None]
    while todo:
        node = todo.pop()
        if id(node) in seen:  # an alias: the anchored node is read once
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            todo.extend(value for _, value in node.value)  # keys are read on the raw line
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, yaml.ScalarNode):
            first = node.start_mark.line
            if node.style in {"|", ">"}:
                for number in range(first + 1, min(node.end_mark.line + 1, len(lines))):
                    words.setdefault(number, []).extend(lines[number].split())
            else:
                words.setdefault(first, []).extend(str(node.value).split())
    return words


def _text_copy(text: str, yaml_file: bool, parsed: YamlDocument | None = None) -> str:
    """Return ``text`` with, on each line, its YAML values' words quoted after it (same lines)."""
    lines = text.split("\n")
    if not yaml_file:
        return text
    words = _yaml_words(text, parsed)
    if words is None:  # not YAML after all: every word of every line is a candidate
        words = {i: line.split() for i, line in enumerate(lines)}
    for number, found in words.items():
        quoted = {w.strip(_WORD_EDGE) for w in found} - {""}
        if quoted and number < len(lines):
            lines[number] += "  " + " ".join(f'"{w}"' for w in sorted(quoted) if '"' not in w)
    return "\n".join(lines)


def usable_cores() -> int:
    """Return how many cores this process may run on (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def _stops_after_the_pool() -> Iterator[list[int]]:
    """Hold SIGTERM and SIGINT while the scan's worker processes run; deliver them after.

    A stop in the middle would leave the pool's workers behind; so it is
    remembered (the list yielded) and, once the pool is shut down, raised again
    for the handler that was there before (the CLI's: exit 130).
    """
    held: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        held.append(signum)

    previous = {s: signal.signal(s, hold) for s in STOP_SIGNALS}
    try:
        yield held
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held:
        signal.raise_signal(held[0])


def _start_worker(settings: dict[str, Any]) -> None:
    """In a scan worker: the parent's settings, and Ctrl-C left to the parent (which holds it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_settings_from_baseline(settings)


def _scan_file(path: str) -> list[tuple[str, int, str]]:
    """Scan one file with detect-secrets as configured; ``(path, line, type)`` per secret."""
    return [(path, secret.line_number, str(secret.type)) for secret in scan.scan_file(path)]


def _detect_secrets(files: Iterable[tuple[str, str]], settings: Mapping[str, Any],
                    processes: int) -> list[tuple[str, int, str]]:
    """Scan ``(key, path)`` pairs with detect-secrets and ``settings``; ``(key, line, type)``.

    With more than one process, the files are shared by a pool of *spawned*
    workers (fresh interpreters given the settings, as detect-secrets' own
    pool gives its forked ones): a fork copies the locks other threads hold,
    and a forked pool stopped with SIGTERM could wait for ever on a worker;
    a broken pool here is an error, never a hang.
    """
    by_path = {str(Path(p).resolve()): key for key, p in files}
    if not by_path:
        return []
    found: list[tuple[str, int, str]] = []
    with transient_settings(dict(settings)):
        # Its plugin-class table is computed once per process from the settings then in
        # force; computed again here so that our custom plugins (by file path) are in it.
        get_mapping_from_secret_type_to_class.cache_clear()
        workers = min(processes, len(by_path))
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            with _stops_after_the_pool() as held, ProcessPoolExecutor(
                    workers, mp_context=context, initializer=_start_worker,
                    initargs=(get_settings().json(),)) as pool:
                try:
                    for hits in pool.map(_scan_file, by_path, chunksize=8):
                        found.extend(hits)
                except BrokenProcessPool:
                    if not held:  # else: stopped; the held signal is raised after the pool
                        raise
        else:
            for path in by_path:
                found.extend(_scan_file(path))
    get_mapping_from_secret_type_to_class.cache_clear()
    return [(by_path[path], line, kind) for path, line, kind in found]


def detect(root: Path, names: Sequence[str],
           documents: Mapping[str, YamlDocument] | None = None,
           processes: int | None = None) -> list[Finding]:
    """Run the detectors over ``names`` (relative to ``root``); return their findings.

    ``documents`` holds the files the caller has parsed already (the stack
    files, by name): their node trees are used instead of parsing them again.
    ``processes``: detect-secrets' worker processes (default: one per usable
    core; 1 scans in this process).
    """
    processes = processes or usable_cores()
    documents = documents or {}
    found: set[Finding] = set()
    direct: dict[str, str] = {}
    copies: dict[str, str] = {}
    yaml_copies: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gate-scan-") as tmp:
        for index, name in enumerate(names):
            text, problems = _read(root, name)
            found.update(problems)
            if text is None:
                continue
            path = root / name
            if path.name == "go.sum" and not path.is_symlink():
                found.update(Finding(name, number, NOT_GO_SUM) for number, line
                             in enumerate(text.splitlines(), start=1)
                             if not GO_SUM_LINE.fullmatch(line))
                continue
            yaml_file = path.suffix in YAML_SUFFIXES
            if not path.is_symlink() and not is_non_text_file(name):
                direct[name] = str(path)  # read by detect-secrets as what it is
            if yaml_file or path.is_symlink() or is_non_text_file(name):
                copy = Path(tmp) / str(index) / f"{path.name}.txt"
                copy.parent.mkdir()
                parsed = documents.get(name)
                if parsed is not None and parsed.text != text:
                    parsed = None  # changed since it was parsed: parse what is there now
                copy.write_text(_text_copy(text, yaml_file, parsed), encoding="utf-8")
                (yaml_copies if yaml_file else copies)[name] = str(copy)
        # One scan (one process pool) per configuration.
        hits = (_detect_secrets([*direct.items(), *copies.items()], SETTINGS, processes)
                + _detect_secrets(yaml_copies.items(), COPY_SETTINGS, processes))
    found.update(Finding(name, line, kind) for name, line, kind in hits)
    return sorted(found, key=lambda f: (f.path, f.line, f.detector))


def secrets_provider_shape(doc: Mapping[str, Any]) -> tuple[re.Pattern[str] | None, str]:
    """Return the ciphertext shape of a stack file's secrets provider and its name."""
    provider = doc.get("secretsprovider")
    if provider in {None, "default", "service"}:
        return SERVICE_CIPHERTEXT, "the Pulumi Cloud service"
    if provider == "passphrase" or (isinstance(provider, str)
                                    and provider.startswith(CLOUD_PROVIDERS)):
        return SYMMETRIC_CIPHERTEXT, f"{provider}"
    return None, f"an unknown secrets provider {str(provider)[:40]!r}"


def _secure_values(root_node: yaml.Node) -> Iterable[tuple[yaml.Node, yaml.Node | None]]:
    """Yield ``(mapping, value)`` for every mapping with a ``secure`` key in the document."""
    todo = [root_node]
    while todo:
        node = todo.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == "secure":
                    yield node, value
                todo.append(value)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)


def _provider_key_lines(node: yaml.MappingNode, lines: Sequence[str]) -> Iterable[int]:
    """Yield the (1-based) lines of a well-formed ``encryptionsalt`` / ``encryptedkey``."""
    shapes = {"encryptionsalt": SALT_VALUE, "encryptedkey": ENCRYPTED_KEY_VALUE}
    for key, value in node.value:
        pattern = shapes.get(key.value) if isinstance(key, yaml.ScalarNode) else None
        if (pattern is not None and isinstance(value, yaml.ScalarNode)
                and pattern.fullmatch(value.value)
                and PROVIDER_LINE.fullmatch(lines[key.start_mark.line])):
            yield key.start_mark.line + 1


def stack_config_findings(root: Path, names: Iterable[str],
                          documents: Mapping[str, YamlDocument] | None = None,
                          ) -> tuple[list[Finding], set[tuple[str, int]]]:
    """Apply our rules to stack files; return findings and the lines exempt from detectors.

    Project config keys other than the spec must be ``secure:``; every
    ``secure:`` value must be ciphertext of the stack's secrets provider.
    """
    found: list[Finding] = []
    exempt: set[tuple[str, int]] = set()
    for name in names:
        path = root / name
        if not fnmatch.fnmatchcase(name, STACK_GLOB) or not path.is_file() or path.is_symlink():
            continue  # non-regular stack-file names are the stack-files check's to report
        try:
            document = (documents or {}).get(name) or read_yaml(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # reported by detect() (not text) or the stack-files check (not YAML)
        node, doc, text = document.root, document.data, document.text
        if not isinstance(node, yaml.MappingNode) or not isinstance(doc, dict):
            continue
        shape, provider = secrets_provider_shape(doc)
        lines = text.splitlines()
        for mapping, value in _secure_values(node):
            line = (value or mapping).start_mark.line + 1
            cipher = value.value if isinstance(value, yaml.ScalarNode) else None
            if shape is not None and isinstance(cipher, str) and shape.fullmatch(cipher):
                if SECURE_LINE.fullmatch(lines[line - 1]):
                    exempt.add((name, line))
                continue
            found.append(Finding(name, line, NOT_CIPHERTEXT, f"not ciphertext of {provider}"))
        exempt.update((name, line) for line in _provider_key_lines(node, lines))
        config = doc.get("config") if isinstance(doc, dict) else None
        if not isinstance(config, dict):
            continue
        for key, value in config.items():
            if not str(key).startswith(paths.CONFIG_PREFIX) or key == paths.SPEC_CONFIG_KEY:
                continue
            if isinstance(value, dict) and set(value) == {"secure"}:
                continue
            found.append(Finding(name, _key_line(lines, str(key)), STRUCTURAL))
    return found, exempt


def _key_line(lines: Sequence[str], key: str) -> int:
    pattern = re.compile(rf"\s*['\"]?{re.escape(key)}['\"]?\s*:")
    return next((i for i, text in enumerate(lines, start=1) if pattern.match(text)), 0)


def scan_tree(root: Path, allowlist: Sequence[AllowEntry],
              names: Sequence[str] | None = None,
              documents: Mapping[str, YamlDocument] | None = None) -> ScanResult:
    """Scan ``names`` (default: every tracked file) and sort findings by the allowlist.

    ``documents``: stack files the caller has parsed (by name), not parsed again.
    """
    _lines.cache_clear()
    files = tracked_files(root) if names is None else list(names)
    result = ScanResult(files=len(files))
    used: set[int] = set()
    ours, exempt = stack_config_findings(root, files, documents)
    for finding in detect(root, files, documents) + ours:
        if finding.detector not in OUR_RULES and (finding.path, finding.line) in exempt:
            continue
        lines = _lines(root / finding.path)
        entry = next((i for i, e in enumerate(allowlist) if e.matches(finding, lines)), None)
        if entry is None:
            result.findings.append(finding)
        else:
            used.add(entry)
            result.allowlisted.append(finding)
    result.unused = [e for i, e in enumerate(allowlist) if i not in used]
    return result
