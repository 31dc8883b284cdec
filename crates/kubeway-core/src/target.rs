//! Parsing of kubectl-style targets (`svc/web`, `pod/web-0:8080`) and forward port specs
//! (`8080:80`, `:http`).
//!
//! Everything here is pure string handling. Names are checked the way the API server checks them,
//! so a typo is reported before any request is made, with a message that says what to write
//! instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The kind of object a target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A Pod (`pod/NAME`, `po/NAME`, `pods/NAME`).
    Pod,
    /// A Service (`svc/NAME`, `service/NAME`, `services/NAME`).
    Service,
    /// A Deployment (`deploy/NAME`, `deployment/NAME`, `deployments/NAME`).
    Deployment,
    /// A StatefulSet (`sts/NAME`, `statefulset/NAME`, `statefulsets/NAME`).
    StatefulSet,
    /// A ReplicaSet (`rs/NAME`, `replicaset/NAME`, `replicasets/NAME`).
    ReplicaSet,
}

impl TargetKind {
    /// Every kind, in the order they are listed in help and error messages.
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Pod,
        TargetKind::Service,
        TargetKind::Deployment,
        TargetKind::StatefulSet,
        TargetKind::ReplicaSet,
    ];

    /// The default kind of a bare NAME for `kubeway open` and `kubeway explain` (as `kubectl
    /// expose`/`get svc`).
    pub const DEFAULT_FOR_OPEN: TargetKind = TargetKind::Service;

    /// The default kind of a bare NAME for `kubeway forward` (as `kubectl port-forward`).
    pub const DEFAULT_FOR_FORWARD: TargetKind = TargetKind::Pod;

    /// The singular lower-case resource name, as kubectl prints it (`service`, `statefulset`).
    pub fn singular(self) -> &'static str {
        match self {
            TargetKind::Pod => "pod",
            TargetKind::Service => "service",
            TargetKind::Deployment => "deployment",
            TargetKind::StatefulSet => "statefulset",
            TargetKind::ReplicaSet => "replicaset",
        }
    }

    /// The kubectl short name (`svc`, `sts`, `po`).
    pub fn short(self) -> &'static str {
        match self {
            TargetKind::Pod => "po",
            TargetKind::Service => "svc",
            TargetKind::Deployment => "deploy",
            TargetKind::StatefulSet => "sts",
            TargetKind::ReplicaSet => "rs",
        }
    }

    /// The plural resource name used in API paths (`services`, `statefulsets`).
    pub fn plural(self) -> &'static str {
        match self {
            TargetKind::Pod => "pods",
            TargetKind::Service => "services",
            TargetKind::Deployment => "deployments",
            TargetKind::StatefulSet => "statefulsets",
            TargetKind::ReplicaSet => "replicasets",
        }
    }

    /// The API group of the kind: `""` for core/v1, `"apps"` for workloads.
    pub fn api_group(self) -> &'static str {
        match self {
            TargetKind::Pod | TargetKind::Service => "",
            TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::ReplicaSet => "apps",
        }
    }

    /// Which naming rule the API server applies to objects of this kind.
    pub fn name_rule(self) -> NameRule {
        match self {
            TargetKind::Service => NameRule::Dns1123Label,
            _ => NameRule::Dns1123Subdomain,
        }
    }

    /// Looks up a kind by any spelling kubectl accepts for it (case-insensitive).
    pub fn from_word(word: &str) -> Option<TargetKind> {
        let lower = word.to_ascii_lowercase();
        let kind = match lower.as_str() {
            "po" | "pod" | "pods" => TargetKind::Pod,
            "svc" | "service" | "services" => TargetKind::Service,
            "deploy" | "deployment" | "deployments" => TargetKind::Deployment,
            "sts" | "statefulset" | "statefulsets" => TargetKind::StatefulSet,
            "rs" | "replicaset" | "replicasets" => TargetKind::ReplicaSet,
            _ => return None,
        };
        Some(kind)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

/// The accepted kind spellings, for help and error messages.
pub const ACCEPTED_KINDS: &str = "pod (po, pods), service (svc, services), deployment (deploy, deployments), \
                                  statefulset (sts, statefulsets), replicaset (rs, replicasets)";

/// The Kubernetes naming rule an object name must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameRule {
    /// RFC 1123 label: at most 63 characters, `a-z`, `0-9` and `-`, starting and ending
    /// alphanumeric.
    ///
    /// Services historically required an RFC 1035 label (first character a letter); Kubernetes
    /// 1.34's `RelaxedServiceNameValidation` accepts RFC 1123 labels, so the client accepts those
    /// and leaves the stricter check to the server.
    Dns1123Label,
    /// RFC 1123 subdomain: at most 253 characters, one or more labels joined by `.`.
    Dns1123Subdomain,
}

impl NameRule {
    /// Checks `name` against this rule.
    pub fn check(self, name: &str) -> Result<(), NameError> {
        match self {
            NameRule::Dns1123Label => check_label(name, 63, false),
            NameRule::Dns1123Subdomain => check_label(name, 253, true),
        }
    }
}

/// Why an object name is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than the rule allows.
    #[error("it is {len} characters long, the limit is {max}")]
    TooLong {
        /// Length of the name.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// The name has upper-case letters; Kubernetes names are lower case.
    #[error("names are lower case: write {}", crate::quote::quote(.suggestion))]
    UpperCase {
        /// The lower-cased name.
        suggestion: String,
    },
    /// A character outside `a-z`, `0-9`, `-` (and `.` where allowed).
    #[error("{ch:?} at position {position} is not allowed: use only a-z, 0-9, '-'{dot}")]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its 1-based character position.
        position: usize,
        /// `" and '.'"` when dots are allowed, else empty.
        dot: &'static str,
    },
    /// A dot where the rule only allows one label (Service names).
    #[error("'.' is not allowed in this name (it must be a single DNS label)")]
    Dot,
    /// The name (or one of its dot-separated parts) starts or ends with something other than a
    /// letter or digit.
    #[error("{} must start and end with a letter or digit", crate::quote::quote(.part))]
    BadEdge {
        /// The offending label.
        part: String,
    },
    /// Two dots in a row, or a leading/trailing dot.
    #[error("it has an empty part between dots")]
    EmptyPart,
}

fn check_label(name: &str, max: usize, dots: bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let len = name.chars().count();
    if len > max {
        return Err(NameError::TooLong { len, max });
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        let lowered = name.to_ascii_lowercase();
        // Only suggest the lower-case form when it would itself be valid.
        if check_label(&lowered, max, dots).is_ok() {
            return Err(NameError::UpperCase {
                suggestion: lowered,
            });
        }
    }
    for (i, ch) in name.chars().enumerate() {
        let ok = ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || (dots && ch == '.');
        if !ok {
            if ch == '.' {
                return Err(NameError::Dot);
            }
            return Err(NameError::InvalidChar {
                ch,
                position: i.saturating_add(1),
                dot: if dots { " and '.'" } else { "" },
            });
        }
    }
    for part in name.split('.') {
        if part.is_empty() {
            return Err(NameError::EmptyPart);
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Err(NameError::BadEdge {
                part: part.to_string(),
            });
        }
    }
    Ok(())
}

/// A reference to a port: a number, or a name declared on the Service or container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRef {
    /// A port number, 1..=65535.
    Number(u16),
    /// A port name (IANA service name syntax, as Kubernetes requires for port names).
    Name(String),
}

impl PortRef {
    /// The number, if this is a numeric reference.
    pub fn number(&self) -> Option<u16> {
        match self {
            PortRef::Number(n) => Some(*n),
            PortRef::Name(_) => None,
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

/// Why a port reference is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    /// Nothing was given.
    #[error("the port is empty: write a number (80) or a port name (http)")]
    Empty,
    /// Port 0 cannot be dialled.
    #[error("port 0 is not a port that can be reached: write a number from 1 to 65535")]
    Zero,
    /// A number above 65535.
    #[error("port {} is out of range: write a number from 1 to 65535", crate::quote::cut(.text))]
    OutOfRange {
        /// The number as written.
        text: String,
    },
    /// Neither a number nor a valid port name.
    #[error(
        "{} is neither a port number nor a valid port name ({reason}); port names are at most 15 characters of \
         a-z, 0-9 and '-', with at least one letter, e.g. http or metrics", crate::quote::quote(.text))]
    InvalidName {
        /// The text as written.
        text: String,
        /// What is wrong with it as a name.
        reason: &'static str,
    },
}

impl FromStr for PortRef {
    type Err = PortError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(PortError::Empty);
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u32>() {
                Ok(0) => Err(PortError::Zero),
                Ok(n) => u16::try_from(n)
                    .map(PortRef::Number)
                    .map_err(|_| PortError::OutOfRange {
                        text: text.to_string(),
                    }),
                // Too many digits for u32: certainly out of range.
                Err(_) => Err(PortError::OutOfRange {
                    text: text.to_string(),
                }),
            };
        }
        check_port_name(text).map_err(|reason| PortError::InvalidName {
            text: text.to_string(),
            reason,
        })?;
        Ok(PortRef::Name(text.to_string()))
    }
}

/// Checks the IANA_SVC_NAME rule Kubernetes applies to port names.
fn check_port_name(text: &str) -> Result<(), &'static str> {
    if text.len() > 15 {
        return Err("longer than 15 characters");
    }
    if text.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("upper-case letters");
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("characters other than a-z, 0-9 and '-'");
    }
    if !text.chars().any(|c| c.is_ascii_lowercase()) {
        return Err("no letter");
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err("starts or ends with '-'");
    }
    if text.contains("--") {
        return Err("contains '--'");
    }
    Ok(())
}

/// A parsed target: what to reach, and optionally which of its ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The kind of object.
    pub kind: TargetKind,
    /// The object's name (validated for its kind).
    pub name: String,
    /// The port given with `:PORT`, if any (explain targets only).
    pub port: Option<PortRef>,
}

impl Target {
    /// Parses `KIND/NAME[:PORT]` or `NAME[:PORT]`; a bare NAME gets `default_kind`.
    ///
    /// Use [`TargetKind::DEFAULT_FOR_OPEN`] for `open`/`explain` and
    /// [`TargetKind::DEFAULT_FOR_FORWARD`] for `forward`, as kubectl does.
    pub fn parse(input: &str, default_kind: TargetKind) -> Result<Target, TargetError> {
        parse_target(input, default_kind, true)
    }

    /// Parses `KIND/NAME` or `NAME` and refuses a `:PORT` suffix (for `forward`, whose ports are
    /// separate arguments).
    pub fn parse_without_port(
        input: &str,
        default_kind: TargetKind,
    ) -> Result<Target, TargetError> {
        parse_target(input, default_kind, false)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)?;
        if let Some(port) = &self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Why a target could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    /// Nothing was given.
    #[error("the target is empty: write NAME, or KIND/NAME such as svc/web or pod/web-0")]
    Empty,
    /// The part before `/` is not a kind kubeway handles.
    #[error("unknown kind {} in {}: {advice}", crate::quote::quote(.kind), crate::quote::quote(.input))]
    UnknownKind {
        /// The whole input.
        input: String,
        /// The kind as written.
        kind: String,
        /// What to write instead, always ending with the list of accepted kinds.
        advice: String,
    },
    /// `KIND/` with nothing after the slash.
    #[error("{} has no name after the '/': write {kind}/NAME", crate::quote::quote(.input))]
    MissingName {
        /// The whole input.
        input: String,
        /// The kind that was given.
        kind: TargetKind,
    },
    /// `/NAME` with nothing before the slash.
    #[error("{} has no kind before the '/': write svc/NAME or pod/NAME, or just NAME", crate::quote::quote(.input))]
    MissingKind {
        /// The whole input.
        input: String,
    },
    /// More than one `/`.
    #[error(
        "{} has more than one '/': write KIND/NAME (e.g. svc/web); give the namespace with -n NAMESPACE, not \
         in the target", crate::quote::quote(.input))]
    TooManySlashes {
        /// The whole input.
        input: String,
    },
    /// The name breaks the Kubernetes naming rule of its kind.
    #[error("{kind} name {} is not valid: {reason}", crate::quote::quote(.name))]
    InvalidName {
        /// The kind the name was checked for.
        kind: TargetKind,
        /// The name as written.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A `:PORT` suffix where ports are separate arguments.
    #[error(
        "{} has a port suffix, but here ports are separate arguments: write {} {} (or LOCAL:{})", crate::quote::quote(.input), crate::quote::cut(.without), crate::quote::cut(.port), crate::quote::cut(.port))]
    PortNotAllowed {
        /// The whole input.
        input: String,
        /// The target without its port.
        without: String,
        /// The port that was given.
        port: String,
    },
    /// The `:PORT` suffix is not a valid port.
    #[error("the port in {} is not valid: {reason}", crate::quote::quote(.input))]
    InvalidPort {
        /// The whole input.
        input: String,
        /// What is wrong with the port.
        reason: PortError,
    },
}

/// Kinds kubectl knows that kubeway cannot reach through, with what to do instead.
fn unsupported_kind_advice(word: &str) -> Option<&'static str> {
    let advice = match word {
        "ds" | "daemonset" | "daemonsets" => {
            "DaemonSets are not supported as targets: name one of their pods (pod/NAME) or a Service in front of them"
        }
        "job" | "jobs" | "cronjob" | "cronjobs" | "cj" => {
            "Jobs are not supported as targets: name one of their pods (pod/NAME)"
        }
        "ing" | "ingress" | "ingresses" => {
            "Ingresses are not supported as targets: name the Service behind the rule (svc/NAME)"
        }
        "no" | "node" | "nodes" => {
            "nodes are not targets: `kubeway env` shows node addresses and whether this host can reach them"
        }
        "ep" | "endpoints" | "endpointslice" | "endpointslices" => {
            "endpoints are not targets: name their Service (svc/NAME)"
        }
        _ => return None,
    };
    Some(advice)
}

fn parse_target(
    input: &str,
    default_kind: TargetKind,
    allow_port: bool,
) -> Result<Target, TargetError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(TargetError::Empty);
    }
    // Names never contain ':', so the last ':' starts the port.
    let (object, port_text) = match trimmed.rsplit_once(':') {
        Some((object, port)) => (object, Some(port)),
        None => (trimmed, None),
    };
    if object.matches('/').count() > 1 {
        return Err(TargetError::TooManySlashes {
            input: trimmed.to_string(),
        });
    }
    let (kind, name) = match object.split_once('/') {
        None => (default_kind, object),
        Some(("", _)) => {
            return Err(TargetError::MissingKind {
                input: trimmed.to_string(),
            });
        }
        Some((word, name)) => {
            let kind =
                TargetKind::from_word(word).ok_or_else(|| unknown_kind(trimmed, word, name))?;
            if name.is_empty() {
                return Err(TargetError::MissingName {
                    input: trimmed.to_string(),
                    kind,
                });
            }
            (kind, name)
        }
    };
    kind.name_rule()
        .check(name)
        .map_err(|reason| TargetError::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })?;
    let port = match port_text {
        None => None,
        Some(text) => {
            if !allow_port {
                return Err(TargetError::PortNotAllowed {
                    input: trimmed.to_string(),
                    without: format!("{}/{}", kind, name),
                    port: text.to_string(),
                });
            }
            let port = text
                .parse::<PortRef>()
                .map_err(|reason| TargetError::InvalidPort {
                    input: trimmed.to_string(),
                    reason,
                })?;
            Some(port)
        }
    };
    Ok(Target {
        kind,
        name: name.to_string(),
        port,
    })
}

fn unknown_kind(input: &str, word: &str, name: &str) -> TargetError {
    let lower = word.to_ascii_lowercase();
    let shown_name = if name.is_empty() { "NAME" } else { name };
    // `deployments.apps/x`, `services.v1./x`: a group-qualified form of a kind we know.
    let stem = lower.split('.').next().unwrap_or_default();
    let advice = if let (true, Some(kind)) = (lower.contains('.'), TargetKind::from_word(stem)) {
        format!(
            "group-qualified kinds are not needed, write {}/{}; accepted kinds: {}",
            kind.short(),
            shown_name,
            ACCEPTED_KINDS
        )
    } else if let Some(advice) = unsupported_kind_advice(stem) {
        format!("{advice}; accepted kinds: {ACCEPTED_KINDS}")
    } else {
        format!("accepted kinds: {ACCEPTED_KINDS}")
    };
    TargetError::UnknownKind {
        input: input.to_string(),
        kind: word.to_string(),
        advice,
    }
}

/// The local side of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "port")]
pub enum LocalPort {
    /// `80` or `http`: listen on the same number as the remote port (for a named port, the number
    /// it resolves to).
    SameAsRemote,
    /// `:80` or `0:80`: let the system pick a free port (bind port 0).
    Random,
    /// `8080:80`: listen on this port.
    Fixed(u16),
}

impl LocalPort {
    /// The port number to bind, given the number the remote side resolved to: 0 means "any free
    /// port".
    pub fn bind_port(self, resolved_remote: u16) -> u16 {
        match self {
            LocalPort::SameAsRemote => resolved_remote,
            LocalPort::Random => 0,
            LocalPort::Fixed(port) => port,
        }
    }
}

/// One forward port argument: `[LOCAL]:REMOTE` or `REMOTE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// Where to listen.
    pub local: LocalPort,
    /// The port on the target (Service port for svc/, container port for pods).
    pub remote: PortRef,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local {
            LocalPort::SameAsRemote => write!(f, "{}", self.remote),
            LocalPort::Random => write!(f, ":{}", self.remote),
            LocalPort::Fixed(port) => write!(f, "{port}:{}", self.remote),
        }
    }
}

/// Why a forward port spec could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortSpecError {
    /// Nothing was given.
    #[error(
        "the port spec is empty: write REMOTE (80), LOCAL:REMOTE (8080:80), :REMOTE for a random local port (:80), \
         or LOCAL:NAME (8080:http)"
    )]
    Empty,
    /// More than one `:`.
    #[error("{} has more than one ':': write LOCAL:REMOTE, e.g. 8080:80", crate::quote::quote(.spec))]
    TooManyColons {
        /// The spec as written.
        spec: String,
    },
    /// `LOCAL:` with nothing after the colon.
    #[error("{} has no remote port after the ':': write {}:REMOTE, e.g. {}:80", crate::quote::quote(.spec), crate::quote::cut(.local), crate::quote::cut(.local))]
    MissingRemote {
        /// The spec as written.
        spec: String,
        /// The local part.
        local: String,
    },
    /// The local part is not a number.
    #[error(
        "the local port {} in {} is not a number: local ports are numbers from 1 to 65535, or leave it \
         empty (:{}) for a random free port", crate::quote::quote(.local), crate::quote::quote(.spec), crate::quote::cut(.remote))]
    LocalNotNumeric {
        /// The spec as written.
        spec: String,
        /// The local part.
        local: String,
        /// The remote part, for the suggestion.
        remote: String,
    },
    /// The local number is above 65535.
    #[error(
        "the local port {} in {} is out of range: write a number from 1 to 65535, or :REMOTE for a random one", crate::quote::cut(.local), crate::quote::quote(.spec))]
    LocalOutOfRange {
        /// The spec as written.
        spec: String,
        /// The local part.
        local: String,
    },
    /// The remote part is not a valid port.
    #[error("the remote port in {} is not valid: {reason}", crate::quote::quote(.spec))]
    Remote {
        /// The spec as written.
        spec: String,
        /// What is wrong with the remote part.
        reason: PortError,
    },
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let spec = input.trim();
        if spec.is_empty() {
            return Err(PortSpecError::Empty);
        }
        let (local_text, remote_text) = match spec.split_once(':') {
            None => (None, spec),
            Some((_, rest)) if rest.contains(':') => {
                return Err(PortSpecError::TooManyColons {
                    spec: spec.to_string(),
                });
            }
            Some((local, remote)) => (Some(local), remote),
        };
        if remote_text.is_empty() {
            return Err(PortSpecError::MissingRemote {
                spec: spec.to_string(),
                local: local_text.unwrap_or_default().to_string(),
            });
        }
        let remote = remote_text
            .parse::<PortRef>()
            .map_err(|reason| PortSpecError::Remote {
                spec: spec.to_string(),
                reason,
            })?;
        let local = match local_text {
            None => LocalPort::SameAsRemote,
            Some("") => LocalPort::Random,
            Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => match text.parse::<u32>() {
                Ok(0) => LocalPort::Random,
                Ok(n) => u16::try_from(n).map(LocalPort::Fixed).map_err(|_| {
                    PortSpecError::LocalOutOfRange {
                        spec: spec.to_string(),
                        local: text.to_string(),
                    }
                })?,
                Err(_) => {
                    return Err(PortSpecError::LocalOutOfRange {
                        spec: spec.to_string(),
                        local: text.to_string(),
                    });
                }
            },
            Some(text) => {
                return Err(PortSpecError::LocalNotNumeric {
                    spec: spec.to_string(),
                    local: text.to_string(),
                    remote: remote_text.to_string(),
                });
            }
        };
        Ok(PortSpec { local, remote })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(input: &str) -> Result<Target, TargetError> {
        Target::parse(input, TargetKind::DEFAULT_FOR_OPEN)
    }

    #[test]
    fn every_kind_spelling_parses() {
        let cases = [
            ("pod/a", TargetKind::Pod),
            ("pods/a", TargetKind::Pod),
            ("po/a", TargetKind::Pod),
            ("svc/a", TargetKind::Service),
            ("service/a", TargetKind::Service),
            ("services/a", TargetKind::Service),
            ("deploy/a", TargetKind::Deployment),
            ("deployment/a", TargetKind::Deployment),
            ("deployments/a", TargetKind::Deployment),
            ("sts/a", TargetKind::StatefulSet),
            ("statefulset/a", TargetKind::StatefulSet),
            ("statefulsets/a", TargetKind::StatefulSet),
            ("rs/a", TargetKind::ReplicaSet),
            ("replicaset/a", TargetKind::ReplicaSet),
            ("replicasets/a", TargetKind::ReplicaSet),
            ("SVC/a", TargetKind::Service),
        ];
        for (input, kind) in cases {
            let target = svc(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(target.kind, kind, "{input}");
            assert_eq!(target.name, "a");
            assert_eq!(target.port, None);
        }
    }

    #[test]
    fn bare_name_takes_the_callers_default_kind() {
        assert_eq!(svc("web").unwrap().kind, TargetKind::Service);
        let pod = Target::parse_without_port("web-0", TargetKind::DEFAULT_FOR_FORWARD).unwrap();
        assert_eq!(pod.kind, TargetKind::Pod);
        assert_eq!(pod.name, "web-0");
    }

    #[test]
    fn port_suffix_number_and_name() {
        let t = svc("svc/web:80").unwrap();
        assert_eq!(t.port, Some(PortRef::Number(80)));
        assert_eq!(t.to_string(), "service/web:80");
        let t = svc("web:http").unwrap();
        assert_eq!(t.port, Some(PortRef::Name("http".into())));
        assert_eq!(t.to_string(), "service/web:http");
        // Display output parses back to the same target.
        assert_eq!(svc(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn port_suffix_refused_for_forward_with_advice() {
        let err = Target::parse_without_port("pod/web:80", TargetKind::Pod).unwrap_err();
        assert!(matches!(err, TargetError::PortNotAllowed { .. }));
        assert!(err.to_string().contains("write pod/web 80"), "{err}");
    }

    #[test]
    fn bad_port_suffixes() {
        assert!(matches!(
            svc("svc/web:0"),
            Err(TargetError::InvalidPort {
                reason: PortError::Zero,
                ..
            })
        ));
        assert!(matches!(
            svc("svc/web:65536"),
            Err(TargetError::InvalidPort {
                reason: PortError::OutOfRange { .. },
                ..
            })
        ));
        assert!(matches!(
            svc("svc/web:"),
            Err(TargetError::InvalidPort {
                reason: PortError::Empty,
                ..
            })
        ));
        assert!(matches!(
            svc("svc/web:HTTP"),
            Err(TargetError::InvalidPort {
                reason: PortError::InvalidName { .. },
                ..
            })
        ));
    }

    #[test]
    fn group_qualified_kind_suggests_the_short_form() {
        let err = svc("deployments.apps/x").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TargetError::UnknownKind { .. }));
        assert!(text.contains("write deploy/x"), "{text}");
        assert!(text.contains("statefulset (sts, statefulsets)"), "{text}");
    }

    #[test]
    fn unknown_and_unsupported_kinds_list_accepted_forms() {
        let text = svc("foo/x").unwrap_err().to_string();
        assert!(text.contains("\"foo\""), "{text}");
        assert!(text.contains(ACCEPTED_KINDS), "{text}");
        let text = svc("ds/fluentd").unwrap_err().to_string();
        assert!(text.contains("DaemonSets are not supported"), "{text}");
        assert!(text.contains("pod (po, pods)"), "{text}");
    }

    #[test]
    fn structural_errors() {
        assert_eq!(svc(""), Err(TargetError::Empty));
        assert_eq!(svc("   "), Err(TargetError::Empty));
        assert!(matches!(
            svc("pod/"),
            Err(TargetError::MissingName {
                kind: TargetKind::Pod,
                ..
            })
        ));
        assert!(matches!(svc("/web"), Err(TargetError::MissingKind { .. })));
        let err = svc("default/svc/web").unwrap_err();
        assert!(matches!(err, TargetError::TooManySlashes { .. }));
        assert!(err.to_string().contains("-n NAMESPACE"));
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        // Uppercase gets a lower-case suggestion.
        let err = svc("svc/Web").unwrap_err();
        assert_eq!(
            err,
            TargetError::InvalidName {
                kind: TargetKind::Service,
                name: "Web".into(),
                reason: NameError::UpperCase {
                    suggestion: "web".into()
                },
            }
        );
        assert!(err.to_string().contains("write \"web\""));
        // Service names are single labels; pod names may have dots.
        assert!(matches!(
            svc("svc/a.b"),
            Err(TargetError::InvalidName {
                reason: NameError::Dot,
                ..
            })
        ));
        assert_eq!(svc("pod/a.b").unwrap().name, "a.b");
        assert!(matches!(
            svc("pod/a..b"),
            Err(TargetError::InvalidName {
                reason: NameError::EmptyPart,
                ..
            })
        ));
        assert!(matches!(
            svc("svc/-web"),
            Err(TargetError::InvalidName {
                reason: NameError::BadEdge { .. },
                ..
            })
        ));
        assert!(matches!(
            svc("pod/we_b"),
            Err(TargetError::InvalidName {
                reason: NameError::InvalidChar {
                    ch: '_',
                    position: 3,
                    ..
                },
                ..
            })
        ));
        let long_label = "a".repeat(64);
        assert!(matches!(
            svc(&long_label),
            Err(TargetError::InvalidName {
                reason: NameError::TooLong { len: 64, max: 63 },
                ..
            })
        ));
        // 64 characters is fine for a pod (subdomain, 253 max).
        assert!(svc(&format!("pod/{long_label}")).is_ok());
        assert!(svc(&format!("pod/{}", "a".repeat(254))).is_err());
        // Non-ASCII input never panics and is reported.
        assert!(svc("svc/wéb").is_err());
        assert!(svc("svc/ü:ö").is_err());
    }

    #[test]
    fn port_specs() {
        let p = |s: &str| s.parse::<PortSpec>();
        assert_eq!(
            p("8080:80").unwrap(),
            PortSpec {
                local: LocalPort::Fixed(8080),
                remote: PortRef::Number(80)
            }
        );
        assert_eq!(
            p(":80").unwrap(),
            PortSpec {
                local: LocalPort::Random,
                remote: PortRef::Number(80)
            }
        );
        assert_eq!(p("0:80").unwrap().local, LocalPort::Random);
        assert_eq!(
            p("80").unwrap(),
            PortSpec {
                local: LocalPort::SameAsRemote,
                remote: PortRef::Number(80)
            }
        );
        assert_eq!(
            p("8080:http").unwrap(),
            PortSpec {
                local: LocalPort::Fixed(8080),
                remote: PortRef::Name("http".into())
            }
        );
        assert_eq!(p("http").unwrap().local, LocalPort::SameAsRemote);
        assert_eq!(p("65535:65535").unwrap().local, LocalPort::Fixed(65535));
        // Display round-trips.
        for s in ["8080:80", ":80", "80", "8080:http", "http"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
        assert_eq!(LocalPort::Random.bind_port(80), 0);
        assert_eq!(LocalPort::SameAsRemote.bind_port(80), 80);
        assert_eq!(LocalPort::Fixed(9000).bind_port(80), 9000);
    }

    #[test]
    fn bad_port_specs() {
        let p = |s: &str| s.parse::<PortSpec>();
        assert_eq!(p(""), Err(PortSpecError::Empty));
        assert!(matches!(
            p("8080:0"),
            Err(PortSpecError::Remote {
                reason: PortError::Zero,
                ..
            })
        ));
        assert!(matches!(
            p("0"),
            Err(PortSpecError::Remote {
                reason: PortError::Zero,
                ..
            })
        ));
        assert!(matches!(
            p("8080:70000"),
            Err(PortSpecError::Remote {
                reason: PortError::OutOfRange { .. },
                ..
            })
        ));
        assert!(matches!(
            p("99999999999999999999:80"),
            Err(PortSpecError::LocalOutOfRange { .. })
        ));
        assert!(matches!(
            p("70000:80"),
            Err(PortSpecError::LocalOutOfRange { .. })
        ));
        let err = p("web:80").unwrap_err();
        assert!(matches!(err, PortSpecError::LocalNotNumeric { .. }));
        assert!(err.to_string().contains("(:80)"), "{err}");
        assert!(matches!(
            p("8080:"),
            Err(PortSpecError::MissingRemote { .. })
        ));
        assert!(matches!(p(":"), Err(PortSpecError::MissingRemote { .. })));
        assert!(matches!(
            p("1:2:3"),
            Err(PortSpecError::TooManyColons { .. })
        ));
        assert!(matches!(
            p("8080:very-long-port-name"),
            Err(PortSpecError::Remote {
                reason: PortError::InvalidName { .. },
                ..
            })
        ));
        assert!(matches!(
            p("8080:a--b"),
            Err(PortSpecError::Remote {
                reason: PortError::InvalidName {
                    reason: "contains '--'",
                    ..
                },
                ..
            })
        ));
        assert!(matches!(p("-1"), Err(PortSpecError::Remote { .. })));
    }
}
