# BentoML service serving the MLflow @champion (see serving/service.py).
# Build from the repo root:  docker build -f docker/serving.Dockerfile -t IMAGE:TAG .
FROM python:3.11.7-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="aiinfra-serving" \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 BENTOML_DO_NOT_TRACK=true BENTOML_HOME=/tmp/bentoml

WORKDIR /opt/aiinfra
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
RUN pip install --no-deps . && python -c "import serving.service"

RUN useradd --create-home --uid 10001 aiinfra
USER aiinfra
EXPOSE 3000
# In a cluster the Service routes to the pod, so the server listens on all interfaces there;
# locally `aiinfra serve` binds 127.0.0.1. Config arrives in AIINFRA_CONFIG_JSON.
CMD ["bentoml", "serve", "serving.service:LoanScorer", "--host", "0.0.0.0", "--port", "3000"]
