"""A killed ``pulumi up`` whose KV write reached Vault: record that write in the stack's state.

When ``pulumi up`` is killed after the provider's check-and-set write landed
(Vault at the declared version N) but before the engine checkpointed it, the
state still holds version N-1's inputs (``cas = N-2``). Neither Pulumi command
repairs that: ``pulumi refresh`` re-reads only the secret's metadata
(terraform-provider-vault's read never sets ``data_json``, and ``cas`` is
config only), so the next ``pulumi up`` writes again with ``cas = N-1`` and
Vault refuses it (check-and-set parameter did not match the current version).

The killed update's checkpoint still names what it was writing: its pending
operation carries the resource's new inputs. :func:`adopt` copies them into
the resource (inputs, and the outputs the provider would have stored:
``dataJson`` in the provider's normalised form, ``cas``, ``options``) and drops
the pending operations: Pulumi's documented repair, ``pulumi stack export`` ->
edit -> ``pulumi stack import``. Only a write proven to have landed is adopted
(the caller compares Vault's version N with the pending data); anything else
is left for ``pulumi up``, which Vault's check-and-set keeps from writing twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SECRET_TYPE = "vault:kv/secretV2:SecretV2"  # noqa: S105 - a type token
# What Go's json.Marshal escapes beyond Python's json.dumps(ensure_ascii=False).
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}


class NotAdoptable(ValueError):
    """A pending write cannot be recorded as landed (the message names the resource)."""


@dataclass(frozen=True)
class PendingWrite:
    """A KV secret's write a killed update left pending, as the checkpoint holds it."""

    urn: str
    operation: str
    data: dict[str, str]  # the values being written: compared in memory, never shown


def plaintext(value: Any, urn: str, field: str) -> Any:
    """Return the plain value of a deployment property exported with ``--show-secrets``.

    A secret property is Pulumi's secret object (apitype.SecretValue): its
    signature entry plus ``plaintext``, the JSON of the value. The properties
    read here are strings or numbers, so any object with ``plaintext`` is one.
    """
    if isinstance(value, dict):
        if "plaintext" not in value or len(value) != 2:
            raise NotAdoptable(f"{urn}: {field} is not a plain or exported secret value "
                               "(export with --show-secrets)")
        return json.loads(value["plaintext"])
    return value


def _like(template: Any, value: Any) -> Any:
    """``value`` as a secret object with ``template``'s signature when that is one."""
    if isinstance(template, dict):
        return {**template, "plaintext": json.dumps(value)}
    return value


def provider_normalised(data: dict[str, str]) -> str:
    """``data_json`` as terraform-provider-vault keeps it in state (its StateFunc).

    The provider stores ``json.Marshal`` of the decoded map: keys sorted, no
    spaces, UTF-8 kept, and ``<``, ``>``, ``&``, U+2028 and U+2029 escaped.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def pending_writes(deployment: dict[str, Any]) -> list[PendingWrite]:
    """Return the KV secret writes in a deployment's pending operations (``--show-secrets``)."""
    out = []
    for op in deployment.get("pending_operations") or []:
        resource = op.get("resource") or {}
        if resource.get("type") != SECRET_TYPE:
            continue
        urn = str(resource.get("urn", ""))
        raw = plaintext((resource.get("inputs") or {}).get("dataJson"), urn, "dataJson")
        data = json.loads(raw) if isinstance(raw, str) else None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in data.items()):
            raise NotAdoptable(f"{urn}: the pending dataJson is not an object of strings")
        out.append(PendingWrite(urn, str(op.get("type", "")), data))
    return out


def adopt(deployment: dict[str, Any], landed: set[str]) -> list[str]:
    """Record the pending writes of ``landed`` (URNs) as applied; drop every pending operation.

    Returns the URNs whose state was rewritten. A pending create is refused: its
    resource is not in the state to rewrite (``pulumi refresh
    --clear-pending-creates`` or ``--import-pending-creates`` is Pulumi's way).
    """
    pending = deployment.get("pending_operations") or []
    creates = [op["resource"]["urn"] for op in pending if op.get("type") == "creating"]
    if creates:
        raise NotAdoptable(f"pending create(s) {', '.join(creates)}: not in the state to "
                           "record; use pulumi refresh --clear-pending-creates")
    by_urn = {op["resource"]["urn"]: op["resource"] for op in pending
              if op.get("type") == "updating"}
    adopted = []
    for resource in deployment.get("resources") or []:
        urn = resource.get("urn")
        if urn not in landed:
            continue
        if urn not in by_urn:
            raise NotAdoptable(f"{urn}: no pending update to record")
        inputs = by_urn[urn].get("inputs") or {}
        data = json.loads(plaintext(inputs.get("dataJson"), urn, "dataJson"))
        outputs = dict(resource.get("outputs") or {})
        outputs["dataJson"] = _like(inputs.get("dataJson"), provider_normalised(data))
        for key in ("cas", "options"):
            outputs[key] = inputs.get(key)
        resource["inputs"] = inputs
        resource["outputs"] = outputs
        adopted.append(str(urn))
    missing = landed - set(adopted)
    if missing:
        raise NotAdoptable(f"not in the stack's resources: {', '.join(sorted(missing))}")
    deployment["pending_operations"] = []
    return adopted
