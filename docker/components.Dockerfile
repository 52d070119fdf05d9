# Image every KFP task of the training pipeline runs in (kfp.image in the profile).
# CUDA-capable: PyPI's torch wheel for Linux brings the CUDA runtime libraries (the nvidia-*
# packages pinned in constraints.txt), so the same image trains on a GPU node (driver from the
# node) and falls back to CPU elsewhere; no CUDA base image is needed.
# Build from the repo root:
#   docker build -f docker/components.Dockerfile --build-arg VERSION=0.1.0 \
#     -t ghcr.io/ai-infrastructure/aiinfra-components:0.1.0 .
# The base is pinned by digest (the tag's last build), so a re-pushed tag cannot change it.
FROM python:3.11.7-slim-bookworm@sha256:53d6284a40eae6b625f22870f5faba6c54f2a28db9027408f4dee111f1e885a2

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="aiinfra-components" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 AIINFRA_HOME=/var/lib/aiinfra \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /opt/aiinfra
# Runtime dependencies only (pyproject's list, no test or lint tools): the hashed runtime part
# of the lock (`make lock`), at the versions of every other install, each file checked against
# its hash; a layer of its own, rebuilt only when they change.
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
# Built with the lock's setuptools (pyproject pins it), not one fetched unchecked.
RUN pip install --no-deps --no-build-isolation . \
    && python -c "import aiinfra, components, pipelines, examples.loan_default.data"

# Non-root, numeric (Kubernetes' runAsNonRoot can only verify a number); the home directory is
# the mount point of the profile's volume (kfp.pvc) and writable without one.
RUN useradd --no-log-init --create-home --uid 10001 aiinfra \
    && mkdir -p /var/lib/aiinfra && chown 10001:10001 /var/lib/aiinfra
USER 10001:10001
