# adept-env: the library, the world-model server and the remote client in one image.
# CPU by default (torch from PyTorch's CPU index, so no CUDA build is pulled);
# `--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126` builds the GPU variant.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    ADEPT_HOME=/data \
    MUJOCO_GL=egl

WORKDIR /app
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY adept_env ./adept_env
COPY server ./server
COPY protos ./protos
COPY clients ./clients
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[server]"

RUN useradd --create-home --uid 1000 adept && mkdir -p /data && chown adept /data
USER 1000
VOLUME ["/data"]
# gRPC and HTTP (OpenAPI at /docs) of `adept-env serve`
EXPOSE 50051 8000
# Answers once the server is up (after --preload has loaded or fitted its model: up to ~20 min for a
# first default-profile fit on a CPU); only meaningful for the `serve` command.
HEALTHCHECK --interval=15s --timeout=5s --start-period=3600s --start-interval=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["adept-env"]
CMD ["--help"]
