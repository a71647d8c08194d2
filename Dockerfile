# The selector service and the trainer in one image: `salt` is the entry point of every compose service.
#
# CPU build (default):   docker build -t salt .
# CUDA build:            docker build -t salt-cuda \
#                          --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#                          --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
#   (a CUDA base needs python3.11 on it; with the plain slim base and the cu124 index the wheels bring
#   their own CUDA libraries and only the host's driver is needed, through the NVIDIA container toolkit)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 1000 salt && mkdir -p /srv/salt && chown salt:salt /srv/salt
WORKDIR /app

# The project from its own files (no registry copy of it): metadata first, then the packages.
# gcc builds the optional C extensions (shared/_postproc.c, the CPU post-processing of the SLM's logits, and
# shared/blobs/_bitpack.c, the packing of label ids) and is removed again in the same layer (libgomp1, which
# the first links, stays); the check fails the build if either did not come out.
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY shared ./shared
COPY selector_service ./selector_service
COPY trainer ./trainer
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev libgomp1 >/dev/null \
    && pip install --extra-index-url "${TORCH_INDEX}" -c constraints.txt . \
    && apt-get purge -y -qq --auto-remove gcc libc6-dev >/dev/null && rm -rf /var/lib/apt/lists/* \
    && cd / && python -c "import torch; from shared import postproc; from shared.blobs import bitpack; \
    assert postproc.available() and bitpack.native()" && cd /app \
    && salt --help >/dev/null

USER salt
ENV SALT_MODEL_PATH=/srv/salt/runs/slm/checkpoint
EXPOSE 8000
CMD ["salt", "serve", "--host", "0.0.0.0", "--port", "8000"]
