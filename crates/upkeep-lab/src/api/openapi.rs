//! A minimal OpenAPI v3 surface: the root index and one document per group/version whose
//! PATCH operations carry `x-kubernetes-group-version-kind` and the `fieldValidation`
//! parameter. That is what kubectl's QueryParamVerifierV3
//! (staging/src/k8s.io/cli-runtime/pkg/resource/query_param_verifier_v3.go) looks for before it
//! chooses server-side field validation for `create -f` / `apply -f` / `patch`. No schemas are
//! served (`components.schemas` is empty), so `kubectl explain` does not work.

use serde_json::{Map, Value, json};

use crate::resources;

const HASH: &str = "upkeep-lab-1";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`
pub fn root() -> Value {
    let mut paths = Map::new();
    for (g, v) in resources::group_versions() {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={HASH}")}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// `GET /openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>`; None if not served.
pub fn group_version(path: &str) -> Option<Value> {
    let gvp = path.trim_start_matches("/openapi/v3/");
    let (g, v) = resources::group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == gvp)?;
    let mut paths = Map::new();
    for r in resources::ALL
        .iter()
        .filter(|r| r.group == g && r.version == v)
    {
        let gvk = json!({"group": g, "version": v, "kind": r.kind});
        let prefix = format!("/{}", gv_path(g, v));
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let params = vec![
            param("dryRun"),
            param("fieldManager"),
            param("fieldValidation"),
            param("force"),
        ];
        let op = |action: &str| {
            json!({"operationId": format!("{action}{}", r.kind), "x-kubernetes-action": action,
                   "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": {"description": "OK"}}})
        };
        paths.insert(item.clone(), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        for s in r
            .subresources
            .iter()
            .filter(|s| **s == "status" || **s == "scale")
        {
            let mut p = op("patch");
            if *s == "scale" {
                p["x-kubernetes-group-version-kind"] =
                    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
            }
            paths.insert(
                format!("{item}/{s}"),
                json!({"get": op("get"), "put": op("put"), "patch": p}),
            );
        }
        let coll = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        paths.insert(coll, json!({"get": op("list"), "post": op("post")}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "upkeep-lab"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}
