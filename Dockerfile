# The dialer: `dialer serve` by default; the same image runs
# `dialer db upgrade`, `dialer worker`, `dialer web` and the admin commands.
#
#   docker build -t asterisk-phonebank .
#   docker run --rm asterisk-phonebank --help

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/dialer
WORKDIR /src
# Every dependency has a binary wheel for linux/amd64 and arm64, so no
# compiler is needed.
COPY pyproject.toml README.md ./
COPY dialer ./dialer
COPY ami_bridge ./ami_bridge
COPY web ./web
RUN /opt/dialer/bin/pip install . \
    && /opt/dialer/bin/dialer --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="asterisk-phonebank" \
      org.opencontainers.image.description="A self-hosted phone bank that drives your own Asterisk PBX over AMI" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"
# A fixed, unprivileged user: it owns nothing in the image, so the
# container can run with a read-only root file system.
RUN groupadd --system --gid 10001 dialer \
    && useradd --system --uid 10001 --gid dialer --home-dir /home/dialer --create-home \
       --shell /usr/sbin/nologin dialer
COPY --from=build /opt/dialer /opt/dialer
ENV PATH=/opt/dialer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DIALER_WEB_HOST=0.0.0.0 \
    DIALER_WEB_PORT=8080 \
    DIALER_LOG_FORMAT=json
USER dialer
WORKDIR /home/dialer
EXPOSE 8080
ENTRYPOINT ["dialer"]
CMD ["serve"]
