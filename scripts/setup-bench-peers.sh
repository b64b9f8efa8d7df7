#!/usr/bin/env bash
# Installs what the comparison benchmarks run as peers, idempotently: etcd 3.4
# (Debian's etcd-server) for benches/raft_cluster.rs. Not needed to build or test.
set -euo pipefail

if ! dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q "install ok installed"; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  echo "setup-bench-peers: installing etcd-server"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends etcd-server
fi
