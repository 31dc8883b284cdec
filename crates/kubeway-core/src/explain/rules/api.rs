//! API-layer rules: the API server answers (and how it refused when it did not), and RBAC on
//! `pods/portforward`.

use super::*;

impl Engine<'_> {
    /// The API server answers; `false` stops the path there.
    pub(super) fn api_server(&mut self) -> bool {
        let f = self.f;
        let server = if f.api.server.is_empty() {
            "the API server".to_string()
        } else {
            f.api.server.clone()
        };
        match f.api.reachable {
            Tri::No => {
                self.api_refused(&server);
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

    /// The API server did not answer, or refused: name what happened as an API-layer verdict.
    fn api_refused(&mut self, server: &str) {
        let failure = self.f.api.failure.clone();
        self.api_refused_with(server, failure.as_ref());
    }

    fn api_refused_with(&mut self, server: &str, failure: Option<&ApiFailure>) {
        let f = self.f;
        let ctx = &f.context;
        let error = f
            .api
            .error
            .clone()
            .or_else(|| failure.map(|x| x.message.clone()))
            .unwrap_or_else(|| "no answer".to_string());
        let kind = failure
            .map(|x| x.kind)
            .unwrap_or(ApiFailureKind::Unreachable);
        let user = f
            .api
            .user
            .clone()
            .unwrap_or_else(|| "the context's user".to_string());
        let (finding, cause, fixes, observed, aside) = match kind {
            ApiFailureKind::Unauthorized => {
                let creds = f
                    .api
                    .credentials
                    .clone()
                    .unwrap_or_else(|| "credentials".to_string());
                let mut fixes = vec![Fix::run(
                    "see which user and cluster the context uses",
                    format!(
                        "kubectl config view --minify --context {}",
                        shell_word(&ctx.name)
                    ),
                )];
                fixes.extend(
                    refresh_commands(self.provider, &ctx.name, &creds)
                        .into_iter()
                        .map(|(a, c)| Fix::run(a, c)),
                );
                (
                    FindingKind::ApiUnauthorized,
                    format!(
                        "The API server at {server} rejected the credentials of user {user} (401 Unauthorized): the {creds} in the kubeconfig is expired, revoked or meant for another cluster."
                    ),
                    fixes,
                    "401 Unauthorized: credentials rejected".to_string(),
                    "the credentials were rejected".to_string(),
                )
            }
            ApiFailureKind::Forbidden => {
                let what = forbidden_words(failure);
                (
                    FindingKind::ApiForbidden,
                    format!(
                        "The API server at {server} refused user {user} (403 Forbidden): {what}."
                    ),
                    vec![Fix::run(
                        "see what you may do",
                        format!("kubectl auth can-i --list{}", self.ns),
                    )],
                    "403 Forbidden".to_string(),
                    "RBAC refused the request".to_string(),
                )
            }
            ApiFailureKind::TimedOut => (
                FindingKind::ApiUnreachable,
                format!(
                    "The API server at {server} did not answer in time: is the cluster running, or is a VPN or proxy in the way?"
                ),
                start_commands(self.provider, &ctx.name)
                    .into_iter()
                    .map(|(a, c)| Fix::run(a, c))
                    .collect(),
                "timed out".to_string(),
                "the API server does not answer".to_string(),
            ),
            ApiFailureKind::Unreachable | ApiFailureKind::Other => (
                FindingKind::ApiUnreachable,
                format!(
                    "The API server at {server} cannot be reached ({}): is the cluster running?",
                    trim_period(&one_line(&error))
                ),
                start_commands(self.provider, &ctx.name)
                    .into_iter()
                    .map(|(a, c)| Fix::run(a, c))
                    .collect(),
                one_line(&error),
                "the API server does not answer".to_string(),
            ),
        };
        self.set(
            HopKind::ApiServer,
            "API server",
            format!("{server} answers"),
            observed,
            Status::Broken,
        );
        self.find(
            finding,
            HopKind::ApiServer,
            Layer::Api,
            Severity::Broken,
            cause,
            fixes,
            vec![],
            aside,
        );
        self.fill_unknown(match finding {
            FindingKind::ApiUnauthorized => "the API server rejected the credentials",
            FindingKind::ApiForbidden => "the API server refused the request",
            _ => "the API server does not answer",
        });
    }

    /// Reading the target was refused (403) or failed: the question cannot be answered.
    /// `false` stops the path there.
    pub(super) fn target_readable(&mut self) -> bool {
        let f = self.f;
        let Some(failure) = f.api_failures.iter().find(|x| {
            x.verb.as_deref() == Some("get")
                && x.resource.as_deref() == Some(f.target.kind.plural())
        }) else {
            return true;
        };
        if failure.kind == ApiFailureKind::Unauthorized {
            // The credentials, not this request: the API server's verdict.
            let server = if f.api.server.is_empty() {
                "the API server".to_string()
            } else {
                f.api.server.clone()
            };
            self.api_refused_with(&server, Some(failure));
            return false;
        }
        let user = f
            .api
            .user
            .clone()
            .unwrap_or_else(|| "the context's user".to_string());
        let (hop, what) = match f.target.kind {
            TargetKind::Service => (HopKind::Service, "Service"),
            TargetKind::Pod => (HopKind::Pods, "pod"),
            _ => (HopKind::Selector, "workload"),
        };
        let resource = f.target.kind.plural();
        let (kind, cause, fixes, observed) = match failure.kind {
            ApiFailureKind::Forbidden => (
                FindingKind::ApiForbidden,
                format!(
                    "RBAC does not let user {user} get {resource} in namespace {} (403 Forbidden), so {} {} cannot be read.",
                    f.namespace, what, f.target.name
                ),
                vec![
                    Fix::run(
                        "check what you may do",
                        format!("kubectl auth can-i get {resource}{}", self.ns),
                    ),
                    Fix::run(
                        "have an admin grant it with a Role (and a RoleBinding to you)",
                        format!(
                            "kubectl create role {resource}-reader{} --verb=get,list,watch --resource={resource},pods,endpointslices",
                            self.ns
                        ),
                    ),
                ],
                format!("403 Forbidden: get {resource}"),
            ),
            ApiFailureKind::Unauthorized => (
                FindingKind::ApiUnauthorized,
                format!(
                    "The API server rejected the credentials of user {user} (401 Unauthorized) when reading {what} {}.",
                    f.target.name
                ),
                vec![Fix::run(
                    "see which user and cluster the context uses",
                    format!(
                        "kubectl config view --minify --context {}",
                        shell_word(&f.context.name)
                    ),
                )],
                "401 Unauthorized".to_string(),
            ),
            _ => (
                FindingKind::ApiUnreachable,
                format!(
                    "Reading {what} {} from the API server at {} failed: {}.",
                    f.target.name,
                    f.api.server,
                    trim_period(&one_line(&failure.message))
                ),
                vec![Fix::run(
                    "retry with kubectl to see its view",
                    format!(
                        "kubectl get {resource}{} {}",
                        self.ns,
                        shell_word(&f.target.name)
                    ),
                )],
                one_line(&failure.message),
            ),
        };
        self.set(
            hop,
            format!("{what} {}", f.target.name),
            format!("get {resource} in namespace {}", f.namespace),
            observed,
            Status::Broken,
        );
        self.find(
            kind,
            hop,
            Layer::Api,
            Severity::Broken,
            cause,
            fixes,
            vec![],
            "the target could not be read".to_string(),
        );
        self.fill_unknown("the target could not be read");
        false
    }

    /// Requests besides the target's that failed: each leaves a hop unchecked, and says so.
    pub(super) fn api_request_warnings(&mut self) {
        let f = self.f;
        let target_get = |x: &&ApiFailure| {
            x.verb.as_deref() == Some("get")
                && x.resource.as_deref() == Some(f.target.kind.plural())
        };
        let unauthorized = self.has(FindingKind::ApiUnauthorized);
        for failure in f
            .api_failures
            .iter()
            .filter(|x| !target_get(x))
            .filter(|x| !(unauthorized && x.kind == ApiFailureKind::Unauthorized))
        {
            let asked = match (&failure.verb, &failure.resource) {
                (Some(v), Some(r)) => format!("{v} {r}"),
                (_, Some(r)) => r.clone(),
                _ => "a request".to_string(),
            };
            let status = match failure.status {
                Some(403) => " (403 Forbidden)".to_string(),
                Some(401) => " (401 Unauthorized)".to_string(),
                Some(s) => format!(" ({s})"),
                None => String::new(),
            };
            let verb_res = asked.clone();
            self.find(
                FindingKind::ApiRequestFailed,
                HopKind::ApiServer,
                Layer::Api,
                Severity::Warning,
                format!(
                    "The API server refused to {asked}{status}, so what depends on it was not checked: {}.",
                    trim_period(&one_line(&failure.message))
                ),
                vec![Fix::run(
                    "check what you may do",
                    format!("kubectl auth can-i {verb_res}{}", self.ns),
                )],
                vec![],
                format!("could not {asked}"),
            );
        }
    }
}

/// What a 403 was about, in words.
fn forbidden_words(failure: Option<&ApiFailure>) -> String {
    match failure {
        Some(ApiFailure {
            verb: Some(v),
            resource: Some(r),
            namespace,
            ..
        }) => match namespace {
            Some(ns) => format!("it may not {v} {r} in namespace {ns}"),
            None => format!("it may not {v} {r}"),
        },
        Some(x) => trim_period(&one_line(&x.message)).to_string(),
        None => "the request was denied".to_string(),
    }
}
