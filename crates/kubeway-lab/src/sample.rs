//! The sample app a newcomer meets: `web` (HTTP, 2 replicas, NodePort), `echo` (TCP, ClusterIP)
//! and `web-lb` (LoadBalancer), created through admission like `kubectl apply` would.

use serde_json::{Value, json};

use crate::Ctx;
use crate::admit;
use crate::resources::core;
use crate::status::ApiError;

fn deployment(name: &str, image: &str, replicas: i64, port: (&str, i64), probe: bool) -> Value {
    let mut container = json!({
        "name": name, "image": image,
        "ports": [{"name": port.0, "containerPort": port.1}],
    });
    if probe {
        container["readinessProbe"] =
            json!({"httpGet": {"path": "/healthz", "port": port.0}, "periodSeconds": 1});
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    })
}

fn service(name: &str, ty: &str, app: &str, port: i64, target: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"type": ty, "selector": {"app": app},
                 "ports": [{"name": target, "port": port, "targetPort": target}]},
    })
}

/// The sample objects, as manifests.
pub fn manifests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "deployments",
            deployment("web", "kubeway.local/http", 2, ("http", 8080), true),
        ),
        ("services", service("web", "NodePort", "web", 80, "http")),
        (
            "deployments",
            deployment("echo", "kubeway.local/echo", 1, ("echo", 9000), false),
        ),
        (
            "services",
            service("echo", "ClusterIP", "echo", 9000, "echo"),
        ),
        (
            "services",
            service("web-lb", "LoadBalancer", "web", 80, "http"),
        ),
    ]
}

/// Creates the sample app.
pub fn deploy(ctx: &Ctx) -> Result<(), ApiError> {
    for (plural, mut obj) in manifests() {
        let res = core(plural);
        admit::admit_create(ctx, res, &mut obj)?;
        ctx.store.create(res, obj)?;
    }
    Ok(())
}
