//! Follows a target's watch and reports what changed: each port's ready endpoints (added,
//! removed, why none), the API server becoming unreachable and answering again.

use std::sync::Arc;

use kubeway_kube::backends::{BackendSet, Endpoint};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, Events};
use crate::router::{Pods, Router};

pub(crate) fn spawn(
    mut rx: watch::Receiver<BackendSet>,
    pods: Arc<Pods>,
    routers: Vec<Arc<Router>>,
    events: Events,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let target = routers
            .first()
            .map(|r| r.resolved().target.clone())
            .unwrap_or_default();
        let mut last: Option<BackendSet> = None;
        loop {
            let set = rx.borrow_and_update().clone();
            let was = last.as_ref();
            match (set.api_trouble(), was.and_then(BackendSet::api_trouble)) {
                (Some((_, error)), None) => events(Event::ApiUnreachable {
                    target: target.clone(),
                    error: error.to_string(),
                }),
                (None, Some(_)) => events(Event::ApiBack {
                    target: target.clone(),
                }),
                _ => {}
            }
            if set.synced {
                pods.prune(&set);
                for (i, router) in routers.iter().enumerate() {
                    let now = set.port(i);
                    let before = was.filter(|w| w.synced).map(|w| w.port(i));
                    if before.is_some_and(|b| b == now) {
                        continue;
                    }
                    let old: &[Endpoint] = before.map(|b| b.ready.as_slice()).unwrap_or(&[]);
                    events(Event::Endpoints {
                        target: target.clone(),
                        remote: router.resolved().remote(),
                        ready: now.ready.clone(),
                        added: now
                            .ready
                            .iter()
                            .filter(|e| !old.contains(e))
                            .cloned()
                            .collect(),
                        removed: old
                            .iter()
                            .filter(|e| !now.ready.contains(e))
                            .cloned()
                            .collect(),
                        why_empty: now.why_empty.clone(),
                        first: before.is_none(),
                    });
                }
            }
            last = Some(set);
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = cancel.cancelled() => return,
            }
        }
    });
}
