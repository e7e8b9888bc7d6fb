//! core/v1 Events as the components record them (k8s.io/client-go tools/record/event.go and
//! events_cache.go: an identical event — same object, reason, message — bumps `count` and
//! `lastTimestamp` instead of creating a new object).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::lab::Lab;
use crate::resources;
use crate::store::random_suffix;

use super::util;

/// (involved uid, reason, message) → (namespace, event name)
type Seen = HashMap<(String, String, String), (String, String)>;

#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Seen>,
}

impl Recorder {
    #[allow(clippy::too_many_arguments)]
    /// Record an event about `involved` from `component` (e.g. "default-scheduler").
    pub fn record(
        &self,
        lab: &Arc<Lab>,
        involved: &Value,
        ty: &str,
        reason: &str,
        message: &str,
        component: &str,
        host: Option<&str>,
    ) {
        let ns = match util::namespace(involved) {
            "" => "default".to_string(),
            n => n.to_string(),
        };
        let key = (
            util::uid(involved).to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let now = lab.clock.now_rfc3339();
        let existing = self.seen.lock().get(&key).cloned();
        if let Some((ens, ename)) = existing {
            let bumped = lab.store.mutate(&resources::EVENT, &ens, &ename, |e| {
                let c = e.get("count").and_then(Value::as_i64).unwrap_or(1);
                e["count"] = json!(c + 1);
                e["lastTimestamp"] = json!(now);
                Ok(())
            });
            if bumped.is_ok() {
                return;
            }
        }
        // tools/record/event.go makeEvent: name is "<object>.<unique hex>".
        let suffix: String = random_suffix(16)
            .bytes()
            .map(|b| format!("{:x}", b % 16))
            .collect();
        let name = format!("{}.{}", util::name(involved), suffix);
        let mut source = json!({"component": component});
        if let Some(h) = host {
            source["host"] = json!(h);
        }
        let ev = json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": util::s(involved, "/apiVersion"),
                "kind": util::s(involved, "/kind"),
                "name": util::name(involved),
                "namespace": util::namespace(involved),
                "uid": util::uid(involved),
                "resourceVersion": crate::store::meta_str(involved, "resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": ty,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": host.unwrap_or(""),
        });
        if lab.store.create(&resources::EVENT, &ns, ev, false).is_ok() {
            let mut seen = self.seen.lock();
            if seen.len() > 50_000 {
                seen.clear();
            }
            seen.insert(key, (ns, name));
        }
    }

    /// Drop events older than `ttl_seconds` of lab time (kube-apiserver --event-ttl, 1h).
    pub fn expire(&self, lab: &Arc<Lab>, ttl_seconds: f64) {
        let (evs, _) = lab.store.list(&resources::EVENT, &Default::default());
        for e in evs {
            let last = util::s(&e, "/lastTimestamp");
            if util::seconds_since(lab.clock.now(), last).is_some_and(|age| age > ttl_seconds) {
                lab.store
                    .remove(&resources::EVENT, util::namespace(&e), util::name(&e));
            }
        }
    }
}
