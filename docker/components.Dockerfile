# Image every KFP task of the training pipeline runs in (kfp.image in the config).
# PyPI's torch wheel for Linux carries the CUDA runtime, so the same image trains on a GPU
# node (NVIDIA driver from the node) and falls back to CPU elsewhere.
# Build from the repo root:  docker build -f docker/components.Dockerfile -t IMAGE:TAG .
FROM python:3.11.7-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="aiinfra-components" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 AIINFRA_HOME=/var/lib/aiinfra

WORKDIR /opt/aiinfra
# Dependencies first (cached layer), from the same constraints lock as every other install.
COPY requirements.in constraints.txt ./
RUN pip install -r requirements.in -c constraints.txt
COPY pyproject.toml README.md ./
COPY src ./src
COPY aiinfra_cli ./aiinfra_cli
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
COPY feature_repo ./feature_repo
COPY configs ./configs
RUN pip install --no-deps . && python -c "import aiinfra, components, pipelines"

RUN useradd --create-home --uid 10001 aiinfra && mkdir -p /var/lib/aiinfra \
    && chown aiinfra /var/lib/aiinfra
USER aiinfra
