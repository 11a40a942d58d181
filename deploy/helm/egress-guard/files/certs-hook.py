"""Self-signed certificates for egress-guard, in Helm hook Jobs, with `egress-guard certs`.

    certs-hook.py generate   before install and upgrade: the CA and the serving certificate
    certs-hook.py inject-ca  after install and upgrade: caBundle on the webhook configurations

`generate` restores the CA and the serving certificate from their Secrets (if any) and runs
`egress-guard certs generate`, which keeps a valid CA (so caBundle stays valid) and renews the
serving certificate only when it is due; then it writes both Secrets back. The CA's key stays in
the Secret <name>-ca, which only this hook's service account may read.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

NAMESPACE = os.environ["EGRESS_GUARD_NAMESPACE"]
NAME = os.environ["EGRESS_GUARD_SERVICE"]
CA_SECRET, TLS_SECRET = f"{NAME}-ca", f"{NAME}-tls"
CA_FILES = ("ca.crt", "ca.key", "ca-bundle.crt")
TLS_FILES = ("tls.crt", "tls.key", "ca.crt")
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "egress-guard"}


def read_secret(api: client.CoreV1Api, name: str) -> dict[str, str]:
    try:
        return dict(api.read_namespaced_secret(name, NAMESPACE).data or {})
    except ApiException as err:
        if err.status == 404:
            return {}
        raise


def restore(api: client.CoreV1Api, name: str, keys: tuple[str, ...], out: Path) -> None:
    data = read_secret(api, name)
    for key in keys:
        if key in data:
            path = out / key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(base64.b64decode(data[key]))


def store(api: client.CoreV1Api, name: str, keys: tuple[str, ...], out: Path) -> None:
    data = {
        key: base64.b64encode((out / key).read_bytes()).decode()
        for key in keys
        if (out / key).is_file()
    }
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, namespace=NAMESPACE, labels=LABELS),
        type="Opaque",
        data=data,
    )
    try:
        api.create_namespaced_secret(NAMESPACE, body)
    except ApiException as err:
        if err.status != 409:
            raise
        api.patch_namespaced_secret(name, NAMESPACE, {"data": data})
    print(f"Secret {NAMESPACE}/{name}: {', '.join(sorted(data))}", flush=True)


def egress_guard(*args: str) -> None:
    subprocess.run(["egress-guard", "certs", *args], check=True)


def main(step: str) -> None:
    config.load_incluster_config()
    api = client.CoreV1Api()
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory)
        restore(api, CA_SECRET, CA_FILES, out)
        if step == "generate":
            restore(api, TLS_SECRET, ("tls.crt", "tls.key"), out)
            egress_guard("generate", "--service", NAME, "--namespace", NAMESPACE, "--out", str(out))
            store(api, CA_SECRET, CA_FILES, out)
            store(api, TLS_SECRET, TLS_FILES, out)
        elif step == "inject-ca":
            egress_guard("inject-ca", "--out", str(out), "--name", NAME)
        else:
            sys.exit(f"unknown step {step!r}: generate or inject-ca")


if __name__ == "__main__":
    main(*sys.argv[1:])
