# syntax=docker/dockerfile:1
#
# SalesPulse worker image.
#
#   docker build -t salespulse .
#   docker run --rm -e SALESPULSE_BROKER=kafka:9092 salespulse            # worker
#   docker run --rm -e SALESPULSE_BROKER=kafka:9092 salespulse generate --rate 200
#
# Runtime dependencies only: the package's wheel without extras, so no test or dev
# tooling ends up in the image. The build context is trimmed by .dockerignore. The
# Persian digest's font is inside the wheel (streams/report/typefaces), so no font package.
#
# The hot path is compiled with mypyc (setup.py), which needs a C compiler: build the
# wheel in a stage that has one, and install only the wheel in the runtime image.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY schemas/ ./schemas/
COPY streams/ ./streams/
COPY agents/ ./agents/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SALESPULSE_WEB_HOST=0.0.0.0 \
    SALESPULSE_WEB_PORT=6066 \
    SALESPULSE_DATA_DIR=/var/lib/salespulse

# Unprivileged user with a fixed uid/gid, so file ownership on volumes is predictable.
RUN groupadd --system --gid 10001 salespulse \
 && useradd --system --uid 10001 --gid salespulse --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin salespulse

WORKDIR /app

# The compiled wheel, its dependencies from PyPI (faust, mode and aiokafka at the versions
# constraints.txt pins: the runtime patches their private parts), and the default configuration.
COPY --from=build /wheels/ /tmp/wheels/
COPY constraints.txt /tmp/constraints.txt
COPY config/ ./config/

RUN pip install --no-cache-dir --constraint=/tmp/constraints.txt /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels /tmp/constraints.txt \
 && install -d -o salespulse -g salespulse -m 0750 /var/lib/salespulse \
 && install -d -m 0755 /etc/salespulse

USER salespulse:salespulse

EXPOSE 6066

# Liveness only (/healthz). Readiness (/readyz: group joined, tables recovered) is
# checked by the compose healthcheck, which is what dependants wait on.
# python:3.11-slim has no curl/wget, so use the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SALESPULSE_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["salespulse"]
CMD ["worker"]
