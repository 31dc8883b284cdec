//! Round-trips of every kind the lab serves through its protobuf form, and bodies written the
//! way Go writes them (every non-pointer field present, zeros included).

use super::*;

fn round_trip(obj: Value) {
    let body = encode(&obj).unwrap_or_else(|e| panic!("encoding {}: {e:?}", obj["kind"]));
    assert!(body.starts_with(MAGIC));
    let (av, kind, _) = open(&body).expect("envelope");
    assert_eq!(av, obj["apiVersion"].as_str().unwrap_or_default());
    assert_eq!(kind, obj["kind"].as_str().unwrap_or_default());
    let back = decode(&body).unwrap_or_else(|e| panic!("decoding {kind}: {e:?}"));
    assert_eq!(back, obj, "{kind} changed on its way through protobuf");
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": "0b6f3b6e-1111-4222-8333-444455556666",
        "resourceVersion": "42", "generation": 3, "creationTimestamp": "2026-01-02T03:04:05Z",
        "labels": {"app": name}, "annotations": {"deployment.kubernetes.io/revision": "2"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
            "uid": "0b6f3b6e-1111-4222-8333-444455556667", "controller": true, "blockOwnerDeletion": true}],
        "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
            "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}}]})
}

fn pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "echo-server", "image": "kicbase/echo-server:1.0",
            "args": ["-text=hi"], "command": ["/bin/sh"],
            "env": [{"name": "PORT", "value": "8080"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": false}}}],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 5},
            "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"cpu": "100m"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}],
            "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }],
        "volumes": [{"name": "config", "configMap": {"name": "cm", "defaultMode": 420}},
                    {"name": "secret", "secret": {"secretName": "s", "optional": true}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 0, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "serviceAccount": "default", "nodeName": "minikube",
        "securityContext": {}, "schedulerName": "default-scheduler", "enableServiceLinks": true,
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 300}],
        "priority": 0, "preemptionPolicy": "PreemptLowerPriority", "nodeSelector": {"kubernetes.io/os": "linux"},
    })
}

#[test]
fn core_kinds_round_trip() {
    round_trip(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "tutorial", "uid": "u", "resourceVersion": "7", "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"kubernetes.io/metadata.name": "tutorial"}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}));
    round_trip(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "minikube", "labels": {"minikube.k8s.io/name": "minikube"}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": "minikube://x"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.49.2"}],
            "capacity": {"cpu": "2", "memory": "8Gi"}, "allocatable": {"pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
                "lastHeartbeatTime": "2026-01-02T03:04:05Z", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6",
                "osImage": "Ubuntu", "containerRuntimeVersion": "docker://28", "kubeletVersion": "v1.34.0",
                "kubeProxyVersion": "v1.34.0", "operatingSystem": "linux", "architecture": "amd64"}}}));
    round_trip(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("hello-minikube-abc"),
        "spec": pod_spec(),
        "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
            "hostIP": "192.168.49.2", "hostIPs": [{"ip": "192.168.49.2"}], "qosClass": "BestEffort",
            "startTime": "2026-01-02T03:04:05Z",
            "conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": "2026-01-02T03:04:05Z"}],
            "containerStatuses": [{"name": "echo-server", "image": "kicbase/echo-server:1.0",
                "imageID": "x", "containerID": "containerd://1", "ready": false, "started": true,
                "restartCount": 0, "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}},
                "lastState": {"terminated": {"exitCode": 0, "reason": "Completed",
                    "startedAt": "2026-01-02T03:04:05Z", "finishedAt": "2026-01-02T03:04:06Z"}}}]}}),
    );
    round_trip(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("hello-minikube"),
        "spec": {"type": "NodePort", "selector": {"app": "hello-minikube"}, "clusterIP": "10.96.0.12",
            "clusterIPs": ["10.96.0.12"], "ports": [
                {"port": 8080, "targetPort": 8080, "protocol": "TCP", "nodePort": 31234},
                {"name": "named", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            "sessionAffinity": "None", "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "allocateLoadBalancerNodePorts": false},
        "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}}}),
    );
    round_trip(
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("hello-minikube"),
        "subsets": [{"addresses": [{"ip": "10.244.0.5", "nodeName": "minikube",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u"}}],
            "notReadyAddresses": [{"ip": "10.244.0.6"}],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}]}),
    );
    round_trip(
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("p.1"),
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u", "apiVersion": "v1"},
        "reason": "Unhealthy", "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
        "type": "Warning", "source": {"component": "kubelet", "host": "minikube"},
        "firstTimestamp": "2026-01-02T03:04:05Z", "lastTimestamp": "2026-01-02T03:05:05Z", "count": 4,
        "eventTime": "2026-01-02T03:04:05.123456Z", "reportingComponent": "kubelet", "reportingInstance": "minikube"}),
    );
    round_trip(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cm"),
        "data": {"k": "v", "empty": ""}, "binaryData": {"bin": "AAEC/w=="}, "immutable": false}),
    );
    round_trip(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("s"),
        "type": "Opaque", "data": {"password": "czNjcjN0", "nul": "AA=="}}),
    );
}

#[test]
fn apps_and_other_kinds_round_trip() {
    let template = json!({"metadata": {"labels": {"app": "hello-minikube"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-02T03:04:05Z"}}, "spec": pod_spec()});
    round_trip(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("hello-minikube"),
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "hello-minikube"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
            "template": template, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}},
        "status": {"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
            "availableReplicas": 1, "conditions": [{"type": "Available", "status": "True",
                "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.",
                "lastUpdateTime": "2026-01-02T03:04:05Z", "lastTransitionTime": "2026-01-02T03:04:05Z"}]}}),
    );
    round_trip(
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("hello-minikube-5d"),
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hello-minikube", "pod-template-hash": "5d"}},
            "template": template},
        "status": {"replicas": 0, "observedGeneration": 1}}),
    );
    round_trip(
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("db"),
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": template, "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]},
        "status": {"replicas": 3, "readyReplicas": 3, "currentRevision": "db-1", "updateRevision": "db-1",
            "collisionCount": 0, "availableReplicas": 3}}),
    );
    round_trip(
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta("db-1"),
        "data": {"spec": {"template": {"metadata": {"labels": {"app": "db"}}}}}, "revision": 1}),
    );
    round_trip(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta("hello-minikube-x"),
        "addressType": "IPv4", "endpoints": [
            {"addresses": ["10.244.0.5"], "conditions": {"ready": false, "serving": true, "terminating": false},
             "nodeName": "minikube", "targetRef": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u"}}],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}),
    );
    round_trip(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12"]},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "", "message": "ready",
            "lastTransitionTime": "2026-01-02T03:04:05Z"}]}}),
    );
    round_trip(
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": meta("hello-minikube"),
        "spec": {"replicas": 0}, "status": {"replicas": 2, "selector": "app=hello-minikube"}}),
    );
    round_trip(
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": "pods \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"}, "code": 404}),
    );
}

#[test]
fn lists_round_trip() {
    round_trip(json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "99", "continue": "abc"},
        "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": meta("a"), "spec": pod_spec()},
                  {"apiVersion": "v1", "kind": "Pod", "metadata": meta("b"), "spec": pod_spec()}]}));
    round_trip(json!({"apiVersion": "apps/v1", "kind": "DeploymentList",
        "metadata": {"resourceVersion": "5"}, "items": []}));
}

/// What kubectl 1.32 sends for `kubectl create deployment --replicas=0`: Go writes every
/// non-pointer field, zeros included; the JSON the apiserver makes of it omits those zeros but
/// keeps the pointer field `replicas: 0`.
#[test]
fn go_zero_values_mean_unset_but_pointer_zeros_stay() {
    use k8s_pb::api::{apps::v1 as apps, core::v1 as core};
    let s = |v: &str| Some(v.to_string());
    let d = apps::Deployment {
        metadata: Some(pb_meta::ObjectMeta {
            name: s("hello-minikube"),
            generate_name: s(""),
            namespace: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(pb_meta::Time::default()),
            labels: [("app".to_string(), "hello-minikube".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            selector: Some(pb_meta::LabelSelector {
                match_labels: [("app".to_string(), "hello-minikube".to_string())].into(),
                ..Default::default()
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s(""),
                rolling_update: None,
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(pb_meta::ObjectMeta {
                    labels: [("app".to_string(), "hello-minikube".to_string())].into(),
                    creation_timestamp: Some(pb_meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("echo-server"),
                        image: s("kicbase/echo-server:1.0"),
                        working_dir: s(""),
                        stdin: Some(false),
                        tty: Some(false),
                        resources: Some(core::ResourceRequirements::default()),
                        ..Default::default()
                    }],
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            replicas: Some(0),
            observed_generation: Some(0),
            ..Default::default()
        }),
    };
    let body = envelope("apps/v1", "Deployment", d.encode_to_vec());
    let v = decode(&body).expect("decodes");
    assert_eq!(
        v,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "hello-minikube", "labels": {"app": "hello-minikube"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "hello-minikube"}},
                "strategy": {},
                "template": {"metadata": {"labels": {"app": "hello-minikube"}},
                    "spec": {"containers": [{"name": "echo-server", "image": "kicbase/echo-server:1.0",
                        "resources": {}}]}}},
            "status": {}})
    );
}

#[test]
fn service_ports_keep_int_and_named_target_ports() {
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    let svc = core::Service {
        metadata: Some(pb_meta::ObjectMeta {
            name: Some("hello-minikube".into()),
            ..Default::default()
        }),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: Some(String::new()),
                protocol: Some("TCP".into()),
                port: Some(8080),
                target_port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: Some(String::new()),
                }),
                node_port: Some(0),
                app_protocol: None,
            }],
            r#type: Some("NodePort".into()),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).expect("decodes");
    assert_eq!(
        v["spec"]["ports"],
        json!([{"port": 8080, "protocol": "TCP", "targetPort": 8080}])
    );
}

#[test]
fn bad_bodies_are_named() {
    assert!(matches!(decode(b"{}"), Err(ProtobufError::NoMagic)));
    assert!(matches!(
        decode(b"k8s\0\xff\xff"),
        Err(ProtobufError::Envelope(_))
    ));
    let e = decode(&envelope("batch/v1", "Job", vec![])).expect_err("no Job type");
    assert_eq!(
        e.to_string(),
        "the lab has no protobuf type for batch/v1 Job"
    );
    let e = decode(&envelope("v1", "Pod", vec![0xff, 0xff])).expect_err("garbage");
    assert!(matches!(e, ProtobufError::Decode { .. }), "{e:?}");
}

#[test]
fn watch_frames_are_length_prefixed_events() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("p"), "spec": pod_spec()});
    let frame = watch_frame("ADDED", &pod).expect("frame");
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4);
    let ev = pb_meta::WatchEvent::decode(&frame[4..]).expect("event");
    assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
    let raw = ev.object.and_then(|o| o.raw).expect("object");
    assert_eq!(decode(&raw).expect("object decodes"), pod);
}
