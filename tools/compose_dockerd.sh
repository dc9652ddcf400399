#!/usr/bin/env bash
# TEST-ONLY: a Docker daemon of make compose-test's own, for CI machines that run none
# (.ci/run starts and stops it). Usage:
#   tools/compose_dockerd.sh start   prints the run folder; its docker.sock is the daemon's socket
#   tools/compose_dockerd.sh stop RUN_FOLDER
# Its images stay in COMPOSE_DOCKERD_ROOT (default /var/tmp/active-learning-compose-dockerd), so the
# next run finds the stand-ins and the built images cached; its socket, pid and log are in a temp
# folder. No iptables rules, no forwarding, no default bridge: containers reach each other on their
# compose network and the host reaches them only through ports published on 127.0.0.1; builds use
# the host's network (docker build --network host).
set -euo pipefail
root="${COMPOSE_DOCKERD_ROOT:-/var/tmp/active-learning-compose-dockerd}"
case "${1:-}" in
  start)
    mkdir -p "$root"
    run="$(mktemp -d /tmp/compose-dockerd.XXXXXX)"
    dockerd --data-root "$root" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
      --host "unix://$run/docker.sock" --iptables=false --ip-forward=false --ip-masq=false \
      --bridge=none >"$run/dockerd.log" 2>&1 &
    echo $! >"$run/started.pid"
    for _ in $(seq 120); do
      if DOCKER_HOST="unix://$run/docker.sock" docker info >/dev/null 2>&1; then
        echo "$run"
        exit 0
      fi
      sleep 0.5
    done
    echo "dockerd did not answer within 60 s; its log:" >&2
    tail -20 "$run/dockerd.log" >&2
    kill "$(cat "$run/started.pid")" 2>/dev/null || true
    exit 1
    ;;
  stop)
    run="${2:?usage: $0 stop RUN_FOLDER}"
    if [ -s "$run/started.pid" ]; then
      pid="$(cat "$run/started.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    # dockerd leaves its default network namespace mounted in the exec root: unmount what is there
    awk -v run="$run/" 'index($2, run) == 1 {print $2}' /proc/mounts | sort -r | while read -r mount; do
      umount "$mount"
    done
    rm -rf "$run"
    ;;
  *)
    echo "usage: $0 start | stop RUN_FOLDER" >&2
    exit 2
    ;;
esac
