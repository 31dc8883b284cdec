#!/usr/bin/env bash
# The test command. Installs what the tests need on a fresh machine (kubectl, Python's
# `kubernetes` client), then runs every test of the workspace. The tests start their own labs on
# loopback; nothing is dialed outside 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt_update=1
apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "test.sh: please install $* (needs root and apt-get)" >&2
    return 1
  fi
  if [ "$need_apt_update" = 1 ]; then apt-get update -qq; need_apt_update=0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v kubectl >/dev/null; then
  echo "test.sh: kubectl not found; installing it" >&2
  apt_install kubectl 2>/dev/null || apt_install kubernetes-client
fi
kubectl version --client 2>/dev/null | head -1 >&2

if ! python3 -c 'import kubernetes' 2>/dev/null; then
  echo "test.sh: installing Python's kubernetes client" >&2
  python3 -m pip install -q --disable-pip-version-check kubernetes
fi

cargo test --workspace --locked "$@"
