//! Collects the live facts `kubeway explain` reasons about: the context, the API server, the
//! environment, the target's Service/workload/pods/EndpointSlices, RBAC on `pods/portforward`,
//! and a real port-forward to the target port inside a pod. Host-side TCP probes of node and
//! LoadBalancer addresses are left to the caller (the net crate).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Container, Event, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::config::Kubeconfig;
use kubeway_core::env::{Tri, detect};
use kubeway_core::explain::{
    ConditionFacts, ContainerFacts, ContainerPortFacts, EndpointFacts, EndpointPortFacts,
    EventFacts, ExplainFacts, Intent, NamespacedName, PodFacts, PodIpProbe, PodLabels,
    PortForwardProbe, ReadinessProbeFacts, ServiceFacts, ServicePortFacts, ServiceType,
    WorkloadFacts, WorkloadSummary, pod_port, service_port,
};
use kubeway_core::target::{PortRef, Target, TargetKind};
use tokio::io::AsyncReadExt;

use crate::apierror::{classify, credentials, error_chain};
use crate::{Cluster, ConnectOptions, ForwardOptions, KubeError, PortForwarder, connect, snapshot};

/// How many pods are probed at once (port-forward and pod IP).
const PROBE_CONCURRENCY: usize = 4;
/// How many pods that are not ready are probed too, to tell why they are not.
const DIAGNOSTIC_PODS: usize = 2;
/// How many log lines of a crashed container's previous run are read.
const LOG_LINES: i64 = 5;

fn pod_facts(p: &Pod) -> PodFacts {
    let status = p.status.clone().unwrap_or_default();
    let cs = status.container_statuses.clone().unwrap_or_default();
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let waiting = cs
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let not_ready_message = status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status != "True"))
        .and_then(|c| c.message.clone());
    let container_ports =
        p.spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .flat_map(|c| {
                        c.ports.clone().unwrap_or_default().into_iter().map(|port| {
                            ContainerPortFacts {
                                container: c.name.clone(),
                                name: port.name.clone(),
                                port: u16::try_from(port.container_port).unwrap_or(0),
                                protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                            }
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
    let owner = p
        .metadata
        .owner_references
        .as_ref()
        .and_then(|r| r.iter().find(|r| r.controller == Some(true)))
        .map(|r| format!("{}/{}", r.kind.to_lowercase(), r.name));
    PodFacts {
        name: p.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.clone().unwrap_or_default(),
        ready,
        pod_ip: status.pod_ip.clone(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        container_ports,
        restarts: cs.iter().map(|c| c.restart_count.max(0) as u32).sum(),
        waiting_reason: waiting,
        not_ready_message,
        owner,
        terminating: p.metadata.deletion_timestamp.is_some(),
        containers: containers_of(p),
        events: Vec::new(),
    }
}

fn port_number(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(s) => s.parse().ok().or_else(|| {
            c.ports
                .as_ref()?
                .iter()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

fn readiness_of(c: &Container) -> Option<ReadinessProbeFacts> {
    let probe = c.readiness_probe.as_ref()?;
    let show = |p: &IntOrString| match (p, port_number(p, c)) {
        (_, Some(n)) => n.to_string(),
        (IntOrString::Int(n), None) => n.to_string(),
        (IntOrString::String(s), None) => s.clone(),
    };
    if let Some(h) = &probe.http_get {
        let scheme = h.scheme.as_deref().unwrap_or("HTTP");
        let scheme = if scheme.eq_ignore_ascii_case("HTTPS") {
            "HTTPS "
        } else {
            ""
        };
        return Some(ReadinessProbeFacts {
            kind: "httpGet".into(),
            target: format!(
                "{scheme}GET :{}{}",
                show(&h.port),
                h.path.as_deref().unwrap_or("/")
            ),
            port: port_number(&h.port, c),
        });
    }
    if let Some(t) = &probe.tcp_socket {
        return Some(ReadinessProbeFacts {
            kind: "tcpSocket".into(),
            target: format!("TCP :{}", show(&t.port)),
            port: port_number(&t.port, c),
        });
    }
    if let Some(g) = &probe.grpc {
        return Some(ReadinessProbeFacts {
            kind: "grpc".into(),
            target: format!("gRPC :{}", g.port),
            port: u16::try_from(g.port).ok(),
        });
    }
    probe.exec.as_ref().map(|x| ReadinessProbeFacts {
        kind: "exec".into(),
        target: x.command.clone().unwrap_or_default().join(" "),
        port: None,
    })
}

fn containers_of(p: &Pod) -> Vec<ContainerFacts> {
    let Some(spec) = &p.spec else {
        return Vec::new();
    };
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    spec.containers
        .iter()
        .map(|c| {
            let st = statuses.iter().find(|s| s.name == c.name);
            let waiting = st.and_then(|s| s.state.as_ref()?.waiting.clone());
            let terminated = st
                .and_then(|s| s.last_state.as_ref()?.terminated.clone())
                .or_else(|| st.and_then(|s| s.state.as_ref()?.terminated.clone()));
            ContainerFacts {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                ready: st.is_some_and(|s| s.ready),
                restarts: st.map(|s| s.restart_count.max(0) as u32).unwrap_or(0),
                waiting_reason: waiting.as_ref().and_then(|w| w.reason.clone()),
                waiting_message: waiting.as_ref().and_then(|w| w.message.clone()),
                exit_code: terminated.as_ref().map(|t| t.exit_code),
                exit_reason: terminated.as_ref().and_then(|t| t.reason.clone()),
                exit_message: terminated.as_ref().and_then(|t| t.message.clone()),
                readiness_probe: readiness_of(c),
                last_log: Vec::new(),
            }
        })
        .collect()
}

/// A condition as `(type, status, reason, message)`.
type RawCondition = (String, String, Option<String>, Option<String>);

/// Conditions that say something is wrong: a failure reported, or progress or availability
/// that stopped.
fn problems(conditions: &[RawCondition]) -> Vec<ConditionFacts> {
    conditions
        .iter()
        .filter(|(t, s, _, _)| {
            (t == "ReplicaFailure" && s == "True")
                || (t == "Progressing" && s == "False")
                || (t == "Available" && s == "False")
        })
        .map(|(t, s, r, m)| ConditionFacts {
            type_: t.clone(),
            status: s.clone(),
            reason: r.clone(),
            message: m.clone(),
        })
        .collect()
}

fn text(v: impl Into<Option<String>>) -> String {
    v.into().unwrap_or_default()
}

fn controller(refs: &Option<Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// The workloads of the namespace, and for each ReplicaSet the Deployment that owns it.
struct Workloads {
    summaries: Vec<WorkloadSummary>,
    rs_owner: BTreeMap<String, String>,
}

impl Workloads {
    /// The workload a pod belongs to, as `kind/name`.
    fn of(&self, p: &Pod) -> Option<String> {
        let owner = controller(&p.metadata.owner_references)?;
        if owner.kind == "ReplicaSet"
            && let Some(d) = self.rs_owner.get(&owner.name)
        {
            return Some(format!("deployment/{d}"));
        }
        Some(format!(
            "{}/{}",
            owner.kind.to_ascii_lowercase(),
            owner.name
        ))
    }
}

async fn workloads(
    client: &kube::Client,
    ns: &str,
    failures: &mut Vec<kubeway_core::explain::ApiFailure>,
) -> Workloads {
    let mut out = Workloads {
        summaries: Vec::new(),
        rs_owner: BTreeMap::new(),
    };
    match Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(l) => {
            for d in l.items {
                let spec = d.spec;
                let status = d.status.unwrap_or_default();
                let c: Vec<_> = status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| {
                        (
                            text(c.type_.clone()),
                            text(c.status.clone()),
                            c.reason.clone(),
                            c.message.clone(),
                        )
                    })
                    .collect();
                out.summaries.push(WorkloadSummary {
                    kind: "deployment".into(),
                    name: d.metadata.name.unwrap_or_default(),
                    replicas: spec.replicas.map(|r| r.max(0) as u32),
                    ready_replicas: status.ready_replicas.map(|r| r.max(0) as u32),
                    template_labels: spec
                        .template
                        .metadata
                        .and_then(|m| m.labels)
                        .unwrap_or_default(),
                    problems: problems(&c),
                });
            }
        }
        Err(e) => failures.push(classify(&e, "list", "deployments", Some(ns))),
    }
    match Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(l) => {
            for s in l.items {
                let spec = s.spec;
                let status = s.status.unwrap_or_default();
                let c: Vec<_> = status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| {
                        (
                            text(c.type_.clone()),
                            text(c.status.clone()),
                            c.reason.clone(),
                            c.message.clone(),
                        )
                    })
                    .collect();
                out.summaries.push(WorkloadSummary {
                    kind: "statefulset".into(),
                    name: s.metadata.name.unwrap_or_default(),
                    replicas: spec.replicas.map(|r| r.max(0) as u32),
                    ready_replicas: status.ready_replicas.map(|r| r.max(0) as u32),
                    template_labels: spec
                        .template
                        .metadata
                        .and_then(|m| m.labels)
                        .unwrap_or_default(),
                    problems: problems(&c),
                });
            }
        }
        Err(e) => failures.push(classify(&e, "list", "statefulsets", Some(ns))),
    }
    match Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(l) => {
            for r in l.items {
                let name = r.metadata.name.clone().unwrap_or_default();
                if let Some(o) = controller(&r.metadata.owner_references) {
                    if o.kind == "Deployment" {
                        out.rs_owner.insert(name, o.name.clone());
                    }
                    continue;
                }
                let spec = r.spec;
                let status = r.status.unwrap_or_default();
                let c: Vec<_> = status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| {
                        (
                            text(c.type_.clone()),
                            text(c.status.clone()),
                            c.reason.clone(),
                            c.message.clone(),
                        )
                    })
                    .collect();
                out.summaries.push(WorkloadSummary {
                    kind: "replicaset".into(),
                    name,
                    replicas: spec.replicas.map(|r| r.max(0) as u32),
                    ready_replicas: status.ready_replicas.map(|r| r.max(0) as u32),
                    template_labels: spec
                        .template
                        .and_then(|t| t.metadata)
                        .and_then(|m| m.labels)
                        .unwrap_or_default(),
                    problems: problems(&c),
                });
            }
        }
        Err(e) => failures.push(classify(&e, "list", "replicasets", Some(ns))),
    }
    out
}

fn service_facts(s: &Service) -> ServiceFacts {
    let spec = s.spec.clone().unwrap_or_default();
    ServiceFacts {
        name: s.metadata.name.clone().unwrap_or_default(),
        type_: spec
            .type_
            .as_deref()
            .unwrap_or("ClusterIP")
            .parse()
            .unwrap_or(ServiceType::ClusterIp),
        cluster_ip: spec.cluster_ip.clone(),
        selector: spec.selector.clone().unwrap_or_default(),
        ports: spec
            .ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| ServicePortFacts {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port: u16::try_from(p.port).unwrap_or(0),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                target_port: match p.target_port {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                        PortRef::Number(u16::try_from(n).unwrap_or(0))
                    }
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                        s.parse().map(PortRef::Number).unwrap_or(PortRef::Name(s))
                    }
                    None => PortRef::Number(u16::try_from(p.port).unwrap_or(0)),
                },
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            })
            .collect(),
        lb_ingress: s
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|i| {
                i.iter()
                    .filter_map(|x| x.ip.clone().or_else(|| x.hostname.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        external_name: spec.external_name.clone(),
    }
}

async fn can(api: &Api<SelfSubjectAccessReview>, ns: &str, verb: &str) -> Tri {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some(verb.into()),
                resource: Some("pods".into()),
                subresource: Some("portforward".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => match r.status.map(|s| s.allowed) {
            Some(true) => Tri::Yes,
            Some(false) => Tri::No,
            None => Tri::Unknown,
        },
        Err(_) => Tri::Unknown,
    }
}

/// The facts, and the node addresses the caller may probe from the host.
pub struct Collected {
    /// What `kubeway_core::explain::explain` reads.
    pub facts: ExplainFacts,
    /// The nodes, from the environment snapshot.
    pub nodes: Vec<kubeway_core::env::NodeFacts>,
}

/// Collects the facts for `target` through the context the options select.
pub async fn collect(
    opts: &ConnectOptions,
    target: &Target,
    intent: Intent,
    probe_timeout: Duration,
) -> Result<Collected, KubeError> {
    let mut nodes = Vec::new();
    let facts = collect_facts(opts, target, intent, probe_timeout, &mut nodes).await?;
    Ok(Collected { facts, nodes })
}

async fn collect_facts(
    opts: &ConnectOptions,
    target: &Target,
    intent: Intent,
    probe_timeout: Duration,
    nodes: &mut Vec<kubeway_core::env::NodeFacts>,
) -> Result<ExplainFacts, KubeError> {
    let mut facts = ExplainFacts::new(target.clone(), opts.namespace.clone().unwrap_or_default());
    facts.intent = intent;
    // Context.
    let kc = match &opts.kubeconfig {
        Some(p) => Kubeconfig::read_from(p).map_err(|source| KubeError::ReadKubeconfig {
            path: p.display().to_string(),
            source,
        })?,
        None => Kubeconfig::read().map_err(KubeError::NoKubeconfig)?,
    };
    let context = opts
        .context
        .clone()
        .or_else(|| kc.current_context.clone())
        .unwrap_or_default();
    facts.context.name = context.clone();
    facts.context.known_contexts = kc.contexts.iter().map(|c| c.name.clone()).collect();
    facts.context.exists = kc.contexts.iter().any(|c| c.name == context);
    if !facts.context.exists {
        return Ok(facts);
    }
    let (user, how) = credentials(&kc, &context);
    facts.api.user = user;
    facts.api.credentials = how;
    let cluster = connect(opts).await?;
    facts.namespace = cluster.namespace.clone();
    facts.api.server = cluster.server.clone();
    let api_deadline = probe_timeout * 5;
    match tokio::time::timeout(api_deadline, cluster.client.apiserver_version()).await {
        Ok(Ok(v)) => {
            facts.api.reachable = Tri::Yes;
            facts.api.version = Some(v.git_version);
        }
        Ok(Err(e)) => {
            facts.api.reachable = Tri::No;
            facts.api.error = Some(error_chain(&e));
            let mut f = classify(&e, "get", "/version", None);
            f.verb = None;
            f.resource = None;
            facts.api.failure = Some(f);
            return Ok(facts);
        }
        Err(_) => {
            facts.api.reachable = Tri::No;
            facts.api.error = Some(format!(
                "no answer within {:.1}s",
                api_deadline.as_secs_f64()
            ));
            facts.api.failure = Some(crate::apierror::timed_out(
                "get",
                "/version",
                api_deadline.as_secs_f64(),
            ));
            return Ok(facts);
        }
    }
    if let Ok(c) = snapshot::collect(opts).await {
        facts.environment = Some(detect(&c.snapshot));
        *nodes = c.snapshot.nodes;
    }
    let client = cluster.client.clone();
    let ns = cluster.namespace.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let all_pods = match pods_api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            facts
                .api_failures
                .push(classify(&e, "list", "pods", Some(&ns)));
            Vec::new()
        }
    };
    let mut workload_failures = Vec::new();
    let workloads = workloads(&client, &ns, &mut workload_failures).await;
    facts.namespace_pods = all_pods
        .iter()
        .map(|p| PodLabels {
            name: p.metadata.name.clone().unwrap_or_default(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            workload: workloads.of(p),
        })
        .collect();
    let matching = |sel: &BTreeMap<String, String>| -> Vec<PodFacts> {
        all_pods
            .iter()
            .filter(|p| {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(pod_facts)
            .collect()
    };
    let mut selector_for_others: Option<BTreeMap<String, String>> = None;
    match target.kind {
        TargetKind::Service => {
            let api: Api<Service> = Api::namespaced(client.clone(), &ns);
            match api.get_opt(&target.name).await {
                Ok(Some(s)) => {
                    facts.target_found = Tri::Yes;
                    let sf = service_facts(&s);
                    facts.pods = matching(&sf.selector);
                    if facts.pods.is_empty() && !sf.selector.is_empty() {
                        selector_for_others = Some(sf.selector.clone());
                    }
                    facts.service = Some(sf);
                    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
                    let label = format!("kubernetes.io/service-name={}", target.name);
                    match slices.list(&ListParams::default().labels(&label)).await {
                        Ok(l) => {
                            for s in l.items {
                                let ports: Vec<EndpointPortFacts> = s
                                    .ports
                                    .clone()
                                    .unwrap_or_default()
                                    .into_iter()
                                    .filter_map(|p| {
                                        Some(EndpointPortFacts {
                                            name: p.name.filter(|n| !n.is_empty()),
                                            port: u16::try_from(p.port?).ok()?,
                                        })
                                    })
                                    .collect();
                                for e in s.endpoints.unwrap_or_default() {
                                    facts.endpoints.push(EndpointFacts {
                                        pod: e.target_ref.and_then(|t| t.name),
                                        ip: e.addresses.first().cloned().unwrap_or_default(),
                                        ready: e.conditions.and_then(|c| c.ready).unwrap_or(false),
                                        ports: ports.clone(),
                                    });
                                }
                            }
                        }
                        Err(e) => facts.api_failures.push(classify(
                            &e,
                            "list",
                            "endpointslices",
                            Some(&ns),
                        )),
                    }
                }
                Ok(None) => {
                    facts.target_found = Tri::No;
                    facts.names_in_namespace = api
                        .list_metadata(&ListParams::default())
                        .await
                        .map(|l| {
                            l.items
                                .into_iter()
                                .filter_map(|m| m.metadata.name)
                                .collect()
                        })
                        .unwrap_or_default();
                }
                Err(e) => facts
                    .api_failures
                    .push(classify(&e, "get", "services", Some(&ns))),
            }
        }
        TargetKind::Pod => match pods_api.get_opt(&target.name).await {
            Ok(Some(p)) => {
                facts.target_found = Tri::Yes;
                facts.pods = vec![pod_facts(&p)];
            }
            Ok(None) => {
                facts.target_found = Tri::No;
                facts.names_in_namespace = facts
                    .namespace_pods
                    .iter()
                    .map(|p| p.name.clone())
                    .collect();
            }
            Err(e) => facts
                .api_failures
                .push(classify(&e, "get", "pods", Some(&ns))),
        },
        TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::ReplicaSet => {
            let status = |c: Option<Vec<RawCondition>>, ready: Option<i32>| {
                (
                    problems(&c.unwrap_or_default()),
                    ready.map(|r| r.max(0) as u32),
                )
            };
            let got = match target.kind {
                TargetKind::Deployment => Api::<Deployment>::namespaced(client.clone(), &ns)
                    .get_opt(&target.name)
                    .await
                    .map(|d| {
                        d.map(|d| {
                            let st = d.status.unwrap_or_default();
                            let c = st.conditions.map(|c| {
                                c.into_iter()
                                    .map(|c| (text(c.type_), text(c.status), c.reason, c.message))
                                    .collect()
                            });
                            (
                                d.spec.replicas,
                                d.spec.selector.match_labels,
                                status(c, st.ready_replicas),
                            )
                        })
                    }),
                TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), &ns)
                    .get_opt(&target.name)
                    .await
                    .map(|d| {
                        d.map(|d| {
                            let st = d.status.unwrap_or_default();
                            let c = st.conditions.map(|c| {
                                c.into_iter()
                                    .map(|c| (text(c.type_), text(c.status), c.reason, c.message))
                                    .collect()
                            });
                            (
                                d.spec.replicas,
                                d.spec.selector.match_labels,
                                status(c, st.ready_replicas),
                            )
                        })
                    }),
                _ => Api::<ReplicaSet>::namespaced(client.clone(), &ns)
                    .get_opt(&target.name)
                    .await
                    .map(|d| {
                        d.map(|d| {
                            let st = d.status.unwrap_or_default();
                            let c = st.conditions.map(|c| {
                                c.into_iter()
                                    .map(|c| (text(c.type_), text(c.status), c.reason, c.message))
                                    .collect()
                            });
                            (
                                d.spec.replicas,
                                d.spec.selector.match_labels,
                                status(c, st.ready_replicas),
                            )
                        })
                    }),
            };
            match got {
                Ok(Some((replicas, sel, (problems, ready_replicas)))) => {
                    facts.target_found = Tri::Yes;
                    let sel = sel.unwrap_or_default();
                    facts.pods = matching(&sel);
                    facts.workload = Some(WorkloadFacts {
                        replicas: replicas.map(|r| r.max(0) as u32),
                        selector: sel,
                        ready_replicas,
                        problems,
                    });
                }
                Ok(None) => {
                    facts.target_found = Tri::No;
                    facts.names_in_namespace = workloads
                        .summaries
                        .iter()
                        .filter(|w| w.kind == target.kind.plural().trim_end_matches('s'))
                        .map(|w| w.name.clone())
                        .collect();
                }
                Err(e) => {
                    facts
                        .api_failures
                        .push(classify(&e, "get", target.kind.plural(), Some(&ns)))
                }
            }
        }
    }
    // Is the namespace there at all?
    if facts.target_found == Tri::No {
        let nss: Api<Namespace> = Api::all(client.clone());
        match nss.get_opt(&ns).await {
            Ok(Some(_)) => facts.namespace_found = Tri::Yes,
            Ok(None) => {
                facts.namespace_found = Tri::No;
                facts.namespaces = nss
                    .list_metadata(&ListParams::default())
                    .await
                    .map(|l| {
                        l.items
                            .into_iter()
                            .filter_map(|m| m.metadata.name)
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Err(_) => {}
        }
    }
    // One level up from a selector that matches nothing.
    if let Some(sel) = selector_for_others {
        facts.workloads = workloads.summaries.clone();
        facts.api_failures.extend(workload_failures);
        let text = sel
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        match Api::<Pod>::all(client.clone())
            .list(&ListParams::default().labels(&text))
            .await
        {
            Ok(l) => {
                facts.other_namespace_pods = l
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.namespace.as_deref() != Some(ns.as_str()))
                    .map(|p| NamespacedName {
                        namespace: p.metadata.namespace.unwrap_or_default(),
                        name: p.metadata.name.unwrap_or_default(),
                    })
                    .collect();
            }
            Err(e) => facts.api_failures.push(classify(&e, "list", "pods", None)),
        }
    }
    // Why pods are not ready: their events, and the log of a crashed run.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    for pod in facts.pods.iter_mut().filter(|p| !p.ready).take(3) {
        let field = format!("involvedObject.name={}", pod.name);
        if let Ok(Ok(l)) = tokio::time::timeout(
            api_deadline,
            events.list(&ListParams::default().fields(&field)),
        )
        .await
        {
            let mut items: Vec<Event> = l
                .items
                .into_iter()
                .filter(|e| e.type_.as_deref() == Some("Warning"))
                .collect();
            items.sort_by_key(|e| {
                e.last_timestamp
                    .as_ref()
                    .or(e.first_timestamp.as_ref())
                    .map(|t| t.0.to_string())
                    .unwrap_or_default()
            });
            pod.events = items
                .into_iter()
                .map(|e| EventFacts {
                    reason: e.reason.unwrap_or_default(),
                    message: e.message.unwrap_or_default(),
                    count: e.count.map(|c| c.max(1) as u32).unwrap_or(1),
                })
                .collect();
        }
        if let Some(msg) = pod
            .events
            .iter()
            .rev()
            .find(|e| e.reason == "Unhealthy")
            .map(|e| e.message.clone())
        {
            pod.not_ready_message.get_or_insert(msg);
        }
        for c in pod.containers.iter_mut().filter(|c| c.restarts > 0) {
            let lp = LogParams {
                container: Some(c.name.clone()),
                previous: true,
                tail_lines: Some(LOG_LINES),
                ..LogParams::default()
            };
            // Logs are served by the kubelet through the API server; when they are not (RBAC,
            // a cluster without them), the diagnosis goes on without.
            if let Ok(Ok(text)) =
                tokio::time::timeout(api_deadline, pods_api.logs(&pod.name, &lp)).await
            {
                c.last_log = text.lines().map(str::to_string).collect();
            }
        }
    }
    // RBAC for port-forward, both verbs.
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    facts.rbac.get_portforward = can(&reviews, &ns, "get").await;
    facts.rbac.create_portforward = can(&reviews, &ns, "create").await;
    // The process in every ready pod (and a few others, to tell why they are not ready):
    // port-forward dials its localhost, the API server's proxy its pod IP.
    let pod_target_port = match (&facts.service, target.kind) {
        (Some(s), _) => service_port(s, target.port.as_ref()).map(|p| p.target_port.clone()),
        (None, _) => target.port.clone(),
    };
    let is_pod_target = target.kind == TargetKind::Pod;
    let mut candidates: Vec<&PodFacts> = facts
        .pods
        .iter()
        .filter(|p| p.phase == "Running" && (p.ready || is_pod_target))
        .collect();
    candidates.extend(
        facts
            .pods
            .iter()
            .filter(|p| p.phase == "Running" && !p.ready && !is_pod_target)
            .take(DIAGNOSTIC_PODS),
    );
    let jobs: Vec<(String, Option<String>, u16)> = candidates
        .iter()
        .filter_map(|pod| {
            let port = match &pod_target_port {
                Some(tp) => pod_port(pod, tp).or(tp.number()),
                // No port given: the first TCP port the containers declare.
                None => pod
                    .container_ports
                    .iter()
                    .find(|c| c.protocol.eq_ignore_ascii_case("TCP"))
                    .map(|c| c.port),
            }?;
            Some((pod.name.clone(), pod.pod_ip.clone(), port))
        })
        .collect();
    // The proxy answers 503 when the pod IP refuses, which the default client retries with
    // back-off: the pod-IP probe uses a client that does not retry.
    let proxy_client = no_retry_client(&kc, &context)
        .await
        .unwrap_or(client.clone());
    let results: Vec<(PortForwardProbe, Option<PodIpProbe>)> = stream::iter(jobs)
        .map(|(pod, ip, port)| {
            let cluster = &cluster;
            let proxy_client = &proxy_client;
            let ns = ns.as_str();
            async move {
                let (pf, via_ip) = tokio::join!(
                    port_forward_probe(cluster, ns, &pod, port, probe_timeout),
                    async {
                        match ip {
                            Some(_) => Some(
                                pod_ip_probe(proxy_client, ns, &pod, port, probe_timeout * 3).await,
                            ),
                            None => None,
                        }
                    }
                );
                (pf, via_ip)
            }
        })
        .buffered(PROBE_CONCURRENCY)
        .collect()
        .await;
    for (pf, ip) in results {
        facts.portforward.push(pf);
        facts.pod_ip_probes.extend(ip);
    }
    Ok(facts)
}

/// A client for the context that does not retry 503s.
async fn no_retry_client(kc: &Kubeconfig, context: &str) -> Option<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kc.clone(), &options)
        .await
        .ok()?;
    config.default_retry = false;
    kube::Client::try_from(config).ok()
}

/// A real port-forward to `pod:port`: accepted, or the error verbatim.
async fn port_forward_probe(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
    port: u16,
    timeout: Duration,
) -> PortForwardProbe {
    let fw = PortForwarder::new(cluster, ns, pod, ForwardOptions::default());
    let attempt = async {
        match fw.connect(port).await {
            Err(e) => (false, Some(e.to_string())),
            Ok(mut s) => {
                let mut buf = [0u8; 1];
                match tokio::time::timeout(timeout, s.read(&mut buf)).await {
                    Ok(Err(e)) => (false, Some(e.to_string())),
                    // Silence (the app waits for a request) or bytes or a clean close: accepted.
                    _ => (true, None),
                }
            }
        }
    };
    let (ok, error) = match tokio::time::timeout(timeout * 5, attempt).await {
        Ok(r) => r,
        Err(_) => (
            false,
            Some(format!(
                "port-forward did not connect within {:.1}s",
                (timeout * 5).as_secs_f64()
            )),
        ),
    };
    PortForwardProbe {
        pod: pod.to_string(),
        port,
        ok,
        error,
    }
}

/// Dials `pod`'s IP on `port` from the API server (`pods/NAME:PORT/proxy`): what Services and
/// the kubelet's probes reach. The proxy speaks HTTP to the app; any answer from the app, even
/// an error status or a malformed reply, means it accepted the connection. A dial error in the
/// API server's own Status (`connect: connection refused`) means it did not.
async fn pod_ip_probe(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    port: u16,
    timeout: Duration,
) -> PodIpProbe {
    let unknown = |detail: String| PodIpProbe {
        pod: pod.to_string(),
        port,
        answered: Tri::Unknown,
        detail: Some(detail),
    };
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/");
    let Ok(req) = http::Request::get(&path).body(kube::client::Body::empty()) else {
        return unknown("could not build the proxy request".into());
    };
    let res = match tokio::time::timeout(timeout, client.send(req)).await {
        Err(_) => {
            return unknown(format!(
                "the API server's proxy did not answer within {:.1}s",
                timeout.as_secs_f64()
            ));
        }
        Ok(Err(e)) => return unknown(error_chain(&e)),
        Ok(Ok(res)) => res,
    };
    let status = res.status().as_u16();
    let body = match tokio::time::timeout(timeout, res.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Default::default(),
    };
    let api_status: Option<kube::core::Status> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .filter(|v| v["kind"] == "Status" && v["apiVersion"] == "v1")
        .and_then(|v| serde_json::from_value(v).ok());
    let message = api_status
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    match (status, &api_status) {
        (401 | 403, Some(_)) => unknown(format!(
            "the API server refused the proxy ({status}): {message}"
        )),
        (404 | 405, Some(_)) => unknown(format!(
            "the API server has no pod proxy here ({status}): {message}"
        )),
        (_, Some(_))
            if lower.contains("refused")
                || lower.contains("no route to host")
                || lower.contains("i/o timeout")
                || lower.contains("dial tcp") && !lower.contains("malformed") =>
        {
            PodIpProbe {
                pod: pod.to_string(),
                port,
                answered: Tri::No,
                detail: Some(message),
            }
        }
        _ => PodIpProbe {
            pod: pod.to_string(),
            port,
            answered: Tri::Yes,
            detail: Some(format!(
                "the app answered through the API server's proxy ({status})"
            )),
        },
    }
}
