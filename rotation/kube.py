"""The Kubernetes API behind a small interface: ``kubectl``, with errors mapped to ours.

``verify --consumers`` and ``reload`` talk to a cluster the way an operator does: through
``kubectl`` and a kubeconfig (``--kubeconfig``, else ``$KUBECONFIG`` or
``~/.kube/config``) and a context (``--context``, else the stack's
``delivery.kubernetes.context``). kubectl brings everything a real cluster's kubeconfig
may need (exec credential plugins for EKS/GKE, proxies, client certificates) that a
hand-written client would have to re-implement.

Tokens kubectl prints (TokenRequest) are returned to the caller and never logged; no
value is ever passed to kubectl as an argument.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rotation.errors import BadInput, CheckFailed
from rotation.output import log

DEFAULT_TIMEOUT_SECONDS = 60
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets


def add_kube_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--kubeconfig`` and ``--context``."""
    parser.add_argument("--kubeconfig", type=Path,
                        help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", dest="kube_context",
                        help="kubeconfig context (default: the stack's "
                             "delivery.kubernetes.context)")


@dataclass(frozen=True)
class Cluster:
    """A cluster reached with kubectl: kubeconfig file (or kubectl's default) and context."""

    kubeconfig: Path | None
    context: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace, default_context: str | None) -> Cluster:
        """Build from ``--kubeconfig``/``--context``; bad paths are usage errors (exit 2)."""
        if args.kubeconfig is not None and not Path(args.kubeconfig).is_file():
            raise BadInput(f"--kubeconfig: {args.kubeconfig} is not a readable file")
        return cls(args.kubeconfig, args.kube_context or default_context)

    def describe(self) -> str:
        """Where this cluster is, for messages (file and context names only)."""
        where = self.kubeconfig or "the default kubeconfig"
        return f"context {self.context or '(current)'} of {where}"

    def kubectl(self, *args: str, what: str) -> str:
        """Run kubectl; return stdout. Failures become :class:`CheckFailed` naming ``what``."""
        exe = shutil.which("kubectl")
        if exe is None:
            raise BadInput("kubectl not found on PATH",
                           hint="install kubectl (tools/system-packages.txt lists it)")
        cmd = [exe]
        if self.kubeconfig is not None:
            cmd += ["--kubeconfig", str(self.kubeconfig)]
        if self.context is not None:
            cmd += ["--context", self.context]
        cmd += list(args)
        log.debug("kubectl %s (%s)", " ".join(args[:2]), what)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  timeout=DEFAULT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"kubectl timed out while {what} ({self.describe()})",
                              hint="check that the API server is reachable") from None
        if proc.returncode != 0:
            # kubectl's stderr names objects and reasons, never token values.
            reason = (proc.stderr.strip().splitlines() or ["no message"])[-1][:300]
            raise CheckFailed(f"kubectl failed while {what} ({self.describe()}): {reason}")
        return proc.stdout

    def request_token(self, namespace: str, service_account: str, audience: str,
                      seconds: int = 600) -> str:
        """Return a TokenRequest token for ``namespace/service_account`` with ``audience``."""
        token = self.kubectl("create", "token", service_account, "-n", namespace,
                             f"--audience={audience}", f"--duration={seconds}s",
                             what=f"requesting a token for {namespace}/{service_account}"
                             ).strip()
        if not token:
            raise CheckFailed(f"the API server returned no token for {namespace}/"
                              f"{service_account}")
        return token

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """Return one object as JSON."""
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json",
                           what=f"reading {kind} {namespace}/{name}")
        obj: dict[str, Any] = json.loads(out)
        return obj

    def rollout_restart(self, kind: str, name: str, namespace: str) -> str:
        """``kubectl rollout restart``; return the ``restartedAt`` the workload now carries."""
        self.kubectl("rollout", "restart", f"{kind.lower()}/{name}", "-n", namespace,
                     what=f"restarting {kind} {namespace}/{name}")
        obj = self.get(kind.lower(), name, namespace)
        annotations = (obj.get("spec", {}).get("template", {}).get("metadata", {})
                       .get("annotations") or {})
        stamp = annotations.get(RESTARTED_AT)
        if not isinstance(stamp, str):
            raise CheckFailed(f"{kind} {namespace}/{name} has no {RESTARTED_AT} annotation "
                              "after kubectl rollout restart")
        return stamp
