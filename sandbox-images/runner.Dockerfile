# astra-runner:latest - astra-run itself (the runner, not the sandbox): astra-run, git, the docker CLI.
#
# For running astra-run where the Docker daemon is somewhere else: a Kubernetes pod with a
# docker:dind sidecar (examples/k8s/astra-batch.yaml), GitLab CI with the docker:dind service
# (examples/gitlab/.gitlab-ci.yml), any DOCKER_HOST. The daemon must share ASTRA_CACHE with this
# container at the same path (docs/batch.md, "Where the Docker daemon runs").
#
# Built by `sandbox-images/build.sh runner`, from the source tree it is run in (the build context
# is a copy of pyproject.toml, README.md, runner/ and the sandbox image's recipe that build.sh
# makes). BASE as for the sandbox
# image: debian:bookworm-slim, or astra-base:bookworm bootstrapped by debootstrap when no registry
# can be reached.
ARG BASE=debian:bookworm-slim

# --- build: a virtualenv with astra-run and its dependencies -----------------------------------
# pip reaches the package index through whatever re-signs HTTPS on this network: the host's CA
# bundle comes in as ca-certificates.crt, in this stage only (it is not in the final image).
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The docker CLI alone, out of Debian's docker.io package (the engine, containerd and runc are
# not needed: the daemon is elsewhere).
RUN apt-get update \
 && cd /tmp && apt-get download docker.io \
 && dpkg-deb -x docker.io_*.deb /tmp/docker.io \
 && install -m 0755 /tmp/docker.io/usr/bin/docker /usr/local/bin/docker \
 && rm -rf /tmp/docker.io* /var/lib/apt/lists/*
COPY ca-certificates.crt /build/ca-certificates.crt
# The dependencies first, from pyproject.toml alone: a change to runner/ rebuilds only the layer
# below. PIP_CERT, not --cert: pip's build-isolation subprocess (setuptools) reads it too.
COPY src/pyproject.toml /build/src/pyproject.toml
RUN PIP_CERT=/build/ca-certificates.crt; [ -s "$PIP_CERT" ] || PIP_CERT=/etc/ssl/certs/ca-certificates.crt; \
    export PIP_CERT \
 && python3 -m venv /opt/astra-run \
 && python3 -c 'import tomllib; d = tomllib.load(open("/build/src/pyproject.toml", "rb")); print("\n".join(d["project"]["dependencies"] + d["build-system"]["requires"]))' \
      >/build/requirements.txt \
 && /opt/astra-run/bin/pip install -q -r /build/requirements.txt
COPY src/ /build/src/
RUN /opt/astra-run/bin/pip install -q --no-deps --no-build-isolation /build/src \
 && /opt/astra-run/bin/astra-run --help >/dev/null

# --- the image ---------------------------------------------------------------------------------
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    PATH=/opt/astra-run/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ASTRA_CACHE=/cache
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 git ca-certificates openssh-client \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /cache
COPY --from=build /opt/astra-run /opt/astra-run
COPY --from=build /usr/local/bin/docker /usr/local/bin/docker
# `bash /usr/local/share/astra-run/sandbox-images/build.sh` builds astra-sandbox:latest in the
# daemon DOCKER_HOST names (from debian:bookworm-slim, which that daemon pulls).
COPY sandbox-images/ /usr/local/share/astra-run/sandbox-images/
WORKDIR /work
CMD ["astra-run", "--help"]
