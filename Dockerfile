# Image for the pipeline services of docker-compose.yml (`tollgate worker`, `tollgate sink ...`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TOLLGATE_RUN_DIR=/var/lib/tollgate

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY sinks ./sinks
COPY schemas ./schemas
RUN pip install . \
    && useradd --system --create-home --home-dir /home/tollgate tollgate \
    && mkdir -p /var/lib/tollgate \
    && chown tollgate:tollgate /var/lib/tollgate

USER tollgate
EXPOSE 9464
CMD ["tollgate", "--help"]
