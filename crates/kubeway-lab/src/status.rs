//! API errors as Kubernetes `Status` objects: the code, the reason and the message clients match on.

use serde_json::{Value, json};

/// A failed API call, rendered as a `metav1.Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict` …).
    pub reason: &'static str,
    /// Human-readable message, in the apiserver's phrasing.
    pub message: String,
    /// `details.name`, `details.kind`, `details.group`.
    pub details: Option<(String, String, String)>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, plural: &str, group: &str) -> Self {
        self.details = Some((name.to_string(), plural.to_string(), group.to_string()));
        self
    }

    /// 404 for an object: `pods "x" not found`.
    pub fn not_found(qualified: &str, name: &str) -> Self {
        let (plural, group) = split_qualified(qualified);
        Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
            .with_details(name, plural, group)
    }

    /// 404 for a path the lab does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 on create of an existing name.
    pub fn already_exists(qualified: &str, name: &str) -> Self {
        let (plural, group) = split_qualified(qualified);
        Self::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .with_details(name, plural, group)
    }

    /// 409 on a stale resourceVersion.
    pub fn conflict(qualified: &str, name: &str) -> Self {
        let (plural, group) = split_qualified(qualified);
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(name, plural, group)
    }

    /// 422 for an object that fails validation.
    pub fn invalid(kind: &str, name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {why}"),
        )
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 without valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 for a denied verb, phrased like the RBAC authorizer.
    pub fn forbidden(verb: &str, qualified: &str, sub: Option<&str>, ns: Option<&str>) -> Self {
        let (plural, group) = split_qualified(qualified);
        let resource = match sub {
            Some(s) => format!("resource \"{plural}/{s}\""),
            None => format!("resource \"{plural}\""),
        };
        let scope = match ns {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{qualified} is forbidden: User \"kubeway-lab-user\" cannot {verb} {resource} in API group \"{group}\"{scope}"
            ),
        )
    }

    /// 403 with a message of its own (a refused protocol negotiation).
    pub fn forbidden_plain(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(verb: &str, qualified: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {qualified})"
            ),
        )
    }

    /// 410 for a watch from a compacted resourceVersion.
    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 415 for a body the lab cannot decode.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 503 while the lab is shutting down or the pod is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 406 when no media type the client accepts can carry the answer.
    pub fn not_acceptable(message: &str) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 500 for a bug in the lab.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, kind, group)) = &self.details {
            let mut d = json!({"name": name, "kind": kind});
            if !group.is_empty() {
                d["group"] = json!(group);
            }
            v["details"] = d;
        }
        if self.reason == "Invalid" || self.reason == "BadRequest" || self.reason == "Forbidden" {
            v["details"] = v.get("details").cloned().unwrap_or_else(|| json!({}));
        }
        v
    }
}

fn split_qualified(qualified: &str) -> (&str, &str) {
    qualified.split_once('.').unwrap_or((qualified, ""))
}

/// A success `Status`, as returned by some deletes.
pub fn success(name: &str, plural: &str, group: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": plural, "uid": uid});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_kubernetes_shape() {
        let s = ApiError::not_found("deployments.apps", "web").to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn forbidden_names_verb_and_subresource() {
        let e = ApiError::forbidden("create", "pods", Some("portforward"), Some("default"));
        assert_eq!(e.code, 403);
        assert!(
            e.message
                .contains("cannot create resource \"pods/portforward\"")
        );
        assert!(e.message.contains("in the namespace \"default\""));
    }
}
