# syntax=docker/dockerfile:1
# jobrunner daemon image.
#   docker build -t jobrunner:0.1.0 .
#   docker build -t jobrunner:0.1.0 --build-arg EXTRAS=metrics,otel .   # extras of pyproject.toml
#   docker run --rm -e JOBRUNNER_DATABASE_URL=postgresql://user:pass@db/app jobrunner:0.1.0 migrate
#   docker run -d --stop-timeout 30 -e JOBRUNNER_DATABASE_URL=postgresql://user:pass@db/app \
#     -e JOBRUNNER_QUEUES=default:10,emails:20 -e JOBRUNNER_APP=myapp.workers jobrunner:0.1.0
# Your own image adds your code: FROM this image, COPY your package into /app, set
# JOBRUNNER_APP (the working directory /app is importable).
#
# What the image installs is built by deploy/build_image.py from pyproject.toml itself (the
# project's wheel and its dependencies' wheels, then an offline install into a virtualenv),
# and tests/e2e/test_deploy_image.py replays the same steps, so the two cannot drift apart.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
# Comma-separated extras of pyproject.toml, e.g. --build-arg EXTRAS=metrics,otel. The
# default has `metrics`: the CMD's --metrics serves /metrics with prometheus-client.
ARG EXTRAS="metrics"
WORKDIR /src
COPY pyproject.toml README.md /src/
COPY jobrunner /src/jobrunner
COPY deploy/build_image.py /src/deploy/build_image.py
RUN --mount=type=cache,target=/root/.cache/pip \
    python deploy/build_image.py wheels --source /src --wheels /src/wheels --extras "${EXTRAS}"

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/jobrunner/bin:$PATH \
    JOBRUNNER_LOG_FORMAT=json
# The wheels are mounted for the install only, so no layer keeps them.
RUN --mount=type=bind,from=build,source=/src,target=/build \
    python /build/deploy/build_image.py install --wheels /build/wheels --venv /opt/jobrunner \
 && groupadd --system --gid 10001 jobrunner \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
      --shell /usr/sbin/nologin jobrunner
# Settings come from JOBRUNNER_* variables, or a config file mounted at
# /app/config/jobrunner.toml (the repository's example config is not baked in).
WORKDIR /app
USER 10001:10001
# /healthz and /readyz (and /metrics) are served on this port: see CMD.
EXPOSE 9090
# 200 while the daemon's loops are alive, 503 (an HTTPError, exit 1) otherwise. Python's
# urllib, so the image needs no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=4)"]
# SIGTERM starts a graceful stop: running jobs get shutdown_grace_s (15 s by default) to
# finish. Give the container longer than that: `docker stop -t 30`, in compose
# `stop_grace_period: 30s`, in Kubernetes `terminationGracePeriodSeconds: 45`.
STOPSIGNAL SIGTERM
# Exec form, so the signal reaches Python (no shell in between).
ENTRYPOINT ["jobrunner"]
CMD ["start", "--metrics", "0.0.0.0:9090"]
