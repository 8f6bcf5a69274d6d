# syntax=docker/dockerfile:1
# Build stage: compile the Cython kernels into a wheel.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY kai ./kai
RUN pip install --no-cache-dir "Cython>=3.1" "numpy>=2.0,<2.5" "setuptools>=68" wheel \
 && pip wheel --no-cache-dir --no-build-isolation --wheel-dir /wheels .

# Runtime stage: the wheel in a slim Python, non-root, read-only friendly.
FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && useradd --system --uid 65532 --no-create-home kai
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["kai"]
CMD ["scheduler"]
