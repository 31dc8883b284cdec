//! Patches: JSON merge patch and JSON patch (through the `json-patch` crate) and strategic merge
//! patch for the built-in kinds (lists merged by their Kubernetes merge keys).

use serde_json::{Map, Value};

use crate::status::ApiError;

/// The patch flavours kubectl sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply. The lab creates the object when it is
    /// missing and merges the applied configuration like a strategic merge otherwise; it keeps
    /// no field ownership, so fields a manager stops applying stay and nothing conflicts.
    Apply,
}

impl PatchKind {
    /// From a request's Content-Type.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            "application/apply-patch+cbor" => Err(ApiError::unsupported_media_type(
                "application/apply-patch+cbor (the lab takes apply patches as YAML or JSON)",
            )),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// The configuration of a server-side apply request: YAML (JSON is YAML too), one object.
pub fn apply_config(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::bad_request(format!("invalid apply patch: {e}")))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("invalid apply patch (YAML): {e}")))?
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "an apply patch must be one object with apiVersion, kind and metadata.name",
        ));
    }
    Ok(v)
}

/// Applies `patch` of `kind` to `target`.
pub fn apply(kind: PatchKind, target: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Merge => {
            let p: Value = serde_json::from_slice(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            let mut out = target.clone();
            json_patch::merge(&mut out, &p);
            Ok(out)
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut out = target.clone();
            json_patch::patch(&mut out, &p).map_err(|e| {
                ApiError::invalid("", "", format!("the JSON patch could not be applied: {e}"))
            })?;
            Ok(out)
        }
        PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(patch).map_err(|e| {
                ApiError::bad_request(format!("invalid strategic merge patch: {e}"))
            })?;
            Ok(strategic(target, &p))
        }
        PatchKind::Apply => Ok(strategic(target, &apply_config(patch)?)),
    }
}

/// The merge key of a list field, or `None` for lists that are replaced whole.
fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

const MERGED_PRIMITIVE_LISTS: &[&str] = &["finalizers"];

/// Strategic merge of `patch` into `target`.
pub fn strategic(target: &Value, patch: &Value) -> Value {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => Value::Object(merge_objects(t, p)),
        (_, p) => strip_directives(p),
    }
}

fn merge_objects(target: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = patch.clone();
        p.remove("$patch");
        return strip_map(&p);
    }
    let mut out = target.clone();
    for (k, pv) in patch {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(have)), Value::Array(del)) = (out.get_mut(field), pv) {
                have.retain(|v| !del.contains(v));
            }
            continue;
        }
        match pv {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(pm) => {
                let merged = match out.get(k) {
                    Some(Value::Object(tm)) => merge_objects(tm, pm),
                    _ => strip_map(pm),
                };
                out.insert(k.clone(), Value::Object(merged));
            }
            Value::Array(pa) => {
                let merged = match out.get(k) {
                    Some(Value::Array(ta)) => merge_lists(k, ta, pa),
                    _ => pa
                        .iter()
                        .filter(|e| e.get("$patch").and_then(Value::as_str) != Some("delete"))
                        .map(strip_directives)
                        .collect(),
                };
                out.insert(k.clone(), Value::Array(merged));
            }
            other => {
                out.insert(k.clone(), other.clone());
            }
        }
    }
    out
}

fn merge_lists(field: &str, target: &[Value], patch: &[Value]) -> Vec<Value> {
    if MERGED_PRIMITIVE_LISTS.contains(&field) {
        let mut out = target.to_vec();
        for v in patch {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return out;
    }
    let Some(key) = merge_key(field, patch.first().or(target.first())) else {
        return patch.iter().map(strip_directives).collect();
    };
    let mut out = target.to_vec();
    for pe in patch {
        let id = pe.get(key);
        let pos = id.and_then(|id| out.iter().position(|te| te.get(key) == Some(id)));
        let delete = pe.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (Some(i), false) => out[i] = strategic(&out[i], pe),
            (None, false) => out.push(strip_directives(pe)),
            (None, true) => {}
        }
    }
    out
}

fn strip_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| (k.clone(), strip_directives(v)))
        .collect()
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_map(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name_and_ports_by_key() {
        let target = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "y"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "image": "x2", "ports": [{"containerPort": 81}]},
            {"name": "b", "$patch": "delete"}
        ], "$setElementOrder/containers": [{"name": "a"}]}});
        let out = strategic(&target, &patch);
        let cs = out["spec"]["containers"].as_array().expect("containers");
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["image"], "x2");
        assert_eq!(cs[0]["ports"].as_array().map(Vec::len), Some(2));
        assert!(out["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn strategic_replaces_lists_without_merge_key_and_deletes_nulls() {
        let target =
            json!({"spec": {"args": ["a", "b"], "x": 1}, "metadata": {"finalizers": ["f1"]}});
        let patch = json!({"spec": {"args": ["c"], "x": null}, "metadata": {"finalizers": ["f2"]}});
        let out = strategic(&target, &patch);
        assert_eq!(out["spec"]["args"], json!(["c"]));
        assert!(out["spec"].get("x").is_none());
        assert_eq!(out["metadata"]["finalizers"], json!(["f1", "f2"]));
    }

    #[test]
    fn merge_and_json_patch() {
        let t = json!({"spec": {"replicas": 2, "x": 1}});
        let m = apply(PatchKind::Merge, &t, br#"{"spec":{"replicas":3,"x":null}}"#).expect("merge");
        assert_eq!(m, json!({"spec": {"replicas": 3}}));
        let j = apply(
            PatchKind::Json,
            &t,
            br#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
        )
        .expect("json patch");
        assert_eq!(j["spec"]["replicas"], 5);
        assert!(apply(PatchKind::Json, &t, br#"[{"op":"remove","path":"/nope"}]"#).is_err());
        assert!(PatchKind::from_content_type("text/plain").is_err());
    }
}
