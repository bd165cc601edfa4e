# One image for every Shipyard process: `shipyard serve` (the default command), `shipyard worker`
# and `shipyard migrate` differ only by the command, and a Lambda function by its entry point
# (`python -m awslambdaric`, docs/deploy.md).
#
#   docker build -t shipyard .
#   docker run --read-only --tmpfs /tmp -v shipyard-home:/var/lib/shipyard -p 8000:8000 shipyard
#   docker run ... shipyard worker
#
# Your own agents: build FROM this image and COPY your module into /app (the working folder is
# importable), then run `shipyard serve --app mymodule:app`.
#
# The base is pinned by digest (python:3.12-slim-bookworm, linux/amd64 + arm64 index): a rebuild
# gets the same bytes. To move to a newer patch release, replace the digest with the one that
# `docker buildx imagetools inspect python:3.12-slim-bookworm` prints, in both FROM lines.

# ---- build: the locked dependencies, then the project, into /opt/shipyard --------------------------
FROM python:3.12-slim-bookworm@sha256:782412e85d0f0984994c290652577d4018aff08145c85b262bb63dc0c7522254 AS build
# The same uv as the Makefile's (UV_VERSION); the interpreter is the image's own, never downloaded.
ENV UV_PROJECT_ENVIRONMENT=/opt/shipyard \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first, from the lock file alone: this layer is rebuilt only when uv.lock changes.
# The `lambda` extra is the Lambda runtime interface client (awslambdaric, a wheel of ~350 kB):
# the same image runs as a Lambda function (deploy/lambda/template.yaml), only its entry differs.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --extra lambda
# Then the project itself, installed as a package (not editable: /src is not in the final image).
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --extra lambda

# ---- runtime: the environment, the example agents and an unprivileged user -------------------------
FROM python:3.12-slim-bookworm@sha256:782412e85d0f0984994c290652577d4018aff08145c85b262bb63dc0c7522254 AS runtime
LABEL org.opencontainers.image.title="shipyard" \
      org.opencontainers.image.description="Run AI agents in production: server, worker, migrations." \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it and volumes can be
# chowned ahead of time. SHIPYARD_HOME (embedded SQLite files, generated keys) is the only
# folder written to: with a read-only root filesystem, mount a volume there and a tmpfs on /tmp.
RUN groupadd --system --gid 10001 shipyard \
    && useradd --system --uid 10001 --gid shipyard --home-dir /var/lib/shipyard \
       --no-create-home --shell /usr/sbin/nologin shipyard \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/shipyard
COPY --from=build /opt/shipyard /opt/shipyard
COPY examples /app/examples
ENV PATH=/opt/shipyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHIPYARD_HOME=/var/lib/shipyard \
    SHIPYARD_HOST=0.0.0.0 \
    SHIPYARD_PORT=8000 \
    SHIPYARD_LOG_FORMAT=json
WORKDIR /app
VOLUME ["/var/lib/shipyard"]
USER 10001:10001
EXPOSE 8000
# GET /healthz answers while the process is up (GET /readyz also checks the stores: used by the
# orchestrators' readiness probes, not here, so that a store outage does not restart servers).
# A worker serves no HTTP: compose.yaml gives it a check of its own (its metrics port).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SHIPYARD_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["shipyard"]
CMD ["serve"]
