# jobrunner daemon image. Build: docker build -t jobrunner .
# Run:   docker run --rm -e JOBRUNNER_DATABASE_URL=postgresql://user:pass@db/app \
#          -e JOBRUNNER_QUEUES=default:10,emails:20 -e JOBRUNNER_APP=myapp.workers jobrunner
# Your own image adds your code: FROM this image, COPY your package, and set JOBRUNNER_APP.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jobrunner ./jobrunner
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels asyncpg typer croniter structlog

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    JOBRUNNER_LOG_FORMAT=json
RUN useradd --create-home --uid 10001 jobrunner
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels jobrunner \
 && rm -rf /wheels
# Settings come from JOBRUNNER_* variables, or a config file mounted at
# /app/config/jobrunner.toml (the repository's example config is not baked in).
WORKDIR /app
USER jobrunner
# SIGTERM starts a graceful stop: running jobs get shutdown_grace_s (15 s by default) to
# finish. Give the container longer than that: `docker stop -t 30`, or in compose
# `stop_grace_period: 30s`, or Kubernetes `terminationGracePeriodSeconds: 30`.
STOPSIGNAL SIGTERM
# Exec form, so the signal reaches Python (no shell in between).
ENTRYPOINT ["jobrunner"]
CMD ["start"]
