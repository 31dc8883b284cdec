//! Diagnosis of the path from the host to a target's pods: [`ExplainFacts`] in, a
//! [`PathReport`] out, with every hop checked and the broken layer named.
//!
//! # Ways
//!
//! A *way* is one route from the host to the pods:
//! - `node_port`: host → driver boundary → node address:nodePort → Service → EndpointSlice → pods;
//! - `localhost_node_port`: host → localhost:nodePort (the environment's forwarder) → Service → …;
//! - `load_balancer`: host → LoadBalancer ingress → Service → …;
//! - `port_forward`: host → context → API server → RBAC → pod → the process on `localhost:port`.
//!
//! A way is `ok` only when proven end to end (a probe answered); otherwise it takes the worst
//! status of its hops (`broken` before `unknown`; `warning` and `skipped` hops do not block it).
//!
//! # Precedence
//!
//! Rules run in path order and stop early when nothing further can be checked:
//! 1. the context exists (`context`, layer host) — stops;
//! 2. the API server answers (`api_server`, layer api) — stops;
//! 3. the target exists, with near names for typos (`service`, `pods` or `selector`, layer
//!    kubernetes) — stops; an ExternalName Service or a port the Service does not have stop too;
//! 4. the Service's type against what was asked: ClusterIP asked for as a NodePort
//!    (`node_port`, layer kubernetes), LoadBalancer `<pending>` (`lb_ingress`, layer driver when
//!    the environment has no LoadBalancer implementation, else kubernetes);
//! 5. the selector matches pods (`selector`), the pods are ready (`pods`), the target port
//!    resolves on them (`target_port`), the EndpointSlices list ready endpoints (`endpoints`) —
//!    all layer kubernetes;
//! 6. port-forward reaches the process: a refused `localhost` dial is a wrong target port
//!    (`target_port`, kubernetes) when the pod declares other ports, else the app listening on its
//!    pod address only (`process`, layer app);
//! 7. RBAC on `pods/portforward` (`rbac`, layer api);
//! 8. the direct ways from the host: driver boundary (`driver_boundary`, layer driver), NodePort
//!    on the node (`node_port`, layer node), LoadBalancer address (`lb_ingress`, layer driver).
//!
//! A Kubernetes-side failure is blamed before a host-side one: a NodePort probe that fails while
//! no endpoint is ready says nothing about the boundary, so its hop is `unknown`.
//!
//! The verdict's primary finding is the first `broken` finding in this order (then the first
//! `warning`). Which findings are `broken` depends on the [`Intent`]:
//! - a finding about ways that do not matter to the intent is a `warning`;
//! - an *environmental* finding (boundary, node, LoadBalancer reachability) is a `warning` while
//!   another way that matters works (or could not be checked): with intent `any`, "reachable via
//!   port-forward; direct NodePort blocked by the Docker Desktop VM" is a healthy verdict with a
//!   warning, while with intent `direct` or `node_port` the same boundary is the broken verdict;
//! - everything else (Kubernetes, app, API) is `broken`.
//!
//! Health is then `broken` when a finding is broken and no way that matters works, `degraded`
//! when a finding is broken but a way that matters works, `healthy` when a way that matters works
//! and nothing is broken, `unknown` otherwise. When no way of the intent's kind applies to the
//! target (a pod asked for directly), every way matters.

mod facts;
mod rules;
mod words;

pub use words::api_failure_sentence;

pub use facts::{
    ApiFacts, ApiFailure, ApiFailureKind, ConditionFacts, ContainerFacts, ContainerPortFacts,
    ContextFacts, EndpointFacts, EndpointPortFacts, EventFacts, ExplainFacts, Intent,
    NamespacedName, PodFacts, PodIpProbe, PodLabels, PortForwardProbe, ProbeFacts, RbacFacts,
    ReadinessProbeFacts, ServiceFacts, ServicePortFacts, ServiceType, UnknownServiceType,
    WorkloadFacts, WorkloadSummary, pod_declares, pod_port, service_port,
};

use crate::path::PathReport;

/// Checks every hop from the host to the target's pods and names the first broken one.
///
/// Pure and total: any facts, however incomplete or contradictory, give a report; a fact that
/// was not collected makes its hop `unknown`.
pub fn explain(facts: &ExplainFacts) -> PathReport {
    rules::explain(facts)
}

#[cfg(test)]
mod tests;

/// Fixtures shared with the renderers' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{boundary as boundary_facts, healthy as healthy_facts};
}
