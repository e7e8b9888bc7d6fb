//! Turning a URL into a request description, like apiserver
//! staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go.

use std::collections::HashMap;

use http::Method;

use crate::error::ApiError;
use crate::resources::{self, Resource};

/// A resource request.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    /// get, list, watch, create, update, patch, delete, deletecollection
    pub verb: &'static str,
    pub res: &'static Resource,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub query: HashMap<String, String>,
}

impl ResourceRequest {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    pub fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
    /// "pods" or "pods/eviction"
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.res.plural.to_string()
        } else {
            format!("{}/{}", self.res.plural, self.subresource)
        }
    }
}

pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Parse `/api/v1/...` or `/apis/<g>/<v>/...` below the group-version prefix.
/// Returns Ok(None) when the path is not a resource path.
pub fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Option<ResourceRequest>, ApiError> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest.to_vec()),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest.to_vec()),
        _ => return Ok(None),
    };
    let mut query = parse_query(query);
    let mut watch = false;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest.remove(0);
    }
    if query.get("watch").is_some_and(|v| v == "true" || v == "1") {
        watch = true;
    }
    let mut namespace = String::new();
    // requestinfo.go: namespaces/{ns}/{resource}... unless the next part is a namespace subresource
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = rest[1].to_string();
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest.drain(0..2);
        } else {
            namespace.clear();
        }
    }
    let plural = rest.first().copied().unwrap_or_default();
    let name = rest.get(1).map(|s| s.to_string()).unwrap_or_default();
    let subresource = rest.get(2).map(|s| s.to_string()).unwrap_or_default();
    if rest.len() > 3 {
        return Err(ApiError::no_route());
    }
    let Some(res) = resources::lookup(group, version, plural) else {
        return Err(ApiError::no_route());
    };
    if !subresource.is_empty() && !res.has_subresource(&subresource) {
        return Err(ApiError::no_route());
    }
    if !res.namespaced && res != &resources::NAMESPACE {
        namespace.clear();
    }
    let verb = match *method {
        Method::GET | Method::HEAD => {
            if watch {
                "watch"
            } else if name.is_empty() {
                "list"
            } else {
                "get"
            }
        }
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => {
            if name.is_empty() {
                "deletecollection"
            } else {
                "delete"
            }
        }
        _ => return Err(ApiError::method_not_allowed(method.as_str(), path)),
    };
    if res == &resources::NAMESPACE {
        // /api/v1/namespaces/{name} is the namespace itself
        namespace.clear();
    }
    if verb == "watch" {
        query.insert("watch".into(), "true".into());
    }
    Ok(Some(ResourceRequest {
        verb,
        res,
        namespace,
        name,
        subresource,
        query,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let r = parse(
            &Method::GET,
            "/api/v1/namespaces/default/pods/web/log",
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                r.verb,
                r.res.plural,
                r.namespace.as_str(),
                r.name.as_str(),
                r.subresource.as_str()
            ),
            ("get", "pods", "default", "web", "log")
        );
        let r = parse(&Method::GET, "/api/v1/namespaces/kube-system", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.verb, r.res.plural, r.name.as_str()),
            ("get", "namespaces", "kube-system")
        );
        let r = parse(&Method::PUT, "/api/v1/namespaces/x/status", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.res.plural, r.name.as_str(), r.subresource.as_str()),
            ("namespaces", "x", "status")
        );
        let r = parse(
            &Method::GET,
            "/apis/apps/v1/watch/namespaces/a/deployments",
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.verb, r.namespace.as_str()), ("watch", "a"));
        let r = parse(&Method::DELETE, "/api/v1/nodes", None)
            .unwrap()
            .unwrap();
        assert_eq!(r.verb, "deletecollection");
        assert!(parse(&Method::GET, "/api/v1/widgets", None).is_err());
    }
}
