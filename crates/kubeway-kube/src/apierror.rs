//! API-server failures as facts: a `kube::Error` classified into an [`ApiFailure`] (401, 403,
//! a dial error, a timeout) with what was asked, and the kubeconfig user a context
//! authenticates as, so a refusal can be named as an API-layer verdict.

use kube::config::Kubeconfig;
use kubeway_core::explain::{ApiFailure, ApiFailureKind};

/// Classifies an error from a request `verb resource` in `namespace`.
pub fn classify(
    error: &kube::Error,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
) -> ApiFailure {
    let (kind, status, message) = match error {
        kube::Error::Api(s) => {
            let kind = match s.code {
                401 => ApiFailureKind::Unauthorized,
                403 => ApiFailureKind::Forbidden,
                504 | 408 => ApiFailureKind::TimedOut,
                _ => ApiFailureKind::Other,
            };
            let message = if s.message.is_empty() {
                s.reason.clone()
            } else {
                s.message.clone()
            };
            (kind, Some(s.code), message)
        }
        other => {
            let text = error_chain(other);
            let lower = text.to_ascii_lowercase();
            let kind = if lower.contains("timed out") || lower.contains("timeout") {
                ApiFailureKind::TimedOut
            } else {
                ApiFailureKind::Unreachable
            };
            (kind, None, text)
        }
    };
    ApiFailure {
        kind,
        status,
        verb: Some(verb.to_string()),
        resource: Some(resource.to_string()),
        namespace: namespace.map(str::to_string),
        message,
    }
}

/// A failure for a request that did not finish within `secs` seconds.
pub fn timed_out(verb: &str, resource: &str, secs: f64) -> ApiFailure {
    ApiFailure {
        kind: ApiFailureKind::TimedOut,
        status: None,
        verb: Some(verb.to_string()),
        resource: Some(resource.to_string()),
        namespace: None,
        message: format!("no answer within {secs:.1}s"),
    }
}

/// An error and its sources on one line, each cause once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        // kube's Api error prints its Status in Debug form; say it in words.
        let text = match e.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) => format!("{} ({} {})", s.message, s.code, s.reason),
            _ => e.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The user a context authenticates as, and how (`token`, `client certificate`,
/// `exec plugin NAME`, …).
pub fn credentials(kc: &Kubeconfig, context: &str) -> (Option<String>, Option<String>) {
    let Some(user) = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
    else {
        return (None, None);
    };
    let info = kc
        .auth_infos
        .iter()
        .find(|a| a.name == user)
        .and_then(|a| a.auth_info.as_ref());
    let how = info.map(|a| {
        if let Some(exec) = &a.exec {
            format!(
                "exec plugin {}",
                exec.command.clone().unwrap_or_else(|| "?".to_string())
            )
        } else if let Some(p) = &a.auth_provider {
            format!("auth provider {}", p.name)
        } else if a.token.is_some() || a.token_file.is_some() {
            "token".to_string()
        } else if a.client_certificate.is_some() || a.client_certificate_data.is_some() {
            "client certificate".to_string()
        } else if a.username.is_some() {
            "basic auth".to_string()
        } else {
            "none".to_string()
        }
    });
    (Some(user), how)
}
