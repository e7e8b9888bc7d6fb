//! Watch streams: newline-delimited `{"type": ..., "object": ...}` events
//! (apiserver pkg/endpoints/handlers/watch.go), resumable from a resourceVersion, with
//! bookmarks, `sendInitialEvents`, `timeoutSeconds` and 410 Gone as an ERROR event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::{ApiContext, Repr, request::ResourceRequest, table};
use crate::error::ApiResult;
use crate::store::{EventKind, ListQuery, WatchEvent};

/// Default watch length when the client gives no timeoutSeconds (upstream: 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often a bookmark is sent when the client allows them (upstream: about a minute).
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// One watch event line, serialised without copying the object.
fn line(kind: &str, obj: &Value) -> Bytes {
    let mut v = Vec::with_capacity(1024);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    let _ = serde_json::to_writer(&mut v, obj);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

pub fn serve(
    ctx: Arc<ApiContext>,
    rr: ResourceRequest,
    q: ListQuery,
    repr: Repr,
    cut_after: Option<u64>,
) -> ApiResult<Response> {
    let store = &ctx.lab.store;
    let res = rr.res;
    let rv_param = rr.q("resourceVersion").unwrap_or("").to_string();
    let bookmarks = rr.q("allowWatchBookmarks") == Some("true");
    let send_initial = rr.q("sendInitialEvents") == Some("true");
    let timeout = rr
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let include = rr.q("includeObject").unwrap_or("Metadata").to_string();

    let (tx, mut rx_body) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    // Initial state: rv "" or "0" or sendInitialEvents → synthetic ADDED events.
    let from_start = rv_param.is_empty() || rv_param == "0" || send_initial;
    let from = rv_param.parse::<u64>().unwrap_or(0);
    let etcd = crate::etcd::EtcdWatcher::of(&ctx.lab);
    // A lab on etcd opens the etcd watch in the task below; the store answers at once.
    let (mut initial, mut last_rv, mut source, mut gone): (
        Vec<WatchEvent>,
        u64,
        Option<Source>,
        Option<Value>,
    ) = if etcd.is_some() {
        (Vec::new(), from, None, None)
    } else if from_start {
        let (evs, rv, rx) = store.watch_with_initial(res, &q);
        (evs, rv, Some(Source::Store(rx)), None)
    } else {
        match store.watch_from(res, from) {
            Ok((backlog, rx)) => (backlog, from, Some(Source::Store(rx)), None),
            Err(e) => (Vec::new(), from, None, Some(e.to_status())),
        }
    };

    let ctx2 = ctx.clone();
    tokio::spawn(async move {
        if let Some(etcd) = etcd {
            let ns = q.namespace.as_deref();
            match etcd.watch(res, ns, (!from_start).then_some(from)).await {
                Ok((evs, rv, events)) => {
                    initial = evs;
                    last_rv = rv;
                    source = Some(Source::Etcd(Box::new(events)));
                }
                Err(e) => gone = Some(e.to_status()),
            }
        }
        let clock = ctx2.lab.clock.clone();
        let encode = |ev: &WatchEvent, kind: EventKind| -> Bytes {
            let obj: Value = match repr {
                Repr::Table => {
                    let k = ev.object.get("kind").and_then(Value::as_str).unwrap_or("");
                    table::table(
                        &clock,
                        k,
                        &[&ev.object],
                        &include,
                        json!({"resourceVersion": ev.rv.to_string()}),
                    )
                }
                Repr::PartialMetadata => table::partial_metadata(&ev.object),
                // No copy of the object: write it straight into the event line.
                Repr::Object => return line(kind.as_str(), &ev.object),
            };
            line(kind.as_str(), &obj)
        };
        let mut sent: u64 = 0;
        if let Some(st) = gone {
            let _ = tx.send(Ok(line("ERROR", &st))).await;
            return;
        }
        for ev in &initial {
            if let Some(k) = filter(ev, &q) {
                if tx.send(Ok(encode(ev, k))).await.is_err() {
                    return;
                }
                sent += 1;
                if cut_after.is_some_and(|n| sent >= n) {
                    return;
                }
            }
            last_rv = last_rv.max(ev.rv);
        }
        if send_initial && bookmarks {
            let bm = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": last_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(Ok(line("BOOKMARK", &bm))).await.is_err() {
                return;
            }
        }
        let Some(mut rx) = source else { return };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if bookmarks {
                        let bm = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                        let _ = tx.send(Ok(line("BOOKMARK", &bm))).await;
                    }
                    return;
                }
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(Ok(line("BOOKMARK", &bm))).await.is_err() { return; }
                }
                _ = tx.closed() => return,
                r = rx.next() => match r {
                    Some(Ok(ev)) => {
                        if ev.rv <= last_rv || !std::ptr::eq(ev.resource, res) {
                            continue;
                        }
                        last_rv = ev.rv;
                        if let Some(k) = filter(&ev, &q) {
                            if tx.send(Ok(encode(&ev, k))).await.is_err() { return; }
                            sent += 1;
                            if cut_after.is_some_and(|n| sent >= n) { return; }
                        }
                    }
                    // etcd ended the watch with a Status (410 Gone after a compaction):
                    // watcher.go transformErrorToEvent makes it a watch.Error event, which
                    // the handler (endpoints/handlers/watch.go) writes as an ERROR line in
                    // the already-started 200 stream; clients relist on its 410.
                    Some(Err(e)) => {
                        let _ = tx.send(Ok(line("ERROR", &e.to_status()))).await;
                        return;
                    }
                    // Fell behind or the store went away: end the watch; the client resumes
                    // from its last resourceVersion (or re-lists on 410).
                    None => return,
                }
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx_body.poll_recv(cx));
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

/// Where a watch's changes come from: the store's history (in memory) or etcd's watch (a lab
/// on etcd).
enum Source {
    Store(broadcast::Receiver<WatchEvent>),
    Etcd(Box<crate::etcd::EtcdEvents>),
}

impl Source {
    async fn next(&mut self) -> Option<ApiResult<WatchEvent>> {
        match self {
            Source::Store(rx) => rx.recv().await.ok().map(Ok),
            Source::Etcd(events) => events.next().await,
        }
    }
}

/// The event type a watcher with query `q` sees for `ev`, if any: an object that leaves the
/// selection is reported DELETED, one that enters it ADDED (like the watch cache's filtering).
fn filter(ev: &WatchEvent, q: &ListQuery) -> Option<EventKind> {
    let now = q.matches(&ev.object);
    match ev.kind {
        EventKind::Added => now.then_some(EventKind::Added),
        EventKind::Deleted => {
            (now || ev.old.as_ref().is_some_and(|o| q.matches(o))).then_some(EventKind::Deleted)
        }
        EventKind::Modified => {
            let before = ev.old.as_ref().is_none_or(|o| q.matches(o));
            match (before, now) {
                (true, true) => Some(EventKind::Modified),
                (false, true) => Some(EventKind::Added),
                (true, false) => Some(EventKind::Deleted),
                (false, false) => None,
            }
        }
    }
}
