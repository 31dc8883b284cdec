#!/usr/bin/env bash
# Renders `kubeway explain` pictures for the docs: a lab (minikube persona, node behind a
# boundary), the SVG of a healthy path and of a broken one, each turned into a PNG by headless
# Chromium (`apt-get install chromium`). Everything stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/img}
mkdir -p "$out"
cargo build -q -p kubeway
bin=target/debug/kubeway
tmp=$(mktemp -d)
trap 'kill "$lab" 2>/dev/null || true; wait "$lab" 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$bin" lab up --persona minikube --kubeconfig-out "$tmp/kubeconfig" -o json > "$tmp/lab.out" &
lab=$!
for _ in $(seq 100); do grep -q ready "$tmp/lab.out" 2>/dev/null && break; sleep 0.1; done
export KUBECONFIG="$tmp/kubeconfig"
for _ in $(seq 100); do
  [ "$(kubectl get pods -l app=web -o jsonpath='{.items[*].status.containerStatuses[0].ready}' 2>/dev/null)" = "true true" ] && break
  sleep 0.1
done
"$bin" explain svc/web --svg "$out/explain-healthy.svg" > /dev/null || true
"$bin" explain svc/web --via node-port --svg "$out/explain-broken.svg" > /dev/null || true
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "SVGs written to $out; install chromium to render PNGs" >&2
  exit 0
fi
for name in explain-healthy explain-broken; do
  # The picture is as tall as its verdict needs.
  height=$(sed -n 's/.*<svg [^>]*height="\([0-9]*\)".*/\1/p' "$out/$name.svg" | head -1)
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$tmp/chrome" --hide-scrollbars --window-size=1000,"${height:-740}" \
    --screenshot="$out/$name.png" "file://$PWD/$out/$name.svg" 2>/dev/null
done
echo "wrote $out/explain-healthy.{svg,png} and $out/explain-broken.{svg,png}"
