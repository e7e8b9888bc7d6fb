//! Legacy discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`),
//! generated from the resource table. Aggregated discovery (apidiscovery.k8s.io/v2) is not
//! served: requests for it get plain `application/json`, which client-go treats as "legacy
//! discovery" and falls back to (client-go discovery/discovery_client.go).

use serde_json::{Value, json};

use crate::resources::{self, Resource};

pub fn api_versions(server_addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}]
    })
}

fn group_json(group: &str) -> Option<Value> {
    let versions: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let first = versions.first()?.clone();
    Some(json!({"name": group, "versions": versions, "preferredVersion": first}))
}

pub fn api_group_list() -> Value {
    let mut groups = Vec::new();
    for (g, _) in resources::group_versions() {
        if g.is_empty() || groups.iter().any(|x: &Value| x["name"] == g) {
            continue;
        }
        groups.extend(group_json(g));
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    let mut g = group_json(group)?;
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn sub_entry(r: &Resource, sub: &str) -> Value {
    let mut e = json!({"name": format!("{}/{}", r.plural, sub), "singularName": "", "namespaced": r.namespaced});
    let (kind, verbs, gv): (&str, &[&str], Option<(&str, &str)>) = match sub {
        "status" => (r.kind, &["get", "patch", "update"], None),
        // pods/eviction is policy/v1 Eviction (pkg/registry/core/pod/storage/eviction.go GroupVersionKind)
        "eviction" => ("Eviction", &["create"], Some(("policy", "v1"))),
        "log" => ("Pod", &["get"], None),
        "binding" => ("Binding", &["create"], None),
        "scale" => (
            "Scale",
            &["get", "patch", "update"],
            Some(("autoscaling", "v1")),
        ),
        "finalize" => (r.kind, &["update"], None),
        _ => (r.kind, &["get"], None),
    };
    e["kind"] = json!(kind);
    e["verbs"] = json!(verbs);
    if let Some((g, v)) = gv {
        e["group"] = json!(g);
        e["version"] = json!(v);
    }
    e
}

/// `APIResourceList` for one group/version, or None if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut out = Vec::new();
    for r in resources::ALL
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        out.push(e);
        for s in r.subresources {
            out.push(sub_entry(r, s));
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
    )
}
