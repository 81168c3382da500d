"""No plaintext secret anywhere in the tracked tree: detect-secrets plus one structural rule.

* Every file git tracks (``git ls-files``, read from the working tree) is
  scanned with `detect-secrets <https://github.com/Yelp/detect-secrets>`_'s
  detectors: high-entropy strings and keyword assignments
  (:data:`HEURISTIC_PLUGINS`, through its scanner), and known token formats
  (:data:`PATTERN_PLUGINS`: cloud keys, private keys, basic-auth URLs, JWTs,
  CI and chat tokens) plus our Vault/OpenBao and Pulumi token detectors
  (:mod:`rotation.gates.secret_plugins`).
* In ``Pulumi.<stack>.yaml`` every ``tradepulse-vault:*`` config key other
  than the spec must be a ``secure:`` ciphertext: the design keeps all
  environment data in the spec, so any other project key holds a secret.
* ``secure:`` ciphertext lines of stack files are never findings (they are
  KMS/passphrase ciphertext, the one form in which a value may be committed).

Anything else that is not a secret is silenced only by an entry in the
allowlist file (``secret_allowlist.yaml`` beside this module, or
``--allowlist``): file globs, the detector, the exact shape of the line as a
regular expression, and the reason. Inline ``pragma: allowlist secret``
comments are ignored on purpose, so every exception is reviewed in one file.
Findings name the file, line and detector, never the matched text.

A cold scan costs about a second per ten thousand lines of code, spread over
a process pool (one process per CPU, at most four; ``$TRADEPULSE_GATE_WORKERS``
to choose) once there is more than half a MiB to read. YAML files are read for
detect-secrets from libyaml's events (:mod:`rotation.gates.secret_yaml`), the
same lines its YAML transformer makes, without its pure-Python parser.
Findings are also cached per file content and scanner configuration
(``~/.cache/tradepulse-vault/secret-scan``, ``$TRADEPULSE_GATE_CACHE`` to move
it, ``off`` to disable): a file is scanned again only when its bytes or the
scanner change.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import jsonschema
import yaml
from detect_secrets.core.scan import scan_file, scan_line
from detect_secrets.filters.heuristic import is_indirect_reference
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.settings import transient_settings

from infra import paths
from infra.spec.yamlload import safe_load_yaml
from rotation.atomic import write_text_atomic
from rotation.errors import BadInput
from rotation.gates.secret_yaml import fast_yaml_transformer

_T = TypeVar("_T")

ALLOWLIST_FILE = Path(__file__).with_name("secret_allowlist.yaml")
PLUGIN_FILE = Path(__file__).with_name("secret_plugins.py")
YAML_FILES = (Path(__file__).with_name("secret_yaml.py"),  # and the scalar resolver it uses
              paths.REPO_ROOT / "infra" / "spec" / "yamlload.py")
MAX_FILE_BYTES = 2 * 1024 * 1024  # larger files are data dumps, not config: reported, not read
STRUCTURAL = "Plain config value"
CACHE_ENV = "TRADEPULSE_GATE_CACHE"
CACHE_FORMAT = 4
RAW_PASS_SUFFIXES = (".yaml", ".yml")
WORKERS_ENV = "TRADEPULSE_GATE_WORKERS"
MAX_WORKERS = 4
# Below this many bytes to scan a process pool costs more than it saves.
PARALLEL_MIN_BYTES = 512 * 1024
UNIT_OVERHEAD = 1024  # detect-secrets' fixed work per file, in bytes scanned
RAW_BYTE_COST = 0.6  # a raw-text pass byte against a heuristic pass byte (it skips most lines)

# detect-secrets' detectors, in two groups. The heuristic ones (entropy,
# keyword assignments) need its file transformers and false-positive filters,
# so they run through its scanner. The pattern ones (known token formats) are
# detect-secrets' own regex plugin classes plus ours, run directly over each
# file's text and confirmed line by line with the plugin's own matcher: the
# scanner's per-line, per-plugin dispatch costs about 15 us a line and plugin,
# which for every pattern plugin would be seconds on this repository.
HEURISTIC_PLUGINS: tuple[dict[str, Any], ...] = (
    {"name": "Base64HighEntropyString", "limit": 4.5},
    {"name": "HexHighEntropyString", "limit": 3.0},
    {"name": "KeywordDetector", "keyword_exclude": ""},
)
# The raw-text pass of YAML files: the entropy detectors only (see detect()).
RAW_PLUGINS = tuple(p for p in HEURISTIC_PLUGINS if p["name"] != "KeywordDetector")
# Credentials this repository's world has: AWS (state, KMS), GitHub/GitLab
# (CI), Slack (the ops channel), database URLs, JWTs, keys, package tokens,
# Vault/OpenBao and Pulumi tokens. SaaS we do not use and IP addresses are
# left out.
PATTERN_PLUGINS = (
    "AWSKeyDetector", "ArtifactoryDetector", "AzureStorageKeyDetector", "BasicAuthDetector",
    "GitHubTokenDetector", "GitLabTokenDetector", "JwtTokenDetector", "NpmDetector",
    "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SlackDetector",
    "StripeDetector",
)
# detect-secrets' default false-positive heuristics, without its inline
# allowlist pragma (see the module docstring). Its is_indirect_reference line
# filter (`secret = get_secret()`) is applied to the heuristic findings after
# the scan instead of to every line before it: same result, and its regex is
# the most expensive step of the scan.
FILTERS: tuple[dict[str, Any], ...] = (
    # First, so that the other filters and every plugin skip quiet lines.
    {"path": "rotation.gates.secret_plugins.is_quiet_line"},
    *({"path": f"detect_secrets.filters.heuristic.{name}"} for name in (
        "is_sequential_string", "is_potential_uuid", "is_likely_id_string",
        "is_templated_secret", "is_prefixed_with_dollar_sign",
        "is_lock_file", "is_not_alphanumeric_string", "is_swagger_file",
    )),
)
# The raw-text pass of YAML files runs the entropy detectors only, so it also skips lines
# that cannot hold a string they report (same findings, a fraction of the lines).
RAW_FILTERS: tuple[dict[str, Any], ...] = (
    FILTERS[0], {"path": "rotation.gates.secret_plugins.is_quiet_for_entropy"}, *FILTERS[1:],
)
# A `secure:` value alone on its line, or inline as `key: {secure: ...}`.
SECURE_LINE = re.compile(
    r"\s*(?:-\s*)?(?:[\w.:-]+:\s*)?(?:\{\s*secure:\s*[A-Za-z0-9+/=:_-]+\s*\}|"
    r"secure:\s*[A-Za-z0-9+/=:_-]+)\s*(?:#.*)?")

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
                    "reason": {"type": "string", "minLength": 20},
                },
                "oneOf": [{"required": ["line"]}, {"required": ["pem_block"]}],
            },
        },
    },
}


@dataclass(frozen=True)
class Finding:
    """A possible secret: where it is and which detector saw it (never the text)."""

    path: str
    line: int
    detector: str

    def render(self) -> str:
        """Return ``path:line: detector``."""
        return f"{self.path}:{self.line}: {self.detector}"


@dataclass(frozen=True)
class AllowEntry:
    """An allowlist entry: which findings it silences, and why."""

    paths: tuple[str, ...]
    detector: str | None
    line: re.Pattern[str] | None
    pem_block: str | None
    reason: str

    def matches(self, finding: Finding, lines: Sequence[str]) -> bool:
        """Return whether ``finding`` (in a file reading ``lines``) is this entry's."""
        if not (any(fnmatch.fnmatchcase(finding.path, g) for g in self.paths)
                and self.detector in {None, finding.detector}):
            return False
        if self.pem_block is not None:
            return finding.line in pem_block_lines(tuple(lines), self.pem_block)
        text = lines[finding.line - 1] if 0 < finding.line <= len(lines) else ""
        return self.line is not None and self.line.fullmatch(text.strip()) is not None

    def describe(self) -> str:
        """Return a short description for reports."""
        if self.pem_block is not None:
            return f"{', '.join(self.paths)} PEM {self.pem_block}"
        return f"{', '.join(self.paths)} /{self.line.pattern if self.line else ''}/"


@functools.cache
def pem_block_lines(lines: tuple[str, ...], label: str) -> frozenset[int]:
    """Return the (1-based) line numbers inside PEM blocks labelled ``label``, markers included."""
    inside: set[int] = set()
    start: int | None = None
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if stripped == f"-----BEGIN {label}-----":
            start = number
        elif stripped == f"-----END {label}-----" and start is not None:
            inside.update(range(start, number + 1))
            start = None
    return frozenset(inside)


@dataclass
class ScanResult:
    """What the scan saw."""

    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    allowlisted: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unused: list[AllowEntry] = field(default_factory=list)


def load_allowlist(path: Path = ALLOWLIST_FILE) -> list[AllowEntry]:
    """Read the allowlist; :class:`BadInput` naming the problem if it is malformed."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"secret-scan allowlist {path} does not exist") from None
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
                                  raw.get("pem_block"), " ".join(raw["reason"].split())))
    return entries


def tracked_files(root: Path) -> list[str]:
    """Return the files git tracks under ``root`` that exist in the working tree."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"],
                             capture_output=True, check=True, timeout=60)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        raise BadInput(f"cannot list the files of {root}: not a git checkout? "
                       f"({type(exc).__name__})") from None
    names = sorted({n for n in out.stdout.decode("utf-8", "replace").split("\0") if n})
    return [n for n in names if (root / n).is_file() and not (root / n).is_symlink()]


@functools.cache
def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def cache_dir() -> Path | None:
    """Return where scan results are cached (``$TRADEPULSE_GATE_CACHE``; ``off`` disables)."""
    value = os.environ.get(CACHE_ENV, "")
    if value == "off":
        return None
    if value:
        return Path(value)
    return paths.user_cache_dir("secret-scan")


@functools.cache
def scanner_fingerprint() -> str:
    """Hash of everything a file's findings depend on besides its bytes."""
    from detect_secrets.__version__ import VERSION

    parts = json.dumps([CACHE_FORMAT, VERSION, HEURISTIC_PLUGINS, PATTERN_PLUGINS, FILTERS,
                        RAW_FILTERS], sort_keys=True).encode()
    code = b"".join(f.read_bytes() for f in (PLUGIN_FILE, *YAML_FILES))
    return hashlib.sha256(parts + code).hexdigest()[:24]


def _valid_hits(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(hit, list) and len(hit) == 2 and isinstance(hit[0], int)
        and isinstance(hit[1], str) for hit in value)


class _Cache:
    """Findings per file content (sha256), for one scanner fingerprint.

    A file's findings are a pure function of its bytes and the scanner
    configuration, so unchanged files are not scanned again. Entries hold line
    numbers and detector names only, never matched text.
    """

    def __init__(self, directory: Path | None) -> None:
        self.path = None if directory is None else directory / f"{scanner_fingerprint()}.json"
        self.entries: dict[str, list[list[Any]]] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict) and all(_valid_hits(v) for v in loaded.values()):
                    self.entries = loaded  # anything malformed: start cold, never guess

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written is just cold
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, json.dumps(self.entries, sort_keys=True))


def _scan_heuristic(paths_to_scan: Iterable[tuple[str, Path]],
                    plugins: Sequence[dict[str, Any]],
                    filters: Sequence[dict[str, Any]] = FILTERS) -> dict[str, list[list[Any]]]:
    """Run detect-secrets' scanner with ``plugins`` over ``(key, path)`` pairs; hits per key.

    YAML files go through detect-secrets' YAML transformer as always, its lines
    computed from libyaml's events when they can be (:mod:`rotation.gates.secret_yaml`).
    """
    out: dict[str, list[list[Any]]] = {}
    with transient_settings({"plugins_used": list(plugins), "filters_used": list(filters)}), \
            fast_yaml_transformer():
        for key, path in paths_to_scan:
            out[key] = [[s.line_number, s.type] for s in scan_file(str(path))]
    return out


@functools.cache
def pattern_plugins() -> tuple[RegexBasedDetector, ...]:
    """Instances of the pattern detectors: detect-secrets' named classes and ours."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    from rotation.gates.secret_plugins import PulumiAccessTokenDetector, VaultTokenDetector

    # detect-secrets' mapping is untyped; name its values' type here.
    mapping: dict[str, Any] = dict(get_mapping_from_secret_type_to_class())
    by_name = {plugin.__name__: plugin for plugin in mapping.values()}
    missing = [n for n in PATTERN_PLUGINS if n not in by_name]
    if missing:
        raise RuntimeError(f"detect-secrets has no plugins {missing}: check its version")
    classes: list[Any] = [by_name[n] for n in PATTERN_PLUGINS]
    classes += [VaultTokenDetector, PulumiAccessTokenDetector]
    return tuple(cast(RegexBasedDetector, c()) for c in classes)


def _pattern_settings() -> dict[str, Any]:
    ours = [{"name": n, "path": f"file://{PLUGIN_FILE}"}
            for n in ("VaultTokenDetector", "PulumiAccessTokenDetector")]
    return {"plugins_used": [{"name": n} for n in PATTERN_PLUGINS] + ours,
            "filters_used": [f for f in FILTERS if not f["path"].endswith("is_quiet_line")]}


def scan_patterns(texts: Mapping[str, str]) -> dict[str, list[list[Any]]]:
    """Return ``[line, detector]`` per text for every known token format in it.

    Each plugin's regexes run over the whole text at once to find candidate
    lines; each candidate line then goes through detect-secrets' own line scan
    (every pattern plugin, with its false-positive filters, e.g. templated
    ``{{password}}`` URLs), so a finding is exactly what detect-secrets reports
    for that line.
    """
    out: dict[str, list[list[Any]]] = {}
    candidates: dict[str, tuple[list[str], set[int]]] = {}
    for key, text in texts.items():
        lines = text.split("\n")
        numbers = {text.count("\n", 0, match.start()) + 1
                   for plugin in pattern_plugins() for regex in plugin.denylist
                   for match in regex.finditer(text)}
        candidates[key] = (lines, numbers)
        out[key] = []
    if not any(numbers for _, numbers in candidates.values()):
        return out
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    with transient_settings(_pattern_settings()):
        # detect-secrets caches its plugin classes without the custom ones of these settings.
        get_mapping_from_secret_type_to_class.cache_clear()
        for key, (lines, numbers) in candidates.items():
            hits = {(number, str(secret.type)) for number in numbers
                    for secret in scan_line(lines[number - 1])}
            out[key] = [[line, kind] for line, kind in sorted(hits)]
    return out


class _Unit(NamedTuple):
    """One detect-secrets pass over one file: the heuristic pass, or (``raw``) the raw-text one."""

    key: str
    path: str
    raw: bool
    size: int


def _scan_units(units: Sequence[_Unit]) -> list[tuple[str, list[list[Any]]]]:
    """Run the passes ``units`` ask for; return ``(key, [[line, detector], ...])`` per unit.

    Module level, so that a process pool can run it (:func:`_run_scans`).
    """
    heuristic = [(u.key, Path(u.path)) for u in units if not u.raw]
    raw = [(u.key, Path(u.path)) for u in units if u.raw]
    return [*_scan_heuristic(heuristic, HEURISTIC_PLUGINS).items(),
            *_scan_heuristic(raw, RAW_PLUGINS, RAW_FILTERS).items()]


def workers() -> int:
    """Return how many processes the scan may use (``$TRADEPULSE_GATE_WORKERS``, else the CPUs)."""
    value = os.environ.get(WORKERS_ENV, "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def _batches(units: Sequence[_Unit], count: int) -> list[list[_Unit]]:
    """Split ``units`` into ``count`` batches of about equal cost, largest units first.

    A unit costs its size (times :data:`RAW_BYTE_COST` for a raw-text pass)
    plus :data:`UNIT_OVERHEAD` bytes (detect-secrets' per-file work); each
    goes to the batch with the least cost so far.
    """
    def cost(unit: _Unit) -> float:
        return unit.size * (RAW_BYTE_COST if unit.raw else 1.0) + UNIT_OVERHEAD

    batches: list[list[_Unit]] = [[] for _ in range(count)]
    load = [0.0] * count
    for unit in sorted(units, key=cost, reverse=True):
        smallest = load.index(min(load))
        batches[smallest].append(unit)
        load[smallest] += cost(unit)
    return [b for b in batches if b]


def _run_scans(units: Sequence[_Unit], meanwhile: Callable[[], _T]
               ) -> tuple[dict[str, list[list[Any]]], _T]:
    """Run ``units`` (in a process pool when worth it) and ``meanwhile()`` here; return both.

    Each file's findings depend only on its bytes and the scanner settings, so
    splitting the files between processes changes nothing but the wall time.
    Small scans (under :data:`PARALLEL_MIN_BYTES`) and single-CPU machines stay
    in this process; a pool that cannot start falls back to it too.
    """
    hits: dict[str, list[list[Any]]] = {u.key: [] for u in units}
    count = min(workers(), len(units))
    results: list[tuple[str, list[list[Any]]]] = []
    if count > 1 and sum(u.size for u in units) >= PARALLEL_MIN_BYTES:
        try:
            with ProcessPoolExecutor(max_workers=count) as pool:
                futures = [pool.submit(_scan_units, batch) for batch in _batches(units, count)]
                other = meanwhile()
                for future in futures:
                    results.extend(future.result())
        except (OSError, BrokenProcessPool):
            results = []  # no pool here (e.g. no /dev/shm): scan in this process
        else:
            for key, found in results:
                hits[key].extend(found)
            return hits, other
    for key, found in _scan_units(units):
        hits[key].extend(found)
    return hits, meanwhile()


def detect(root: Path, names: Sequence[str], skipped: list[str],
           cache_directory: Path | None = None) -> list[Finding]:
    """Run the detectors over ``names`` (relative to ``root``); return their findings.

    YAML files get a second, raw-text pass of the entropy detectors:
    detect-secrets' YAML transformer drops block scalars (a PEM block, a pasted
    multi-line value) and, once it finds anything, the raw lines are never
    read. The keyword detector is not repeated there: the YAML pass already
    applies it with YAML's syntax.
    """
    found: list[Finding] = []
    cache = _Cache(cache_directory)
    todo: dict[str, tuple[str, Path, bytes]] = {}
    keys: list[tuple[str, str]] = []
    for name in names:
        path = root / name
        if path.stat().st_size > MAX_FILE_BYTES:
            skipped.append(f"{name}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            continue
        data = path.read_bytes()
        if _is_binary(data):
            continue
        # The file name matters too: it picks transformers and filename filters.
        key = hashlib.sha256(path.name.encode() + b"\0" + data).hexdigest()
        keys.append((name, key))
        if key not in cache.entries:
            todo[key] = (name, path, data)
    if todo:
        texts = {key: data.decode("utf-8", errors="replace")
                 for key, (_, _, data) in todo.items()}
        with tempfile.TemporaryDirectory(prefix="gate-raw-") as tmp:
            units: list[_Unit] = []
            for key, (_, path, data) in todo.items():
                units.append(_Unit(key, str(path), False, len(data)))
                if path.suffix in RAW_PASS_SUFFIXES:
                    copy = Path(tmp) / f"{key}.txt"
                    copy.write_bytes(data)
                    units.append(_Unit(key, str(copy), True, len(data)))
            hits, patterns = _run_scans(units, lambda: scan_patterns(texts))
        for key, text in texts.items():
            lines = text.split("\n")
            hits[key] = [[line, kind] for line, kind in hits[key]
                         if not (0 < line <= len(lines) and is_indirect_reference(lines[line - 1]))]
            hits[key].extend(patterns[key])
            unique = {(int(line), str(kind)) for line, kind in hits[key]}
            cache.entries[key] = [[line, kind] for line, kind in sorted(unique)]
        cache.dirty = True
    for name, key in keys:
        found.extend(Finding(name, int(line), str(kind)) for line, kind in cache.entries[key])
    cache.save()
    return sorted(set(found), key=lambda f: (f.path, f.line, f.detector))


def _key_line(lines: Sequence[str], key: str) -> int:
    pattern = re.compile(rf"\s*['\"]?{re.escape(key)}['\"]?\s*:")
    return next((i for i, text in enumerate(lines, start=1) if pattern.match(text)), 0)


def stack_config_findings(root: Path, names: Iterable[str]) -> list[Finding]:
    """Project config keys other than the spec that are not ``secure:`` ciphertext."""
    found = []
    prefix = f"{paths.PROJECT_NAME}:"
    for name in names:
        if not fnmatch.fnmatchcase(name, "Pulumi.*.yaml"):
            continue
        try:
            # libyaml-backed, same result as yaml.safe_load: a fleet's prod file took ~8 s.
            doc = safe_load_yaml((root / name).read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue  # the stack-files check reports unparsable YAML
        config = doc.get("config") if isinstance(doc, dict) else None
        if not isinstance(config, dict):
            continue
        for key, value in config.items():
            if not str(key).startswith(prefix) or key == paths.SPEC_CONFIG_KEY:
                continue
            if isinstance(value, dict) and set(value) == {"secure"}:
                continue
            found.append(Finding(name, _key_line(_lines(root / name), str(key)), STRUCTURAL))
    return found


def _secure_line(finding: Finding, text: str) -> bool:
    return (fnmatch.fnmatchcase(finding.path, "Pulumi.*.yaml")
            and SECURE_LINE.fullmatch(text) is not None)


def scan_tree(root: Path, allowlist: Sequence[AllowEntry],
              names: Sequence[str] | None = None, *, cache: bool = True) -> ScanResult:
    """Scan ``names`` (default: every tracked file) and sort findings by the allowlist."""
    _lines.cache_clear()
    files = tracked_files(root) if names is None else list(names)
    result = ScanResult(files=len(files))
    used: set[int] = set()
    raw = (detect(root, files, result.skipped, cache_dir() if cache else None)
           + stack_config_findings(root, files))
    for finding in raw:
        lines = _lines(root / finding.path)
        text = lines[finding.line - 1] if 0 < finding.line <= len(lines) else ""
        if finding.detector != STRUCTURAL and _secure_line(finding, text):
            continue
        entry = next((i for i, e in enumerate(allowlist) if finding.detector != STRUCTURAL
                      and e.matches(finding, lines)), None)
        if entry is None:
            result.findings.append(finding)
        else:
            used.add(entry)
            result.allowlisted.append(finding)
    result.unused = [e for i, e in enumerate(allowlist) if i not in used]
    return result
