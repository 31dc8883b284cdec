//! API-layer rules: the API server answers (and how it refused when it did not), and RBAC on
//! `pods/portforward`.

use super::*;

impl Engine<'_> {
    /// The API server answers; `false` stops the path there.
    pub(super) fn api_server(&mut self) -> bool {
        let f = self.f;
        let ctx = &f.context;
        let server = if f.api.server.is_empty() {
            "the API server".to_string()
        } else {
            f.api.server.clone()
        };
        match f.api.reachable {
            Tri::No => {
                let error = f
                    .api
                    .error
                    .clone()
                    .unwrap_or_else(|| "no answer".to_string());
                let cause = format!(
                    "The API server at {server} does not answer ({}): is the cluster running?",
                    one_line(&error)
                );
                let fixes = start_commands(self.provider, &ctx.name)
                    .into_iter()
                    .map(|(a, c)| Fix::run(a, c))
                    .collect();
                self.set(
                    HopKind::ApiServer,
                    "API server",
                    format!("{server} answers"),
                    one_line(&error),
                    Status::Broken,
                );
                self.find(
                    FindingKind::ApiUnreachable,
                    HopKind::ApiServer,
                    Layer::Api,
                    Severity::Broken,
                    cause,
                    fixes,
                    vec![],
                    "the API server does not answer".to_string(),
                );
                self.fill_unknown("the API server does not answer");
                false
            }
            Tri::Yes => {
                let observed = match &f.api.version {
                    Some(v) => format!("answers ({v})"),
                    None => "answers".to_string(),
                };
                self.set(
                    HopKind::ApiServer,
                    "API server",
                    format!("{server} answers"),
                    observed,
                    Status::Ok,
                );
                true
            }
            Tri::Unknown => {
                self.set(
                    HopKind::ApiServer,
                    "API server",
                    format!("{server} answers"),
                    "not checked",
                    Status::Unknown,
                );
                true
            }
        }
    }

    pub(super) fn rbac(&mut self) {
        let r = &self.f.rbac;
        if self.has(FindingKind::PortForwardForbidden) {
            return;
        }
        let observed = format!(
            "get: {}, create: {}",
            r.get_portforward, r.create_portforward
        );
        let checked = "may get and create pods/portforward";
        let pf_ok = matches!(self.pf, PfOutcome::Ok { .. });
        match (r.get_portforward, r.create_portforward) {
            (Tri::No, Tri::No) if !pf_ok => {
                self.rbac_forbidden(None);
            }
            (Tri::Yes, Tri::Yes) => self.set(
                HopKind::Rbac,
                "RBAC pods/portforward",
                checked,
                observed,
                Status::Ok,
            ),
            (Tri::No, _) | (_, Tri::No) => {
                self.set(
                    HopKind::Rbac,
                    "RBAC pods/portforward",
                    checked,
                    observed,
                    Status::Warning,
                );
                let (cause, verb) = if r.get_portforward == Tri::No {
                    (
                        format!(
                            "You may not get pods/portforward in namespace {}, which the WebSocket transports (kubectl 1.31+'s default) need; legacy SPDY (create) still works.",
                            self.f.namespace
                        ),
                        "get",
                    )
                } else {
                    (
                        format!(
                            "You may not create pods/portforward in namespace {}, which legacy SPDY needs, and API servers from 1.35 on check for WebSockets too.",
                            self.f.namespace
                        ),
                        "create",
                    )
                };
                self.find(
                    FindingKind::PortForwardVerbMissing,
                    HopKind::Rbac,
                    Layer::Api,
                    Severity::Warning,
                    cause,
                    vec![Fix::run(
                        format!("ask for a Role that grants {verb} as well"),
                        format!(
                            "kubectl create role portforward{} --verb=get,create --resource=pods/portforward",
                            self.ns
                        ),
                    )],
                    vec![WayKind::PortForward],
                    format!("RBAC lacks {verb} on pods/portforward"),
                );
            }
            _ => {
                let status = if pf_ok { Status::Ok } else { Status::Unknown };
                let observed = if pf_ok {
                    "port-forward worked".to_string()
                } else {
                    "not checked".to_string()
                };
                self.set(
                    HopKind::Rbac,
                    "RBAC pods/portforward",
                    checked,
                    observed,
                    status,
                );
            }
        }
    }

    pub(super) fn rbac_forbidden(&mut self, error: Option<&str>) {
        let r = &self.f.rbac;
        let ns = &self.f.namespace;
        let verbs = match (r.get_portforward, r.create_portforward) {
            (Tri::No, Tri::No) => "neither get nor create".to_string(),
            (Tri::No, _) => "not get".to_string(),
            (_, Tri::No) => "not create".to_string(),
            _ => "not get or create".to_string(),
        };
        let mut cause = format!(
            "RBAC lets you {verbs} pods/portforward in namespace {ns}: WebSocket port-forward (kubectl 1.31+) needs get, legacy SPDY needs create, and API servers from 1.35 on check both."
        );
        if let Some(e) = error {
            cause = format!(
                "The API server refused the port-forward ({}): RBAC lets you {verbs} pods/portforward in namespace {ns}, and WebSocket port-forward needs get while legacy SPDY needs create.",
                short_error(e)
            );
        }
        self.set(
            HopKind::Rbac,
            "RBAC pods/portforward",
            "may get and create pods/portforward",
            format!(
                "get: {}, create: {}",
                r.get_portforward, r.create_portforward
            ),
            Status::Broken,
        );
        let ns_flag = self.ns.clone();
        self.find(
            FindingKind::PortForwardForbidden,
            HopKind::Rbac,
            Layer::Api,
            Severity::Broken,
            cause,
            vec![
                Fix::run(
                    "check what you may do",
                    format!("kubectl auth can-i create pods/portforward{ns_flag} && kubectl auth can-i get pods/portforward{ns_flag}"),
                ),
                Fix::run(
                    "have an admin grant it with a Role",
                    format!("kubectl create role portforward{ns_flag} --verb=get,create --resource=pods/portforward"),
                ),
                Fix::run(
                    "and bind it to you",
                    format!("kubectl create rolebinding portforward{ns_flag} --role=portforward --user=YOU"),
                ),
            ],
            vec![WayKind::PortForward],
            "RBAC denies pods/portforward".to_string(),
        );
    }
}
