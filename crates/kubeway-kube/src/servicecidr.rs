//! The cluster's Service IP ranges, as the API server publishes them: ServiceCIDR objects
//! (networking.k8s.io/v1, Kubernetes ≥1.33), for routing a whole range to a node.

use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{Api, ListParams};

use crate::{Cluster, KubeError};

/// The IPv4 and IPv6 ranges of every ServiceCIDR, in the order listed; empty when the API server
/// does not serve ServiceCIDRs (before 1.33), so the caller can ask the user instead.
pub async fn service_cidrs(cluster: &Cluster) -> Result<Vec<String>, KubeError> {
    let api: Api<ServiceCIDR> = Api::all(cluster.client.clone());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter_map(|c| c.spec?.cidrs)
            .flatten()
            .collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(source) => Err(KubeError::Api {
            what: "listing the cluster's ServiceCIDRs (networking.k8s.io/v1)".into(),
            source,
        }),
    }
}
