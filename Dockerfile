# Reference image for airflow-fargate task definitions: Airflow + this package + DAGs.
# Build from the repository root, e.g.:
#   docker build --build-arg s3_uri=s3://my-bucket/dags -t airflow-fargate .
# Builders: BuildKit (docker's default since 23.0) or podman/buildah, with no remote frontend
# (no `# syntax=` line); the classic builder refuses `RUN --mount` and `COPY --chmod`.
# The Airflow and Python versions MUST match the scheduler's (labels below say which they are).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
# Any image with Airflow's layout (user airflow 50000, /opt/airflow, dumb-init, pip) will do,
# e.g. one built from Debian packages where no registry is reachable.
ARG BASE_IMAGE=apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
FROM ${BASE_IMAGE}
# ARGs before FROM are not seen after it: declared again so the install below pins them.
ARG AIRFLOW_VERSION
ARG PYTHON_VERSION
LABEL org.apache.airflow.version="${AIRFLOW_VERSION}" \
      org.apache.airflow.python.version="${PYTHON_VERSION}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/airflow

# AWS CLI for `aws s3 sync` of DAGs, from PyPI, in its own virtualenv so its pinned botocore
# never fights the one Airflow's providers need.
ARG AWSCLI_VERSION=1.46.2
RUN python -m venv /home/airflow/.awscli \
    && /home/airflow/.awscli/bin/pip install --no-cache-dir "awscli==${AWSCLI_VERSION}"
ENV PATH="${PATH}:/home/airflow/.awscli/bin"

# This package (the executor must be importable where the command runs, e.g. for callbacks).
COPY --chown=airflow:root pyproject.toml setup.cfg README.md /tmp/airflow-fargate/
COPY --chown=airflow:root airflow_fargate /tmp/airflow-fargate/airflow_fargate
COPY --chown=airflow:root config /tmp/airflow-fargate/config
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /tmp/airflow-fargate \
    && rm -rf /tmp/airflow-fargate

# Optional extra Python packages for your DAGs (default: an empty list).
ARG requirements_path=config/requirements.txt
COPY --chown=airflow:root ${requirements_path} /opt/airflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt

# Credentials as build args: kept for compatibility with the reference docs. NOT for production:
# build args end up in the image metadata and these ENV values in every container. Prefer an
# IAM task role at run time and the BuildKit secret below at build time.
# hadolint ignore=DL3064
ARG aws_access_key_id
# hadolint ignore=DL3064
ARG aws_secret_access_key
ARG aws_default_region
# hadolint ignore=DL3064
ARG aws_session_token
# hadolint ignore=DL3064
ENV AWS_ACCESS_KEY_ID=${aws_access_key_id} \
    AWS_SECRET_ACCESS_KEY=${aws_secret_access_key} \
    AWS_DEFAULT_REGION=${aws_default_region} \
    AWS_SESSION_TOKEN=${aws_session_token}

# DAGs: baked in from host_dag_path, and/or synced from s3_uri when the container starts.
ARG host_dag_path=config/dags
ARG container_dag_path=/opt/airflow/dags
ARG s3_uri
ENV CONTAINER_DAG_PATH=${container_dag_path} \
    S3_URI=${s3_uri}
COPY --chown=airflow:root ${host_dag_path} ${container_dag_path}

# Safer build-time path: bake DAGs from S3 with a BuildKit secret that never lands in a layer:
#   docker build --secret id=aws,src=$HOME/.aws/credentials \
#     --build-arg s3_uri=s3://bucket/dags --build-arg sync_dags_at_build=true .
ARG sync_dags_at_build=false
RUN --mount=type=secret,id=aws,uid=50000 \
    if [ "${sync_dags_at_build}" = "true" ]; then \
      AWS_SHARED_CREDENTIALS_FILE=/run/secrets/aws aws s3 sync --no-progress "${S3_URI}" "${CONTAINER_DAG_PATH}"; \
    fi

COPY --chown=airflow:root --chmod=755 entrypoint.sh /opt/airflow/entrypoint-fargate.sh

# 50000 is the `airflow` user of the apache/airflow images (numeric, so the host can resolve it).
USER 50000
# dumb-init (shipped in the base image) is PID 1 and forwards SIGTERM from `ecs stop-task`.
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/opt/airflow/entrypoint-fargate.sh"]
CMD ["airflow", "version"]
