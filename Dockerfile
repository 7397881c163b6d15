# smarketing-loop image: Airflow 3 and the loop, installed from uv.lock (the same pins the tests ran with).
#
#   docker compose build            (docker-compose.yaml builds this for every Airflow service)
#   docker build -t smarketing-loop .
#
# One image serves every role (api-server, scheduler, dag-processor, triggerer, Celery worker, links
# service); docker-compose.yaml picks the command. DAGs, plugins, SQL, expectations and templates are
# baked in so that every worker runs exactly the code the scheduler parsed; mount them over
# /opt/smarketing for development (see docs/operations.md).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

# uv pinned like ./loop does; --frozen refuses a lock that does not match pyproject.toml.
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never

WORKDIR /opt/smarketing
# Dependencies first (cached while only the code changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY smarketing_tasks ./smarketing_tasks
RUN uv sync --frozen --no-dev --no-editable

FROM python:${PYTHON_VERSION}-slim-bookworm

# curl for healthchecks, libpq-free: psycopg[binary] brings its own client library.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl tini \
    && rm -rf /var/lib/apt/lists/*

# The same uid as the official Airflow image, so volumes prepared for it work here too.
ARG AIRFLOW_UID=50000
RUN useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /opt/airflow --create-home airflow

COPY --from=build /opt/venv /opt/venv
COPY --chown=${AIRFLOW_UID}:0 dags /opt/smarketing/dags
COPY --chown=${AIRFLOW_UID}:0 plugins /opt/smarketing/plugins
COPY --chown=${AIRFLOW_UID}:0 sql /opt/smarketing/sql
COPY --chown=${AIRFLOW_UID}:0 expectations /opt/smarketing/expectations
COPY --chown=${AIRFLOW_UID}:0 templates /opt/smarketing/templates

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONWARNINGS=ignore \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/smarketing/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/smarketing/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    SMARKETING_PROJECT_ROOT=/opt/smarketing \
    SMARKETING_DATA_DIR=/opt/airflow/data \
    PYTHONPATH=/opt/smarketing/plugins

USER ${AIRFLOW_UID}
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/tini", "--", "airflow"]
CMD ["version"]
