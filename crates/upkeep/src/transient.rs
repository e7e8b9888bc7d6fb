//! Surviving a control plane that goes away for a while: the apiserver restarting during
//! `kubeadm upgrade apply`, a load balancer dropping connections, throttling.
//!
//! * [`RetryLayer`] wraps every client: a request that met a transient answer is sent again
//!   with backoff, as client-go's `rest.Request` does (`request.go` `retryFn`/`IsNextRetry`:
//!   429 and 5xx answers with `Retry-After`, connection resets on GETs, a few times even
//!   before any answer) and, once the server has answered, a refused connection (it is
//!   restarting). Which answers count is
//!   [`transient`], a pure function; `--request-timeout` bounds a request's retries.
//! * [`wait_for`] replaces kube-runtime's `await_condition`, which ends on the first watcher
//!   error: it watches with `watcher`'s default backoff (reconnecting, re-listing after a
//!   410) until the condition holds or its own deadline passes.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use http::{Method, Request, Response, StatusCode};
use kube::Resource;
use kube::api::Api;
use kube::client::Body;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use tower::BoxError;

/// How long one request keeps retrying before its last answer is returned.
pub const RETRY_BUDGET: Duration = Duration::from_secs(120);
/// How long a server that answered before may stay out of reach (refusing or breaking
/// connections) before requests stop waiting for it: the drain's own out-of-reach budget,
/// so a caller's deadline is never outlived by retries beneath it.
pub const OUT_OF_REACH: Duration = crate::drain::execute::LOST_AFTER;
/// Retries of a read whose connection broke before this client had any answer.
pub const BROKEN_BEFORE_ANSWER: u32 = 2;
const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// What went wrong with one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status (and `Retry-After` seconds, if given).
    Status(u16, Option<u64>),
    /// Nothing listened: the request was never sent.
    Refused,
    /// The connection broke or timed out: the request may or may not have been served.
    Broken,
}

/// Which requests may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every request: reads, and writes that are safe to repeat or answer 409/404 when
    /// repeated (the plugins' patches, named creates, deletes).
    All,
    /// Reads only, plus writes that were never sent: for a client whose caller handles
    /// write answers itself (the eviction engine names the budget behind a 429).
    ReadsOnly,
}

/// Whether to send a request again after `outcome`, and after how long at the least.
/// (client-go `rest/request.go`: `checkWait` — 429 and any 5xx with `Retry-After`; kube's
/// retry policy — 429, 503, 504; `IsNextRetry` — connection resets for GETs only.)
/// `reached`: the server has answered this client before. Until then a refused or broken
/// connection is a wrong address or a server that is down, said at once as kubectl does;
/// afterwards it is a server restarting (the apiserver during `kubeadm upgrade apply`).
pub fn transient(
    method: &Method,
    scope: Scope,
    outcome: Outcome,
    reached: bool,
) -> Option<Duration> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let server_delay = |after: Option<u64>| Duration::from_secs(after.unwrap_or(0));
    match outcome {
        Outcome::Refused => reached.then_some(Duration::ZERO),
        // A read whose connection broke: the server took it (nothing refused it), so it is
        // there; client-go retries such GETs on the first request too. Before any answer the
        // policy allows only BROKEN_BEFORE_ANSWER attempts (a server that always drops stays
        // an error said soon).
        Outcome::Broken => read.then_some(Duration::ZERO),
        Outcome::Status(code, after) => match code {
            429 | 503 if read || scope == Scope::All => Some(server_delay(after)),
            500 | 502 | 504 if read => Some(server_delay(after)),
            // Any other 5xx that asks to be retried later, as client-go does.
            500..=599 if after.is_some() && (read || scope == Scope::All) => {
                Some(server_delay(after))
            }
            _ => None,
        },
    }
}

/// The retrying policy for one request (tower's `Retry` clones it per request).
#[derive(Clone)]
pub struct RetryPolicy {
    scope: Scope,
    budget: Duration,
    started: Option<Instant>,
    attempt: u32,
    /// Shared by every request of one client: whether the server ever answered.
    reached: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Shared by every request of one client: since when no request has reached the server.
    unreached_since: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl RetryPolicy {
    /// `budget`: how long one request keeps retrying ([`RETRY_BUDGET`] unless the user gave
    /// a `--request-timeout`).
    pub fn new(scope: Scope, budget: Option<Duration>) -> Self {
        RetryPolicy {
            scope,
            budget: budget.unwrap_or(RETRY_BUDGET),
            started: None,
            attempt: 0,
            reached: Default::default(),
            unreached_since: Default::default(),
        }
    }

    fn backoff(&self) -> Duration {
        MIN_DELAY
            .saturating_mul(2u32.saturating_pow(self.attempt.min(16)))
            .min(MAX_DELAY)
    }
}

/// The outcome of an attempt that produced no HTTP answer: refused when an `io::Error`
/// beneath says so (nothing listened, the request was never sent), otherwise broken (hyper
/// reports a connection closed mid-answer without one: "connection closed before message
/// completed"), which may have been served.
pub fn error_outcome(e: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Outcome::Refused;
        }
        cur = err.source();
    }
    Outcome::Broken
}

fn retry_after<B>(res: &Response<B>) -> Option<u64> {
    res.headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a request to a server out of reach for `gone` is worth sending again after `delay`.
fn still_waiting(gone: Duration, delay: Duration) -> bool {
    gone + delay <= OUT_OF_REACH
}

type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

impl<B> tower::retry::Policy<Request<Body>, Response<B>, BoxError> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        let outcome = match result {
            Ok(res) => {
                self.reached
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                *self
                    .unreached_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                if res.status().is_success() {
                    return None;
                }
                Outcome::Status(res.status().as_u16(), retry_after(res))
            }
            Err(e) => error_outcome(e.as_ref()),
        };
        if let Outcome::Status(code, _) = outcome
            && !(StatusCode::TOO_MANY_REQUESTS.as_u16() == code || code >= 500)
        {
            return None;
        }
        let reached = self.reached.load(std::sync::atomic::Ordering::Relaxed);
        let least = transient(req.method(), self.scope, outcome, reached)?;
        if outcome == Outcome::Broken && !reached && self.attempt >= BROKEN_BEFORE_ANSWER {
            return None;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let delay = least.max(self.backoff());
        if started.elapsed() + delay > self.budget {
            return None;
        }
        if matches!(outcome, Outcome::Refused | Outcome::Broken) {
            // Counted across the client's requests: once the server has been gone for
            // OUT_OF_REACH, every request says so at once and the caller decides.
            let since = *self
                .unreached_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(Instant::now);
            if !still_waiting(since.elapsed(), delay) {
                return None;
            }
        }
        self.attempt += 1;
        tracing::debug!(
            "{} {}: {outcome:?}; retrying in {delay:?}",
            req.method(),
            req.uri()
        );
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Streaming bodies cannot be sent twice; the plugins only send buffered ones.
        let body = req.body().try_clone()?;
        let mut new = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *new.headers_mut() = req.headers().clone();
        *new.extensions_mut() = req.extensions().clone();
        Some(new)
    }
}

/// Waits until `cond` holds for the object `name` (None: it does not exist), watching
/// through disconnects and apiserver restarts until `deadline`. Returns the object that
/// satisfied it (None when absence did), or the last watch error when the time is up.
pub async fn wait_for<K>(
    api: Api<K>,
    name: &str,
    deadline: Duration,
    cond: impl Fn(Option<&K>) -> bool,
) -> Result<Option<K>, WaitError>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff());
    let mut last_error: Option<String> = None;
    let mut listed: Option<K> = None;
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let event = match tokio::time::timeout_at(until, stream.next()).await {
            Err(_) => return Err(WaitError { last_error }),
            Ok(None) => {
                return Err(WaitError {
                    last_error: Some(last_error.unwrap_or_else(|| "the watch ended".into())),
                });
            }
            Ok(Some(Err(e))) => {
                // the backoff above paces the reconnects; keep the error for the report
                tracing::debug!("watching {name}: {e}; reconnecting");
                last_error = Some(e.to_string());
                continue;
            }
            Ok(Some(Ok(event))) => event,
        };
        last_error = None;
        let found = match event {
            watcher::Event::Init => {
                listed = None;
                continue;
            }
            watcher::Event::InitApply(o) => {
                listed = Some(o);
                continue;
            }
            watcher::Event::InitDone => listed.take(),
            watcher::Event::Apply(o) => Some(o),
            watcher::Event::Delete(_) => None,
        };
        if cond(found.as_ref()) {
            return Ok(found);
        }
    }
}

/// A wait that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitError {
    /// The last watch error, when the API was unreachable at the end.
    pub last_error: Option<String>,
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.last_error {
            Some(e) => write!(f, "timed out; the last watch error was: {e}"),
            None => write!(f, "timed out"),
        }
    }
}

impl std::error::Error for WaitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_are_sent_again() {
        use Outcome::*;
        let get = Method::GET;
        let post = Method::POST;
        let patch = Method::PATCH;
        // nothing listened: never sent, safe for every verb (the apiserver restarting)
        assert_eq!(
            transient(&post, Scope::ReadsOnly, Refused, true),
            Some(Duration::ZERO)
        );
        // ... but a server never reached is a wrong address or down: said at once
        assert!(transient(&get, Scope::All, Refused, false).is_none());
        // a broken connection: only reads (client-go IsNextRetry: GET only), before any
        // answer too (the policy caps those attempts at BROKEN_BEFORE_ANSWER)
        assert!(transient(&get, Scope::All, Broken, false).is_some());
        assert!(transient(&get, Scope::All, Broken, true).is_some());
        assert!(transient(&patch, Scope::All, Broken, true).is_none());
        // throttled or unavailable: reads always, writes when the caller does not handle them
        assert!(transient(&get, Scope::ReadsOnly, Status(503, None), true).is_some());
        assert!(
            transient(&patch, Scope::All, Status(429, Some(3)), true)
                == Some(Duration::from_secs(3))
        );
        assert!(transient(&post, Scope::ReadsOnly, Status(429, None), true).is_none());
        // a 500 may be a real refusal of a write (several PDBs): reads only
        assert!(transient(&get, Scope::All, Status(500, None), true).is_some());
        assert!(transient(&post, Scope::All, Status(500, None), true).is_none());
        assert!(transient(&get, Scope::All, Status(504, None), true).is_some());
        // ... unless the server asks to be asked again
        assert!(transient(&post, Scope::All, Status(500, Some(1)), true).is_some());
        // never: client errors
        for code in [400, 403, 404, 409, 410, 422] {
            assert!(
                transient(&get, Scope::All, Status(code, None), true).is_none(),
                "{code}"
            );
        }
    }

    #[test]
    fn a_refused_connection_is_recognised_beneath_wrappers() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "client error (Connect)")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(error_outcome(&refused), Outcome::Refused);
        let reset = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(error_outcome(&reset), Outcome::Broken);
    }

    #[test]
    fn a_server_out_of_reach_is_waited_for_only_within_the_budget() {
        assert!(still_waiting(Duration::ZERO, MAX_DELAY));
        assert!(still_waiting(OUT_OF_REACH - MAX_DELAY, MAX_DELAY));
        assert!(!still_waiting(OUT_OF_REACH, MIN_DELAY));
        // far below the 120 s a single request may otherwise retry
        assert!(OUT_OF_REACH < RETRY_BUDGET);
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut p = RetryPolicy::new(Scope::All, None);
        assert_eq!(p.backoff(), MIN_DELAY);
        p.attempt = 30;
        assert_eq!(p.backoff(), MAX_DELAY);
    }
}
