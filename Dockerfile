# syntax=docker/dockerfile:1
# egress-guard image: `make image` (or `docker build -t egress-guard:0.1.0 .`).
#
# Two stages: the first installs egress-guard and its pinned dependencies (constraints.txt) into a
# virtual environment; the second copies only that environment onto a clean base, so no compiler,
# pip cache or build file reaches the running image. The server runs as a numeric non-root user
# on a read-only root filesystem (see deploy/deployment.yaml): bytecode is compiled at build time
# and nothing is written outside /tmp and /dev/shm.
#
# The base is pinned to an exact tag. For reproducible builds pin its digest as well, e.g.
#   docker buildx imagetools inspect python:3.11.11-slim-bookworm   (copy the index digest)
#   docker build --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/egress-guard
# Dependencies first, from wheels only (a missing wheel fails the build instead of pulling in a
# compiler): this layer is reused until pyproject.toml or constraints.txt change.
COPY pyproject.toml constraints.txt README.md ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
 && /opt/egress-guard/bin/pip install --only-binary=:all: -c constraints.txt -r requirements.txt
COPY webhook ./webhook
RUN /opt/egress-guard/bin/pip install --no-deps . \
 && /opt/egress-guard/bin/python -m compileall -q /opt/egress-guard/lib \
 && /opt/egress-guard/bin/egress-guard --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="egress-guard" \
      org.opencontainers.image.description="Kubernetes admission webhook: every workload declares what it may reach" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 65532 egress-guard \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin egress-guard
COPY --from=build /opt/egress-guard /opt/egress-guard
ENV PATH=/opt/egress-guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EGRESS_GUARD_HOST=0.0.0.0 \
    EGRESS_GUARD_PORT=8443 \
    EGRESS_GUARD_CERT_DIR=/etc/egress-guard/tls
USER 65532:65532
EXPOSE 8443
# Kubernetes ignores HEALTHCHECK and uses the Deployment's HTTPS probes on /readyz and /healthz;
# this one serves `docker run`. The certificate is self-signed for local use: not verified here.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request; urllib.request.urlopen('https://127.0.0.1:%s/healthz' % os.environ.get('EGRESS_GUARD_PORT', '8443'), context=ssl._create_unverified_context(), timeout=2)"]
ENTRYPOINT ["egress-guard"]
CMD ["serve", "--worker-tmp-dir", "/dev/shm"]
