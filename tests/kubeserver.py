"""A real Kubernetes API server for tests and ``make up``: kube-apiserver on Debian's etcd.

``kube-apiserver`` is built by ``tools/toolchain/build.sh`` (there is no binary in any
registry we reach); etcd is Debian's ``etcd-server``. Both listen on loopback ports
picked at start (or given), with certificates generated here: a CA, the API server's
serving certificate for 127.0.0.1, an admin client certificate (``system:masters``)
for kubectl, and the service-account signing key that TokenRequest tokens are signed
with. No kube-controller-manager and no kubelet run: ServiceAccounts, RBAC, custom
resources and workloads exist as API objects, which is all Kubernetes auth, the
delivery objects and ``rotation reload`` need. Nothing here is mocked.

:func:`bootstrap` then creates what a cluster has before this repository's program
runs: the VSO CRDs (``tools/kube/crds``), the services' namespaces and workloads, and
the token reviewer Vault's Kubernetes auth uses (a ServiceAccount bound to
``system:auth-delegator``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = REPO_ROOT / "tools" / "kube" / "crds"
CONTEXT = "tradepulse-local"
# The issuer (and default audience) of the API server's own service-account tokens.
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
REVIEWER_NAMESPACE = "kube-system"
REVIEWER_ACCOUNT = "vault-token-reviewer"
WORKLOAD_IMAGE = "registry.invalid/tradepulse/{name}:local"  # never pulled: no kubelet


def toolchain_bin() -> Path:
    """The toolchain cache's bin directory (``tools/toolchain/env.sh`` puts it on PATH)."""
    cache = os.environ.get("TRADEPULSE_TOOLCHAIN_DIR",
                           str(Path.home() / ".cache" / "tradepulse-vault" / "toolchain"))
    return Path(cache) / "bin"


def _toolchain_binary(name: str) -> str:
    beside = toolchain_bin() / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} not found: run tools/toolchain/build.sh (component kube-apiserver)")
    return found


def kube_apiserver_binary() -> str:
    """Return the toolchain's ``kube-apiserver``."""
    return _toolchain_binary("kube-apiserver")


def kubectl_binary() -> str:
    """Return the toolchain's ``kubectl`` (the API server's release; has ``create token``)."""
    return _toolchain_binary("kubectl")


def path_with_toolchain() -> str:
    """``PATH`` for child processes that run kubectl: the toolchain's bin first."""
    return f"{toolchain_bin()}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def etcd_binary() -> str:
    """Return Debian's ``etcd`` (package etcd-server)."""
    found = shutil.which("etcd")
    if found is None:
        raise FileNotFoundError("etcd not found: apt-get install etcd-server")
    return found


# ----------------------------------------------------------------------------- certificates

def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated certificates and keys (all under one private directory)."""

    ca: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def generate_pki(directory: Path, *, days: int = 2) -> Pki:
    """Write a throwaway CA, the serving and admin certificates and the SA signing key.

    EC P-256 keys: generated in milliseconds, accepted by the API server, kubectl,
    OpenBao and Python's TLS alike.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("tradepulse-local-kubernetes-ca")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: x509.Name, usage: x509.ObjectIdentifier,
             sans: Sequence[x509.GeneralName] = ()) -> tuple[x509.Certificate, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(valid[0]).not_valid_after(valid[1])
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)),
                                            critical=False)
        return builder.sign(ca_key, hashes.SHA256()), _pem_key(key)

    server, server_key = leaf(_name("kube-apiserver"), x509.ExtendedKeyUsageOID.SERVER_AUTH, [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        x509.DNSName("kubernetes.default.svc")])
    # system:masters: the bootstrap administrator (creates CRDs, namespaces, RBAC).
    admin, admin_key = leaf(_name("tradepulse-admin", "system:masters"),
                            x509.ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    pki = Pki(directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key",
              directory / "admin.crt", directory / "admin.key", directory / "sa.key",
              directory / "sa.pub")
    pem = serialization.Encoding.PEM
    _write(pki.ca, ca.public_bytes(pem), 0o644)
    _write(pki.server_cert, server.public_bytes(pem), 0o644)
    _write(pki.server_key, server_key)
    _write(pki.admin_cert, admin.public_bytes(pem), 0o644)
    _write(pki.admin_key, admin_key)
    _write(pki.sa_key, _pem_key(sa_key))
    _write(pki.sa_pub, sa_key.public_key().public_bytes(
        pem, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return pki


# ----------------------------------------------------------------------------- the server

@dataclass
class KubeApiServer:
    """A running kube-apiserver (and its etcd) on loopback, with an admin kubeconfig."""

    address: str
    port: int
    workdir: Path
    pki: Pki
    kubeconfig: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    context: str = CONTEXT

    @property
    def ca_pem(self) -> str:
        """The cluster CA (public), as Vault's ``kubernetes_ca_cert`` wants it."""
        return self.pki.ca.read_text()

    def env(self) -> dict[str, str]:
        """``KUBECONFIG`` for child processes (pulumi's kubernetes provider, kubectl)."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input_text: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl`` as the admin against this server."""
        proc = subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), "--context", self.context,
             *args],
            input=input_text, capture_output=True, text=True, check=False, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()[-2000:]}")
        return proc

    def apply(self, documents: Iterable[dict[str, Any]]) -> None:
        """``kubectl apply`` the given objects (server-side validation, strict fields)."""
        self.kubectl("apply", "--validate=strict", "-f", "-",
                     input_text=yaml.safe_dump_all(list(documents), sort_keys=False))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """Return one object as a dict, or None when the API server says NotFound."""
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise RuntimeError(f"kubectl get {kind} {name}: {proc.stderr.strip()}")
        got: dict[str, Any] = json.loads(proc.stdout)
        return got

    def token(self, namespace: str, service_account: str, audience: str,
              seconds: int = 600) -> str:
        """A TokenRequest token for a ServiceAccount and audience (what a pod would get)."""
        return self.kubectl("create", "token", service_account, "-n", namespace,
                            f"--audience={audience}", f"--duration={seconds}s").stdout.strip()

    def stop(self) -> None:
        """Stop the API server, then etcd."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def write_kubeconfig(path: Path, address: str, pki: Pki, context: str = CONTEXT) -> None:
    """Write an admin kubeconfig (file references, no inline keys) for ``context``."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {
            "server": address, "certificate-authority": str(pki.ca)}}],
        "users": [{"name": f"{context}-admin", "user": {
            "client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
        "contexts": [{"name": context, "context": {
            "cluster": context, "user": f"{context}-admin"}}],
    }
    _write(path, yaml.safe_dump(config, sort_keys=False).encode())


def _wait(check: Any, timeout: float, what: str, procs: Sequence[subprocess.Popen[bytes]],
          logs: Sequence[Path]) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: a server exited: {log.read_text()[-3000:]}")
        try:
            if check():
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready within {timeout}s (last error: {last})")


def start_kube_apiserver(workdir: Path, *, port: int | None = None,
                         detach: bool = False) -> KubeApiServer:
    """Start etcd and kube-apiserver in ``workdir``; return when ``/readyz`` says ok.

    ``detach`` starts both in their own session so they outlive the caller (``make up``).
    """
    apiserver_bin, etcd_bin = kube_apiserver_binary(), etcd_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    pki = generate_pki(workdir / "pki")
    port = port or free_port()
    etcd_port, peer_port = free_port(), free_port()
    clean_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("VAULT_", "BAO_", "ETCD"))}
    etcd_log = workdir / "etcd.log"
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    procs: list[subprocess.Popen[bytes]] = []
    server = KubeApiServer(f"https://127.0.0.1:{port}", port, workdir, pki,
                           workdir / "kubeconfig", procs)
    try:
        with etcd_log.open("wb") as log:
            procs.append(subprocess.Popen(
                [etcd_bin, "--name", "tradepulse", "--data-dir", str(workdir / "etcd"),
                 "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                 "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                 "--initial-cluster", f"tradepulse=http://127.0.0.1:{peer_port}",
                 "--logger", "zap", "--log-level", "warn"],
                cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=clean_env, start_new_session=detach))
        _wait(lambda: requests.get(f"{etcd_url}/health", timeout=2).json().get("health")
              == "true", 60, "etcd", procs, [etcd_log])
        api_log = workdir / "kube-apiserver.log"
        with api_log.open("wb") as log:
            procs.append(subprocess.Popen(
                [apiserver_bin, f"--etcd-servers={etcd_url}",
                 "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                 f"--secure-port={port}", f"--cert-dir={workdir / 'certs'}",
                 f"--tls-cert-file={pki.server_cert}", f"--tls-private-key-file={pki.server_key}",
                 f"--client-ca-file={pki.ca}",
                 f"--service-account-issuer={SA_ISSUER}",
                 f"--service-account-key-file={pki.sa_pub}",
                 f"--service-account-signing-key-file={pki.sa_key}",
                 "--authorization-mode=Node,RBAC", "--service-cluster-ip-range=10.96.0.0/16",
                 "--profiling=false", "--v=0"],
                cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=clean_env, start_new_session=detach))
        write_kubeconfig(server.kubeconfig, server.address, pki)
        admin = (str(pki.admin_cert), str(pki.admin_key))

        def ready() -> bool:
            answer = requests.get(f"{server.address}/readyz", cert=admin, verify=str(pki.ca),
                                  timeout=5)
            return answer.status_code == 200 and answer.text == "ok"

        _wait(ready, 180, "kube-apiserver", procs, [etcd_log, api_log])
    except BaseException:
        server.stop()
        raise
    return server


# ----------------------------------------------------------------------------- bootstrap

def crd_documents() -> list[dict[str, Any]]:
    """Our VSO CustomResourceDefinitions (tools/kube/crds), parsed."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def workload_document(kind: str, name: str, namespace: str,
                      service_account: str) -> dict[str, Any]:
    """A Deployment or StatefulSet object standing in for a service's workload."""
    labels = {"app.kubernetes.io/name": name}
    spec: dict[str, Any] = {
        "replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "serviceAccountName": service_account, "automountServiceAccountToken": False,
            "containers": [{"name": name, "image": WORKLOAD_IMAGE.format(name=name)}]}}}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}


def reviewer_documents() -> list[dict[str, Any]]:
    """The token reviewer: a ServiceAccount bound to ``system:auth-delegator``."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": REVIEWER_ACCOUNT, "namespace": REVIEWER_NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": REVIEWER_ACCOUNT},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:auth-delegator"},
         "subjects": [{"kind": "ServiceAccount", "name": REVIEWER_ACCOUNT,
                       "namespace": REVIEWER_NAMESPACE}]},
    ]


def bootstrap(server: KubeApiServer, spec: Any) -> None:
    """Create what the cluster owns before our program runs (CRDs, namespaces, workloads)."""
    crds = crd_documents()
    server.apply(crds)
    for crd in crds:
        server.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                       f"crd/{crd['metadata']['name']}")
    bound = [s.kubernetes for s in spec.services if s.kubernetes is not None]
    namespaces = sorted({b.namespace for b in bound})
    server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                 for ns in namespaces)
    server.apply(workload_document(b.workload.kind, b.workload.name, b.namespace,
                                   b.service_account)
                 for b in bound)
    # kube-system is created by the API server's own controller, right after it starts.
    deadline = time.monotonic() + 60
    while server.get("namespace", REVIEWER_NAMESPACE) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {REVIEWER_NAMESPACE} never appeared")
        time.sleep(0.5)
    server.apply(reviewer_documents())


def reviewer_token(server: KubeApiServer, seconds: int) -> str:
    """A TokenRequest token of the reviewer, audience = the API server's own."""
    return server.token(REVIEWER_NAMESPACE, REVIEWER_ACCOUNT, SA_ISSUER, seconds)
