//! The OpenAPI v3 documents kubectl reads before `apply`/`create`: one per group/version, listing
//! each resource's operations with `x-kubernetes-group-version-kind`, and the `fieldValidation`
//! parameter so kubectl leaves validation to the server instead of needing full schemas.

use serde_json::{Map, Value, json};

use crate::resources::{self, RESOURCES, ResourceDef};

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of group/version documents.
pub fn root() -> Value {
    let mut paths = Map::new();
    for (g, v) in resources::group_versions() {
        let key = gv_key(g, v);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=kubeway-lab-{}", env!("CARGO_PKG_VERSION"))}),
        );
    }
    json!({"paths": paths})
}

fn params(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| {
            let location = if matches!(*n, "name" | "namespace") {
                "path"
            } else {
                "query"
            };
            json!({"name": n, "in": location, "required": location == "path", "schema": {"type": "string", "uniqueItems": true}})
        })
        .collect()
}

fn operation(r: &ResourceDef, action: &str, op_params: &[&str]) -> Value {
    let group = if r.group.is_empty() { "core" } else { r.group };
    json!({
        "operationId": format!("{action}{}{}", group.replace('.', ""), r.kind),
        "parameters": params(op_params),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

/// The document of one group/version (`api/v1`, `apis/apps/v1`), or None if not served.
pub fn group_version(key: &str) -> Option<Value> {
    let key = key.split('?').next().unwrap_or(key);
    let mut paths = Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| gv_key(r.group, r.version) == key)
    {
        let base = if r.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", r.gv_path(), r.plural)
        } else {
            format!("{}/{}", r.gv_path(), r.plural)
        };
        let ns: &[&'static str] = if r.namespaced { &["namespace"] } else { &[] };
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            ns.iter().chain(extra).copied().collect()
        };
        let mut collection = Map::new();
        if r.supports("list") {
            collection.insert(
                "get".into(),
                operation(r, "list", &with(&["labelSelector", "fieldSelector"])),
            );
        }
        if r.supports("create") {
            collection.insert(
                "post".into(),
                operation(
                    r,
                    "post",
                    &with(&["dryRun", "fieldManager", "fieldValidation"]),
                ),
            );
        }
        paths.insert(base.clone(), Value::Object(collection));
        if r.supports("get") {
            let item = json!({
                "get": operation(r, "get", &with(&["name"])),
                "put": operation(r, "put", &with(&["name", "dryRun", "fieldManager", "fieldValidation"])),
                "patch": operation(r, "patch", &with(&["name", "dryRun", "fieldManager", "fieldValidation", "force"])),
                "delete": operation(r, "delete", &with(&["name", "dryRun", "gracePeriodSeconds", "propagationPolicy"])),
            });
            paths.insert(format!("{base}/{{name}}"), item);
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubeway lab)", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_has_a_document_with_field_validation() {
        let root = root();
        for (key, entry) in root["paths"].as_object().expect("paths") {
            assert!(
                entry["serverRelativeURL"]
                    .as_str()
                    .expect("url")
                    .starts_with("/openapi/v3/")
            );
            let doc = group_version(key).expect("document");
            if key == "apis/authorization.k8s.io/v1" {
                continue;
            }
            let has_patch = doc["paths"].as_object().expect("paths").values().any(|p| {
                p["patch"]["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|x| x["name"] == "fieldValidation"))
            });
            assert!(has_patch, "{key} must advertise fieldValidation on PATCH");
        }
        assert!(group_version("apis/nope/v1").is_none());
    }
}
