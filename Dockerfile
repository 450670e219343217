# adept-env on CPU. torch is pinned and taken from PyTorch's CPU wheel index so no CUDA build is pulled.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    ADEPT_HOME=/data \
    MUJOCO_GL=egl

WORKDIR /app
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY adept_env ./adept_env
RUN pip install --no-cache-dir ".[server]"

RUN useradd --create-home --uid 1000 adept && mkdir -p /data && chown adept /data
USER adept
VOLUME ["/data"]
ENTRYPOINT ["adept-env"]
CMD ["--help"]
