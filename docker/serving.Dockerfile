# BentoML service serving the MLflow @champion (serving/service.py); kfp.serving_image in the
# profile, the image of `aiinfra manifests`.
# Build from the repo root:
#   docker build -f docker/serving.Dockerfile --build-arg VERSION=0.1.0 \
#     -t ghcr.io/ai-infrastructure/aiinfra-serving:0.1.0 .
# The base is pinned by digest (see components.Dockerfile).
FROM python:3.11.7-slim-bookworm@sha256:53d6284a40eae6b625f22870f5faba6c54f2a28db9027408f4dee111f1e885a2

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="aiinfra-serving" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 BENTOML_DO_NOT_TRACK=true BENTOML_HOME=/tmp/bentoml \
    AIINFRA_HOME=/var/lib/aiinfra

WORKDIR /opt/aiinfra
# Runtime dependencies only, hashed, from the runtime lock (see components.Dockerfile).
COPY requirements-runtime.txt ./
RUN pip install --require-hashes -r requirements-runtime.txt
COPY pyproject.toml ./
COPY README.md ./
COPY src ./src
COPY aiinfra_cli ./aiinfra_cli
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
COPY feature_repo ./feature_repo
# The loan example's generator (project.generator of the profiles), imported from the
# project root (/opt/aiinfra), not installed.
COPY examples ./examples
COPY configs ./configs
# Imports everything serving/service.py does, but not the service module itself: importing it
# builds the request types from the project's label table and Feast repo, which exist only
# at run time (under the home volume), not in the image.
RUN pip install --no-deps --no-build-isolation . \
    && python -c "import bentoml, fastapi, serving, aiinfra.project.definition, \
aiinfra.data.feature_store, aiinfra.runtime.api, aiinfra.runtime.champion, \
aiinfra.runtime.prediction_log, aiinfra.release.webhooks"

# Non-root and numeric, the user the Deployment runs as (aiinfra.k8s.RUN_AS_USER); the request
# log and Feast's local files go under the home directory.
RUN useradd --no-log-init --create-home --uid 10001 aiinfra \
    && mkdir -p /var/lib/aiinfra && chown 10001:10001 /var/lib/aiinfra
USER 10001:10001
EXPOSE 3000
# In a cluster the Service routes to the pod, so the server listens on all interfaces there;
# locally `aiinfra serve` binds 127.0.0.1. Config arrives in AIINFRA_CONFIG_JSON. On SIGTERM
# the service drains: requests in flight finish for up to serving.drain_seconds while new
# ones get 503 (the Deployment's grace period allows for it: aiinfra.ops.k8s).
CMD ["bentoml", "serve", "serving.service:ModelService", "--host", "0.0.0.0", "--port", "3000"]
