# The gtx-stream image: one image for every service of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gtx_stream ./gtx_stream
RUN pip install ".[server]" && useradd --system --uid 10001 --home-dir /app gtx

COPY workers ./workers
COPY config.toml /etc/gtx-stream/config.toml
ENV GTX_CONFIG=/etc/gtx-stream/config.toml

USER gtx
CMD ["gtx-stream", "--help"]
