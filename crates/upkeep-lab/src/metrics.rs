//! Request counters by verb, resource and response code, served as Prometheus text on
//! `/metrics` (`apiserver_request_total{verb,resource,subresource,code}`) and as JSON on
//! `/lab/v1/metrics`. `POST /lab/v1/metrics/reset` zeroes them. Requests outside the resource
//! API (discovery, `/version`, `/lab/v1/...`) are counted with resource "" and their path in the
//! subresource label, so discovery traffic can be told apart from resource calls.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde_json::{Value, json};

/// (verb, resource, subresource, code)
pub type MetricKey = (String, String, String, u16);

/// (group, version, resource, subresource, removed_release)
pub type DeprecatedKey = (String, String, String, String, String);

#[derive(Default)]
pub struct Metrics {
    counts: Mutex<BTreeMap<MetricKey, u64>>,
    /// Deprecated API versions requested since start (see `crate::api::deprecation`).
    deprecated: Mutex<std::collections::BTreeSet<DeprecatedKey>>,
}

impl Metrics {
    /// Count one request. `verb` uses apiserver names: get, list, watch, create, update, patch,
    /// delete, deletecollection.
    pub fn record(&self, verb: &str, resource: &str, subresource: &str, code: u16) {
        *self
            .counts
            .lock()
            .entry((
                verb.to_string(),
                resource.to_string(),
                subresource.to_string(),
                code,
            ))
            .or_insert(0) += 1;
    }

    /// A request to a deprecated version: the gauge for its labels is 1 from now on
    /// (metrics.go `MonitorRequest`).
    pub fn record_deprecated(
        &self,
        group: &str,
        version: &str,
        resource: &str,
        subresource: &str,
        removed_release: &str,
    ) {
        self.deprecated.lock().insert((
            group.to_string(),
            version.to_string(),
            resource.to_string(),
            subresource.to_string(),
            removed_release.to_string(),
        ));
    }

    pub fn reset(&self) {
        self.counts.lock().clear();
        self.deprecated.lock().clear();
    }

    /// Total requests matching verb/resource ("" = any).
    pub fn total(&self, verb: &str, resource: &str) -> u64 {
        self.counts
            .lock()
            .iter()
            .filter(|((v, r, _, _), _)| {
                (verb.is_empty() || v == verb) && (resource.is_empty() || r == resource)
            })
            .map(|(_, n)| *n)
            .sum()
    }

    pub fn to_json(&self) -> Value {
        let counts = self.counts.lock();
        let total: u64 = counts.values().sum();
        let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
        let rows: Vec<Value> = counts
            .iter()
            .map(|((v, r, s, c), n)| {
                *by_verb.entry(v.clone()).or_default() += n;
                json!({"verb": v, "resource": r, "subresource": s, "code": c, "count": n})
            })
            .collect();
        json!({"total": total, "byVerb": by_verb, "requests": rows})
    }

    pub fn to_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, resource, subresource and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        for ((v, r, s, c), n) in self.counts.lock().iter() {
            out.push_str(&format!(
                "apiserver_request_total{{code=\"{c}\",resource=\"{r}\",subresource=\"{s}\",verb=\"{}\"}} {n}\n",
                v.to_uppercase()
            ));
        }
        // metrics.go `deprecatedRequestGauge` (STABLE).
        out.push_str(
            "# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.\n# TYPE apiserver_requested_deprecated_apis gauge\n",
        );
        for (g, v, r, s, removed) in self.deprecated.lock().iter() {
            out.push_str(&format!(
                "apiserver_requested_deprecated_apis{{group=\"{g}\",removed_release=\"{removed}\",resource=\"{r}\",subresource=\"{s}\",version=\"{v}\"}} 1\n"
            ));
        }
        out
    }
}
