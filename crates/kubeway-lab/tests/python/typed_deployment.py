"""The minikube guide's Deployment through Python's kubernetes client, typed API.

Run by crates/kubeway-lab/tests/kubectl_tutorial.rs with KUBECONFIG pointing at a lab: creates
hello-minikube (kicbase/echo-server:1.0) with AppsV1Api.create_namespaced_deployment and a
V1Deployment, exposes it with a V1Service of type NodePort, waits for it to be available,
reaches the pod through a port-forward and checks the echo server's reply, reads its log and its
events, then deletes both and checks nothing is left. Exits non-zero on the first mismatch.
"""
import os
import sys
import time

from kubernetes import client, config
from kubernetes.stream import portforward

NS = "default"
NAME = "hello-minikube"


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def until(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")


def main():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    apps = client.AppsV1Api()
    core = client.CoreV1Api()

    labels = {"app": NAME}
    deployment = client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(name=NAME, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[
                    client.V1Container(
                        name="echo-server",
                        image="kicbase/echo-server:1.0",
                        ports=[client.V1ContainerPort(container_port=8080)],
                    )
                ]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(namespace=NS, body=deployment)
    if created.metadata.name != NAME or created.spec.replicas != 1:
        fail(f"created {created.metadata.name} with {created.spec.replicas} replicas")

    service = client.V1Service(
        metadata=client.V1ObjectMeta(name=NAME),
        spec=client.V1ServiceSpec(
            type="NodePort",
            selector=labels,
            ports=[client.V1ServicePort(port=8080, target_port=8080)],
        ),
    )
    svc = core.create_namespaced_service(namespace=NS, body=service)
    if not svc.spec.ports[0].node_port:
        fail("the NodePort Service got no nodePort")

    def available():
        d = apps.read_namespaced_deployment(NAME, NS)
        return any(c.type == "Available" and c.status == "True"
                   for c in (d.status.conditions or []))
    until("the Deployment to be Available", available)

    pod = core.list_namespaced_pod(NS, label_selector=f"app={NAME}").items[0]
    pf = portforward(core.connect_get_namespaced_pod_portforward, pod.metadata.name, NS,
                     ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET /python HTTP/1.1\r\nHost: typed\r\nConnection: close\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    sock.close()
    text = reply.decode(errors="replace")
    if f"Request served by {pod.metadata.name}" not in text or "GET /python HTTP/1.1" not in text:
        fail(f"the echo server's reply is not there: {text!r}")

    log = core.read_namespaced_pod_log(pod.metadata.name, NS)
    if "Echo server listening on port 8080." not in log or "| GET /python" not in log:
        fail(f"log: {log!r}")

    events = core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={pod.metadata.name}").items
    reasons = {e.reason for e in events}
    for want in ("Scheduled", "Pulled", "Created", "Started"):
        if want not in reasons:
            fail(f"no {want} event for the pod: {sorted(reasons)}")

    core.delete_namespaced_service(NAME, NS)
    apps.delete_namespaced_deployment(NAME, NS)

    def gone():
        pods = core.list_namespaced_pod(NS, label_selector=f"app={NAME}").items
        sets = apps.list_namespaced_replica_set(NS, label_selector=f"app={NAME}").items
        names = [s.metadata.name for s in core.list_namespaced_service(NS).items]
        return not pods and not sets and NAME not in names
    until("the Deployment's pods, ReplicaSets and Service to go", gone)
    print("ok")


if __name__ == "__main__":
    main()
