//! Authorization: the lab's configurable denials, and SelfSubjectAccessReview in JSON and in the
//! Kubernetes protobuf envelope (`k8s\0` + `runtime.Unknown`), which `kubectl auth can-i` sends.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use k8s_pb::api::authorization::v1 as pb;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Value, json};

use crate::Ctx;
use crate::api::{Body, json_response};
use crate::status::ApiError;

/// A verb on a resource that the lab refuses with 403, for RBAC scenarios.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `get`, `create`, … or `*`.
    pub verb: String,
    /// `pods`, `pods/portforward`, `services` … or `*`.
    pub resource: String,
    /// Only in this namespace, or everywhere.
    pub namespace: Option<String>,
}

impl Denial {
    /// Denies `verb` on `resource` (`pods/portforward`) in every namespace.
    pub fn new(verb: &str, resource: &str) -> Self {
        Self {
            verb: verb.into(),
            resource: resource.into(),
            namespace: None,
        }
    }

    /// Whether this denial covers the request.
    pub fn covers(&self, verb: &str, resource: &str, ns: Option<&str>) -> bool {
        (self.verb == "*" || self.verb == verb)
            && (self.resource == "*" || self.resource == resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| ns.is_none_or(|x| x == n))
    }
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

struct Attrs {
    verb: String,
    group: String,
    resource: String,
    sub: String,
    ns: String,
    name: String,
}

fn decide(ctx: &Ctx, a: &Attrs) -> (bool, String) {
    let res = if a.sub.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.sub)
    };
    let ns = (!a.ns.is_empty()).then_some(a.ns.as_str());
    let denied = ctx.is_denied(&a.verb, &res, ns);
    let _ = (&a.group, &a.name);
    if denied {
        (false, format!("the kubeway lab denies {} on {res}", a.verb))
    } else {
        (true, String::new())
    }
}

/// Serves `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub async fn self_subject_access_review(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    if ct.starts_with(PROTOBUF) {
        let mut review = decode_protobuf(&body)?;
        let ra = review
            .spec
            .as_ref()
            .and_then(|s| s.resource_attributes.clone())
            .unwrap_or_default();
        let attrs = Attrs {
            verb: ra.verb.unwrap_or_default(),
            group: ra.group.unwrap_or_default(),
            resource: ra.resource.unwrap_or_default(),
            sub: ra.subresource.unwrap_or_default(),
            ns: ra.namespace.unwrap_or_default(),
            name: ra.name.unwrap_or_default(),
        };
        let (allowed, reason) = decide(ctx, &attrs);
        review.status = Some(pb::SubjectAccessReviewStatus {
            allowed: Some(allowed),
            denied: Some(!allowed),
            reason: Some(reason.clone()),
            evaluation_error: None,
        });
        if accept.starts_with(PROTOBUF) || !accept.contains("json") {
            return Ok(protobuf_response(&review));
        }
        let v = json!({
            "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": attrs.ns, "verb": attrs.verb, "group": attrs.group, "resource": attrs.resource, "subresource": attrs.sub, "name": attrs.name}},
            "status": {"allowed": allowed, "denied": !allowed, "reason": reason},
        });
        return Ok(json_response(201, &v));
    }
    let mut v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let ra = &v["spec"]["resourceAttributes"];
    let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
    let attrs = Attrs {
        verb: s("verb"),
        group: s("group"),
        resource: s("resource"),
        sub: s("subresource"),
        ns: s("namespace"),
        name: s("name"),
    };
    let (allowed, reason) = if v["spec"]["resourceAttributes"].is_object() {
        decide(ctx, &attrs)
    } else {
        (true, String::new())
    };
    v["status"] = json!({"allowed": allowed, "denied": !allowed, "reason": reason});
    v["metadata"] = json!({"creationTimestamp": null});
    Ok(json_response(201, &v))
}

fn decode_protobuf(body: &[u8]) -> Result<pb::SelfSubjectAccessReview, ApiError> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("protobuf body without the Kubernetes \"k8s\\0\" prefix")
    })?;
    let unknown = Unknown::decode(rest)
        .map_err(|e| ApiError::bad_request(format!("decoding runtime.Unknown: {e}")))?;
    pb::SelfSubjectAccessReview::decode(unknown.raw.unwrap_or_default().as_slice())
        .map_err(|e| ApiError::bad_request(format!("decoding SelfSubjectAccessReview: {e}")))
}

fn protobuf_response(review: &pb::SelfSubjectAccessReview) -> Response<Body> {
    let envelope = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("authorization.k8s.io/v1".into()),
            kind: Some("SelfSubjectAccessReview".into()),
        }),
        raw: Some(review.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(envelope.encode_to_vec());
    let mut r = Response::new(
        Full::new(Bytes::from(out))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = http::StatusCode::CREATED;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_match_verb_resource_and_namespace() {
        let d = Denial::new("create", "pods/portforward");
        assert!(d.covers("create", "pods/portforward", Some("default")));
        assert!(!d.covers("get", "pods/portforward", Some("default")));
        assert!(!d.covers("create", "pods", None));
        let scoped = Denial {
            namespace: Some("prod".into()),
            ..Denial::new("*", "*")
        };
        assert!(scoped.covers("list", "services", Some("prod")));
        assert!(!scoped.covers("list", "services", Some("dev")));
    }

    #[test]
    fn protobuf_envelope_round_trips() {
        let review = pb::SelfSubjectAccessReview {
            metadata: None,
            spec: Some(pb::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(pb::ResourceAttributes {
                    verb: Some("create".into()),
                    resource: Some("pods".into()),
                    subresource: Some("portforward".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
            status: None,
        };
        let resp = protobuf_response(&review);
        assert_eq!(resp.status(), 201);
        let envelope = Unknown {
            type_meta: None,
            raw: Some(review.encode_to_vec()),
            content_encoding: None,
            content_type: None,
        };
        let mut body = MAGIC.to_vec();
        body.extend(envelope.encode_to_vec());
        let back = decode_protobuf(&body).expect("decodes");
        assert_eq!(back, review);
        assert!(decode_protobuf(b"nope").is_err());
    }
}
