# syntax=docker/dockerfile:1
# The kai container image (docs/install.md):
#   docker build -t kai:0.1.0 .        # on the official python:3.11-slim (the default BASE)
#   bash hack/image/build.sh           # no Docker: buildah, on a Debian bookworm base made by
#                                      # mmdebstrap (BASE=localhost/kai-debian-base:bookworm)
# BASE must be a Debian-family image with Python 3.11 as `python3` and apt; the builder and
# the runtime stage use the same BASE, so the venv's interpreter is the one the runtime has.
ARG BASE=python:3.11-slim
# What the builder adds to BASE with apt-get: a compiler for the Cython kernels. A Debian
# base without Python's headers and ensurepip also needs python3-dev python3-venv.
ARG BUILD_PACKAGES="gcc g++"

# Build stage: compile the Cython kernels into a wheel, install it and the dependencies into
# the venv /opt/kai. Layers in order of change, so a rebuild after a source edit reuses the
# compiler, the build tools and the dependency wheels.
FROM ${BASE} AS build
ARG BUILD_PACKAGES
RUN apt-get update && apt-get install -y --no-install-recommends ${BUILD_PACKAGES} && rm -rf /var/lib/apt/lists/*
# pip trusts the CA bundle given as the optional build secret `pip-ca` (a TLS-intercepting
# proxy's CA: `docker build --secret id=pip-ca,src=/path/to/ca.pem .`); it is never stored.
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --disable-pip-version-check "Cython>=3.1" "numpy>=2.0,<2.5" "setuptools>=68" wheel
WORKDIR /src
COPY pyproject.toml ./
# The runtime venv has no pip of its own: the builder's pip installs into it (--python).
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python3 -m venv --without-pip /opt/kai \
 && /opt/build/bin/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/requirements.txt \
 && /opt/build/bin/pip --python /opt/kai/bin/python install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt
COPY setup.py README.md LICENSE ./
COPY kai ./kai
RUN /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-build-isolation --no-deps --wheel-dir /wheels . \
 && /opt/build/bin/pip --python /opt/kai/bin/python install --no-cache-dir --disable-pip-version-check --no-deps /wheels/*.whl

# Runtime stage: BASE plus the venv; no compiler, no pip, no sources. Runs as uid/gid 65532
# and writes nothing (a read-only root filesystem works; the chart mounts an emptyDir at /tmp).
FROM ${BASE}
COPY --from=build /opt/kai /opt/kai
RUN groupadd --system --gid 65532 kai \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kai
ENV PATH=/opt/kai/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/opt/kai/bin/kai"]
CMD ["scheduler"]
