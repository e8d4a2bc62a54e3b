#!/usr/bin/env bash
# Make a Docker engine answer on this machine for the `docker` test suite:
# install docker.io + docker-compose from Debian when missing, start dockerd in the
# background and wait for it, and provide `python:3.11-slim` (pulled, cached, or a
# stand-in built from Debian packages when no registry is reachable). Idempotent.
set -euo pipefail
BASE_IMAGE="${DEPLOY_BASE_IMAGE:-python:3.11-slim}"
CACHE_DIR="${DEPLOY_CACHE_DIR:-/var/cache/deploy-modes}"
CACHE_TAR="$CACHE_DIR/python-3.11-slim-standin.tar"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/deploy-modes-dockerd.log}"
SUITE="${DEPLOY_DEBIAN_SUITE:-bookworm}"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 ||
  need_apt+=(docker-compose)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing ${need_apt[*]} from Debian's packages"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if ! engine_up; then
  if [ "$(id -u)" != 0 ]; then
    echo "no Docker engine answers and starting dockerd needs root" >&2
    exit 1
  fi
  if pgrep -x dockerd >/dev/null 2>&1; then
    # A second dockerd would fight the first over /var/lib/docker and its pid file.
    echo "a dockerd already runs but does not answer at ${DOCKER_HOST:-the default socket}:" \
      "point DOCKER_HOST at its socket, or stop it first" >&2
    exit 1
  fi
  echo "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: dockerd outlives this script and is not killed with CI's process group.
  hosts=()
  # A DOCKER_HOST=unix:///some.sock keeps this engine private (the default socket stays free).
  case "${DOCKER_HOST:-}" in unix://*) hosts=(-H "$DOCKER_HOST") ;; esac
  setsid nohup dockerd "${hosts[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    engine_up && break
    sleep 0.5
  done
  if ! engine_up; then
    echo "dockerd did not answer within 60s; its log ends with:" >&2
    tail -n 30 "$DOCKERD_LOG" >&2
    exit 1
  fi
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if [ -f "$CACHE_TAR" ]; then
    echo "loading the cached base image from $CACHE_TAR"
    docker load -i "$CACHE_TAR" >/dev/null
  elif timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "pulled $BASE_IMAGE"
  else
    echo "no registry reachable: building a $BASE_IMAGE stand-in with debootstrap"
    command -v debootstrap >/dev/null 2>&1 || {
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    rootfs=$(mktemp -d /tmp/deploy-modes-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$SUITE" "$rootfs" >/dev/null
    # The host's CA bundle lets pip inside `docker build` verify the package index.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' \
      - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    mkdir -p "$CACHE_DIR"
    docker save -o "$CACHE_TAR.tmp" "$BASE_IMAGE" && mv "$CACHE_TAR.tmp" "$CACHE_TAR"
    echo "cached the stand-in at $CACHE_TAR"
  fi
fi

echo "Docker engine $(docker version --format '{{.Server.Version}}')," \
  "compose: $( (docker compose version --short 2>/dev/null) || docker-compose version --short)," \
  "base image $BASE_IMAGE $(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c1-19)"
