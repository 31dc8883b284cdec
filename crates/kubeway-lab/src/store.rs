//! The object store: every API object as JSON, one global resourceVersion, a bounded event history
//! for watches (410 Gone past it) and a broadcast of changes for watchers and controllers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};

use crate::resources::ResourceDef;
use crate::status::ApiError;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event type string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// The resource of the object.
    pub res: &'static ResourceDef,
    /// Added/Modified/Deleted.
    pub kind: EventType,
    /// The object after the change (for deletes: as it was, with the delete's resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change, for filtered watches.
    pub old: Option<Arc<Value>>,
}

type Key = (String, String);

struct Inner {
    rv: u64,
    objects: HashMap<&'static str, BTreeMap<Key, Arc<Value>>>,
    history: VecDeque<Arc<Event>>,
    /// Events at or below this resourceVersion are gone from the history.
    compacted: u64,
}

/// The lab's storage, shared by the API server, the controllers and the kubelet.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    changed: Notify,
    history_cap: usize,
}

/// Current time in the apiserver's RFC 3339 form, to the second.
pub fn now_rfc3339() -> String {
    let ts = jiff::Timestamp::now();
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A fresh UID.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// `metadata.namespace` and `metadata.name` of an object.
pub fn ns_name(obj: &Value) -> (String, String) {
    let m = &obj["metadata"];
    (
        m["namespace"].as_str().unwrap_or_default().to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn rv_of(obj: &Value) -> Option<u64> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

impl Store {
    /// An empty store keeping `history_cap` events for watches.
    pub fn new(history_cap: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(16384);
        Arc::new(Self {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted: 1,
            }),
            tx,
            changed: Notify::new(),
            history_cap,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Waits until something changes (for controllers).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// One object.
    pub fn get(&self, res: &'static ResourceDef, ns: &str, name: &str) -> Option<Arc<Value>> {
        let inner = self.lock();
        inner
            .objects
            .get(res.plural)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// All objects of a resource, in one namespace or all, with the list's resourceVersion.
    pub fn list(&self, res: &'static ResourceDef, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(res.plural)
            .map(|m| {
                m.iter()
                    .filter(|((ons, _), _)| ns.is_none_or(|n| n == ons))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv)
    }

    fn record(&self, inner: &mut Inner, ev: Event) {
        let ev = Arc::new(ev);
        inner.history.push_back(ev.clone());
        while inner.history.len() > self.history_cap {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted = old.rv;
            }
        }
        let _ = self.tx.send(ev);
        self.changed.notify_one();
    }

    /// Creates an object: sets uid, creationTimestamp, resourceVersion and generation.
    pub fn create(
        &self,
        res: &'static ResourceDef,
        mut obj: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let (ns, name) = ns_name(&obj);
        let mut inner = self.lock();
        let map = inner.objects.entry(res.plural).or_default();
        if map.contains_key(&(ns.clone(), name.clone())) {
            return Err(ApiError::already_exists(&res.qualified(), &name));
        }
        inner.rv += 1;
        let rv = inner.rv;
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(new_uid());
        meta["resourceVersion"] = json!(rv.to_string());
        if meta.get("creationTimestamp").is_none_or(Value::is_null) {
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        if obj.get("spec").is_some() && res.kind != "Pod" {
            obj["metadata"]["generation"] = json!(1);
        }
        let obj = Arc::new(obj);
        inner
            .objects
            .entry(res.plural)
            .or_default()
            .insert((ns, name), obj.clone());
        self.record(
            &mut inner,
            Event {
                rv,
                res,
                kind: EventType::Added,
                object: obj.clone(),
                old: None,
            },
        );
        Ok(obj)
    }

    /// Replaces an object. With `check_rv`, a stale `metadata.resourceVersion` is a Conflict.
    /// Server-owned metadata (uid, creationTimestamp) is kept; generation grows when spec changes.
    /// Returns the stored object; an update that changes nothing does not bump the resourceVersion.
    pub fn update(
        &self,
        res: &'static ResourceDef,
        mut obj: Value,
        check_rv: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let (ns, name) = ns_name(&obj);
        let mut inner = self.lock();
        let old = inner
            .objects
            .get(res.plural)
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&res.qualified(), &name))?;
        if check_rv
            && let Some(want) = rv_of(&obj)
            && Some(want) != rv_of(&old)
        {
            return Err(ApiError::conflict(&res.qualified(), &name));
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        for key in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
            match old["metadata"].get(key) {
                Some(v) => obj["metadata"][key] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(key);
                    }
                }
            }
        }
        if *old == obj {
            return Ok(old);
        }
        if obj.get("spec") != old.get("spec") && res.kind != "Pod" {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Arc::new(obj);
        inner
            .objects
            .entry(res.plural)
            .or_default()
            .insert((ns, name), obj.clone());
        self.record(
            &mut inner,
            Event {
                rv,
                res,
                kind: EventType::Modified,
                object: obj.clone(),
                old: Some(old),
            },
        );
        Ok(obj)
    }

    /// Read-modify-write under the store lock: `f` edits a copy; nothing is written if it
    /// returns an error or changes nothing.
    pub fn mutate(
        &self,
        res: &'static ResourceDef,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let current = self
            .get(res, ns, name)
            .ok_or_else(|| ApiError::not_found(&res.qualified(), name))?;
        let mut copy = (*current).clone();
        f(&mut copy)?;
        // Keep the version we read so a concurrent writer turns into a Conflict, not a lost update.
        copy["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        self.update(res, copy, true)
    }

    /// Like [`Store::mutate`], retrying on conflicts (for controllers).
    pub fn mutate_retry(
        &self,
        res: &'static ResourceDef,
        ns: &str,
        name: &str,
        f: impl Fn(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let mut last = None;
        for _ in 0..8 {
            match self.mutate(res, ns, name, &f) {
                Err(e) if e.reason == "Conflict" => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| ApiError::internal("retry loop ended")))
    }

    /// Removes an object and returns it as it was deleted.
    pub fn delete(
        &self,
        res: &'static ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        let old = inner
            .objects
            .get_mut(res.plural)
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))
            .ok_or_else(|| ApiError::not_found(&res.qualified(), name))?;
        inner.rv += 1;
        let rv = inner.rv;
        let mut gone = (*old).clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        let gone = Arc::new(gone);
        self.record(
            &mut inner,
            Event {
                rv,
                res,
                kind: EventType::Deleted,
                object: gone.clone(),
                old: Some(old),
            },
        );
        Ok(gone)
    }

    /// Everything that happened after `since`, plus a receiver for what comes next.
    /// `Err` with the oldest version still held when `since` was compacted away (410 Gone).
    #[allow(clippy::type_complexity)]
    pub fn watch_from(
        &self,
        since: u64,
    ) -> Result<(Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>), u64> {
        let inner = self.lock();
        if since < inner.compacted {
            return Err(inner.compacted);
        }
        let rx = self.tx.subscribe();
        let past = inner
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect();
        Ok((past, rx))
    }

    /// A receiver for future events only.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Drops the whole event history, so watches from any older version get 410 Gone (tests).
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    /// Wakes controllers without a change (periodic resync).
    pub fn poke(&self) {
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::core;

    fn pod(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": []}})
    }

    #[test]
    fn create_update_delete_bump_versions_and_record_events() {
        let s = Store::new(100);
        let pods = core("pods");
        let a = s.create(pods, pod("a")).expect("create");
        let rv1 = rv_of(&a).expect("rv");
        assert!(
            s.create(pods, pod("a")).is_err(),
            "duplicate name must fail"
        );
        let same = s.update(pods, (*a).clone(), true).expect("no-op update");
        assert_eq!(rv_of(&same), Some(rv1), "a no-op update keeps the version");
        let mut changed = (*a).clone();
        changed["spec"]["nodeName"] = json!("n1");
        let b = s.update(pods, changed.clone(), true).expect("update");
        assert!(rv_of(&b).expect("rv") > rv1);
        assert_eq!(
            s.update(pods, changed, true).map_err(|e| e.reason),
            Err("Conflict"),
            "a stale resourceVersion is a conflict"
        );
        s.delete(pods, "default", "a").expect("delete");
        let (events, _rx) = s.watch_from(rv1 - 1).expect("history kept");
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventType::Added, EventType::Modified, EventType::Deleted]
        );
    }

    #[test]
    fn compacted_history_is_gone() {
        let s = Store::new(2);
        let pods = core("pods");
        let first = s.create(pods, pod("a")).expect("create");
        for n in ["b", "c", "d"] {
            s.create(pods, pod(n)).expect("create");
        }
        let rv = rv_of(&first).expect("rv");
        assert!(s.watch_from(rv).is_err(), "older than the history: 410");
        assert!(s.watch_from(s.current_rv()).is_ok());
        s.compact();
        assert!(s.watch_from(s.current_rv() - 1).is_err());
    }

    #[test]
    fn uids_look_like_uuids() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert_ne!(u, new_uid());
    }
}
