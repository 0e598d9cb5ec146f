# One image for every Studio service: web (daphne), worker (celery default), gpu-worker (celery gpu).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STUDIO_DATA_DIR=/data STUDIO_MODELS_DIR=/models STUDIO_HOST=0.0.0.0
WORKDIR /app

RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*

# Dependencies first so code changes rebuild only the last layers.
COPY pyproject.toml README.md ./
RUN mkdir -p studio model_control videogen && touch studio/__init__.py model_control/__init__.py videogen/__init__.py \
    && pip install "torch==2.13.0" && pip install ".[s3]" && pip uninstall -y studio

ARG INSTALL_GPU_EXTRAS=false
RUN if [ "$INSTALL_GPU_EXTRAS" = "true" ]; then pip install flash-attn sageattention || echo "GPU extras unavailable: SDPA fallback"; fi

COPY . .
RUN useradd --create-home --uid 1000 studio && mkdir -p /data /models && chown -R studio /data /models
USER studio

EXPOSE 8000
CMD ["python", "manage.py", "runstudio", "--host", "0.0.0.0", "--port", "8000"]
