#!/bin/sh
# Start dockerd inside a privileged container (what docker:dind's entrypoint does, in short).
set -eu
# cgroup v2: move every process out of the root cgroup, else enabling the controllers for
# the daemon's children fails with EBUSY.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control || :
fi
# Plain TCP is only for the test's private network; the daemon never sees a real secret.
exec dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 --tls=false "$@"
