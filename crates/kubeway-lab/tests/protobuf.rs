//! The lab's protobuf wire format over HTTP, as client-go's typed clients use it: a protobuf
//! create answered in protobuf, gets and lists in protobuf, errors as protobuf Status objects,
//! watches as length-prefixed frames, and JSON or 406 where an answer has no protobuf form.

mod common;

use bytes::Bytes;
use common::Fixture;
use http_body_util::BodyExt;
use k8s_pb::api::{apps::v1 as apps, core::v1 as core};
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use kubeway_lab::LabSpec;
use kubeway_lab::protobuf::{MEDIA_TYPE, decode, envelope};
use prost::Message;

const BOTH: &str = "application/vnd.kubernetes.protobuf,application/json";

async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    accept: &str,
    body: Option<Vec<u8>>,
) -> (u16, String, Bytes) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, accept);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, MEDIA_TYPE);
    }
    let req = req
        .body(kube::client::Body::from(body.unwrap_or_default()))
        .expect("request");
    let resp = client.send(req).await.expect("sent");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, ct, bytes)
}

fn deployment(name: &str) -> Vec<u8> {
    let labels: std::collections::BTreeMap<String, String> =
        [("app".to_string(), name.to_string())].into();
    let d = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(1),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("echo-server".into()),
                        image: Some("kicbase/echo-server:1.0".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    envelope("apps/v1", "Deployment", d.encode_to_vec())
}

#[tokio::test]
async fn typed_clients_speak_protobuf_both_ways() {
    let f = Fixture::start(LabSpec::default()).await;
    let client = f.client().await;
    let base = "/apis/apps/v1/namespaces/default/deployments";

    let (status, ct, body) = call(&client, "POST", base, BOTH, Some(deployment("pb"))).await;
    assert_eq!((status, ct.as_str()), (201, MEDIA_TYPE), "{body:?}");
    let created = decode(&body).expect("a protobuf Deployment");
    assert_eq!(created["metadata"]["name"], "pb");
    assert!(created["metadata"]["uid"].is_string());
    assert_eq!(
        created["spec"]["strategy"]["type"], "RollingUpdate",
        "defaulted"
    );

    let (status, ct, body) = call(&client, "GET", &format!("{base}/pb"), MEDIA_TYPE, None).await;
    assert_eq!((status, ct.as_str()), (200, MEDIA_TYPE));
    assert_eq!(decode(&body).expect("decodes")["spec"]["replicas"], 1);

    let (status, ct, body) = call(&client, "GET", base, BOTH, None).await;
    assert_eq!((status, ct.as_str()), (200, MEDIA_TYPE));
    let list = decode(&body).expect("a DeploymentList");
    assert_eq!(list["kind"], "DeploymentList");
    assert_eq!(list["items"][0]["metadata"]["name"], "pb");

    // Errors are protobuf Status objects.
    let (status, ct, body) = call(&client, "GET", &format!("{base}/nope"), BOTH, None).await;
    assert_eq!((status, ct.as_str()), (404, MEDIA_TYPE));
    let st = decode(&body).expect("a Status");
    assert_eq!(st["reason"], "NotFound");
    let (status, _, body) = call(&client, "POST", base, BOTH, Some(deployment("pb"))).await;
    assert_eq!(status, 409);
    assert_eq!(decode(&body).expect("a Status")["reason"], "AlreadyExists");

    // A body that is not protobuf is a 400 naming why.
    let (status, _, body) = call(
        &client,
        "POST",
        base,
        "application/json",
        Some(b"{}".to_vec()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("Kubernetes prefix"),
        "{body:?}"
    );

    // Discovery has no protobuf form: JSON when the client takes it, 406 when it does not.
    let (status, ct, _) = call(&client, "GET", "/apis/apps/v1", BOTH, None).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let (status, _, _) = call(&client, "GET", "/apis/apps/v1", MEDIA_TYPE, None).await;
    assert_eq!(status, 406);
}

#[tokio::test]
async fn protobuf_watches_are_length_prefixed_frames() {
    let f = Fixture::start(LabSpec::default()).await;
    let client = f.client().await;
    let (status, _, _) = call(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        BOTH,
        Some(deployment("watched")),
    )
    .await;
    assert_eq!(status, 201);
    let req = http::Request::get(
        "/apis/apps/v1/namespaces/default/deployments?watch=true&timeoutSeconds=1",
    )
    .header(
        http::header::ACCEPT,
        "application/vnd.kubernetes.protobuf;stream=watch",
    )
    .body(kube::client::Body::empty())
    .expect("request");
    let resp = client.send(req).await.expect("watch");
    assert_eq!(
        resp.headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/vnd.kubernetes.protobuf;stream=watch")
    );
    // The server ends the watch after timeoutSeconds; every frame is one event.
    let bytes = resp.into_body().collect().await.expect("stream").to_bytes();
    let mut rest = &bytes[..];
    let mut names = Vec::new();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let ev = meta::WatchEvent::decode(&rest[4..4 + len]).expect("a WatchEvent");
        assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
        let obj = decode(&ev.object.and_then(|o| o.raw).expect("object")).expect("decodes");
        names.push(
            obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty(), "a partial frame");
    assert_eq!(names, ["watched"]);
}
