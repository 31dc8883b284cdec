#!/usr/bin/env bash
# Measures the way `kubeway tunnel` opens to a LoadBalancer Service against the baselines of the
# same run: the pod's server directly (loopback), and `kubectl port-forward` to the same Service.
# Two labs: minikube persona (node behind a boundary: the tunnel carries through a forward) and
# plain persona (node reachable: the tunnel carries to the NodePort). Everything is on loopback.
#
#   cargo build --release -p kubeway && scripts/measure-tunnel.sh [ROUNDS]
#
# Prints, per way: median MiB/s of a 64 MiB HTTP download, and median ms of one small request on
# a new connection (of ROUNDS × 20 requests), and the ratio to kubectl port-forward.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bin=target/release/kubeway
[ -x "$bin" ] || { echo "build first: cargo build --release -p kubeway" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "needs kubectl" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# download URL → MiB/s; latency URL → ms per request on a new connection
download() { for _ in $(seq "$rounds"); do curl -s -o /dev/null -w '%{speed_download}\n' "$1/bytes/67108864"; done | awk '{print $1/1048576}' | median; }
latency() { for _ in $(seq $((rounds * 20))); do curl -s -o /dev/null -w '%{time_total}\n' "$1/"; done | awk '{print $1*1000}' | median; }

measure() {
  local persona=$1 kc="$work/kc-$1"
  "$bin" lab up --persona "$persona" --kubeconfig-out "$kc" >"$work/lab-$persona.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$kc" ] && break; sleep 0.1; done
  [ -s "$kc" ] || { echo "the $persona lab did not start:" >&2; cat "$work/lab-$persona.log" >&2; exit 1; }
  kubectl --kubeconfig "$kc" wait --for=condition=Ready pod -l app=web --timeout=60s >/dev/null
  local pod_ip port
  pod_ip=$(kubectl --kubeconfig "$kc" get pod -l app=web -o jsonpath='{.items[0].status.podIP}')
  port=$(kubectl --kubeconfig "$kc" get pod -l app=web -o jsonpath='{.items[0].spec.containers[0].ports[0].containerPort}')
  KUBEWAY_STATE_DIR="$work/state-$persona" "$bin" --kubeconfig "$kc" tunnel >"$work/tunnel-$persona.log" 2>&1 &
  pids+=($!)
  local ip=""
  for _ in $(seq 100); do
    ip=$(kubectl --kubeconfig "$kc" get svc web-lb -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
    [ -n "$ip" ] && break; sleep 0.1
  done
  [ -n "$ip" ] || { echo "no EXTERNAL-IP for web-lb ($persona)" >&2; cat "$work/tunnel-$persona.log" >&2; exit 1; }
  local via
  via=$(grep -o 'listening on [0-9.:]* via [A-Za-z]*' "$work/tunnel-$persona.log" | head -1 | sed 's/.* via //')
  kubectl --kubeconfig "$kc" port-forward svc/web-lb 0:80 >"$work/pf-$persona.log" 2>&1 &
  pids+=($!)
  local pf=""
  for _ in $(seq 100); do
    pf=$(grep -o '127.0.0.1:[0-9]*' "$work/pf-$persona.log" | head -1 || true)
    [ -n "$pf" ] && break; sleep 0.1
  done
  local d_lo d_tu d_pf l_lo l_tu l_pf
  d_lo=$(download "http://$pod_ip:$port"); l_lo=$(latency "http://$pod_ip:$port")
  d_tu=$(download "http://$ip"); l_tu=$(latency "http://$ip")
  d_pf=$(download "http://$pf"); l_pf=$(latency "http://$pf")
  printf '%-9s %-34s %10s %10s\n' "$persona" "way" "MiB/s" "ms/req"
  printf '%-9s %-34s %10.1f %10.3f\n' "" "pod server directly (loopback)" "$d_lo" "$l_lo"
  printf '%-9s %-34s %10.1f %10.3f\n' "" "kubeway tunnel ($via)" "$d_tu" "$l_tu"
  printf '%-9s %-34s %10.1f %10.3f\n' "" "kubectl port-forward svc/web-lb" "$d_pf" "$l_pf"
  awk -v a="$d_tu" -v b="$d_pf" -v c="$l_tu" -v d="$l_pf" 'BEGIN {printf "          tunnel/kubectl: %.2fx throughput, %.2fx latency\n\n", a/b, c/d}'
}

measure minikube
measure plain
