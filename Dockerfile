# egress-guard image: `make image` (or `docker build -t egress-guard:0.1.0 .`); `make image-test`
# builds it and runs it as deploy/ does.
#
# Two stages. The first installs pinned build tools (build-requirements.txt: pip, hatchling) in a
# venv of their own, builds egress-guard's wheel, and installs it with its pinned dependencies
# (constraints.txt) into /opt/egress-guard, a venv made without pip. The second copies only that
# venv onto a clean base and removes the base's own pip, setuptools and wheel: no compiler, pip,
# setuptools, cache or build file reaches the running image. The server runs as a numeric
# non-root user on a read-only root filesystem (see deploy/deployment.yaml): bytecode is compiled
# at build time and nothing is written outside /tmp and /dev/shm.
#
# No `# syntax=` line: the builder's built-in Dockerfile frontend has what this file uses
# (RUN --mount), so nothing is fetched from a registry but the base (air-gapped builds work with
# a mirrored PYTHON_IMAGE). pip's index settings and certificate bundle reach the build stage as
# build secrets, which are mounted for one RUN and never stored in a layer:
#   docker build --secret id=pip.conf,src=my-pip.conf --secret id=pip-cert,src=my-ca.pem .
# where my-pip.conf may name `cert = /run/secrets/pip-cert` (make image-test writes both).
#
# The base is pinned to an exact tag. For reproducible builds pin its digest as well, e.g.
#   docker buildx imagetools inspect python:3.11.11-slim-bookworm   (copy the index digest)
#   docker build --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONFIG_FILE=/run/secrets/pip.conf \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY build-requirements.txt ./
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-cert \
    python -m venv /opt/build \
 && /opt/build/bin/pip install --only-binary=:all: --no-deps -r build-requirements.txt \
 && python -m venv --without-pip /opt/egress-guard
# Dependencies next, from wheels only (a missing wheel fails the build instead of pulling in a
# compiler): this layer is reused until pyproject.toml or constraints.txt change.
COPY pyproject.toml constraints.txt README.md ./
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-cert \
    python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
 && /opt/build/bin/pip --python /opt/egress-guard/bin/python install \
        --only-binary=:all: -c constraints.txt -r requirements.txt
COPY webhook ./webhook
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
 && /opt/build/bin/pip --python /opt/egress-guard/bin/python install --no-deps /tmp/dist/*.whl \
 && /opt/egress-guard/bin/python -m compileall -q /opt/egress-guard/lib \
 && /opt/egress-guard/bin/egress-guard --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="egress-guard" \
      org.opencontainers.image.description="Kubernetes admission webhook: every workload declares what it may reach" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base interpreter's site-packages holds only pip, setuptools and wheel; the bundled wheels
# are what `python -m venv` would install. The server's venv uses none of them.
RUN groupadd --gid 65532 egress-guard \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin egress-guard \
 && rm -rf /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.* /usr/local/bin/wheel \
        /usr/local/lib/python3.*/site-packages/* /usr/local/lib/python3.*/ensurepip/_bundled \
        /usr/share/python-wheels
COPY --from=build /opt/egress-guard /opt/egress-guard
# Without certificates in EGRESS_GUARD_CERT_DIR, `serve` generates a self-signed CA there: under
# /tmp, writable in a plain `docker run` and a tmpfs (emptyDir) on a read-only root. deploy/ mounts
# its Secret at /etc/egress-guard/tls and sets EGRESS_GUARD_CERT_DIR to it.
ENV PATH=/opt/egress-guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EGRESS_GUARD_HOST=0.0.0.0 \
    EGRESS_GUARD_PORT=8443 \
    EGRESS_GUARD_CERT_DIR=/tmp/egress-guard/tls \
    EGRESS_GUARD_HEALTHCHECK_FILE=/tmp/egress-guard/healthz-url
USER 65532:65532
EXPOSE 8443
# Kubernetes ignores HEALTHCHECK and uses the Deployment's HTTPS probes on /readyz and /healthz;
# this one serves `docker run`. It asks /healthz where `serve` said it listens (--host, --port
# or the environment; webhook/serving/healthcheck.py), without verifying the certificate.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "webhook.serving.healthcheck"]
ENTRYPOINT ["egress-guard"]
CMD ["serve", "--worker-tmp-dir", "/dev/shm"]
