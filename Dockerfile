# syntax=docker/dockerfile:1
# The sundial operator image: `docker build -t sundial:dev .`
#   stage 1 (build): builds the sundial wheel and wheels of all its dependencies
#   stage 2 (runtime): installs them from those wheels only (no compiler, no network), runs as uid 10001
# The chart runs it with a read-only root filesystem; /var/lib/sundial and /tmp are volumes.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels sundial \
 && groupadd --system --gid 10001 sundial \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sundial --no-create-home \
      --shell /usr/sbin/nologin sundial \
 && install -d -o 10001 -g 10001 /var/lib/sundial
WORKDIR /var/lib/sundial
USER 10001:10001
EXPOSE 8080 9443
ENTRYPOINT ["sundial"]
CMD ["run"]
