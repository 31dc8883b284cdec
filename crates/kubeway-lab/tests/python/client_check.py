"""Judges the lab with Python's official `kubernetes` client: list, watch and port-forward.

Run by crates/kubeway-lab/tests/clients.rs with KUBECONFIG pointing at a lab. Exits non-zero
with a message on the first mismatch.
"""
import hashlib
import os
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.stream import portforward


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def main():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    v1 = client.CoreV1Api()

    pods = v1.list_namespaced_pod("default", label_selector="app=web").items
    if len(pods) != 2:
        fail(f"expected 2 web pods, got {len(pods)}")
    for p in pods:
        if p.status.phase != "Running" or not p.status.pod_ip:
            fail(f"pod {p.metadata.name} is {p.status.phase} with IP {p.status.pod_ip}")
    rv = v1.list_namespaced_pod("default").metadata.resource_version

    # Watch from the list's version while another thread deletes a web pod: the watch must
    # report the deletion and the replacement the Deployment creates.
    victim = pods[0].metadata.name
    seen = {"DELETED": None, "ADDED": None}

    def delete_later():
        client.CoreV1Api().delete_namespaced_pod(victim, "default")

    threading.Timer(0.5, delete_later).start()
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app=web",
                       resource_version=rv, timeout_seconds=20):
        name = ev["object"].metadata.name
        if ev["type"] == "DELETED" and name == victim:
            seen["DELETED"] = name
        if ev["type"] == "ADDED" and name != victim and name not in [p.metadata.name for p in pods]:
            seen["ADDED"] = name
        if seen["DELETED"] and seen["ADDED"]:
            w.stop()
    if not (seen["DELETED"] and seen["ADDED"]):
        fail(f"watch missed the replacement: {seen}")

    # Port-forward (v4.channel.k8s.io over WebSocket) to the echo pod: bytes both ways.
    echo = v1.list_namespaced_pod("default", label_selector="app=echo").items[0].metadata.name
    pf = portforward(v1.connect_get_namespaced_pod_portforward, echo, "default", ports="9000")
    sock = pf.socket(9000)
    sock.setblocking(True)
    payload = os.urandom(200_000)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    sock.close()
    if hashlib.sha256(got).digest() != hashlib.sha256(payload).digest():
        fail(f"port-forward echoed {len(got)} bytes that differ from the {len(payload)} sent")
    err = pf.error(9000)
    if err:
        fail(f"port-forward error channel: {err}")
    pf.close()

    # Kubernetes-shaped errors.
    try:
        v1.read_namespaced_pod("no-such-pod", "default")
        fail("reading a missing pod succeeded")
    except client.exceptions.ApiException as e:
        if e.status != 404 or '"reason":"NotFound"' not in e.body.replace(" ", ""):
            fail(f"missing pod gave {e.status} {e.body}")
    print("python kubernetes client: list, watch, port-forward and errors OK")


if __name__ == "__main__":
    main()
