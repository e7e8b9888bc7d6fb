//! Injected API faults for reliability tests.
//!
//! YAML shape (the `faults:` key of the scenario's lab document, or the body of
//! `POST /lab/v1/faults` as JSON):
//!
//! ```yaml
//! faults:
//!   seed: 42                 # makes `rate` deterministic (default: 1)
//!   rules:
//!   - verb: create           # get|list|watch|create|update|patch|delete|deletecollection|"*"
//!     resource: pods/eviction # plural or plural/subresource, "*" for any (default "*")
//!     namespace: default     # optional
//!     name: web-0            # optional
//!     code: 429              # answer this status (429 carries Retry-After), 500, 503, ...
//!     retryAfterSeconds: 1   # for 429/503 (default 1)
//!     message: "injected"    # optional Status message
//!     rate: 0.5              # probability per matching request (default 1.0)
//!     count: 3               # only the next N matching requests (default: unlimited)
//!     latencyMs: 200         # delay before answering (alone or with an error)
//!     timeout: true          # hang for `latencyMs` (default 30000), then drop the connection
//!     cutWatchAfter: 10      # watches end after N events
//! ```
//!
//! The API layer asks [`Faults::decide`] once per request.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    #[serde(default = "star")]
    pub verb: String,
    #[serde(default = "star")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timeout: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_watch_after: Option<u64>,
}

fn star() -> String {
    "*".into()
}

/// The whole fault configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// What the API layer must do for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultAction {
    pub latency_ms: u64,
    /// Answer with this error code instead of serving.
    pub code: Option<u16>,
    pub retry_after: Option<u64>,
    pub message: Option<String>,
    /// Hang `latency_ms`, then drop the connection without an answer.
    pub timeout: bool,
    /// End a watch after this many events.
    pub cut_watch_after: Option<u64>,
}

impl FaultAction {
    pub fn is_none(&self) -> bool {
        *self == FaultAction::default()
    }
}

struct State {
    config: FaultConfig,
    /// Remaining uses per rule (from `count`).
    remaining: Vec<Option<u64>>,
    rng: u64,
}

/// Runtime fault state.
pub struct Faults {
    state: Mutex<State>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(FaultConfig::default())
    }
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let f = Faults {
            state: Mutex::new(State {
                config: FaultConfig::default(),
                remaining: vec![],
                rng: 1,
            }),
        };
        f.set(config);
        f
    }

    /// Replace the configuration (resets counts and the random sequence).
    pub fn set(&self, config: FaultConfig) {
        let mut s = self.state.lock();
        s.remaining = config.rules.iter().map(|r| r.count).collect();
        s.rng = config.seed.unwrap_or(1).max(1);
        s.config = config;
    }

    pub fn config(&self) -> FaultConfig {
        self.state.lock().config.clone()
    }

    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    /// Decide for one request. `resource` is "pods" or "pods/eviction".
    pub fn decide(&self, verb: &str, resource: &str, namespace: &str, name: &str) -> FaultAction {
        let mut s = self.state.lock();
        if s.config.rules.is_empty() {
            return FaultAction::default();
        }
        let mut act = FaultAction::default();
        for i in 0..s.config.rules.len() {
            let r = s.config.rules[i].clone();
            let res_ok = r.resource == "*"
                || r.resource == resource
                || (r.resource == "*/*" && resource.contains('/'))
                || (!r.resource.contains('/')
                    && resource.split('/').next() == Some(r.resource.as_str())
                    && !resource.contains('/'));
            if !(r.verb == "*" || r.verb == verb) || !res_ok {
                continue;
            }
            if r.namespace.as_deref().is_some_and(|n| n != namespace)
                || r.name.as_deref().is_some_and(|n| n != name)
            {
                continue;
            }
            if s.remaining[i] == Some(0) {
                continue;
            }
            if let Some(rate) = r.rate {
                // xorshift64: deterministic for a given seed
                let mut x = s.rng;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.rng = x;
                if (x % 1_000_000) as f64 / 1_000_000.0 >= rate {
                    continue;
                }
            }
            if let Some(n) = s.remaining[i].as_mut() {
                *n -= 1;
            }
            act.latency_ms += r.latency_ms.unwrap_or(0);
            if r.timeout {
                act.timeout = true;
                if r.latency_ms.is_none() {
                    act.latency_ms += 30_000;
                }
            }
            if act.code.is_none() && r.code.is_some() {
                act.code = r.code;
                act.retry_after = r.retry_after_seconds.or(match r.code {
                    Some(429) | Some(503) => Some(1),
                    _ => None,
                });
                act.message = r.message.clone();
            }
            if r.cut_watch_after.is_some() {
                act.cut_watch_after = r.cut_watch_after;
            }
        }
        act
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limits_and_matching() {
        let f = Faults::new(FaultConfig {
            seed: None,
            rules: vec![FaultRule {
                verb: "create".into(),
                resource: "pods/eviction".into(),
                code: Some(429),
                count: Some(2),
                ..Default::default()
            }],
        });
        assert_eq!(f.decide("create", "pods", "d", "x"), FaultAction::default());
        assert_eq!(
            f.decide("create", "pods/eviction", "d", "x").code,
            Some(429)
        );
        assert_eq!(
            f.decide("create", "pods/eviction", "d", "x").retry_after,
            Some(1)
        );
        assert!(f.decide("create", "pods/eviction", "d", "x").is_none());
    }

    #[test]
    fn rate_is_deterministic_per_seed() {
        let cfg = FaultConfig {
            seed: Some(7),
            rules: vec![FaultRule {
                verb: "*".into(),
                resource: "*".into(),
                code: Some(500),
                rate: Some(0.5),
                ..Default::default()
            }],
        };
        let run = || {
            let f = Faults::new(cfg.clone());
            (0..50)
                .map(|_| f.decide("get", "pods", "", "").code.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }
}
