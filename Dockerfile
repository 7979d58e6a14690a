# The tickflow image: the `tickflow` command with its topic definitions and Avro schemas.
#   docker build -t tickflow:local .        (docker compose builds it as tickflow:local)
#   docker run --rm -e TICKFLOW_KAFKA__BOOTSTRAP_SERVERS=... -e TICKFLOW_REGISTRY__URL=... tickflow:local provision
FROM python:3.11-slim

# tickflow/schemas.py reads the Avro contract from TICKFLOW_SCHEMAS_DIR: schemas/ is data, not
# a package, so the install below does not carry it and the copy kept in /app is the one used.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TICKFLOW_SCHEMAS_DIR=/app/schemas

WORKDIR /app

# README.md* rather than README.md: pyproject.toml names it as the readme, but the build
# only warns when it is missing, and so must the copy.
COPY pyproject.toml README.md* ./
COPY tickflow ./tickflow
COPY infra ./infra
COPY producers ./producers
COPY processors ./processors
COPY simulator ./simulator
COPY schemas ./schemas

# A regular (non-editable) install. tickflow/topics.py finds infra/topics.yaml next to its own
# package (site-packages/infra/topics.yaml), which the package-data of pyproject.toml installs.
# The source tree stays in /app for TICKFLOW_SCHEMAS_DIR; the build leftovers go.
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --no-create-home tickflow

USER tickflow

ENTRYPOINT ["tickflow"]
CMD ["--help"]
