//! Admission: decoding checks, validation and defaulting of objects on create and update, and the
//! allocation of ClusterIPs and NodePorts, as the apiserver's registry strategies do.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::Ctx;
use crate::resources::{ResourceDef, core};
use crate::selectors::LabelSelector;
use crate::status::ApiError;

/// NodePort range, as kube-apiserver's default `--service-node-port-range`.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// A random lowercase alphanumeric suffix, as generateName uses.
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks `metadata.name` the way the kind's registry does.
pub fn validate_name(res: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let label_only = matches!(res.plural, "services" | "namespaces");
    let ok = if label_only {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    let rule = if label_only {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    };
    Err(ApiError::invalid(
        res.kind,
        name,
        format!("metadata.name: Invalid value: {name:?}: {rule}"),
    ))
}

fn decode_check<T: serde::de::DeserializeOwned>(kind: &str, obj: &Value) -> Result<(), ApiError> {
    serde_json::from_value::<T>(obj.clone())
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("{kind} in version is invalid: {e}")))
}

fn set_default(v: &mut Value, key: &str, default: Value) {
    if v.get(key).is_none_or(Value::is_null) {
        v[key] = default;
    }
}

/// Pod spec defaults shared by Pods and pod templates.
fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "serviceAccountName", json!("default"));
    set_default(spec, "serviceAccount", json!("default"));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    if let Some(containers) = spec["containers"].as_array_mut() {
        for c in containers {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            let pull = if image.ends_with(":latest") || !image.contains(':') {
                "Always"
            } else {
                "IfNotPresent"
            };
            set_default(c, "imagePullPolicy", json!(pull));
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            set_default(c, "resources", json!({}));
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(pr) = c.get_mut(probe).filter(|p| p.is_object()) {
                    set_default(pr, "timeoutSeconds", json!(1));
                    set_default(pr, "periodSeconds", json!(10));
                    set_default(pr, "successThreshold", json!(1));
                    set_default(pr, "failureThreshold", json!(3));
                    if let Some(get) = pr.get_mut("httpGet").filter(|g| g.is_object()) {
                        set_default(get, "scheme", json!("HTTP"));
                        set_default(get, "path", json!("/"));
                    }
                }
            }
            if let Some(ports) = c["ports"].as_array_mut() {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
    }
}

fn validate_pod_spec(kind: &str, name: &str, spec: &Value, path: &str) -> Result<(), ApiError> {
    let containers = spec["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(ApiError::invalid(
            kind,
            name,
            format!("{path}.containers: Required value"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let cname = c["name"].as_str().unwrap_or_default();
        if !is_dns_label(cname) {
            return Err(ApiError::invalid(
                kind,
                name,
                format!(
                    "{path}.containers[{i}].name: Invalid value: {cname:?}: a lowercase RFC 1123 label is required"
                ),
            ));
        }
        if !seen.insert(cname) {
            return Err(ApiError::invalid(
                kind,
                name,
                format!("{path}.containers[{i}].name: Duplicate value: {cname:?}"),
            ));
        }
        if c["image"].as_str().unwrap_or_default().is_empty() {
            return Err(ApiError::invalid(
                kind,
                name,
                format!("{path}.containers[{i}].image: Required value"),
            ));
        }
        for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
            let port = p["containerPort"].as_i64().unwrap_or(0);
            if !(1..=65535).contains(&port) {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    format!(
                        "{path}.containers[{i}].ports[{j}].containerPort: Invalid value: {port}: must be between 1 and 65535, inclusive"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_workload(kind: &str, obj: &Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let selector = &obj["spec"]["selector"];
    if !selector.is_object()
        || (selector["matchLabels"]
            .as_object()
            .is_none_or(|m| m.is_empty())
            && selector["matchExpressions"]
                .as_array()
                .is_none_or(|m| m.is_empty()))
    {
        return Err(ApiError::invalid(
            kind,
            name,
            "spec.selector: Required value",
        ));
    }
    let labels = &obj["spec"]["template"]["metadata"]["labels"];
    if !LabelSelector::from_object(selector).matches(labels) {
        return Err(ApiError::invalid(
            kind,
            name,
            "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
        ));
    }
    if obj["spec"]["replicas"].as_i64().is_some_and(|r| r < 0) {
        return Err(ApiError::invalid(
            kind,
            name,
            "spec.replicas: Invalid value: must be greater than or equal to 0",
        ));
    }
    validate_pod_spec(
        kind,
        name,
        &obj["spec"]["template"]["spec"],
        "spec.template.spec",
    )
}

fn default_workload(obj: &mut Value, deployment: bool) {
    let spec = &mut obj["spec"];
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    if deployment {
        set_default(spec, "progressDeadlineSeconds", json!(600));
        set_default(
            spec,
            "strategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
        );
    }
    default_pod_spec(&mut spec["template"]["spec"]);
    if spec["template"]["metadata"]["creationTimestamp"].is_null()
        && let Some(m) = spec["template"]["metadata"].as_object_mut()
    {
        m.remove("creationTimestamp");
    }
}

fn default_statefulset(obj: &mut Value) {
    default_workload(obj, false);
    let spec = &mut obj["spec"];
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(
        spec,
        "updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    set_default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
}

/// Used ClusterIPs and NodePorts across all Services.
fn used_allocations(ctx: &Ctx) -> (HashSet<String>, HashSet<i64>) {
    let (svcs, _) = ctx.store.list(core("services"), None);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in svcs {
        if let Some(ip) = s["spec"]["clusterIP"].as_str() {
            ips.insert(ip.to_string());
        }
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(np) = p["nodePort"].as_i64() {
                ports.insert(np);
            }
        }
    }
    (ips, ports)
}

fn allocate_cluster_ip(ctx: &Ctx, used: &HashSet<String>) -> Result<String, ApiError> {
    let range = ctx.net.services;
    let reserved = ctx.net.api_service_ip();
    for _ in 0..10_000 {
        // Skip the range's first addresses (network, the `kubernetes` Service) and its last.
        let n = rand::random_range(2..range.size().saturating_sub(1).max(3));
        let Some(ip) = range.nth(n) else { continue };
        if matches!(ip.octets()[3], 0 | 255) || ip == reserved {
            continue;
        }
        let s = ip.to_string();
        if !used.contains(&s) {
            return Ok(s);
        }
    }
    Err(ApiError::internal("the service IP range is full"))
}

fn service_defaults(ctx: &Ctx, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    set_default(spec, "type", json!("ClusterIP"));
    let ty = spec["type"].as_str().unwrap_or_default().to_string();
    if !matches!(
        ty.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        return Err(ApiError::invalid(
            "Service",
            &name,
            format!(
                "spec.type: Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ),
        ));
    }
    set_default(spec, "sessionAffinity", json!("None"));
    let (used_ips, mut used_ports) = used_allocations(ctx);
    let old_ports: Vec<Value> = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    if let Some(old) = old {
        for p in &old_ports {
            if let Some(np) = p["nodePort"].as_i64() {
                used_ports.remove(&np);
            }
        }
        if spec["clusterIP"].as_str().unwrap_or_default().is_empty()
            && let Some(ip) = old["spec"]["clusterIP"].as_str()
        {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
        if spec["clusterIP"] != old["spec"]["clusterIP"] && old["spec"]["clusterIP"].is_string() {
            return Err(ApiError::invalid(
                "Service",
                &name,
                "spec.clusterIPs[0]: Invalid value: field is immutable",
            ));
        }
    }
    if ty == "ExternalName" {
        return Ok(());
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() {
        return Err(ApiError::invalid(
            "Service",
            &name,
            "spec.ports: Required value",
        ));
    }
    let needs_node_port = matches!(ty.as_str(), "NodePort" | "LoadBalancer");
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut shared_node_ports: std::collections::HashMap<i64, i64> = Default::default();
    let mut node_ports_seen: HashSet<(String, i64)> = HashSet::new();
    let ports_in = ports.clone();
    if needs_node_port {
        // Validation comes before allocation: a NodePort requested twice on one protocol.
        let mut requested: HashSet<(&str, i64)> = HashSet::new();
        for (i, p) in ports_in.iter().enumerate() {
            let Some(np) = p["nodePort"].as_i64() else {
                continue;
            };
            if !requested.insert((p["protocol"].as_str().unwrap_or("TCP"), np)) {
                return Err(ApiError::invalid(
                    "Service",
                    &name,
                    format!("spec.ports[{i}].nodePort: Duplicate value: {np}"),
                ));
            }
        }
    }
    for (i, mut p) in ports.into_iter().enumerate() {
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            return Err(ApiError::invalid(
                "Service",
                &name,
                format!(
                    "spec.ports[{i}].port: Invalid value: {port}: must be between 1 and 65535, inclusive"
                ),
            ));
        }
        let pname = p["name"].as_str().unwrap_or_default().to_string();
        if !names.insert(pname.clone()) {
            return Err(ApiError::invalid(
                "Service",
                &name,
                format!("spec.ports[{i}].name: Duplicate value: {pname:?}"),
            ));
        }
        set_default(&mut p, "protocol", json!("TCP"));
        set_default(&mut p, "targetPort", json!(port));
        if needs_node_port {
            // As the apiserver's allocator: ports of one number (TCP 53 and UDP 53) share one
            // NodePort; a number without one takes the first requested further down the list.
            let assigned = shared_node_ports.get(&port).copied();
            let requested = p["nodePort"].as_i64().or_else(|| {
                if assigned.is_some() {
                    return None;
                }
                ports_in
                    .iter()
                    .skip(i + 1)
                    .find(|o| o["port"].as_i64() == Some(port))
                    .and_then(|o| o["nodePort"].as_i64())
            });
            let np = match (requested, assigned) {
                (Some(np), Some(shared)) if np == shared => np,
                (None, Some(shared)) => shared,
                (Some(np), _) => {
                    if !NODE_PORT_RANGE.contains(&(np as u16)) || np > 65535 {
                        return Err(ApiError::invalid(
                            "Service",
                            &name,
                            format!(
                                "spec.ports[{i}].nodePort: Invalid value: {np}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                            ),
                        ));
                    }
                    if used_ports.contains(&np) {
                        return Err(ApiError::invalid(
                            "Service",
                            &name,
                            format!(
                                "spec.ports[{i}].nodePort: Invalid value: {np}: provided port is already allocated"
                            ),
                        ));
                    }
                    np
                }
                (None, None) => {
                    let keep = old_ports
                        .iter()
                        .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                        .and_then(|o| o["nodePort"].as_i64());
                    match keep {
                        Some(k) if !used_ports.contains(&k) => k,
                        _ => loop {
                            let c = i64::from(rand::random_range(NODE_PORT_RANGE));
                            if !used_ports.contains(&c) {
                                break c;
                            }
                        },
                    }
                }
            };
            let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
            if !node_ports_seen.insert((protocol, np)) {
                return Err(ApiError::invalid(
                    "Service",
                    &name,
                    format!("spec.ports[{i}].nodePort: Duplicate value: {np}"),
                ));
            }
            used_ports.insert(np);
            shared_node_ports.entry(port).or_insert(np);
            p["nodePort"] = json!(np);
        } else if let Some(m) = p.as_object_mut() {
            m.remove("nodePort");
        }
        out.push(p);
    }
    spec["ports"] = json!(out);
    if spec["clusterIP"].as_str().unwrap_or_default().is_empty() {
        let ip = allocate_cluster_ip(ctx, &used_ips)?;
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    } else if spec["clusterIPs"].is_null() {
        spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
    }
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if needs_node_port {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    Ok(())
}

/// Validates and defaults a new object; allocates what the registry allocates.
pub fn admit_create(ctx: &Ctx, res: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match res.kind {
        "Pod" => {
            decode_check::<k8s_openapi::api::core::v1::Pod>("Pod", obj)?;
            validate_pod_spec("Pod", &name, &obj["spec"], "spec")?;
            default_pod_spec(&mut obj["spec"]);
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "Service" => {
            decode_check::<k8s_openapi::api::core::v1::Service>("Service", obj)?;
            service_defaults(ctx, obj, None)?;
            obj["status"] = json!({"loadBalancer": {}});
        }
        "Deployment" => {
            decode_check::<k8s_openapi::api::apps::v1::Deployment>("Deployment", obj)?;
            validate_workload("Deployment", obj)?;
            default_workload(obj, true);
            obj["status"] = json!({});
        }
        "ReplicaSet" => {
            decode_check::<k8s_openapi::api::apps::v1::ReplicaSet>("ReplicaSet", obj)?;
            validate_workload("ReplicaSet", obj)?;
            default_workload(obj, false);
            obj["status"] = json!({"replicas": 0});
        }
        "StatefulSet" => {
            decode_check::<k8s_openapi::api::apps::v1::StatefulSet>("StatefulSet", obj)?;
            validate_workload("StatefulSet", obj)?;
            default_statefulset(obj);
            obj["status"] = json!({"replicas": 0, "availableReplicas": 0});
        }
        "Namespace" => {
            let labels = &mut obj["metadata"]["labels"];
            if !labels.is_object() {
                *labels = json!({});
            }
            labels["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        "EndpointSlice" => {
            decode_check::<k8s_openapi::api::discovery::v1::EndpointSlice>("EndpointSlice", obj)?;
        }
        "Endpoints" => {
            decode_check::<k8s_openapi::api::core::v1::Endpoints>("Endpoints", obj)?;
        }
        "Event" => {
            decode_check::<k8s_openapi::api::core::v1::Event>("Event", obj)?;
        }
        "Node" => {
            decode_check::<k8s_openapi::api::core::v1::Node>("Node", obj)?;
        }
        "ConfigMap" => {
            decode_check::<k8s_openapi::api::core::v1::ConfigMap>("ConfigMap", obj)?;
        }
        "Secret" => admit_secret(obj)?,
        _ => {}
    }
    Ok(())
}

/// A Secret as its registry stores it: `stringData` merged into `data` (base64) and dropped,
/// `type` defaulted to Opaque.
fn admit_secret(obj: &mut Value) -> Result<(), ApiError> {
    use base64::Engine;
    decode_check::<k8s_openapi::api::core::v1::Secret>("Secret", obj)?;
    if let Some(plain) = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| v.as_object().cloned())
    {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in plain {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
    set_default(obj, "type", json!("Opaque"));
    Ok(())
}

/// Merges an update into the stored object: the main resource keeps the stored status, the
/// status subresource keeps everything but status; then validates and defaults.
pub fn admit_update(
    ctx: &Ctx,
    res: &ResourceDef,
    sub: Option<&str>,
    old: &Value,
    mut new: Value,
) -> Result<Value, ApiError> {
    let has_status = res.subresources.contains(&"status");
    if sub == Some("status") {
        let mut merged = old.clone();
        merged["status"] = new["status"].clone();
        if new["metadata"]["resourceVersion"].is_string() {
            merged["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
        }
        return Ok(merged);
    }
    if has_status {
        new["status"] = old["status"].clone();
    }
    let name = new["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match res.kind {
        "Pod" => {
            decode_check::<k8s_openapi::api::core::v1::Pod>("Pod", &new)?;
            let mut a = old["spec"].clone();
            let mut b = new["spec"].clone();
            for s in [&mut a, &mut b] {
                if let Some(cs) = s["containers"].as_array_mut() {
                    for c in cs {
                        c["image"] = json!("");
                    }
                }
            }
            if a != b {
                return Err(ApiError::invalid(
                    "Pod",
                    &name,
                    "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`",
                ));
            }
        }
        "Service" => {
            decode_check::<k8s_openapi::api::core::v1::Service>("Service", &new)?;
            service_defaults(ctx, &mut new, Some(old))?;
        }
        "Secret" => admit_secret(&mut new)?,
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            validate_workload(res.kind, &new)?;
            if new["spec"]["selector"] != old["spec"]["selector"] {
                return Err(ApiError::invalid(
                    res.kind,
                    &name,
                    "spec.selector: Invalid value: field is immutable",
                ));
            }
            if res.kind == "StatefulSet" {
                default_statefulset(&mut new);
            } else {
                default_workload(&mut new, res.kind == "Deployment");
            }
        }
        _ => {}
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc1123() {
        let svc = core("services");
        let pods = core("pods");
        let ok = |r, n: &str| validate_name(r, &json!({"metadata": {"name": n}})).is_ok();
        assert!(ok(svc, "web"));
        assert!(!ok(svc, "web.example"));
        assert!(ok(pods, "web.example"));
        assert!(!ok(pods, "Web"));
        assert!(!ok(pods, "-web"));
        assert!(!ok(pods, ""));
        assert_eq!(random_suffix(5).len(), 5);
    }

    #[test]
    fn workload_selector_must_match_template() {
        let d = json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let e = validate_workload("Deployment", &d).expect_err("mismatch");
        assert_eq!(e.code, 422);
        assert!(e.message.contains("does not match template"));
    }
}
