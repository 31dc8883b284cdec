//! The conversion trait between the protobuf types (k8s-pb) and the JSON types (k8s-openapi),
//! its impls for the shapes fields take on either side, the types whose wire forms differ
//! (times, quantities, int-or-string, raw JSON), and the `convert!` macro the generated code uses.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::api::resource as api_resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as api_meta;
use k8s_openapi::apimachinery::pkg::runtime as api_runtime;
use k8s_openapi::apimachinery::pkg::util::intstr as api_intstr;
use k8s_pb::apimachinery::pkg::api::resource as pb_resource;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use k8s_pb::apimachinery::pkg::runtime as pb_runtime;
use k8s_pb::apimachinery::pkg::util::intstr as pb_intstr;

/// Converts a value of one side into the other side's type.
pub trait Conv<T>: Sized {
    /// The converted value.
    fn conv(self) -> T;

    /// The converted value where the target is optional: None for a value that means "unset"
    /// on the other side (a zero time).
    fn conv_some(self) -> Option<T> {
        Some(self.conv())
    }
}

macro_rules! same {
    ($($t:ty),*) => {$(
        impl Conv<$t> for $t {
            fn conv(self) -> $t {
                self
            }
        }
        /// A field k8s-openapi requires and protobuf makes optional.
        impl Conv<$t> for Option<$t> {
            fn conv(self) -> $t {
                self.unwrap_or_default()
            }
        }
        impl Conv<Option<$t>> for $t {
            fn conv(self) -> Option<$t> {
                Some(self)
            }
        }
    )*};
}
same!(String, bool, i32, i64, f64);

impl<A: Conv<B>, B> Conv<Option<B>> for Option<A> {
    fn conv(self) -> Option<B> {
        self.and_then(Conv::conv_some)
    }
}

impl<A: Conv<B>, B> Conv<Vec<B>> for Vec<A> {
    fn conv(self) -> Vec<B> {
        self.into_iter().map(Conv::conv).collect()
    }
}

/// A repeated field is empty when unset; k8s-openapi says None.
impl<A: Conv<B>, B> Conv<Option<Vec<B>>> for Vec<A> {
    fn conv(self) -> Option<Vec<B>> {
        (!self.is_empty()).then(|| self.conv())
    }
}

impl<A: Conv<B>, B> Conv<Vec<B>> for Option<Vec<A>> {
    fn conv(self) -> Vec<B> {
        self.map(Conv::conv).unwrap_or_default()
    }
}

impl<A: Conv<B>, B> Conv<BTreeMap<String, B>> for BTreeMap<String, A> {
    fn conv(self) -> BTreeMap<String, B> {
        self.into_iter().map(|(k, v)| (k, v.conv())).collect()
    }
}

impl<A: Conv<B>, B> Conv<Option<BTreeMap<String, B>>> for BTreeMap<String, A> {
    fn conv(self) -> Option<BTreeMap<String, B>> {
        (!self.is_empty()).then(|| self.conv())
    }
}

impl<A: Conv<B>, B> Conv<BTreeMap<String, B>> for Option<BTreeMap<String, A>> {
    fn conv(self) -> BTreeMap<String, B> {
        self.map(Conv::conv).unwrap_or_default()
    }
}

impl Conv<ByteString> for Vec<u8> {
    fn conv(self) -> ByteString {
        ByteString(self)
    }
}

impl Conv<Vec<u8>> for ByteString {
    fn conv(self) -> Vec<u8> {
        self.0
    }
}

/// Seconds and nanoseconds since the epoch, as protobuf's Timestamp carries a time.
fn timestamp(seconds: Option<i64>, nanos: Option<i32>) -> Option<jiff::Timestamp> {
    let (s, n) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
    // Go encodes a zero metav1.Time as an empty message; JSON shows it as null.
    if s == 0 && n == 0 {
        return None;
    }
    jiff::Timestamp::new(s, n).ok()
}

macro_rules! time {
    ($pb:ty, $api:ident) => {
        impl Conv<api_meta::$api> for $pb {
            fn conv(self) -> api_meta::$api {
                api_meta::$api(
                    timestamp(self.seconds, self.nanos).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                )
            }
            fn conv_some(self) -> Option<api_meta::$api> {
                timestamp(self.seconds, self.nanos).map(api_meta::$api)
            }
        }
        impl Conv<api_meta::$api> for Option<$pb> {
            fn conv(self) -> api_meta::$api {
                self.unwrap_or_default().conv()
            }
        }
        impl Conv<$pb> for api_meta::$api {
            fn conv(self) -> $pb {
                <$pb>::from_timestamp(self.0)
            }
        }
        impl Conv<Option<$pb>> for api_meta::$api {
            fn conv(self) -> Option<$pb> {
                Some(self.conv())
            }
        }
    };
}

trait FromTimestamp {
    fn from_timestamp(t: jiff::Timestamp) -> Self;
}

impl FromTimestamp for pb_meta::Time {
    fn from_timestamp(t: jiff::Timestamp) -> Self {
        // metav1.Time has second precision on the wire.
        Self {
            seconds: Some(t.as_second()),
            nanos: Some(0),
        }
    }
}

impl FromTimestamp for pb_meta::MicroTime {
    fn from_timestamp(t: jiff::Timestamp) -> Self {
        Self {
            seconds: Some(t.as_second()),
            nanos: Some(t.subsec_microsecond() * 1000),
        }
    }
}

time!(pb_meta::Time, Time);
time!(pb_meta::MicroTime, MicroTime);

/// JSON carried as bytes: a managedFields entry's fieldsV1, a RawExtension. A value that is not
/// JSON (an embedded protobuf object) becomes null rather than a guess.
fn raw_json(raw: Option<Vec<u8>>) -> serde_json::Value {
    raw.and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn json_bytes(v: &serde_json::Value) -> Option<Vec<u8>> {
    (!v.is_null()).then(|| serde_json::to_vec(v).unwrap_or_default())
}

impl Conv<api_meta::FieldsV1> for pb_meta::FieldsV1 {
    fn conv(self) -> api_meta::FieldsV1 {
        api_meta::FieldsV1(raw_json(self.raw))
    }
}

impl Conv<pb_meta::FieldsV1> for api_meta::FieldsV1 {
    fn conv(self) -> pb_meta::FieldsV1 {
        pb_meta::FieldsV1 {
            raw: json_bytes(&self.0),
        }
    }
}

impl Conv<api_runtime::RawExtension> for pb_runtime::RawExtension {
    fn conv(self) -> api_runtime::RawExtension {
        api_runtime::RawExtension(raw_json(self.raw))
    }
}

impl Conv<api_runtime::RawExtension> for Option<pb_runtime::RawExtension> {
    fn conv(self) -> api_runtime::RawExtension {
        self.unwrap_or_default().conv()
    }
}

impl Conv<pb_runtime::RawExtension> for api_runtime::RawExtension {
    fn conv(self) -> pb_runtime::RawExtension {
        pb_runtime::RawExtension {
            raw: json_bytes(&self.0),
        }
    }
}

impl Conv<Option<pb_runtime::RawExtension>> for api_runtime::RawExtension {
    fn conv(self) -> Option<pb_runtime::RawExtension> {
        Some(self.conv())
    }
}

impl Conv<api_resource::Quantity> for pb_resource::Quantity {
    fn conv(self) -> api_resource::Quantity {
        api_resource::Quantity(self.string.unwrap_or_default())
    }
}

impl Conv<pb_resource::Quantity> for api_resource::Quantity {
    fn conv(self) -> pb_resource::Quantity {
        pb_resource::Quantity {
            string: Some(self.0),
        }
    }
}

impl Conv<api_intstr::IntOrString> for pb_intstr::IntOrString {
    fn conv(self) -> api_intstr::IntOrString {
        // type 0 is Int, 1 is String (intstr.Type).
        match self.r#type {
            Some(1) => api_intstr::IntOrString::String(self.str_val.unwrap_or_default()),
            _ => api_intstr::IntOrString::Int(self.int_val.unwrap_or_default()),
        }
    }
}

impl Conv<api_intstr::IntOrString> for Option<pb_intstr::IntOrString> {
    fn conv(self) -> api_intstr::IntOrString {
        self.unwrap_or_default().conv()
    }
}

impl Conv<pb_intstr::IntOrString> for api_intstr::IntOrString {
    fn conv(self) -> pb_intstr::IntOrString {
        match self {
            api_intstr::IntOrString::Int(i) => pb_intstr::IntOrString {
                r#type: Some(0),
                int_val: Some(i),
                str_val: Some(String::new()),
            },
            api_intstr::IntOrString::String(s) => pb_intstr::IntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: Some(s),
            },
        }
    }
}

impl Conv<Option<pb_intstr::IntOrString>> for api_intstr::IntOrString {
    fn conv(self) -> Option<pb_intstr::IntOrString> {
        Some(self.conv())
    }
}

/// A field converted as it is.
pub fn keep<A: Conv<B>, B>(a: A) -> B {
    a.conv()
}

/// A scalar that Go encodes in protobuf even at its zero value and the apiserver's JSON omits
/// (a non-pointer field with `omitempty`): zero means unset.
pub fn unset_if_zero<T: Default + PartialEq>(v: Option<T>) -> Option<T> {
    v.filter(|x| *x != T::default())
}

/// Conversions both ways between a protobuf struct and its k8s-openapi twin, field by field:
/// `[(protobuf field, k8s-openapi field, keep | unset_if_zero)]`, then the fields only
/// k8s-openapi has (left at their defaults), then the Go structs embedded inline (a message of
/// their own in protobuf, flat in JSON) with their fields. Fields only protobuf has stay unset.
macro_rules! convert {
    ($pb:path, $api:path, [$(($p:ident, $a:ident, $how:ident)),* $(,)?], [$($d:ident),* $(,)?],
        [$(($ip:ident, $ipty:ty, [$(($ipf:ident, $iaf:ident, $ihow:ident)),* $(,)?])),* $(,)?]) => {
        impl $crate::protobuf::conv::Conv<$api> for $pb {
            fn conv(self) -> $api {
                $(let $ip = self.$ip.unwrap_or_default();)*
                $api {
                    $($a: $crate::protobuf::conv::$how(self.$p),)*
                    $($($iaf: $crate::protobuf::conv::$ihow($ip.$ipf),)*)*
                    $($d: Default::default(),)*
                }
            }
        }
        impl $crate::protobuf::conv::Conv<$api> for Option<$pb> {
            fn conv(self) -> $api {
                $crate::protobuf::conv::Conv::conv(self.unwrap_or_default())
            }
        }
        impl $crate::protobuf::conv::Conv<$pb> for $api {
            #[allow(clippy::needless_update)]
            fn conv(self) -> $pb {
                $pb {
                    $($p: $crate::protobuf::conv::Conv::conv(self.$a),)*
                    $($ip: Some({
                        let mut inner = <$ipty>::default();
                        $(inner.$ipf = $crate::protobuf::conv::Conv::conv(self.$iaf);)*
                        inner
                    }),)*
                    ..Default::default()
                }
            }
        }
        impl $crate::protobuf::conv::Conv<Option<$pb>> for $api {
            fn conv(self) -> Option<$pb> {
                Some($crate::protobuf::conv::Conv::conv(self))
            }
        }
    };
}
pub(crate) use convert;
