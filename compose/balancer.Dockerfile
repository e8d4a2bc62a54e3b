# The web stack's load balancer: nginx from Debian's packages on the same base as the mode images.
#
#   docker build -f compose/balancer.Dockerfile -t deploy-modes/balancer .
#
# Works on the official python:3.11-slim and on the Debian stand-in of .ci/docker.sh: both are
# Debian with python3, which the healthcheck uses (no curl). Classic-builder syntax only.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
# policy-rc.d: the package must not try to start nginx inside the build.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled /usr/sbin/policy-rc.d
COPY compose/balancer/nginx.conf /etc/nginx/nginx.conf
USER www-data
# A broken config fails the build, not the container (tested as the user that runs it).
RUN nginx -t -e stderr && rm -rf /tmp/nginx*
EXPOSE 9696
# /ready through nginx: healthy once it routes to at least one replica that has its model.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9696/ready', timeout=2)"]
CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]
