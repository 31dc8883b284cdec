//! The words of a diagnosis: near names for typos, what a selector almost matched, what to call an
//! environment and its boundary, and the commands that fix or bypass a problem there.

use std::collections::BTreeMap;

use crate::env::{Detection, DriverName, HostKind, LbSupport, Provider};

use super::facts::{ApiFailure, ApiFailureKind, PodLabels};

/// A failed request to the API server as an API-layer sentence (no final period): which
/// server, which user, what was refused and what to do.
pub fn api_failure_sentence(failure: &ApiFailure, server: &str, user: Option<&str>) -> String {
    let user = user.unwrap_or("the context's user");
    let asked = match (&failure.verb, &failure.resource, &failure.namespace) {
        (Some(v), Some(r), Some(ns)) => format!("{v} {r} in namespace {ns}"),
        (Some(v), Some(r), None) => format!("{v} {r}"),
        _ => "answer".to_string(),
    };
    let message = failure
        .message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match failure.kind {
        ApiFailureKind::Unauthorized => format!(
            "the API server at {server} rejected the credentials of user {user} (401 Unauthorized): they are expired, revoked or meant for another cluster; get fresh ones from the tool that made the cluster (see `kubectl config view --minify`)"
        ),
        ApiFailureKind::Forbidden => format!(
            "the API server at {server} does not let user {user} {asked} (403 Forbidden); check with `kubectl auth can-i {asked}`"
        ),
        ApiFailureKind::TimedOut => format!(
            "the API server at {server} did not answer in time: is the cluster running, or a VPN in the way?"
        ),
        ApiFailureKind::Unreachable => format!(
            "the API server at {server} cannot be reached ({message}): is the cluster running?"
        ),
        ApiFailureKind::Other => match failure.status {
            Some(s) => format!("the API server at {server} answered {s} to {asked}: {message}"),
            None => format!("the API server at {server} failed: {message}"),
        },
    }
}

/// Edit distance over characters, counting a swap of two neighbours as one edit (optimal string
/// alignment), so `wbe` is one edit from `web`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

/// Whether `have` is close enough to `wanted` to be a typo of it: a few edits (a third of the
/// length, one to three), or one containing the other.
pub(crate) fn is_near(wanted: &str, have: &str) -> bool {
    let wanted_len = wanted.chars().count();
    let limit = (wanted_len / 3).clamp(1, 3);
    edit_distance(wanted, have) <= limit
        || (wanted_len >= 3
            && (have.contains(wanted) || (have.chars().count() >= 3 && wanted.contains(have))))
}

/// Up to three names close to `wanted`: a small edit distance, or one containing the other.
pub(crate) fn near_names(wanted: &str, names: &[String]) -> Vec<String> {
    let wanted_len = wanted.chars().count();
    let limit = (wanted_len / 3).clamp(1, 3);
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .filter(|n| n.as_str() != wanted && !n.is_empty())
        .filter_map(|n| {
            let d = edit_distance(wanted, n);
            let contains = wanted_len >= 3
                && (n.contains(wanted) || (n.chars().count() >= 3 && wanted.contains(n.as_str())));
            (d <= limit || contains).then_some((d, n))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, n)| n.clone()).collect()
}

/// `k=v,k2=v2`.
pub(crate) fn label_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(none)".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A pod that almost matches a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NearMiss {
    /// The pod.
    pub pod: String,
    /// The workload that owns it (`deployment/web`), `None` for a pod no controller owns.
    pub workload: Option<String>,
    /// What it has instead (`app=wbe`, `no tier label`).
    pub has: String,
    /// Selector keys whose value differs, with the pod's value: `(key, wanted, have)`.
    pub other_values: Vec<(String, String, String)>,
    /// Selector labels the pod lacks: `(key, wanted)`.
    pub missing: Vec<(String, String)>,
    /// Total edits between the wanted and the present values.
    pub distance: usize,
}

/// Pods that almost match a selector, best first: every differing value is a near miss of the
/// wanted one (a typo, `web` against `web-v2`) or a key is missing while the others match.
/// Ranked by the number of labels that differ, then by edit distance (strsim's optimal string
/// alignment). A pod with a value far from the wanted one is no near miss: `app=db` is not a
/// typo of `app=web`.
pub(crate) fn selector_near_misses(
    selector: &BTreeMap<String, String>,
    pods: &[PodLabels],
) -> Vec<NearMiss> {
    let mut misses = Vec::new();
    for pod in pods {
        let mut matched = 0;
        let mut other_values = Vec::new();
        let mut missing = Vec::new();
        let mut far = false;
        let mut distance = 0;
        for (k, v) in selector {
            match pod.labels.get(k) {
                Some(have) if have == v => matched += 1,
                Some(have) => {
                    if !is_near(v, have) {
                        far = true;
                    }
                    distance += edit_distance(v, have);
                    other_values.push((k.clone(), v.clone(), have.clone()));
                }
                None => missing.push((k.clone(), v.clone())),
            }
        }
        let differing = other_values.len() + missing.len();
        if far || differing == 0 || (other_values.is_empty() && matched == 0) {
            continue;
        }
        let mut has: Vec<String> = other_values
            .iter()
            .map(|(k, _, have)| format!("{k}={have}"))
            .collect();
        has.extend(missing.iter().map(|(k, _)| format!("no {k} label")));
        misses.push(NearMiss {
            pod: pod.name.clone(),
            workload: pod.workload.clone(),
            has: has.join(", "),
            other_values,
            missing,
            distance,
        });
    }
    misses.sort_by(|a, b| {
        (a.other_values.len() + a.missing.len(), a.distance, &a.pod).cmp(&(
            b.other_values.len() + b.missing.len(),
            b.distance,
            &b.pod,
        ))
    });
    misses
}

/// The host kind in words.
pub(crate) fn host_words(host: HostKind) -> &'static str {
    match host {
        HostKind::Linux => "Linux",
        HostKind::MacOs => "macOS",
        HostKind::Windows => "Windows",
        HostKind::Wsl2 => "WSL2",
        HostKind::LimaGuest => "a Lima guest",
    }
}

fn engine_in_vm(host: HostKind) -> bool {
    matches!(host, HostKind::MacOs | HostKind::Windows | HostKind::Wsl2)
}

/// The boundary between the host and the node, as a label for the driver box; `None` when the
/// node is the host (native k3s, microk8s on Linux, minikube `none`) or the cluster is remote.
pub(crate) fn boundary_label(det: &Detection) -> Option<String> {
    let host = det.host;
    let label = match det.provider {
        Provider::Minikube => match det.minikube_driver.as_ref().map(|d| &d.name) {
            Some(DriverName::None) | Some(DriverName::Ssh) => return None,
            Some(d) if d.is_kic() => {
                if engine_in_vm(host) {
                    format!("minikube ({d} driver) — KIC container in a VM")
                } else {
                    format!("minikube ({d} driver) — KIC container")
                }
            }
            Some(d) => format!("minikube ({d} driver) — VM"),
            None => "minikube — node VM or container".to_string(),
        },
        Provider::Kind => {
            if engine_in_vm(host) {
                "kind — node container in Docker Desktop's VM".to_string()
            } else {
                "kind — node container".to_string()
            }
        }
        Provider::K3d => {
            if engine_in_vm(host) {
                "k3d — node container in Docker Desktop's VM".to_string()
            } else {
                "k3d — node container".to_string()
            }
        }
        Provider::DockerDesktop => "Docker Desktop VM".to_string(),
        Provider::RancherDesktop => {
            if matches!(host, HostKind::Windows | HostKind::Wsl2) {
                "Rancher Desktop — WSL2 VM".to_string()
            } else {
                "Rancher Desktop — Lima VM".to_string()
            }
        }
        Provider::Colima => "colima — Lima VM".to_string(),
        Provider::OrbStack => "OrbStack VM".to_string(),
        Provider::MicroK8s => match host {
            HostKind::Linux | HostKind::LimaGuest => return None,
            _ => "MicroK8s — multipass VM".to_string(),
        },
        Provider::K3s => match host {
            HostKind::Linux | HostKind::LimaGuest => return None,
            _ => "k3s — VM".to_string(),
        },
        Provider::Gke | Provider::Eks | Provider::Aks | Provider::Generic => return None,
    };
    Some(label)
}

/// How to name the boundary in a sentence ("Docker Desktop's VM").
pub(crate) fn boundary_subject(det: &Detection) -> String {
    let host = det.host;
    match det.provider {
        Provider::Minikube => match det.minikube_driver.as_ref().map(|d| &d.name) {
            Some(d) if d.is_kic() => {
                if engine_in_vm(host) {
                    format!(
                        "minikube's {d} driver on {} (the node is a container inside the container engine's VM)",
                        host_words(host)
                    )
                } else {
                    format!("minikube's {d} driver (the node is a container)")
                }
            }
            Some(d) => format!("minikube's {d} VM"),
            None => "minikube's VM or node container".to_string(),
        },
        Provider::Kind | Provider::K3d if engine_in_vm(host) => {
            format!(
                "Docker Desktop's VM (the {} nodes are containers inside it)",
                det.provider
            )
        }
        Provider::Kind | Provider::K3d => format!("the {} node containers' network", det.provider),
        Provider::DockerDesktop => "Docker Desktop's VM".to_string(),
        Provider::RancherDesktop => "Rancher Desktop's VM".to_string(),
        Provider::Colima => "colima's Lima VM".to_string(),
        Provider::OrbStack => "OrbStack's VM".to_string(),
        Provider::MicroK8s => "the MicroK8s multipass VM".to_string(),
        Provider::K3s => "the k3s VM".to_string(),
        Provider::Gke | Provider::Eks | Provider::Aks | Provider::Generic => {
            "the network between this host and the cluster".to_string()
        }
    }
}

/// The environment in a few words (`minikube (docker driver) on macOS`).
pub(crate) fn environment_display(det: &Detection) -> String {
    let mut text = det.provider.display_name().to_string();
    if let Some(driver) = &det.minikube_driver {
        text.push_str(&format!(" ({} driver)", driver.name));
    }
    text.push_str(" on ");
    text.push_str(host_words(det.host));
    text
}

/// A provider guessed from a context name, for when detection could not run (API down).
pub(crate) fn provider_from_context(context: &str) -> Option<Provider> {
    let c = context.to_ascii_lowercase();
    let provider = if c == "minikube" {
        Provider::Minikube
    } else if c.starts_with("kind-") {
        Provider::Kind
    } else if c.starts_with("k3d-") {
        Provider::K3d
    } else if c == "docker-desktop" || c == "docker-for-desktop" {
        Provider::DockerDesktop
    } else if c == "rancher-desktop" {
        Provider::RancherDesktop
    } else if c.starts_with("colima") {
        Provider::Colima
    } else if c == "orbstack" {
        Provider::OrbStack
    } else if c == "microk8s" {
        Provider::MicroK8s
    } else {
        return None;
    };
    Some(provider)
}

/// `-n NS ` for commands, empty for `default`.
pub(crate) fn ns_flag(namespace: &str) -> String {
    if namespace.is_empty() || namespace == "default" {
        String::new()
    } else {
        format!(" -n {}", shell_word(namespace))
    }
}

/// A word safe to paste into a POSIX shell (quoted when it has anything unusual).
pub(crate) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How to start a cluster that does not answer, per provider.
pub(crate) fn start_commands(provider: Option<Provider>, context: &str) -> Vec<(String, String)> {
    let kind_name = context.strip_prefix("kind-").unwrap_or(context);
    let k3d_name = context.strip_prefix("k3d-").unwrap_or(context);
    let pair = |a: &str, c: String| (a.to_string(), c);
    match provider {
        Some(Provider::Minikube) => vec![
            pair("start the minikube cluster", "minikube start".to_string()),
            pair(
                "see what minikube thinks is running",
                "minikube status".to_string(),
            ),
        ],
        Some(Provider::Kind) => vec![
            pair(
                "list the kind clusters that exist",
                "kind get clusters".to_string(),
            ),
            pair(
                "start its node container if Docker restarted without it",
                format!("docker start {}-control-plane", shell_word(kind_name)),
            ),
        ],
        Some(Provider::K3d) => vec![pair(
            "start the k3d cluster",
            format!("k3d cluster start {}", shell_word(k3d_name)),
        )],
        Some(Provider::DockerDesktop) => vec![pair(
            "start Docker Desktop and turn on Kubernetes in its settings, then check it",
            "kubectl --context docker-desktop cluster-info".to_string(),
        )],
        Some(Provider::RancherDesktop) => {
            vec![pair("start Rancher Desktop", "rdctl start".to_string())]
        }
        Some(Provider::Colima) => vec![pair(
            "start colima with Kubernetes",
            "colima start --kubernetes".to_string(),
        )],
        Some(Provider::OrbStack) => vec![pair(
            "start OrbStack's Kubernetes",
            "orb start k8s".to_string(),
        )],
        Some(Provider::MicroK8s) => vec![pair("start MicroK8s", "microk8s start".to_string())],
        Some(Provider::K3s) => vec![pair("start k3s", "sudo systemctl start k3s".to_string())],
        _ => vec![pair(
            "check the cluster and your network or VPN",
            format!("kubectl --context {} cluster-info", shell_word(context)),
        )],
    }
}

/// How to get credentials the API server accepts again, per provider and credential kind.
pub(crate) fn refresh_commands(
    provider: Option<Provider>,
    context: &str,
    credentials: &str,
) -> Vec<(String, String)> {
    let kind_name = context.strip_prefix("kind-").unwrap_or(context);
    let k3d_name = context.strip_prefix("k3d-").unwrap_or(context);
    let pair = |a: &str, c: String| (a.to_string(), c);
    let mut out = match provider {
        Some(Provider::Minikube) => vec![pair(
            "have minikube write the profile's current credentials into the kubeconfig",
            "minikube update-context".to_string(),
        )],
        Some(Provider::Kind) => vec![pair(
            "have kind write the cluster's credentials into the kubeconfig again",
            format!("kind export kubeconfig --name {}", shell_word(kind_name)),
        )],
        Some(Provider::K3d) => vec![pair(
            "have k3d write the cluster's credentials into the kubeconfig again",
            format!(
                "k3d kubeconfig merge {} --kubeconfig-merge-default",
                shell_word(k3d_name)
            ),
        )],
        Some(Provider::K3s) => vec![pair(
            "copy k3s's own kubeconfig again",
            "sudo cat /etc/rancher/k3s/k3s.yaml".to_string(),
        )],
        Some(Provider::MicroK8s) => vec![pair(
            "print MicroK8s' current kubeconfig",
            "microk8s config".to_string(),
        )],
        _ => Vec::new(),
    };
    if credentials.starts_with("exec plugin") {
        out.push(pair(
            "run the exec plugin's login again (see its command in the user's exec section)",
            format!(
                "kubectl config view --minify --context {} -o jsonpath='{{.users[0].user.exec.command}}'",
                shell_word(context)
            ),
        ));
    } else if out.is_empty() {
        out.push(pair(
            "log in again the way your cluster hands out credentials, then check",
            format!("kubectl --context {} auth whoami", shell_word(context)),
        ));
    }
    out
}

/// How to get a LoadBalancer address in an environment without an implementation.
pub(crate) fn lb_commands(
    provider: Option<Provider>,
    lb: Option<LbSupport>,
) -> Vec<(String, String)> {
    let mut out = vec![(
        "give every LoadBalancer Service an address that works from this host".to_string(),
        "kubeway tunnel".to_string(),
    )];
    match provider {
        Some(Provider::Minikube) => out.push((
            "or minikube's own tunnel (needs root for the route)".to_string(),
            "minikube tunnel".to_string(),
        )),
        Some(Provider::Kind) => out.push((
            "or run the kind LoadBalancer controller".to_string(),
            "cloud-provider-kind".to_string(),
        )),
        Some(Provider::MicroK8s) if lb != Some(LbSupport::MetalLb) => out.push((
            "or turn on MicroK8s' MetalLB addon".to_string(),
            "microk8s enable metallb".to_string(),
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_near_names() {
        assert_eq!(edit_distance("web", "web"), 0);
        assert_eq!(edit_distance("wbe", "web"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let names: Vec<String> = ["web", "db", "web-v2", "frontend"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(near_names("wbe", &names), ["web"]);
        assert_eq!(near_names("web", &names), ["web-v2"]);
        assert!(near_names("zzzzzz", &names).is_empty());
        assert!(near_names("", &names).len() <= 3);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("web-1"), "web-1");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
