#!/usr/bin/env bash
# Make sure a Docker engine answers and the sandbox image exists. For CI machines that start
# with nothing installed; safe to run again (quick when all is in place). Needs no stdin.
#
#   scripts/ensure-docker.sh [--no-build]
#
# When `docker info` fails and we are root on Debian/Ubuntu: installs docker.io and debootstrap,
# starts dockerd in the background (log: $ASTRA_DOCKERD_LOG, default /var/log/astra-dockerd.log)
# and waits up to 60 s for it. Then runs sandbox-images/build.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log_file="${ASTRA_DOCKERD_LOG:-/var/log/astra-dockerd.log}"
build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "ensure-docker.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
log() { echo "ensure-docker.sh: $*" >&2; }

is_debian() { [[ -r /etc/os-release ]] && grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release; }

wait_for_docker() {
  local i
  for ((i = 0; i < 60; i++)); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

if ! docker info >/dev/null 2>&1; then
  if [[ $(id -u) != 0 ]]; then
    log "the Docker engine is not reachable and we are not root: start it with 'sudo systemctl start docker'"
    log "(or run this script with sudo), and make sure your user may use it (group 'docker')"
    exit 1
  fi
  if ! is_debian; then
    log "the Docker engine is not reachable; automatic installation supports Debian/Ubuntu only"
    exit 1
  fi
  need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates iptables </dev/null >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then  # the package's service may have started it already
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
      systemctl start docker </dev/null || true
    fi
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd in the background (log: $log_file)"
    mkdir -p "$(dirname "$log_file")"
    nohup dockerd </dev/null >>"$log_file" 2>&1 &
  fi
  if ! wait_for_docker; then
    log "dockerd did not answer within 60 s; last lines of $log_file:"
    tail -n 20 "$log_file" >&2 || true
    exit 1
  fi
  log "Docker engine is up"
fi

if [[ $build == 1 ]]; then
  "$root/sandbox-images/build.sh"
fi
