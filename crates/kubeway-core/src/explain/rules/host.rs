//! Host-layer rules: the machine kubeway runs on and the kubeconfig context it reads.

use super::*;

impl Engine<'_> {
    pub(super) fn host(&mut self) {
        let observed = match self.det {
            Some(d) => format!(
                "kubeway runs on {}",
                crate::explain::words::host_words(d.host)
            ),
            None => "kubeway runs here".to_string(),
        };
        self.set(
            HopKind::Host,
            "your machine",
            "where the browser or curl runs",
            observed,
            Status::Ok,
        );
    }

    /// The kubeconfig context exists; `false` stops the path there.
    pub(super) fn context(&mut self) -> bool {
        let f = self.f;
        let ctx = &f.context;
        if !ctx.exists {
            let near = near_names(&ctx.name, &ctx.known_contexts);
            let mut cause = format!("The kubeconfig has no context named {:?}", ctx.name);
            if !near.is_empty() {
                cause.push_str(&format!(" (did you mean {}?)", join_and(&near)));
            } else if !ctx.known_contexts.is_empty() {
                cause.push_str(&format!(
                    "; it has {}",
                    join_and(
                        &ctx.known_contexts
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                    )
                ));
            }
            cause.push('.');
            let mut fixes = vec![Fix::run(
                "list the contexts your kubeconfig has",
                "kubectl config get-contexts",
            )];
            if let Some(best) = near.first() {
                fixes.push(Fix::run(
                    "explain through the context you probably meant",
                    format!(
                        "kubeway explain --context {} {}",
                        shell_word(best),
                        self.who_plain()
                    ),
                ));
                fixes.push(Fix::run(
                    "or make it the current context",
                    format!("kubectl config use-context {}", shell_word(best)),
                ));
            }
            self.set(
                HopKind::Context,
                format!("context {}", ctx.name),
                "the kubeconfig has this context",
                "no such context",
                Status::Broken,
            );
            self.find(
                FindingKind::ContextMissing,
                HopKind::Context,
                Layer::Host,
                Severity::Broken,
                cause,
                fixes,
                vec![],
                "the context does not exist".to_string(),
            );
            self.fill_unknown("the context does not exist");
            return false;
        }
        self.set(
            HopKind::Context,
            format!("context {}", ctx.name),
            "the kubeconfig has this context",
            format!(
                "cluster at {}",
                if f.api.server.is_empty() {
                    "?"
                } else {
                    &f.api.server
                }
            ),
            Status::Ok,
        );
        true
    }
}
