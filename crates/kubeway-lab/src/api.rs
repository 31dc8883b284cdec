//! The HTTPS API server: authentication, routing of Kubernetes REST paths, discovery, the verbs
//! (get, list, watch, create, update, patch, delete), subresources and authorization.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::admit;
use crate::resources::{self, RESOURCES, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError};
use crate::store::{EventType, ns_name};
use crate::{Ctx, openapi, patch, portforward, table};

/// Response body: whole or streamed.
pub type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A `Status` error response.
pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// A request parsed down to what the lab needs.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    /// The resource addressed.
    pub res: &'static ResourceDef,
    /// Namespace from the path.
    pub ns: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `portforward`).
    pub sub: Option<String>,
}

enum Route {
    Version,
    Healthz,
    ApiVersions,
    ApiGroups,
    Group(String),
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
    Resource(ResourceRequest),
}

fn route(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let segs: Vec<&str> = segs.into_iter().filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => return Ok(Route::Healthz),
        ["api"] => return Ok(Route::ApiVersions),
        ["apis"] => return Ok(Route::ApiGroups),
        ["apis", g] => return Ok(Route::Group(g.to_string())),
        ["openapi", "v2"] => return Ok(Route::OpenApiV2),
        ["openapi", "v3"] => return Ok(Route::OpenApiV3Root),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApiV3(rest.join("/"))),
        ["api", v] => return Ok(Route::GroupVersion(String::new(), v.to_string())),
        ["apis", g, v] => return Ok(Route::GroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    let not_found = || ApiError::no_route(path);
    let find = |plural: &str| resources::find(group, version, plural).ok_or_else(not_found);
    let rr = |res, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Ok(Route::Resource(ResourceRequest {
            res,
            ns: ns.map(str::to_string),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
        }))
    };
    let rest = match rest {
        ["watch", tail @ ..] => tail,
        other => other,
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let res = find(plural)?;
            match tail {
                [] => rr(res, Some(ns), None, None),
                [name] => rr(res, Some(ns), Some(name), None),
                [name, sub] => rr(res, Some(ns), Some(name), Some(sub)),
                [name, "proxy", ..] => rr(res, Some(ns), Some(name), Some("proxy")),
                _ => Err(not_found()),
            }
        }
        [plural, tail @ ..] => {
            let res = find(plural)?;
            if res.namespaced && !tail.is_empty() {
                return Err(not_found());
            }
            match tail {
                [] => rr(res, None, None, None),
                [name] => rr(res, None, Some(name), None),
                [name, sub] => rr(res, None, Some(name), Some(sub)),
                _ => Err(not_found()),
            }
        }
        _ => Err(not_found()),
    }
}

fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes `%XX` and `+` in a query component.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters of one request.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `key` (repeated or comma-joined).
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// Entry point for every request on the API port.
pub async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let resp = match serve(ctx, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    let resp = negotiate(&accept, resp).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "api request");
    resp
}

/// Content negotiation at the edge: a client whose Accept puts protobuf first (kubectl's typed
/// clients send `application/vnd.kubernetes.protobuf,application/json`) gets the object, list,
/// Scale or Status in protobuf when the lab has its protobuf type, JSON otherwise if it accepts
/// JSON, else 406. Streams (watches, logs, port-forward upgrades) answer for themselves.
async fn negotiate(accept: &str, resp: Response<Body>) -> Response<Body> {
    let mut choices = accept.split(',').map(str::trim).filter(|m| !m.is_empty());
    if !choices.next().is_some_and(crate::protobuf::is_protobuf) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !is_json || resp.headers().contains_key(header::TRANSFER_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(&ApiError::internal(format!(
                "reading the response body: {e}"
            )));
        }
    };
    let accepts_json = accept.split(',').any(|m| {
        let m = m.split(';').next().unwrap_or_default().trim();
        matches!(m, "application/json" | "application/*" | "*/*")
    });
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .map(|v| crate::protobuf::encode(&v));
    match encoded {
        Some(Ok(pb)) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::protobuf::MEDIA_TYPE),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, full(pb))
        }
        _ if accepts_json => Response::from_parts(parts, full(bytes)),
        Some(Err(e)) => error_response(&ApiError::not_acceptable(&format!(
            "{e}; ask for application/json"
        ))),
        None => error_response(&ApiError::not_acceptable(
            "this answer has no protobuf form; ask for application/json",
        )),
    }
}

fn authenticated(ctx: &Ctx, req: &Request<Incoming>) -> bool {
    let want = format!("Bearer {}", ctx.token);
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == want)
}

async fn serve(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let route = route(req.uri().path())?;
    if !matches!(route, Route::Healthz | Route::Version) && !authenticated(&ctx, &req) {
        return Err(ApiError::unauthorized());
    }
    if ctx.api_paused() {
        return Err(ApiError::unavailable("the lab's API server is paused"));
    }
    match route {
        Route::Healthz => Ok(text_response("ok")),
        Route::Version => Ok(json_response(200, &ctx.version_info())),
        Route::ApiVersions => Ok(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ctx.api_addr().to_string()}]}),
        )),
        Route::ApiGroups => Ok(json_response(200, &api_group_list())),
        Route::Group(g) => api_group(&g)
            .map(|v| json_response(200, &v))
            .ok_or_else(|| ApiError::no_route(&format!("/apis/{g}"))),
        Route::GroupVersion(g, v) => resource_list(&g, &v)
            .map(|l| json_response(200, &l))
            .ok_or_else(|| ApiError::no_route(&format!("/apis/{g}/{v}"))),
        Route::OpenApiV2 => Err(ApiError::no_route("/openapi/v2")),
        Route::OpenApiV3Root => Ok(json_response(200, &openapi::root())),
        Route::OpenApiV3(gv) => openapi::group_version(&gv)
            .map(|v| json_response(200, &v))
            .ok_or_else(|| ApiError::no_route(&format!("/openapi/v3/{gv}"))),
        Route::Resource(rr) => resource(ctx, req, rr).await,
    }
}

fn text_response(s: &'static str) -> Response<Body> {
    let mut r = Response::new(full(s));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .filter_map(|(g, _)| api_group(g))
        .fold(Vec::new(), |mut acc, g| {
            if !acc.contains(&g) {
                acc.push(g);
            }
            acc
        });
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn api_group(group: &str) -> Option<Value> {
    let versions: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let first = versions.first()?.clone();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": first}),
    )
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut e = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        for sub in r.subresources {
            let (kind, verbs, grp, ver): (&str, Vec<&str>, Option<&str>, Option<&str>) = match *sub
            {
                "status" => (r.kind, vec!["get", "patch", "update"], None, None),
                "log" => ("Pod", vec!["get"], None, None),
                "scale" => (
                    "Scale",
                    vec!["get", "patch", "update"],
                    Some("autoscaling"),
                    Some("v1"),
                ),
                "proxy" => (
                    "PodProxyOptions",
                    vec!["create", "delete", "get", "patch", "update"],
                    None,
                    None,
                ),
                _ => ("PodPortForwardOptions", vec!["create", "get"], None, None),
            };
            let mut s = json!({"name": format!("{}/{}", r.plural, sub), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
            if let (Some(g), Some(v)) = (grp, ver) {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            list.push(s);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

fn verb_of(method: &Method, rr: &ResourceRequest, q: &Query) -> &'static str {
    match (method, rr.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if q.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// How the client wants objects rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Render {
    Json,
    Table,
    Metadata,
}

fn render_of(req: &Request<Incoming>) -> Render {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let first = accept.split(',').next().unwrap_or_default();
    if first.contains("as=Table") {
        Render::Table
    } else if first.contains("as=PartialObjectMetadata") {
        Render::Metadata
    } else {
        Render::Json
    }
}

fn watch_path_prefix(req: &Request<Incoming>) -> bool {
    let p = req.uri().path();
    p.starts_with("/api/v1/watch/") || p.contains("/watch/")
}

async fn read_body(req: Request<Incoming>) -> Result<(http::request::Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    Ok((parts, bytes))
}

/// The object of a create or update body: JSON, or protobuf in its envelope (what kubectl's
/// typed clients send for built-in kinds).
fn parse_json(bytes: &[u8], ct: &str) -> Result<Value, ApiError> {
    if crate::protobuf::is_protobuf(ct) {
        return crate::protobuf::decode(bytes).map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            ApiError::bad_request(format!(
                "the request body is not a valid protobuf object: {msg}"
            ))
        });
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn content_type(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

async fn resource(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    rr: ResourceRequest,
) -> Result<Response<Body>, ApiError> {
    let q = Query(query_pairs(&req));
    let mut verb = verb_of(req.method(), &rr, &q);
    if watch_path_prefix(&req) {
        verb = "watch";
    }
    // Authorization first, as the apiserver does, including the subresource.
    ctx.authorize(verb, rr.res, rr.sub.as_deref(), rr.ns.as_deref())?;

    if rr.res.kind == "SelfSubjectAccessReview" {
        return crate::authz::self_subject_access_review(&ctx, req).await;
    }
    if rr.sub.as_deref() == Some("portforward") {
        return portforward::handle(ctx, req, rr, q).await;
    }
    if rr.sub.as_deref() == Some("proxy") && rr.res.plural == "pods" {
        return crate::podproxy::handle(ctx, req, rr).await;
    }
    if rr.sub.as_deref() == Some("log") {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed(verb, "pods/log"));
        }
        let lq = crate::logs::LogQuery::parse(&q)?;
        let (ns, name) = (ns_of(&rr).to_string(), name_of(&rr).to_string());
        if ctx.store.get(rr.res, &ns, &name).is_none() {
            return Err(ApiError::not_found("pods", &name));
        }
        let log = ctx
            .kubelet
            .logs(&ns, &name, lq.container.as_deref(), lq.previous)?;
        return Ok(crate::logs::respond(log, lq));
    }
    if let Some(sub) = rr.sub.as_deref()
        && !rr.res.subresources.contains(&sub)
    {
        return Err(ApiError::no_route(req.uri().path()));
    }
    if !rr.res.supports(verb) && rr.sub.is_none() {
        return Err(ApiError::method_not_allowed(verb, &rr.res.qualified()));
    }
    if rr.res.namespaced && rr.ns.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::no_route(req.uri().path()));
    }
    let render = render_of(&req);
    match verb {
        "get" => get(&ctx, &rr, render, &q),
        "list" => list(&ctx, &rr, render, &q),
        "watch" => watch(&ctx, &rr, render, &q, wants_protobuf(&req)),
        "create" => {
            let (parts, body) = read_body(req).await?;
            let obj = parse_json(&body, &content_type(&parts))?;
            create(&ctx, &rr, obj, &q)
        }
        "update" => {
            let (parts, body) = read_body(req).await?;
            let obj = parse_json(&body, &content_type(&parts))?;
            update(&ctx, &rr, obj, &q)
        }
        "patch" => {
            let (parts, body) = read_body(req).await?;
            let kind = patch::PatchKind::from_content_type(&content_type(&parts))?;
            patch_object(&ctx, &rr, kind, &body, &q)
        }
        "delete" => {
            let (parts, body) = read_body(req).await?;
            let opts: Value = if body.is_empty() {
                json!({})
            } else {
                parse_json(&body, &content_type(&parts))?
            };
            delete(&ctx, &rr, &opts, &q)
        }
        "deletecollection" => delete_collection(&ctx, &rr, &q),
        _ => Err(ApiError::method_not_allowed(verb, &rr.res.qualified())),
    }
}

fn name_of(rr: &ResourceRequest) -> &str {
    rr.name.as_deref().unwrap_or_default()
}

fn ns_of(rr: &ResourceRequest) -> &str {
    rr.ns.as_deref().unwrap_or_default()
}

fn get(
    ctx: &Ctx,
    rr: &ResourceRequest,
    render: Render,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let obj = ctx
        .store
        .get(rr.res, ns_of(rr), name_of(rr))
        .ok_or_else(|| ApiError::not_found(&rr.res.qualified(), name_of(rr)))?;
    if rr.sub.as_deref() == Some("scale") {
        return Ok(json_response(200, &scale_of(&obj)));
    }
    Ok(json_response(200, &render_one(rr.res, &obj, render, q)))
}

fn render_one(res: &'static ResourceDef, obj: &Value, render: Render, q: &Query) -> Value {
    match render {
        Render::Json => obj.clone(),
        Render::Metadata => partial_metadata(obj),
        Render::Table => table::table(
            res,
            &[obj],
            q.get("includeObject").unwrap_or("Metadata"),
            None,
            true,
        ),
    }
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

fn selected<'a>(
    items: &'a [Arc<Value>],
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Vec<&'a Value> {
    items
        .iter()
        .map(|a| a.as_ref())
        .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
        .collect()
}

fn selectors(q: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?,
        FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?,
    ))
}

fn list(
    ctx: &Ctx,
    rr: &ResourceRequest,
    render: Render,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(q)?;
    let (items, rv) = ctx.store.list(rr.res, rr.ns.as_deref());
    let items = selected(&items, &labels, &fields);
    let v = match render {
        Render::Table => table::table(
            rr.res,
            &items,
            q.get("includeObject").unwrap_or("Metadata"),
            Some(rv),
            true,
        ),
        Render::Metadata => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items.iter().map(|o| partial_metadata(o)).collect::<Vec<_>>(),
        }),
        Render::Json => json!({
            "kind": rr.res.list_kind(), "apiVersion": rr.res.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    };
    Ok(json_response(200, &v))
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;

/// One watch event: a JSON line, or a length-prefixed protobuf frame.
fn event_chunk(v: &Value, proto: bool) -> Option<Chunk> {
    if !proto {
        return Some(line(v));
    }
    match crate::protobuf::watch_frame(v["type"].as_str().unwrap_or_default(), &v["object"]) {
        Ok(frame) => Some(Ok(Frame::data(Bytes::from(frame)))),
        Err(e) => {
            tracing::warn!(error = %e, "a watch event has no protobuf form; skipped");
            None
        }
    }
}

fn watch_media_type(proto: bool) -> HeaderValue {
    HeaderValue::from_static(if proto {
        crate::protobuf::WATCH_MEDIA_TYPE
    } else {
        "application/json"
    })
}

/// Whether the client's first choice is protobuf (a typed client-go client's watch).
fn wants_protobuf(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(crate::protobuf::is_protobuf)
}

fn line(v: &Value) -> Chunk {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Ok(Frame::data(Bytes::from(b)))
}

fn watch(
    ctx: &Arc<Ctx>,
    rr: &ResourceRequest,
    render: Render,
    q: &Query,
    proto: bool,
) -> Result<Response<Body>, ApiError> {
    let proto = proto && render == Render::Json;
    let send = move |v: &Value| event_chunk(v, proto);
    let (labels, fields) = selectors(q)?;
    let rv_param = q.get("resourceVersion").unwrap_or_default().to_string();
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let include_object = q.get("includeObject").unwrap_or("Metadata").to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(256);
    let res = rr.res;
    let ns = rr.ns.clone();
    let only_name = rr.name.clone();
    let store = ctx.store.clone();
    let cancel = ctx.api_cancel();

    let wants = move |o: &Value| {
        let (ons, oname) = ns_name(o);
        ns.as_ref().is_none_or(|n| *n == ons)
            && only_name.as_ref().is_none_or(|n| *n == oname)
            && labels.matches(&o["metadata"]["labels"])
            && fields.matches(o)
    };
    let mut first_table = true;
    let mut encode = move |kind: &str, o: &Value| -> Value {
        let object = match render {
            Render::Json => o.clone(),
            Render::Metadata => partial_metadata(o),
            Render::Table => {
                let t = table::table(res, &[o], &include_object, None, first_table);
                first_table = false;
                t
            }
        };
        json!({"type": kind, "object": object})
    };

    // Resolve the starting point before answering, so a 410 is immediate.
    let (start_rv, initial, past, mut live) = if rv_param.is_empty()
        || rv_param == "0"
        || send_initial
    {
        let (past, live) = store
            .watch_from(store.current_rv())
            .map_err(|_| ApiError::internal("watch start"))?;
        let (items, rv) = store.list(res, None);
        (rv, Some(items), past, live)
    } else {
        let since: u64 = rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}")))?;
        match store.watch_from(since) {
            Ok((past, live)) => (since, None, past, live),
            Err(oldest) => {
                let ev =
                    json!({"type": "ERROR", "object": ApiError::gone(since, oldest).to_status()});
                let body = StreamBody::new(futures::stream::iter(send(&ev)));
                let mut r = Response::new(BodyExt::boxed(body));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, watch_media_type(proto));
                r.headers_mut().insert(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_static("chunked"),
                );
                return Ok(r);
            }
        }
    };

    tokio::spawn(async move {
        let mut last = start_rv;
        if let Some(items) = initial {
            for o in items.iter().filter(|o| wants(o)) {
                if let Some(c) = send(&encode("ADDED", o))
                    && tx.send(c).await.is_err()
                {
                    return;
                }
            }
            if send_initial && bookmarks {
                let bm = json!({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": start_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
                if let Some(c) = send(&bm)
                    && tx.send(c).await.is_err()
                {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        let mut pending: std::collections::VecDeque<_> = past.into();
        loop {
            let ev = if let Some(ev) = pending.pop_front() {
                ev
            } else {
                tokio::select! {
                    r = live.recv() => match r {
                        Ok(ev) => ev,
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                    },
                    _ = tick.tick() => {
                        if bookmarks {
                            let bm = json!({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": last.max(store.current_rv()).to_string()}}});
                            if let Some(c) = send(&bm) && tx.send(c).await.is_err() { return; }
                        }
                        continue;
                    }
                    _ = &mut deadline => return,
                    _ = cancel.cancelled() => return,
                    _ = tx.closed() => return,
                }
            };
            if ev.rv <= last || !std::ptr::eq(ev.res, res) {
                continue;
            }
            last = ev.rv;
            let now = wants(&ev.object);
            let before = ev.old.as_deref().is_some_and(&wants);
            let kind = match (ev.kind, before, now) {
                (EventType::Deleted, true, _) => "DELETED",
                (EventType::Deleted, false, _) => continue,
                (_, false, true) => "ADDED",
                (_, true, true) => ev.kind.as_str(),
                (_, true, false) => "DELETED",
                (_, false, false) => continue,
            };
            if let Some(c) = send(&encode(kind, &ev.object))
                && tx.send(c).await.is_err()
            {
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, watch_media_type(proto));
    r.headers_mut().insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    Ok(r)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Chunk>,
) -> impl futures::Stream<Item = Chunk> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn check_namespace(ctx: &Ctx, rr: &ResourceRequest, obj: &mut Value) -> Result<(), ApiError> {
    if !rr.res.namespaced {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        return Ok(());
    }
    let ns = ns_of(rr).to_string();
    match obj["metadata"]["namespace"].as_str() {
        Some(n) if !n.is_empty() && n != ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        _ => obj["metadata"]["namespace"] = json!(ns),
    }
    if ctx
        .store
        .get(resources::core("namespaces"), "", &ns)
        .is_none()
    {
        return Err(ApiError::not_found("namespaces", &ns));
    }
    Ok(())
}

fn check_kind(rr: &ResourceRequest, obj: &Value) -> Result<(), ApiError> {
    if let Some(kind) = obj["kind"].as_str()
        && kind != rr.res.kind
        && !(rr.sub.as_deref() == Some("scale") && kind == "Scale")
    {
        return Err(ApiError::bad_request(format!(
            "the kind {kind:?} in the body does not match the resource {:?} of the request",
            rr.res.qualified()
        )));
    }
    Ok(())
}

fn dry_run(q: &Query) -> bool {
    q.get("dryRun") == Some("All")
}

fn create(
    ctx: &Ctx,
    rr: &ResourceRequest,
    obj: Value,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if rr.name.is_some() {
        return Err(ApiError::method_not_allowed("create", &rr.res.qualified()));
    }
    create_object(ctx, rr, obj, q)
}

/// Creates `obj` (a POST, or a server-side apply of an object that does not exist yet).
fn create_object(
    ctx: &Ctx,
    rr: &ResourceRequest,
    mut obj: Value,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    check_kind(rr, &obj)?;
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    check_namespace(ctx, rr, &mut obj)?;
    if obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        match obj["metadata"]["generateName"].as_str() {
            Some(prefix) if !prefix.is_empty() => {
                obj["metadata"]["name"] = json!(format!("{prefix}{}", admit::random_suffix(5)))
            }
            _ => {
                return Err(ApiError::invalid(
                    rr.res.kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        }
    }
    admit::validate_name(rr.res, &obj)?;
    admit::admit_create(ctx, rr.res, &mut obj)?;
    if dry_run(q) {
        return Ok(json_response(201, &obj));
    }
    let stored = ctx.store.create(rr.res, obj)?;
    Ok(json_response(201, &stored))
}

fn update(
    ctx: &Ctx,
    rr: &ResourceRequest,
    mut obj: Value,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    check_kind(rr, &obj)?;
    let name = name_of(rr).to_string();
    let old = ctx
        .store
        .get(rr.res, ns_of(rr), &name)
        .ok_or_else(|| ApiError::not_found(&rr.res.qualified(), &name))?;
    if rr.sub.as_deref() == Some("scale") {
        let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(0);
        let stored = ctx.store.mutate(rr.res, ns_of(rr), &name, |o| {
            o["spec"]["replicas"] = json!(replicas);
            Ok(())
        })?;
        return Ok(json_response(200, &scale_of(&stored)));
    }
    match obj["metadata"]["name"].as_str() {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => obj["metadata"]["name"] = json!(name),
    }
    check_namespace(ctx, rr, &mut obj)?;
    let merged = admit::admit_update(ctx, rr.res, rr.sub.as_deref(), &old, obj)?;
    if dry_run(q) {
        return Ok(json_response(200, &merged));
    }
    let stored = ctx.store.update(rr.res, merged, true)?;
    Ok(json_response(200, &stored))
}

fn patch_object(
    ctx: &Ctx,
    rr: &ResourceRequest,
    kind: patch::PatchKind,
    body: &[u8],
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let name = name_of(rr).to_string();
    let apply = kind == patch::PatchKind::Apply;
    let manager = q.get("fieldManager").unwrap_or_default().to_string();
    if apply && manager.is_empty() {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let managed = |obj: &mut Value| {
        if apply {
            obj["metadata"]["managedFields"] = json!([{
                "manager": manager, "operation": "Apply", "apiVersion": rr.res.api_version(),
                "time": crate::store::now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": {},
            }]);
        }
    };
    for _ in 0..5 {
        let Some(old) = ctx.store.get(rr.res, ns_of(rr), &name) else {
            if apply && rr.sub.is_none() {
                // Server-side apply creates what does not exist.
                let mut obj = patch::apply_config(body)?;
                if obj["metadata"]["name"].as_str() != Some(name.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        obj["metadata"]["name"].as_str().unwrap_or_default()
                    )));
                }
                managed(&mut obj);
                return create_object(ctx, rr, obj, q);
            }
            return Err(ApiError::not_found(&rr.res.qualified(), &name));
        };
        if rr.sub.as_deref() == Some("scale") {
            let patched = patch::apply(kind, &scale_of(&old), body)?;
            let replicas = patched["spec"]["replicas"].as_i64().unwrap_or(0);
            let stored = ctx.store.mutate(rr.res, ns_of(rr), &name, |o| {
                o["spec"]["replicas"] = json!(replicas);
                Ok(())
            })?;
            return Ok(json_response(200, &scale_of(&stored)));
        }
        let mut patched = patch::apply(kind, &old, body)?;
        managed(&mut patched);
        patched["metadata"]["name"] = json!(name);
        if rr.res.namespaced {
            patched["metadata"]["namespace"] = json!(ns_of(rr));
        }
        let merged = admit::admit_update(ctx, rr.res, rr.sub.as_deref(), &old, patched)?;
        if dry_run(q) {
            return Ok(json_response(200, &merged));
        }
        match ctx.store.update(rr.res, merged, true) {
            Ok(stored) => {
                return Ok(json_response(200, &stored));
            }
            Err(e) if e.reason == "Conflict" && old["metadata"]["resourceVersion"].is_string() => {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(&rr.res.qualified(), &name))
}

fn delete(
    ctx: &Ctx,
    rr: &ResourceRequest,
    opts: &Value,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let name = name_of(rr).to_string();
    let policy = opts["propagationPolicy"]
        .as_str()
        .or(q.get("propagationPolicy"))
        .unwrap_or("Background")
        .to_string();
    if rr.res.plural == "namespaces" && matches!(name.as_str(), "default" | "kube-system") {
        return Err(ApiError::forbidden("delete", "namespaces", None, None));
    }
    if dry_run(q) {
        let obj = ctx
            .store
            .get(rr.res, ns_of(rr), &name)
            .ok_or_else(|| ApiError::not_found(&rr.res.qualified(), &name))?;
        return Ok(json_response(200, &obj));
    }
    if let Some(pre) = opts["preconditions"]["uid"].as_str() {
        let obj = ctx
            .store
            .get(rr.res, ns_of(rr), &name)
            .ok_or_else(|| ApiError::not_found(&rr.res.qualified(), &name))?;
        if obj["metadata"]["uid"].as_str() != Some(pre) {
            return Err(ApiError::conflict(&rr.res.qualified(), &name));
        }
    }
    if rr.res.kind == "Pod" {
        let grace = opts["gracePeriodSeconds"]
            .as_i64()
            .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
        if let Some(pod) = crate::controllers::terminate_pod(&ctx.store, ns_of(rr), &name, grace)? {
            return Ok(json_response(200, &pod));
        }
    }
    let gone = ctx.store.delete(rr.res, ns_of(rr), &name)?;
    let uid = gone["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if policy == "Orphan" {
        crate::controllers::orphan_dependents(&ctx.store, &uid);
    }
    if rr.res.plural == "namespaces" {
        crate::controllers::delete_namespace_contents(&ctx.store, &name);
    }
    // Pods and Services answer with the deleted object (the Service registry's own delete
    // does, and clients' typed APIs expect a Service back); the rest with a Status.
    if matches!(rr.res.kind, "Pod" | "Service") {
        return Ok(json_response(200, &gone));
    }
    Ok(json_response(
        200,
        &status::success(&name, rr.res.plural, rr.res.group, &uid),
    ))
}

fn delete_collection(
    ctx: &Ctx,
    rr: &ResourceRequest,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(q)?;
    let (items, _) = ctx.store.list(rr.res, rr.ns.as_deref());
    for o in selected(&items, &labels, &fields) {
        let (ns, name) = ns_name(o);
        let _ = ctx.store.delete(rr.res, &ns, &name);
    }
    Ok(json_response(
        200,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
    ))
}

fn scale_of(obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let m = &obj["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                      "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(path: &str) -> ResourceRequest {
        match route(path) {
            Ok(Route::Resource(rr)) => rr,
            _ => panic!("{path} should route to a resource"),
        }
    }

    #[test]
    fn routes_kubernetes_paths() {
        let r = rr("/api/v1/namespaces/default/pods/web-1/portforward");
        assert_eq!(r.res.plural, "pods");
        assert_eq!(r.ns.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web-1"));
        assert_eq!(r.sub.as_deref(), Some("portforward"));
        let r = rr("/api/v1/namespaces/kube-system");
        assert_eq!(r.res.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        let r = rr("/api/v1/namespaces");
        assert!(r.name.is_none());
        let r = rr("/apis/apps/v1/namespaces/default/deployments/web/scale");
        assert_eq!(r.sub.as_deref(), Some("scale"));
        let r = rr("/api/v1/pods");
        assert!(r.ns.is_none() && r.name.is_none());
        let r = rr("/api/v1/watch/namespaces/default/pods");
        assert_eq!(r.ns.as_deref(), Some("default"));
        assert!(route("/api/v1/limitranges").is_err());
        assert!(route("/nope").is_err());
        assert!(matches!(
            route("/apis/apps/v1"),
            Ok(Route::GroupVersion(..))
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("app%3Dweb%2Ctier"), "app=web,tier");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn discovery_lists_subresources() {
        let l = resource_list("", "v1").expect("core");
        let names: Vec<&str> = l["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"pods/portforward"));
        assert!(names.contains(&"services/status"));
        let apps = resource_list("apps", "v1").expect("apps");
        assert!(apps.to_string().contains("deployments/scale"));
        assert!(resource_list("nope", "v1").is_none());
    }
}
