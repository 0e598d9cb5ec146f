# syntax=docker/dockerfile:1
# One Dockerfile for every Studio service (docs/deployment.md):
#
#   docker build -t studio .                                            web, worker: CPU torch
#   docker build --build-arg INSTALL_GPU_EXTRAS=true -t studio-gpu .    gpu-worker: CUDA torch,
#                                                                       flash-attn, sageattention
#
# INSTALL_GPU_EXTRAS picks the base stage of the final image (base-false / base-true); BuildKit
# (the default builder of Docker 23+ and of Compose v2; DOCKER_BUILDKIT=1 for docker-compose v1)
# builds only the stages that image needs. flash-attn is compiled once, in a CUDA *devel* stage
# (nvcc, headers) against the very torch CUDA build the image runs, and only its wheel is copied
# into the slim runtime: the pip torch CUDA wheels bring their own CUDA runtime libraries.
# The torch index (TORCH_CUDA) and the devel image (CUDA_DEVEL_IMAGE) must name the same CUDA
# major.minor; change both together.

ARG INSTALL_GPU_EXTRAS=false
ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu128
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu22.04

# --- the GPU kernels, built as wheels -----------------------------------------------------------
FROM ${CUDA_DEVEL_IMAGE} AS gpu-wheels
ARG PYTHON_VERSION
ARG TORCH_VERSION
ARG TORCH_CUDA
ARG FLASH_ATTN_VERSION=2.8.3
ARG SAGEATTENTION_VERSION=1.0.6
# GPU architectures to compile for: 8.0 (A100, and what 8.6/8.9 run) and 9.0 (H100, H200).
ARG FLASH_ATTN_CUDA_ARCHS="80;90"
# Parallel nvcc jobs: each takes 4-8 GB of RAM while flash-attn compiles.
ARG MAX_JOBS=4
# FlashAttention 3 (Hopper only: the pipeline's first choice on H100/H200); a long compile.
ARG FLASH_ATTN_3=false
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python${PYTHON_VERSION} python${PYTHON_VERSION}-dev python${PYTHON_VERSION}-venv git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python${PYTHON_VERSION} -m venv /opt/build
ENV PATH=/opt/build/bin:$PATH
# The same torch CUDA build as the runtime: flash-attn's extension is compiled against it.
RUN pip install --upgrade pip setuptools wheel packaging ninja psutil \
    && pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"
# --no-build-isolation: compile against the torch above (an isolated build would fetch another);
# FLASH_ATTENTION_FORCE_BUILD: no attempt to download a prebuilt wheel for another torch.
RUN mkdir -p /wheels \
    && FLASH_ATTENTION_FORCE_BUILD=TRUE FLASH_ATTN_CUDA_ARCHS="${FLASH_ATTN_CUDA_ARCHS}" MAX_JOBS="${MAX_JOBS}" \
       pip wheel --no-build-isolation --no-deps "flash-attn==${FLASH_ATTN_VERSION}" -w /wheels \
    && pip wheel --no-deps "sageattention==${SAGEATTENTION_VERSION}" -w /wheels
RUN if [ "${FLASH_ATTN_3}" = "true" ]; then \
        git clone --depth 1 --branch "v${FLASH_ATTN_VERSION}" https://github.com/Dao-AILab/flash-attention.git /tmp/fa \
        && cd /tmp/fa/hopper \
        && MAX_JOBS="${MAX_JOBS}" pip wheel --no-build-isolation --no-deps . -w /wheels \
        && rm -rf /tmp/fa; \
    fi

# --- base of the CPU image: torch's CPU wheel (a few hundred MB instead of several GB) -----------
FROM python:${PYTHON_VERSION}-slim AS base-false
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu

# --- base of the GPU image: torch's CUDA build (pinned) and the kernels built above --------------
FROM python:${PYTHON_VERSION}-slim AS base-true
ARG TORCH_VERSION
ARG TORCH_CUDA
# torchvision's nvJPEG encodes the realtime frames on the GPU; it must match torch's release.
ARG TORCHVISION_VERSION=0.28.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
RUN pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
        --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"
COPY --from=gpu-wheels /wheels /tmp/wheels
# flash-attn needs einops; sageattention runs on triton (a dependency of torch's CUDA build).
RUN pip install /tmp/wheels/*.whl einops && rm -rf /tmp/wheels \
    && python -c "import flash_attn, sageattention; print('flash-attn', flash_attn.__version__)"

# --- Studio itself, on either base -----------------------------------------------------------
FROM base-${INSTALL_GPU_EXTRAS} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STUDIO_DATA_DIR=/data STUDIO_MODELS_DIR=/models STUDIO_HOST=0.0.0.0
WORKDIR /app

# Dependencies first so code changes rebuild only the last layers; torch is there already.
COPY pyproject.toml README.md ./
RUN mkdir -p studio model_control videogen && touch studio/__init__.py model_control/__init__.py videogen/__init__.py \
    && pip install ".[s3]" && pip uninstall -y studio

COPY . .
RUN useradd --create-home --uid 1000 studio && mkdir -p /data /models && chown -R studio /data /models
USER studio

EXPOSE 8000
CMD ["python", "manage.py", "runstudio", "--host", "0.0.0.0", "--port", "8000"]
