//! Collects the live facts `kubeway explain` reasons about: the context, the API server, the
//! environment, the target's Service/workload/pods/EndpointSlices, RBAC on `pods/portforward`,
//! and a real port-forward to the target port inside a pod. Host-side TCP probes of node and
//! LoadBalancer addresses are left to the caller (the net crate).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use kube::config::Kubeconfig;
use kubeway_core::env::{Tri, detect};
use kubeway_core::explain::{
    ContainerPortFacts, EndpointFacts, EndpointPortFacts, ExplainFacts, Intent, PodFacts,
    PodLabels, PortForwardProbe, ServiceFacts, ServicePortFacts, ServiceType, WorkloadFacts,
    pod_port, service_port,
};
use kubeway_core::target::{PortRef, Target, TargetKind};
use tokio::io::AsyncReadExt;

use crate::{ConnectOptions, ForwardOptions, KubeError, PortForwarder, connect, snapshot};

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
    }
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
    let cluster = connect(opts).await?;
    facts.namespace = cluster.namespace.clone();
    facts.api.server = cluster.server.clone();
    match tokio::time::timeout(probe_timeout * 5, cluster.client.apiserver_version()).await {
        Ok(Ok(v)) => {
            facts.api.reachable = Tri::Yes;
            facts.api.version = Some(v.git_version);
        }
        Ok(Err(e)) => {
            facts.api.reachable = Tri::No;
            facts.api.error = Some(e.to_string());
            return Ok(facts);
        }
        Err(_) => {
            facts.api.reachable = Tri::No;
            facts.api.error = Some("no answer from the API server in time".into());
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
    let all_pods = pods_api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    facts.namespace_pods = all_pods
        .iter()
        .map(|p| PodLabels {
            name: p.metadata.name.clone().unwrap_or_default(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
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
    match target.kind {
        TargetKind::Service => {
            let api: Api<Service> = Api::namespaced(client.clone(), &ns);
            match api.get_opt(&target.name).await {
                Ok(Some(s)) => {
                    facts.target_found = Tri::Yes;
                    let sf = service_facts(&s);
                    facts.pods = matching(&sf.selector);
                    facts.service = Some(sf);
                    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
                    let label = format!("kubernetes.io/service-name={}", target.name);
                    if let Ok(l) = slices.list(&ListParams::default().labels(&label)).await {
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
                Err(e) => facts.api.error = Some(e.to_string()),
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
            Err(e) => facts.api.error = Some(e.to_string()),
        },
        TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::ReplicaSet => {
            let got = match target.kind {
                TargetKind::Deployment => Api::<Deployment>::namespaced(client.clone(), &ns)
                    .get_opt(&target.name)
                    .await
                    .map(|d| d.map(|d| (d.spec.replicas, d.spec.selector.match_labels))),
                TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), &ns)
                    .get_opt(&target.name)
                    .await
                    .map(|d| d.map(|d| (d.spec.replicas, d.spec.selector.match_labels))),
                _ => Api::<ReplicaSet>::namespaced(client.clone(), &ns)
                    .get_opt(&target.name)
                    .await
                    .map(|d| d.map(|d| (d.spec.replicas, d.spec.selector.match_labels))),
            };
            match got {
                Ok(Some((replicas, sel))) => {
                    facts.target_found = Tri::Yes;
                    let sel = sel.unwrap_or_default();
                    facts.pods = matching(&sel);
                    facts.workload = Some(WorkloadFacts {
                        replicas: replicas.map(|r| r.max(0) as u32),
                        selector: sel,
                    });
                }
                Ok(None) => facts.target_found = Tri::No,
                Err(e) => facts.api.error = Some(e.to_string()),
            }
        }
    }
    // RBAC for port-forward, both verbs.
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    facts.rbac.get_portforward = can(&reviews, &ns, "get").await;
    facts.rbac.create_portforward = can(&reviews, &ns, "create").await;
    // A real port-forward to the target port in one pod (a ready one if there is one).
    let pod_target_port = match (&facts.service, target.kind) {
        (Some(s), _) => service_port(s, target.port.as_ref()).map(|p| p.target_port.clone()),
        (None, _) => target.port.clone(),
    };
    // Through a Service or workload, kubeway forwards to ready pods only; a pod target is
    // dialed as it is.
    let candidates: Vec<&PodFacts> = facts
        .pods
        .iter()
        .filter(|p| p.phase == "Running" && (p.ready || target.kind == TargetKind::Pod))
        .collect();
    if let (Some(pod), Some(tp)) = (candidates.first(), pod_target_port)
        && let Some(port) = pod_port(pod, &tp).or(tp.number())
    {
        let fw = PortForwarder::new(&cluster, &ns, &pod.name, ForwardOptions::default());
        let (ok, error) = match fw.connect(port).await {
            Err(e) => (false, Some(e.to_string())),
            Ok(mut s) => {
                let mut buf = [0u8; 1];
                match tokio::time::timeout(probe_timeout, s.read(&mut buf)).await {
                    Ok(Err(e)) => (false, Some(e.to_string())),
                    // Silence (the app waits for a request) or bytes or a clean close: accepted.
                    _ => (true, None),
                }
            }
        };
        facts.portforward.push(PortForwardProbe {
            pod: pod.name.clone(),
            port,
            ok,
            error,
        });
    }
    Ok(facts)
}
