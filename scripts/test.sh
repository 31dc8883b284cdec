#!/usr/bin/env bash
# The test command. Installs what the tests need on a fresh machine (kubectl, Python's
# `kubernetes` client, iproute2 for namespace mode), then runs every test of the workspace. The
# tests start their own labs on loopback, or as root in network namespaces they create (documentation
# addresses only, a host namespace without a default route); nothing else is dialed.
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

if [ "$(id -u)" -eq 0 ] && ! command -v ip >/dev/null; then
  echo "test.sh: installing iproute2 for the lab's namespace mode" >&2
  apt_install iproute2 || echo "test.sh: namespace-mode tests will be skipped" >&2
fi

if ! python3 -c 'import kubernetes' 2>/dev/null; then
  echo "test.sh: installing Python's kubernetes client" >&2
  python3 -m pip install -q --disable-pip-version-check kubernetes
fi

cargo test --workspace --locked "$@"
