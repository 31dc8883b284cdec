//! Kubernetes' protobuf wire format for the lab's kinds: the envelope (`k8s\0` then a
//! `runtime.Unknown` naming apiVersion and kind around the raw message), decoding request bodies
//! into the JSON the store keeps and encoding JSON objects, lists, Status errors and watch events
//! for clients that ask for protobuf.
//!
//! Messages are the generated k8s-pb types; each goes to and from JSON through its k8s-openapi
//! twin (`generated.rs`, written by `scripts/gen-protobuf-conversions.py`), so the JSON form is
//! k8s-openapi's serialization, the same one the lab's admission decodes with.

pub mod conv;
mod generated;

use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Value, json};

use conv::Conv;

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a protobuf watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// The four bytes every protobuf-encoded object starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be read or an object could not be written as protobuf.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("the protobuf body does not start with the Kubernetes prefix \"k8s\\x00\"")]
    NoMagic,
    /// The runtime.Unknown envelope is malformed.
    #[error("decoding the runtime.Unknown envelope")]
    Envelope(#[source] prost::DecodeError),
    /// The envelope names a kind the lab has no protobuf type for.
    #[error("the lab has no protobuf type for {api_version} {kind}")]
    UnknownKind {
        /// apiVersion from the envelope or object.
        api_version: String,
        /// kind from the envelope or object.
        kind: String,
    },
    /// The message does not decode as its kind.
    #[error("decoding {kind} from protobuf")]
    Decode {
        /// The kind.
        kind: String,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
    /// The JSON object does not fit its kind's type.
    #[error("the stored {kind} does not fit its Kubernetes type")]
    Json {
        /// The kind.
        kind: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Whether a Content-Type or Accept entry names protobuf.
pub fn is_protobuf(media: &str) -> bool {
    media
        .split(';')
        .next()
        .is_some_and(|m| m.trim() == MEDIA_TYPE)
}

/// Wraps a message in the envelope.
pub fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Opens the envelope: apiVersion, kind and the raw message.
pub fn open(body: &[u8]) -> Result<(String, String, Vec<u8>), ProtobufError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let u = Unknown::decode(rest).map_err(ProtobufError::Envelope)?;
    let tm = u.type_meta.unwrap_or_default();
    Ok((
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
        u.raw.unwrap_or_default(),
    ))
}

fn decode_as<P, A>(kind: &str, raw: &[u8]) -> Result<Value, ProtobufError>
where
    P: Message + Default + Conv<A>,
    A: serde::Serialize,
{
    let msg = P::decode(raw).map_err(|source| ProtobufError::Decode {
        kind: kind.to_string(),
        source,
    })?;
    let api: A = msg.conv();
    serde_json::to_value(api).map_err(|source| ProtobufError::Json {
        kind: kind.to_string(),
        source,
    })
}

fn encode_as<P, A>(kind: &str, obj: &Value) -> Result<Vec<u8>, ProtobufError>
where
    P: Message,
    A: serde::de::DeserializeOwned + Conv<P>,
{
    let api: A = serde_json::from_value(obj.clone()).map_err(|source| ProtobufError::Json {
        kind: kind.to_string(),
        source,
    })?;
    Ok(api.conv().encode_to_vec())
}

fn list_meta(obj: &Value) -> Result<Option<pb_meta::ListMeta>, ProtobufError> {
    let meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta =
        serde_json::from_value(obj["metadata"].clone()).map_err(|source| ProtobufError::Json {
            kind: "ListMeta".into(),
            source,
        })?;
    Ok(Some(meta.conv()))
}

macro_rules! kinds {
    ($(($api_version:literal, $kind:literal, $pb:ty, $api:ty, $pb_list:ty)),* $(,)?) => {
        /// Decodes one message of `kind` into its JSON form (lists included).
        pub fn decode_kind(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, ProtobufError> {
            match (api_version, kind) {
                $(
                    ($api_version, $kind) => decode_as::<$pb, $api>(kind, raw),
                    ($api_version, k) if k == concat!($kind, "List") => {
                        let list = <$pb_list>::decode(raw).map_err(|source| ProtobufError::Decode {
                            kind: kind.to_string(),
                            source,
                        })?;
                        let meta: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta> =
                            list.metadata.conv();
                        let items = list
                            .items
                            .into_iter()
                            .map(|i| {
                                let a: $api = i.conv();
                                serde_json::to_value(a).map_err(|source| ProtobufError::Json {
                                    kind: $kind.to_string(),
                                    source,
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(json!({"apiVersion": api_version, "kind": kind,
                            "metadata": serde_json::to_value(meta.unwrap_or_default()).unwrap_or_default(),
                            "items": items}))
                    }
                )*
                _ => Err(ProtobufError::UnknownKind {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                }),
            }
        }

        /// Encodes a JSON object (or list) of a kind the lab knows as its protobuf message.
        pub fn encode_kind(api_version: &str, kind: &str, obj: &Value) -> Result<Vec<u8>, ProtobufError> {
            match (api_version, kind) {
                $(
                    ($api_version, $kind) => encode_as::<$pb, $api>(kind, obj),
                    ($api_version, k) if k == concat!($kind, "List") => {
                        let items = obj["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|i| {
                                let a: $api = serde_json::from_value(i.clone()).map_err(|source| {
                                    ProtobufError::Json { kind: $kind.to_string(), source }
                                })?;
                                Ok(a.conv())
                            })
                            .collect::<Result<Vec<$pb>, ProtobufError>>()?;
                        let mut list = <$pb_list>::default();
                        list.metadata = list_meta(obj)?;
                        list.items = items;
                        Ok(list.encode_to_vec())
                    }
                )*
                _ => Err(ProtobufError::UnknownKind {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                }),
            }
        }
    };
}

use k8s_openapi::api::{
    apps::v1 as api_apps, autoscaling::v1 as api_autoscaling, core::v1 as api_core,
    discovery::v1 as api_discovery, networking::v1 as api_networking,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as api_meta;
use k8s_pb::api::{
    apps::v1 as pb_apps, autoscaling::v1 as pb_autoscaling, core::v1 as pb_core,
    discovery::v1 as pb_discovery, networking::v1 as pb_networking,
};

kinds!(
    (
        "v1",
        "Namespace",
        pb_core::Namespace,
        api_core::Namespace,
        pb_core::NamespaceList
    ),
    (
        "v1",
        "Node",
        pb_core::Node,
        api_core::Node,
        pb_core::NodeList
    ),
    ("v1", "Pod", pb_core::Pod, api_core::Pod, pb_core::PodList),
    (
        "v1",
        "Service",
        pb_core::Service,
        api_core::Service,
        pb_core::ServiceList
    ),
    (
        "v1",
        "Endpoints",
        pb_core::Endpoints,
        api_core::Endpoints,
        pb_core::EndpointsList
    ),
    (
        "v1",
        "Event",
        pb_core::Event,
        api_core::Event,
        pb_core::EventList
    ),
    (
        "v1",
        "ConfigMap",
        pb_core::ConfigMap,
        api_core::ConfigMap,
        pb_core::ConfigMapList
    ),
    (
        "v1",
        "Secret",
        pb_core::Secret,
        api_core::Secret,
        pb_core::SecretList
    ),
    (
        "apps/v1",
        "Deployment",
        pb_apps::Deployment,
        api_apps::Deployment,
        pb_apps::DeploymentList
    ),
    (
        "apps/v1",
        "ReplicaSet",
        pb_apps::ReplicaSet,
        api_apps::ReplicaSet,
        pb_apps::ReplicaSetList
    ),
    (
        "apps/v1",
        "StatefulSet",
        pb_apps::StatefulSet,
        api_apps::StatefulSet,
        pb_apps::StatefulSetList
    ),
    (
        "apps/v1",
        "ControllerRevision",
        pb_apps::ControllerRevision,
        api_apps::ControllerRevision,
        pb_apps::ControllerRevisionList
    ),
    (
        "discovery.k8s.io/v1",
        "EndpointSlice",
        pb_discovery::EndpointSlice,
        api_discovery::EndpointSlice,
        pb_discovery::EndpointSliceList
    ),
    (
        "networking.k8s.io/v1",
        "ServiceCIDR",
        pb_networking::ServiceCIDR,
        api_networking::ServiceCIDR,
        pb_networking::ServiceCIDRList
    ),
);

/// Decodes a protobuf request body (envelope included) into the JSON form of its object:
/// the kinds above, `autoscaling/v1` Scale, and `meta/v1` Status and DeleteOptions.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let (api_version, kind, raw) = open(body)?;
    let mut v = match kind.as_str() {
        "Scale" => decode_as::<pb_autoscaling::Scale, api_autoscaling::Scale>(&kind, &raw)?,
        "Status" => decode_as::<pb_meta::Status, api_meta::Status>(&kind, &raw)?,
        "DeleteOptions" => {
            decode_as::<pb_meta::DeleteOptions, api_meta::DeleteOptions>(&kind, &raw)?
        }
        _ => decode_kind(&api_version, &kind, &raw)?,
    };
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(v)
}

/// Encodes a JSON object, list, Scale or Status as a protobuf body (envelope included), by the
/// object's own apiVersion and kind.
pub fn encode(obj: &Value) -> Result<Vec<u8>, ProtobufError> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let raw = match kind {
        "Status" => encode_as::<pb_meta::Status, api_meta::Status>(kind, obj)?,
        "Scale" => encode_as::<pb_autoscaling::Scale, api_autoscaling::Scale>(kind, obj)?,
        _ => encode_kind(api_version, kind, obj)?,
    };
    Ok(envelope(api_version, kind, raw))
}

/// One frame of a protobuf watch stream: a big-endian length, then a bare `meta/v1` WatchEvent
/// (streams carry no envelope per event) whose object is the encoded object, envelope included,
/// as the apiserver's streaming encoder writes it.
pub fn watch_frame(event_type: &str, obj: &Value) -> Result<Vec<u8>, ProtobufError> {
    let object = encode(obj)?;
    let ev = pb_meta::WatchEvent {
        r#type: Some(event_type.to_string()),
        object: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension { raw: Some(object) }),
    };
    let msg = ev.encode_to_vec();
    let mut out = (msg.len() as u32).to_be_bytes().to_vec();
    out.extend(msg);
    Ok(out)
}

#[cfg(test)]
mod tests;
