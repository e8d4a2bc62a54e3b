# The AWS emulator (Kinesis, S3, DynamoDB): moto server from the project's `emulator` extra.
#
#   docker build -f compose/emulator.Dockerfile -t deploy-modes/emulator .
#
# LocalStack (`localstack/localstack`) now needs an auth token to pull; moto answers the same
# API on the same port 4566. docs/compose.md shows how to swap LocalStack in.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY pyproject.toml constraints.txt compose/requirements.py /build/
RUN python3 -m venv /opt/venv \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/app app \
 && python3 /build/requirements.py /build/pyproject.toml emulator > /build/emulator.txt \
 && pip install -q -c /build/constraints.txt -r /build/emulator.txt \
 && find /opt/venv/lib -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf /build
USER app
WORKDIR /home/app
EXPOSE 4566
HEALTHCHECK --interval=2s --timeout=3s --start-period=20s --retries=5 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4566/moto-api/', timeout=2)"]
CMD ["moto_server", "-H", "0.0.0.0", "-p", "4566"]
