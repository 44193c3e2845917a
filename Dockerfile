# firewatch's image for the production stack (docker-compose.yml, docs/deploy.md).
# Build: docker compose build firewatch   (or: docker build -t firewatch:local .)
#
# The build context is only what `pip install .` needs: .dockerignore lets in pyproject.toml,
# README.md and the Python packages, nothing else (no .env, no deploy/ secrets, no data).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# Wheels of firewatch and of every dependency, so the runtime stage installs without the sources.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A CJK font: the printable hazard-ticket form (隐患整改单) is in Chinese (tickets/export.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels firewatch
# An unprivileged user owns the data folder; a new named volume mounted there takes its owner.
RUN groupadd --system --gid 10001 firewatch \
    && useradd --system --uid 10001 --gid firewatch --home-dir /var/lib/firewatch --no-create-home \
       --shell /usr/sbin/nologin firewatch \
    && install -d -o firewatch -g firewatch -m 0750 /var/lib/firewatch
USER firewatch:firewatch
WORKDIR /var/lib/firewatch
ENV FIREWATCH_DATA_DIR=/var/lib/firewatch \
    FIREWATCH_API__HOST=0.0.0.0 \
    FIREWATCH_API__PORT=8080
EXPOSE 8080
# The GB/T 26875.3 listener, when enabled (FIREWATCH_GB26875__ENABLED, docs/gb26875.md).
EXPOSE 26875
# Ready = the database answers and the broker connection is up; urlopen raises on a 503.
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=5)"]
STOPSIGNAL SIGTERM
CMD ["firewatch", "serve"]
