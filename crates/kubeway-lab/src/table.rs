//! Server-side printing: `meta.k8s.io/v1` Tables with the columns the real apiserver prints, so
//! `kubectl get` shows READY, STATUS, CLUSTER-IP, PORT(S) and the rest.

use serde_json::{Value, json};

use crate::resources::ResourceDef;

/// kubectl's human duration (`5s`, `3m2s`, `4h`, `2d3h`).
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{hh}h")
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

/// Age of an object from its creationTimestamp.
pub fn age(obj: &Value) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| human_duration(jiff::Timestamp::now().as_second() - t.as_second()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn col(name: &str, ty: &str, priority: i64, description: &str) -> Value {
    let mut c = json!({"name": name, "type": ty, "format": "", "description": description, "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
    }
    c
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn none_if_empty(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn selector_string(m: &Value) -> String {
    m.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", s(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The STATUS column of a pod, with kubectl's precedence (Terminating, waiting reasons, phase).
pub fn pod_status(pod: &Value) -> String {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating".into();
    }
    let mut reason = s(&pod["status"]["phase"]);
    for cs in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = cs["state"]["waiting"]["reason"].as_str() {
            reason = r.to_string();
        } else if let Some(r) = cs["state"]["terminated"]["reason"].as_str() {
            reason = r.to_string();
        }
    }
    if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    }
}

fn pod_cells(p: &Value) -> Vec<Value> {
    let statuses = p["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = p["spec"]["containers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let ready = statuses
        .iter()
        .filter(|c| c["ready"] == json!(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    vec![
        p["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(pod_status(p)),
        json!(restarts),
        json!(age(p)),
        json!(none_if_empty(s(&p["status"]["podIP"]))),
        json!(none_if_empty(s(&p["spec"]["nodeName"]))),
        json!("<none>"),
        json!("<none>"),
    ]
}

/// The EXTERNAL-IP column of a Service.
pub fn service_external(svc: &Value) -> String {
    let ty = svc["spec"]["type"].as_str().unwrap_or("ClusterIP");
    let mut ips: Vec<String> = svc["spec"]["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    match ty {
        "LoadBalancer" => {
            for i in svc["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(ip) = i["ip"].as_str() {
                    ips.push(ip.to_string());
                } else if let Some(h) = i["hostname"].as_str() {
                    ips.push(h.to_string());
                }
            }
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(&svc["spec"]["externalName"]),
        _ => none_if_empty(ips.join(",")),
    }
}

/// The PORT(S) column of a Service.
pub fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", s(&p["port"])),
                None => format!("{}/{proto}", s(&p["port"])),
            }
        })
        .collect();
    none_if_empty(ports.join(","))
}

fn service_cells(v: &Value) -> Vec<Value> {
    vec![
        v["metadata"]["name"].clone(),
        json!(s(&v["spec"]["type"])),
        json!(none_if_empty(s(&v["spec"]["clusterIP"]))),
        json!(service_external(v)),
        json!(service_ports(v)),
        json!(age(v)),
        json!(none_if_empty(selector_string(&v["spec"]["selector"]))),
    ]
}

fn node_cells(n: &Value) -> Vec<Value> {
    let ready = n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .unwrap_or("Unknown");
    let roles: Vec<String> = n["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
        })
        .collect();
    let addr = |t: &str| {
        n["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == t)
            .map(|a| s(&a["address"]))
            .unwrap_or_else(|| "<none>".into())
    };
    let info = &n["status"]["nodeInfo"];
    vec![
        n["metadata"]["name"].clone(),
        json!(ready),
        json!(none_if_empty(roles.join(","))),
        json!(age(n)),
        json!(s(&info["kubeletVersion"])),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(s(&info["osImage"])),
        json!(s(&info["kernelVersion"])),
        json!(s(&info["containerRuntimeVersion"])),
    ]
}

fn containers_images(w: &Value) -> (String, String) {
    let cs = w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (
        cs.iter()
            .map(|c| s(&c["name"]))
            .collect::<Vec<_>>()
            .join(","),
        cs.iter()
            .map(|c| s(&c["image"]))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn deployment_cells(d: &Value) -> Vec<Value> {
    let st = &d["status"];
    let (c, i) = containers_images(d);
    vec![
        d["metadata"]["name"].clone(),
        json!(format!(
            "{}/{}",
            st["readyReplicas"].as_i64().unwrap_or(0),
            d["spec"]["replicas"].as_i64().unwrap_or(1)
        )),
        json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
        json!(st["availableReplicas"].as_i64().unwrap_or(0)),
        json!(age(d)),
        json!(c),
        json!(i),
        json!(selector_string(&d["spec"]["selector"]["matchLabels"])),
    ]
}

fn statefulset_cells(s: &Value) -> Vec<Value> {
    let (c, i) = containers_images(s);
    vec![
        s["metadata"]["name"].clone(),
        json!(format!(
            "{}/{}",
            s["status"]["readyReplicas"].as_i64().unwrap_or(0),
            s["spec"]["replicas"].as_i64().unwrap_or(1)
        )),
        json!(age(s)),
        json!(c),
        json!(i),
    ]
}

fn replicaset_cells(r: &Value) -> Vec<Value> {
    let st = &r["status"];
    let (c, i) = containers_images(r);
    vec![
        r["metadata"]["name"].clone(),
        json!(r["spec"]["replicas"].as_i64().unwrap_or(1)),
        json!(st["replicas"].as_i64().unwrap_or(0)),
        json!(st["readyReplicas"].as_i64().unwrap_or(0)),
        json!(age(r)),
        json!(c),
        json!(i),
        json!(selector_string(&r["spec"]["selector"]["matchLabels"])),
    ]
}

fn slice_cells(e: &Value) -> Vec<Value> {
    let ports: Vec<String> = e["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| s(&p["port"]))
        .collect();
    let addrs: Vec<String> = e["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|ep| ep["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| s(&a))
        .collect();
    vec![
        e["metadata"]["name"].clone(),
        json!(s(&e["addressType"])),
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        }),
        json!(if addrs.is_empty() {
            "<unset>".to_string()
        } else {
            addrs.join(",")
        }),
        json!(age(e)),
    ]
}

fn endpoints_cells(e: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for sub in e["subsets"].as_array().into_iter().flatten() {
        for a in sub["addresses"].as_array().into_iter().flatten() {
            for p in sub["ports"].as_array().into_iter().flatten() {
                out.push(format!("{}:{}", s(&a["ip"]), s(&p["port"])));
            }
        }
    }
    vec![
        e["metadata"]["name"].clone(),
        json!(none_if_empty(out.join(","))),
        json!(age(e)),
    ]
}

fn namespace_cells(n: &Value) -> Vec<Value> {
    vec![
        n["metadata"]["name"].clone(),
        json!(s(&n["status"]["phase"])),
        json!(age(n)),
    ]
}

fn data_keys(v: &Value) -> usize {
    v.as_object().map(|m| m.len()).unwrap_or(0)
}

fn event_cells(e: &Value) -> Vec<Value> {
    let obj = &e["involvedObject"];
    let ago = |k: &str| {
        e[k].as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| human_duration(jiff::Timestamp::now().as_second() - t.as_second()))
    };
    let mut last = ago("lastTimestamp")
        .or_else(|| ago("eventTime"))
        .unwrap_or_else(|| "<unknown>".into());
    // A repeated event, as kubectl prints it: `2m (x4 over 10m)`.
    let count = e["count"].as_i64().unwrap_or(1);
    if count > 1
        && let Some(first) = ago("firstTimestamp")
    {
        last = format!("{last} (x{count} over {first})");
    }
    vec![
        json!(last),
        json!(s(&e["type"])),
        json!(s(&e["reason"])),
        json!(format!(
            "{}/{}",
            s(&obj["kind"]).to_lowercase(),
            s(&obj["name"])
        )),
        json!(s(&e["message"])),
    ]
}

/// Renders one object's cells.
type Cells = fn(&Value) -> Vec<Value>;

fn columns(res: &ResourceDef) -> (Vec<Value>, Cells) {
    let name = col(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age_col = col(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match res.kind {
        "Pod" => (
            vec![
                name,
                col(
                    "Ready",
                    "string",
                    0,
                    "The aggregate readiness state of this pod for accepting traffic.",
                ),
                col(
                    "Status",
                    "string",
                    0,
                    "The aggregate status of the containers in this pod.",
                ),
                col(
                    "Restarts",
                    "string",
                    0,
                    "The number of times the containers in this pod have been restarted.",
                ),
                age_col,
                col("IP", "string", 1, "IP address allocated to the pod."),
                col(
                    "Node",
                    "string",
                    1,
                    "Name of the Node this pod is assigned to.",
                ),
                col(
                    "Nominated Node",
                    "string",
                    1,
                    "Name of the Node this pod is nominated to.",
                ),
                col("Readiness Gates", "string", 1, "Pod readiness gates."),
            ],
            pod_cells,
        ),
        "Service" => (
            vec![
                name,
                col("Type", "string", 0, "The type of the service."),
                col("Cluster-IP", "string", 0, "The cluster IP of the service."),
                col(
                    "External-IP",
                    "string",
                    0,
                    "The external IP of the service.",
                ),
                col("Port(s)", "string", 0, "The ports of the service."),
                age_col,
                col("Selector", "string", 1, "The selector of the service."),
            ],
            service_cells,
        ),
        "Node" => (
            vec![
                name,
                col("Status", "string", 0, "The status of the node."),
                col("Roles", "string", 0, "The roles of the node."),
                age_col,
                col(
                    "Version",
                    "string",
                    0,
                    "Kubelet Version reported by the node.",
                ),
                col("Internal-IP", "string", 1, "List of internal IPs."),
                col("External-IP", "string", 1, "List of external IPs."),
                col("OS-Image", "string", 1, "OS image reported by the node."),
                col(
                    "Kernel-Version",
                    "string",
                    1,
                    "Kernel version reported by the node.",
                ),
                col(
                    "Container-Runtime",
                    "string",
                    1,
                    "Container runtime reported by the node.",
                ),
            ],
            node_cells,
        ),
        "Deployment" => (
            vec![
                name,
                col("Ready", "string", 0, "Number of the pod with ready state."),
                col(
                    "Up-to-date",
                    "integer",
                    0,
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                col(
                    "Available",
                    "integer",
                    0,
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age_col,
                col(
                    "Containers",
                    "string",
                    1,
                    "Names of each container in the template.",
                ),
                col(
                    "Images",
                    "string",
                    1,
                    "Images referenced by each container in the template.",
                ),
                col("Selector", "string", 1, "Label selector for pods."),
            ],
            deployment_cells,
        ),
        "StatefulSet" => (
            vec![
                name,
                col("Ready", "string", 0, "Number of the pod with ready state."),
                age_col,
                col(
                    "Containers",
                    "string",
                    1,
                    "Names of each container in the template.",
                ),
                col(
                    "Images",
                    "string",
                    1,
                    "Images referenced by each container in the template.",
                ),
            ],
            statefulset_cells,
        ),
        "ReplicaSet" => (
            vec![
                name,
                col("Desired", "integer", 0, "Number of desired pods."),
                col("Current", "integer", 0, "Number of actual replicas."),
                col("Ready", "integer", 0, "Number of ready replicas."),
                age_col,
                col(
                    "Containers",
                    "string",
                    1,
                    "Names of each container in the template.",
                ),
                col(
                    "Images",
                    "string",
                    1,
                    "Images referenced by each container in the template.",
                ),
                col("Selector", "string", 1, "Label selector for pods."),
            ],
            replicaset_cells,
        ),
        "EndpointSlice" => (
            vec![
                name,
                col(
                    "AddressType",
                    "string",
                    0,
                    "The IP protocol for this slice.",
                ),
                col("Ports", "string", 0, "The ports for this slice."),
                col("Endpoints", "string", 0, "The endpoints of this slice."),
                age_col,
            ],
            slice_cells,
        ),
        "Endpoints" => (
            vec![
                name,
                col("Endpoints", "string", 0, "Endpoints of the service."),
                age_col,
            ],
            endpoints_cells,
        ),
        "Namespace" => (
            vec![
                name,
                col("Status", "string", 0, "The status of the namespace."),
                age_col,
            ],
            namespace_cells,
        ),
        "Event" => (
            vec![
                col("Last Seen", "string", 0, "Time of the last occurrence."),
                col("Type", "string", 0, "Type of this event."),
                col("Reason", "string", 0, "Why the action was taken."),
                col("Object", "string", 0, "The object this event is about."),
                col("Message", "string", 0, "A description of the event."),
            ],
            event_cells,
        ),
        "ConfigMap" => (
            vec![
                name,
                col(
                    "Data",
                    "string",
                    0,
                    "Number of keys in data and binaryData.",
                ),
                age_col,
            ],
            |o| {
                let n = data_keys(&o["data"]) + data_keys(&o["binaryData"]);
                vec![o["metadata"]["name"].clone(), json!(n), json!(age(o))]
            },
        ),
        "Secret" => (
            vec![
                name,
                col("Type", "string", 0, "The type of the secret."),
                col("Data", "string", 0, "Number of keys in data."),
                age_col,
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(&o["type"])),
                    json!(data_keys(&o["data"])),
                    json!(age(o)),
                ]
            },
        ),
        _ => (vec![name, age_col], |o| {
            vec![o["metadata"]["name"].clone(), json!(age(o))]
        }),
    }
}

/// A Table of `items`. `include_object` is `None`, `Metadata` or `Object`; `with_columns` is false
/// for watch events after the first, as the apiserver does.
pub fn table(
    res: &ResourceDef,
    items: &[&Value],
    include_object: &str,
    rv: Option<u64>,
    with_columns: bool,
) -> Value {
    let (cols, cells) = columns(res);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(o)});
            match include_object {
                "None" => {}
                "Object" => row["object"] = (*o).clone(),
                _ => row["object"] = crate::api::partial_metadata(o),
            }
            row
        })
        .collect();
    let mut t =
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "rows": rows});
    if with_columns {
        t["columnDefinitions"] = json!(cols);
    } else {
        t["columnDefinitions"] = json!(null);
    }
    if let Some(rv) = rv {
        t["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 600), "3h10m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(-1), "<invalid>");
    }

    #[test]
    fn service_columns() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "clusterIP": "127.96.0.10",
            "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}, "status": {"loadBalancer": {}}});
        assert_eq!(service_external(&svc), "<pending>");
        assert_eq!(service_ports(&svc), "80:31000/TCP,443/TCP");
        let res = crate::resources::core("services");
        let t = table(res, &[&svc], "Metadata", Some(7), true);
        assert_eq!(t["rows"][0]["cells"][1], "LoadBalancer");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn pod_status_prefers_waiting_reason() {
        let p = json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&p), "CrashLoopBackOff");
        let p = json!({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status(&p), "Terminating");
    }
}
