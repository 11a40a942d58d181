"""The floor: nginx answering a fixed AdmissionReview over TLS, on the same core, same load.

What egress-guard costs beyond this is what the Python stack and the policy work cost: the
performance budget is stated as a ratio to it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

CONFIG = """\
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/nginx-body;
    proxy_temp_path {workdir}/nginx-proxy;
    fastcgi_temp_path {workdir}/nginx-fastcgi;
    uwsgi_temp_path {workdir}/nginx-uwsgi;
    scgi_temp_path {workdir}/nginx-scgi;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_max_body_size 8m;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""

FIXED_REVIEW = (
    '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":'
    '{"uid":"b1e3c7a2-5f0d-4c1b-9a8e-2d6f4b3a1c90","allowed":true}}'
)


def start_nginx(
    workdir: Path, port: int, cert: Path, key: Path, cpu: str
) -> subprocess.Popen[bytes]:
    config = workdir / "nginx.conf"
    config.write_text(
        CONFIG.format(workdir=workdir, port=port, cert=cert, key=key, body=FIXED_REVIEW)
    )
    process = subprocess.Popen(
        ["taskset", "-c", cpu, "nginx", "-c", str(config), "-p", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    if process.poll() is not None:
        raise RuntimeError(f"nginx did not start: {(workdir / 'nginx-error.log').read_text()}")
    return process
