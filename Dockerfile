# Image for the pipeline services of docker-compose.yml (`tollgate worker`, `tollgate sink ...`).

# Build stage: compile the billing engine with mypyc (`tollgate engine build`) and make a wheel
# that carries the compiled modules beside their sources.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY sinks ./sinks
COPY schemas ./schemas
RUN find pipeline -name '*.so' -delete \
    && pip install -e '.[dev]' \
    && tollgate engine build \
    && TOLLGATE_ENGINE=compiled tollgate engine status \
    && pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TOLLGATE_RUN_DIR=/var/lib/tollgate \
    TOLLGATE_ENGINE=compiled

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 tollgate \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/tollgate tollgate \
    && mkdir -p /var/lib/tollgate \
    && chown tollgate:tollgate /var/lib/tollgate

USER tollgate
EXPOSE 9464
CMD ["tollgate", "--help"]
