//! The control loops a real control plane runs: scheduling, ReplicaSets, Deployments (rolling
//! updates), Endpoints and EndpointSlices from selectors and readiness, garbage collection by
//! ownerReferences, and events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::Ctx;
use crate::admit;
use crate::resources::{RESOURCES, core};
use crate::selectors::LabelSelector;
use crate::store::{Store, now_rfc3339, ns_name};

fn short_hash(s: &str, n: usize) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let d = sha2::Sha256::digest(s.as_bytes());
    d.iter()
        .take(n)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Records a core/v1 Event about `involved` (`{kind, namespace, name, uid, apiVersion}`, and
/// `fieldPath` for a container) from `component` (`kubelet/NODE` names the node as source
/// host). The same event again on the same object counts up (`count`, `lastTimestamp`) instead
/// of adding one, as client-go's event correlator does.
pub fn record_event(
    store: &Store,
    involved: &Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = involved["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let now = now_rfc3339();
    let events = core("events");
    let (existing, _) = store.list(events, Some(&ns));
    let same = existing.iter().find(|e| {
        e["involvedObject"]["uid"] == involved["uid"]
            && e["involvedObject"]["fieldPath"] == involved["fieldPath"]
            && e["reason"] == reason
            && e["message"] == message
            && e["type"] == ty
    });
    if let Some(e) = same {
        let (ens, ename) = ns_name(e);
        let _ = store.mutate_retry(events, &ens, &ename, |o| {
            o["count"] = json!(o["count"].as_i64().unwrap_or(1) + 1);
            o["lastTimestamp"] = json!(now);
            Ok(())
        });
        return;
    }
    let (component, host) = component.split_once('/').unwrap_or((component, ""));
    // `NAME.<hex nanoseconds>` as client-go names events: listed in the order they happened.
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0);
    let next = |last: u64| last.max(nanos) + 1;
    let stamp = LAST
        .fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |last| Some(next(last)),
        )
        .map_or(nanos, next);
    let name = format!(
        "{}.{stamp:x}",
        involved["name"].as_str().unwrap_or("object"),
    );
    let mut source = json!({"component": component});
    if !host.is_empty() {
        source["host"] = json!(host);
    }
    let ev = json!({
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": ty,
        "source": source,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component,
        "reportingInstance": if host.is_empty() { "kubeway-lab" } else { host },
    });
    let _ = store.create(events, ev);
}

fn involved(obj: &Value) -> Value {
    json!({
        "kind": obj["kind"], "apiVersion": obj["apiVersion"],
        "namespace": obj["metadata"]["namespace"], "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
    })
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Starts the graceful deletion of a scheduled pod: sets `deletionTimestamp` (the kubelet stops
/// it and removes the object). Returns None when the pod must be deleted at once instead
/// (unscheduled, or a grace period of 0).
pub fn terminate_pod(
    store: &Store,
    ns: &str,
    name: &str,
    grace: Option<i64>,
) -> Result<Option<Arc<Value>>, crate::status::ApiError> {
    let pods = core("pods");
    let pod = store
        .get(pods, ns, name)
        .ok_or_else(|| crate::status::ApiError::not_found("pods", name))?;
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return Ok(Some(pod));
    }
    let scheduled = !pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty();
    let grace = grace.unwrap_or_else(|| {
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30)
    });
    if !scheduled || grace == 0 {
        return Ok(None);
    }
    // As the API server: the deletion timestamp is when the grace period ends.
    let deadline = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(
            grace.clamp(0, 365 * 24 * 3600),
        ))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let stamp = deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    store
        .mutate_retry(pods, ns, name, |p| {
            p["metadata"]["deletionTimestamp"] = json!(stamp);
            p["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            Ok(())
        })
        .map(Some)
}

/// Deletes a pod as a controller does: gracefully when it runs, at once otherwise. True if it
/// is going or gone.
fn delete_pod(ctx: &Ctx, ns: &str, name: &str) -> bool {
    match terminate_pod(&ctx.store, ns, name, None) {
        Ok(Some(_)) => true,
        Ok(None) => ctx.store.delete(core("pods"), ns, name).is_ok(),
        Err(_) => false,
    }
}

fn terminating(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

/// Runs every controller once.
pub fn reconcile(ctx: &Ctx) {
    schedule(ctx);
    replicasets(ctx);
    deployments(ctx);
    statefulsets(ctx);
    endpoints(ctx);
    load_balancers(ctx);
    garbage_collect(&ctx.store);
}

/// Whether a pod's nodeSelector admits a node with these labels.
fn fits(pod: &Value, node_labels: &Value) -> bool {
    pod["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| node_labels[k] == *v)
}

fn schedule(ctx: &Ctx) {
    let nodes = ctx.node_names();
    if nodes.is_empty() {
        return;
    }
    let node_labels: HashMap<String, Value> = nodes
        .iter()
        .map(|n| {
            let labels = ctx
                .store
                .get(core("nodes"), "", n)
                .map(|o| o["metadata"]["labels"].clone())
                .unwrap_or(Value::Null);
            (n.clone(), labels)
        })
        .collect();
    let (pods, _) = ctx.store.list(core("pods"), None);
    let mut load: HashMap<String, usize> = nodes.iter().map(|n| (n.clone(), 0)).collect();
    for p in &pods {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *load.entry(n.to_string()).or_default() += 1;
        }
    }
    for p in pods.iter().filter(|p| {
        p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
            && !terminating(p)
    }) {
        let (ns, name) = ns_name(p);
        let Some(node) = nodes
            .iter()
            .filter(|n| fits(p, &node_labels[*n]))
            .min_by_key(|n| load.get(*n).copied().unwrap_or(0))
            .cloned()
        else {
            // No node fits: the pod stays Pending with the scheduler's reason, said once.
            let total = nodes.len();
            let msg = format!(
                "0/{total} nodes are available: {total} node(s) didn't match Pod's node affinity/selector. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
            );
            let said = p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "PodScheduled" && c["message"] == msg.as_str())
            });
            if !said {
                let _ = ctx.store.mutate_retry(core("pods"), &ns, &name, |o| {
                    o["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": msg, "lastProbeTime": null,
                        "lastTransitionTime": now_rfc3339()}]);
                    Ok(())
                });
                record_event(
                    &ctx.store,
                    &involved(p),
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    "default-scheduler",
                );
            }
            continue;
        };
        if ctx
            .store
            .mutate_retry(core("pods"), &ns, &name, |o| {
                o["spec"]["nodeName"] = json!(node);
                o["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}]);
                Ok(())
            })
            .is_ok()
        {
            *load.entry(node.clone()).or_default() += 1;
            record_event(
                &ctx.store,
                &involved(p),
                "Normal",
                "Scheduled",
                &format!("Successfully assigned {ns}/{name} to {node}"),
                "default-scheduler",
            );
        }
    }
}

fn replicasets(ctx: &Ctx) {
    let rs_res = core("replicasets");
    let (sets, _) = ctx.store.list(rs_res, None);
    let (pods, _) = ctx.store.list(core("pods"), None);
    for rs in sets {
        let (ns, name) = ns_name(&rs);
        let rs_uid = uid(&rs).to_string();
        let selector = LabelSelector::from_object(&rs["spec"]["selector"]);
        let mut mine: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| p["metadata"]["namespace"] == ns.as_str() && owned_by(p, &rs_uid))
            .filter(|p| !terminating(p))
            .collect();
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        if mine.len() < want {
            for _ in mine.len()..want {
                let t = &rs["spec"]["template"];
                let mut pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "generateName": format!("{name}-"), "namespace": ns,
                        "name": format!("{name}-{}", admit::random_suffix(5)),
                        "labels": t["metadata"]["labels"], "annotations": t["metadata"]["annotations"],
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}],
                    },
                    "spec": t["spec"],
                });
                if pod["metadata"]["annotations"].is_null()
                    && let Some(m) = pod["metadata"].as_object_mut()
                {
                    m.remove("annotations");
                }
                if admit::admit_create(ctx, core("pods"), &mut pod).is_ok()
                    && let Ok(created) = ctx.store.create(core("pods"), pod)
                {
                    record_event(
                        &ctx.store,
                        &involved(&rs),
                        "Normal",
                        "SuccessfulCreate",
                        &format!(
                            "Created pod: {}",
                            created["metadata"]["name"].as_str().unwrap_or_default()
                        ),
                        "replicaset-controller",
                    );
                }
            }
        } else if mine.len() > want {
            // Delete unscheduled, then not ready, then newest first.
            mine.sort_by_key(|p| {
                (
                    !p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .is_empty(),
                    pod_ready(p),
                    std::cmp::Reverse(
                        p["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            });
            for p in mine.iter().take(mine.len() - want) {
                let (pns, pname) = ns_name(p);
                let gone = delete_pod(ctx, &pns, &pname);
                if gone {
                    record_event(
                        &ctx.store,
                        &involved(&rs),
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pname}"),
                        "replicaset-controller",
                    );
                }
            }
        }
        let (pods_now, _) = ctx.store.list(core("pods"), Some(&ns));
        let mine: Vec<_> = pods_now
            .iter()
            .filter(|p| owned_by(p, &rs_uid) && !terminating(p))
            .collect();
        let ready = mine.iter().filter(|p| pod_ready(p)).count() as i64;
        let labeled = mine
            .iter()
            .filter(|p| selector.matches(&p["metadata"]["labels"]))
            .count() as i64;
        let status = json!({
            "replicas": mine.len() as i64, "fullyLabeledReplicas": labeled,
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        if rs["status"] != status {
            let _ = ctx.store.mutate_retry(rs_res, &ns, &name, |o| {
                o["status"] = status.clone();
                Ok(())
            });
        }
    }
}

/// The ordinal of a StatefulSet's pod (`web-3` → 3), if the name is `set-N`.
fn ordinal(set: &str, pod: &str) -> Option<usize> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// StatefulSets, as the statefulset controller does with `OrderedReady`: pods `NAME-0` …
/// `NAME-(n-1)` with stable names, each created only when every lower ordinal is Running and
/// Ready, a deleted one recreated under the same name (new UID, new address), scale-down from the
/// highest ordinal one at a time, and a changed template rolled out from the highest ordinal
/// down, one pod at a time.
fn statefulsets(ctx: &Ctx) {
    let res = core("statefulsets");
    let (sets, _) = ctx.store.list(res, None);
    for sts in sets {
        let (ns, name) = ns_name(&sts);
        let sts_uid = uid(&sts).to_string();
        let t = &sts["spec"]["template"];
        let revision = format!("{name}-{}", short_hash(&t.to_string(), 10));
        let want = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let (pods, _) = ctx.store.list(core("pods"), Some(&ns));
        // Every pod with our name pattern that we own, terminating ones too (they hold the name).
        let mut mine: Vec<(usize, &Arc<Value>)> = pods
            .iter()
            .filter(|p| owned_by(p, &sts_uid))
            .filter_map(|p| Some((ordinal(&name, p["metadata"]["name"].as_str()?)?, p)))
            .collect();
        mine.sort_by_key(|(i, _)| *i);
        let busy = mine.iter().any(|(_, p)| terminating(p));
        let all_ready = mine.iter().all(|(_, p)| pod_ready(p));
        let event = |reason: &str, msg: String| {
            record_event(
                &ctx.store,
                &involved(&sts),
                "Normal",
                reason,
                &msg,
                "statefulset-controller",
            );
        };
        // The lowest missing ordinal below `want`, created when all below it are ready.
        let missing = (0..want).find(|i| !mine.iter().any(|(o, _)| o == i));
        if let Some(i) = missing {
            let below_ready = mine
                .iter()
                .filter(|(o, _)| *o < i)
                .all(|(_, p)| pod_ready(p) && !terminating(p));
            if below_ready {
                let pod_name = format!("{name}-{i}");
                let mut labels = t["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
                labels["apps.kubernetes.io/pod-index"] = json!(i.to_string());
                labels["controller-revision-hash"] = json!(revision);
                let mut spec = t["spec"].clone();
                spec["hostname"] = json!(pod_name);
                if let Some(svc) = sts["spec"]["serviceName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                {
                    spec["subdomain"] = json!(svc);
                }
                let mut pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "name": pod_name, "namespace": ns, "labels": labels,
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": sts_uid, "controller": true, "blockOwnerDeletion": true}],
                    },
                    "spec": spec,
                });
                if let Some(a) = t["metadata"]["annotations"].as_object() {
                    pod["metadata"]["annotations"] = json!(a);
                }
                if admit::admit_create(ctx, core("pods"), &mut pod).is_ok()
                    && ctx.store.create(core("pods"), pod).is_ok()
                {
                    event(
                        "SuccessfulCreate",
                        format!("create Pod {pod_name} in StatefulSet {name} successful"),
                    );
                }
            }
        } else if !busy {
            // Scale down from the highest ordinal, then roll the template out from the highest.
            let excess = mine.iter().rev().find(|(o, _)| *o >= want);
            let outdated = || {
                mine.iter().rev().find(|(_, p)| {
                    p["metadata"]["labels"]["controller-revision-hash"] != revision.as_str()
                })
            };
            let victim = match excess {
                Some(v) => Some(v),
                None if all_ready => outdated(),
                None => None,
            };
            if let Some((_, p)) = victim {
                let (pns, pname) = ns_name(p);
                let gone = delete_pod(ctx, &pns, &pname);
                if gone {
                    event(
                        "SuccessfulDelete",
                        format!("delete Pod {pname} in StatefulSet {name} successful"),
                    );
                }
            }
        }
        let (pods_now, _) = ctx.store.list(core("pods"), Some(&ns));
        let live: Vec<_> = pods_now
            .iter()
            .filter(|p| owned_by(p, &sts_uid) && !terminating(p))
            .collect();
        let ready = live.iter().filter(|p| pod_ready(p)).count() as i64;
        let updated = live
            .iter()
            .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == revision.as_str())
            .count() as i64;
        let status = json!({
            "replicas": live.len() as i64, "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": updated, "updatedReplicas": updated,
            "currentRevision": revision, "updateRevision": revision,
            "collisionCount": 0,
            "observedGeneration": sts["metadata"]["generation"],
        });
        if sts["status"] != status {
            let _ = ctx.store.mutate_retry(res, &ns, &name, |o| {
                o["status"] = status.clone();
                Ok(())
            });
        }
    }
}

fn percent(v: &Value, of: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let x = p * of as f64 / 100.0;
            if round_up {
                x.ceil() as i64
            } else {
                x.floor() as i64
            }
        }
        _ => {
            let x = 0.25 * of as f64;
            if round_up {
                x.ceil() as i64
            } else {
                x.floor() as i64
            }
        }
    }
}

fn deployments(ctx: &Ctx) {
    let d_res = core("deployments");
    let rs_res = core("replicasets");
    let (deps, _) = ctx.store.list(d_res, None);
    let (sets, _) = ctx.store.list(rs_res, None);
    for d in deps {
        let (ns, name) = ns_name(&d);
        let d_uid = uid(&d).to_string();
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let hash = short_hash(&d["spec"]["template"].to_string(), 10);
        let mut owned: Vec<Arc<Value>> = sets
            .iter()
            .filter(|r| r["metadata"]["namespace"] == ns.as_str() && owned_by(r, &d_uid))
            .cloned()
            .collect();
        let revision = |r: &Value| {
            r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let max_rev = owned.iter().map(|r| revision(r)).max().unwrap_or(0);
        let new_rs = owned
            .iter()
            .find(|r| r["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
            .cloned();
        let old: Vec<Arc<Value>> = owned
            .iter()
            .filter(|r| r["metadata"]["labels"]["pod-template-hash"] != hash.as_str())
            .cloned()
            .collect();
        let old_total: i64 = old
            .iter()
            .map(|r| r["spec"]["replicas"].as_i64().unwrap_or(0))
            .sum();
        let strategy = &d["spec"]["strategy"];
        let recreate = strategy["type"] == "Recreate";
        let mut surge = percent(&strategy["rollingUpdate"]["maxSurge"], desired, true);
        let unavailable = percent(&strategy["rollingUpdate"]["maxUnavailable"], desired, false);
        if surge == 0 && unavailable == 0 {
            surge = 1;
        }
        let new_rs = match new_rs {
            Some(r) => r,
            None => {
                let rs_name = format!("{name}-{hash}");
                let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
                labels["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut template = d["spec"]["template"].clone();
                template["metadata"]["labels"] = labels.clone();
                let initial = if old_total == 0 {
                    desired
                } else if recreate {
                    0
                } else {
                    (desired + surge - old_total).clamp(0, desired)
                };
                let mut rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name, "namespace": ns, "labels": labels,
                        "annotations": {"kubernetes.io/change-cause": d["metadata"]["annotations"]["kubernetes.io/change-cause"],
                                        "deployment.kubernetes.io/revision": (max_rev + 1).to_string(),
                                        "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                                        "deployment.kubernetes.io/max-replicas": (desired + surge).to_string()},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": d_uid, "controller": true, "blockOwnerDeletion": true}],
                    },
                    "spec": {"replicas": initial, "selector": selector, "template": template, "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0)},
                });
                if rs["metadata"]["annotations"]["kubernetes.io/change-cause"].is_null()
                    && let Some(a) = rs["metadata"]["annotations"].as_object_mut()
                {
                    a.remove("kubernetes.io/change-cause");
                }
                if admit::admit_create(ctx, rs_res, &mut rs).is_err() {
                    continue;
                }
                match ctx.store.create(rs_res, rs) {
                    Ok(r) => {
                        record_event(
                            &ctx.store,
                            &involved(&d),
                            "Normal",
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {}-{hash} from 0 to {initial}", name),
                            "deployment-controller",
                        );
                        owned.push(r.clone());
                        r
                    }
                    Err(_) => continue,
                }
            }
        };
        let set_replicas = |r: &Value, n: i64| {
            let (rns, rname) = ns_name(r);
            let from = r["spec"]["replicas"].as_i64().unwrap_or(0);
            if from == n {
                return;
            }
            let _ = ctx.store.mutate_retry(rs_res, &rns, &rname, |o| {
                o["spec"]["replicas"] = json!(n);
                Ok(())
            });
            let verb = if n > from { "up" } else { "down" };
            record_event(
                &ctx.store,
                &involved(&d),
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled {verb} replica set {rname} from {from} to {n}"),
                "deployment-controller",
            );
        };
        // An older ReplicaSet whose template is current again (a rollback, `kubectl rollout
        // undo`) becomes the newest revision, its old number kept in revision-history, as the
        // deployment controller does; the Deployment carries the current revision.
        let mut new_rev = revision(&new_rs).max(1);
        if revision(&new_rs) < max_rev {
            new_rev = max_rev + 1;
            let (rns, rname) = ns_name(&new_rs);
            let old_rev = revision(&new_rs);
            let _ = ctx.store.mutate_retry(rs_res, &rns, &rname, |o| {
                let a = &mut o["metadata"]["annotations"];
                let mut history: Vec<String> = a["deployment.kubernetes.io/revision-history"]
                    .as_str()
                    .map(|h| h.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                history.push(old_rev.to_string());
                a["deployment.kubernetes.io/revision-history"] = json!(history.join(","));
                a["deployment.kubernetes.io/revision"] = json!(new_rev.to_string());
                Ok(())
            });
        }
        let new_replicas = new_rs["spec"]["replicas"].as_i64().unwrap_or(0);
        let new_available = new_rs["status"]["availableReplicas"].as_i64().unwrap_or(0);
        if old_total == 0 {
            set_replicas(&new_rs, desired);
        } else if recreate {
            for r in &old {
                set_replicas(r, 0);
            }
        } else {
            let target = (desired + surge - old_total).clamp(new_replicas, desired);
            set_replicas(&new_rs, target);
            let all_pods: i64 = owned
                .iter()
                .map(|r| r["status"]["replicas"].as_i64().unwrap_or(0))
                .sum();
            let min_available = desired - unavailable;
            let new_unavailable = (new_replicas - new_available).max(0);
            let mut can_remove = (all_pods - min_available - new_unavailable).max(0);
            let mut olds = old.clone();
            olds.sort_by_key(|r| revision(r));
            for r in &olds {
                if can_remove == 0 {
                    break;
                }
                let have = r["spec"]["replicas"].as_i64().unwrap_or(0);
                let cut = have.min(can_remove);
                if cut > 0 {
                    set_replicas(r, have - cut);
                    can_remove -= cut;
                }
            }
        }
        if recreate && old_total == 0 {
            set_replicas(&new_rs, desired);
        }
        // Status from the ReplicaSets as they are now.
        let (sets_now, _) = ctx.store.list(rs_res, Some(&ns));
        let mine: Vec<_> = sets_now.iter().filter(|r| owned_by(r, &d_uid)).collect();
        let sum = |k: &str| -> i64 {
            mine.iter()
                .map(|r| r["status"][k].as_i64().unwrap_or(0))
                .sum()
        };
        let updated = mine
            .iter()
            .find(|r| r["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
            .map(|r| r["status"]["replicas"].as_i64().unwrap_or(0))
            .unwrap_or(0);
        let (replicas, ready, available) = (
            sum("replicas"),
            sum("readyReplicas"),
            sum("availableReplicas"),
        );
        let complete = updated == desired && replicas == desired && available == desired;
        let now = now_rfc3339();
        let mut status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "unavailableReplicas": (desired - available).max(0),
            "conditions": [
                {"type": "Available", "status": if available >= desired - unavailable { "True" } else { "False" },
                 "reason": if available >= desired - unavailable { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                 "message": if available >= desired - unavailable { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
                 "lastUpdateTime": now, "lastTransitionTime": now},
                {"type": "Progressing", "status": "True",
                 "reason": if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                 "message": if complete { format!("ReplicaSet \"{name}-{hash}\" has successfully progressed.") } else { format!("ReplicaSet \"{name}-{hash}\" is progressing.") },
                 "lastUpdateTime": now, "lastTransitionTime": now},
            ],
        });
        for k in [
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "updatedReplicas",
            "replicas",
        ] {
            if status[k] == 0
                && let Some(m) = status.as_object_mut()
            {
                m.remove(k);
            }
        }
        // Only rewrite conditions when something besides their timestamps changed.
        let strip = |v: &Value| {
            let mut v = v.clone();
            for c in v["conditions"].as_array_mut().into_iter().flatten() {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastUpdateTime");
                    m.remove("lastTransitionTime");
                }
            }
            v
        };
        let rev_annotation = d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .map(str::to_string);
        if strip(&d["status"]) != strip(&status) || rev_annotation != Some(new_rev.to_string()) {
            let _ = ctx.store.mutate_retry(d_res, &ns, &name, |o| {
                if !o["metadata"]["annotations"].is_object() {
                    o["metadata"]["annotations"] = json!({});
                }
                o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                    json!(new_rev.to_string());
                if strip(&o["status"]) != strip(&status) {
                    o["status"] = status.clone();
                }
                Ok(())
            });
        }
    }
}

/// Resolves a Service port's targetPort on one pod: a number, or a named container port of the
/// Service port's `protocol` (a UDP Service port never lands on a TCP container port).
pub fn resolve_target_port(pod: &Value, target: &Value, protocol: &str) -> Option<u16> {
    match target {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok().or_else(|| {
            pod["spec"]["containers"]
                .as_array()?
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .find(|p| {
                    p["name"] == s.as_str() && p["protocol"].as_str().unwrap_or("TCP") == protocol
                })?["containerPort"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
        }),
        _ => None,
    }
}

const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

fn endpoints(ctx: &Ctx) {
    let svc_res = core("services");
    let (services, _) = ctx.store.list(svc_res, None);
    let (pods, _) = ctx.store.list(core("pods"), None);
    let slice_res = core("endpointslices");
    let ep_res = core("endpoints");
    let (slices, _) = ctx.store.list(slice_res, None);
    let (eps, _) = ctx.store.list(ep_res, None);
    let mut wanted_slices: HashSet<(String, String)> = HashSet::new();
    for svc in &services {
        let (ns, name) = ns_name(svc);
        let sel = &svc["spec"]["selector"];
        if sel.as_object().is_none_or(|m| m.is_empty()) || svc["spec"]["type"] == "ExternalName" {
            continue;
        }
        let selector = LabelSelector::from_match_labels(sel);
        let mut members: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| p["metadata"]["namespace"] == ns.as_str())
            .filter(|p| selector.matches(&p["metadata"]["labels"]))
            .filter(|p| {
                p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| !ip.is_empty())
            })
            .collect();
        members.sort_by_key(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let svc_ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        // Group pods by their resolved port set (a named targetPort may differ between pods).
        let mut groups: BTreeMap<String, (Vec<Value>, Vec<&Arc<Value>>)> = BTreeMap::new();
        for p in &members {
            let ports: Vec<Value> = svc_ports
                .iter()
                .filter_map(|sp| {
                    let protocol = sp["protocol"].as_str().unwrap_or("TCP");
                    resolve_target_port(p, &sp["targetPort"], protocol).map(|tp| {
                        json!({"name": sp["name"].as_str().unwrap_or(""), "port": tp, "protocol": protocol})
                    })
                })
                .collect();
            let key = serde_json::to_string(&ports).unwrap_or_default();
            groups
                .entry(key)
                .or_insert_with(|| (ports, Vec::new()))
                .1
                .push(p);
        }
        if groups.is_empty() {
            groups.insert(String::new(), (Vec::new(), Vec::new()));
        }
        let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid(svc), "controller": true, "blockOwnerDeletion": true}]);
        let mut subsets = Vec::new();
        for (key, (ports, group)) in &groups {
            let slice_name = format!("{name}-{}", short_hash(&format!("{}{key}", uid(svc)), 5));
            wanted_slices.insert((ns.clone(), slice_name.clone()));
            let endpoints: Vec<Value> = group
                .iter()
                .map(|p| {
                    let serving = pod_ready(p);
                    let ending = terminating(p);
                    let mut e = json!({
                        "addresses": [p["status"]["podIP"]],
                        "conditions": {"ready": serving && !ending, "serving": serving, "terminating": ending},
                        "nodeName": p["spec"]["nodeName"],
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]},
                    });
                    // As the EndpointSlice controller: a pod whose subdomain is this Service
                    // publishes its hostname (a StatefulSet's `web-0`).
                    if let Some(host) = p["spec"]["hostname"].as_str().filter(|h| !h.is_empty())
                        && p["spec"]["subdomain"].as_str() == Some(name.as_str())
                    {
                        e["hostname"] = json!(host);
                    }
                    e
                })
                .collect();
            let desired = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "namespace": ns, "generateName": format!("{name}-"),
                    "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                    "ownerReferences": owner},
                "addressType": "IPv4",
                "endpoints": if endpoints.is_empty() { Value::Null } else { json!(endpoints) },
                "ports": if ports.is_empty() { Value::Null } else { json!(ports) },
            });
            match ctx.store.get(slice_res, &ns, &slice_name) {
                None => {
                    let _ = ctx.store.create(slice_res, desired);
                }
                Some(have) => {
                    if have["endpoints"] != desired["endpoints"]
                        || have["ports"] != desired["ports"]
                    {
                        let _ = ctx.store.mutate_retry(slice_res, &ns, &slice_name, |o| {
                            o["endpoints"] = desired["endpoints"].clone();
                            o["ports"] = desired["ports"].clone();
                            Ok(())
                        });
                    }
                }
            }
            if !group.is_empty() {
                let (ready, not_ready): (Vec<_>, Vec<_>) =
                    group.iter().partition(|p| pod_ready(p) && !terminating(p));
                let addr = |p: &&&Arc<Value>| json!({"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"], "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}});
                let mut subset = json!({"ports": ports});
                if !ready.is_empty() {
                    subset["addresses"] = json!(ready.iter().map(addr).collect::<Vec<_>>());
                }
                if !not_ready.is_empty() {
                    subset["notReadyAddresses"] =
                        json!(not_ready.iter().map(addr).collect::<Vec<_>>());
                }
                subsets.push(subset);
            }
        }
        let desired_ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}, "subsets": if subsets.is_empty() { Value::Null } else { json!(subsets) }});
        match ctx.store.get(ep_res, &ns, &name) {
            None => {
                let _ = ctx.store.create(ep_res, desired_ep);
            }
            Some(have) if have["subsets"] != desired_ep["subsets"] => {
                let _ = ctx.store.mutate_retry(ep_res, &ns, &name, |o| {
                    o["subsets"] = desired_ep["subsets"].clone();
                    Ok(())
                });
            }
            Some(_) => {}
        }
    }
    for s in &slices {
        let (ns, name) = ns_name(s);
        if s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == MANAGED_BY
            && !wanted_slices.contains(&(ns.clone(), name.clone()))
        {
            let _ = ctx.store.delete(slice_res, &ns, &name);
        }
    }
    let service_names: HashSet<(String, String)> = services.iter().map(|s| ns_name(s)).collect();
    for e in &eps {
        let key = ns_name(e);
        if !service_names.contains(&key) {
            let _ = ctx.store.delete(ep_res, &key.0, &key.1);
        }
    }
}

fn load_balancers(ctx: &Ctx) {
    let Some(ingress) = ctx.lb_ingress() else {
        return;
    };
    let svc_res = core("services");
    let (services, _) = ctx.store.list(svc_res, None);
    for svc in services
        .iter()
        .filter(|s| s["spec"]["type"] == "LoadBalancer")
    {
        let want = json!({"ingress": [ingress]});
        if svc["status"]["loadBalancer"] != want {
            let (ns, name) = ns_name(svc);
            let _ = ctx.store.mutate_retry(svc_res, &ns, &name, |o| {
                o["status"]["loadBalancer"] = want.clone();
                Ok(())
            });
        }
    }
}

/// Deletes objects all of whose owners are gone (background propagation).
pub fn garbage_collect(store: &Store) {
    let mut uids = HashSet::new();
    let mut all = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.kind != "SelfSubjectAccessReview")
    {
        let (items, _) = store.list(r, None);
        for o in items {
            uids.insert(uid(&o).to_string());
            all.push((r, o));
        }
    }
    for (r, o) in all {
        let Some(refs) = o["metadata"]["ownerReferences"].as_array() else {
            continue;
        };
        if refs.is_empty() {
            continue;
        }
        if refs
            .iter()
            .all(|x| !uids.contains(x["uid"].as_str().unwrap_or_default()))
        {
            let (ns, name) = ns_name(&o);
            let _ = store.delete(r, &ns, &name);
        }
    }
}

/// `propagationPolicy: Orphan`: dependents lose their ownerReference instead of being deleted.
pub fn orphan_dependents(store: &Store, owner_uid: &str) {
    for r in RESOURCES
        .iter()
        .filter(|r| r.kind != "SelfSubjectAccessReview")
    {
        let (items, _) = store.list(r, None);
        for o in items.iter().filter(|o| owned_by(o, owner_uid)) {
            let (ns, name) = ns_name(o);
            let _ = store.mutate_retry(r, &ns, &name, |x| {
                if let Some(refs) = x["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|rf| rf["uid"] != owner_uid);
                }
                Ok(())
            });
        }
    }
}

/// Deletes everything in a deleted namespace.
pub fn delete_namespace_contents(store: &Store, ns: &str) {
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        let (items, _) = store.list(r, Some(ns));
        for o in items {
            let (ons, name) = ns_name(&o);
            let _ = store.delete(r, &ons, &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pod = json!({"spec": {"containers": [{"ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
        ]}]}});
        assert_eq!(resolve_target_port(&pod, &json!("http"), "TCP"), Some(8080));
        assert_eq!(resolve_target_port(&pod, &json!(9000), "TCP"), Some(9000));
        assert_eq!(resolve_target_port(&pod, &json!("metrics"), "TCP"), None);
        assert_eq!(resolve_target_port(&pod, &json!("8081"), "TCP"), Some(8081));
        // A named port counts only for its own protocol, as the endpoint controller's FindPort.
        assert_eq!(resolve_target_port(&pod, &json!("dns"), "UDP"), Some(5353));
        assert_eq!(resolve_target_port(&pod, &json!("dns"), "TCP"), None);
        assert_eq!(resolve_target_port(&pod, &json!("http"), "UDP"), None);
    }

    #[test]
    fn surge_and_unavailable_round_like_kubernetes() {
        assert_eq!(percent(&json!("25%"), 2, true), 1);
        assert_eq!(percent(&json!("25%"), 2, false), 0);
        assert_eq!(percent(&json!(3), 10, true), 3);
        assert_eq!(short_hash("x", 10).len(), 10);
        assert_eq!(short_hash("x", 10), short_hash("x", 10));
    }
}
