# syntax=docker/dockerfile:1
#
# One image for the MCP server, the Celery workers and beat:
#   docker run IMAGE                                   -> taskbroker serve --transport http
#   docker run IMAGE worker --queues taskbroker        -> Celery worker
#   docker run IMAGE beat                              -> Celery beat
# Runs as uid 10001 and writes only to /tmp (works with a read-only root filesystem).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: build the wheel and install it with its dependencies into a venv ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

# Metadata first, then the sources: the wheel build needs both.
COPY pyproject.toml README.md ./
COPY src ./src

RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---- runtime: slim python, the venv, a non-root user; no compilers, no pip ----
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="taskbroker" \
      org.opencontainers.image.description="Long-running background jobs for MCP clients, on Celery" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 taskbroker \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin taskbroker

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp

USER 10001:10001
WORKDIR /tmp

# 8000: MCP server (/mcp, /healthz, /readyz, /metrics); 9808: worker /metrics and /healthz.
EXPOSE 8000 9808

# No HEALTHCHECK: the same image runs server, worker and beat (different endpoints);
# Kubernetes probes are defined per component in the Helm chart.
ENTRYPOINT ["taskbroker"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0"]
