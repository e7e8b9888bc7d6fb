//! The node-shell endpoints, authenticated like the API (client certificate or bearer token;
//! the read-only user may only read):
//!
//! * `POST /lab/v1/nodes/{node}/exec` — body `{"argv": ["apt-get", "update"], "stdin": ""}`,
//!   answer `{"stdout": "...", "stderr": "...", "code": 0}`. A real node's stand-in binaries
//!   add `"installed": {"kubeadm": "1.35.2-1.1", ...}` (see [`ExecRequest::installed`]).
//! * `GET /lab/v1/nodes/{node}/host` — the host's state ([`super::HostSummary`]).
//! * `GET|POST|DELETE /lab/v1/nodes/{node}/faults` — list, add (`{"fail": "kubeadm upgrade
//!   node", "times": 1}`), clear the node's injected command failures.
//!
//! An unknown node answers 404 with a `Status` naming it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{NodeShells, ShellError, host::ShellFault};
use crate::api::{self, ApiContext, ConnInfo};
use crate::error::ApiError;
use crate::exec::ExecOutput;
use crate::lab::Lab;

/// The body of an exec request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    #[serde(default)]
    pub stdin: String,
    /// From a real node whose kubeadm, kubelet and systemctl are the lab's stand-ins: the
    /// package versions its own dpkg or rpm database holds (`{"kubeadm": "1.35.2-1.1"}`).
    /// They replace the simulated ones before the command runs, so kubeadm's version policy
    /// and the kubelet restart see what the real package manager installed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub installed: std::collections::BTreeMap<String, String>,
}

/// The answer of an exec request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResponse {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl From<ExecOutput> for ExecResponse {
    fn from(o: ExecOutput) -> Self {
        ExecResponse {
            stdout: o.stdout,
            stderr: o.stderr,
            code: o.code,
        }
    }
}

pub fn routes() -> Router<Arc<Lab>> {
    Router::new()
        .route("/lab/v1/nodes/{node}/exec", post(exec))
        .route("/lab/v1/nodes/{node}/host", get(host))
        .route(
            "/lab/v1/nodes/{node}/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
}

/// Authenticate like the API server; writers must not be read-only users.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn authorize(
    ctx: &Option<Extension<Arc<ApiContext>>>,
    conn: &Option<Extension<ConnInfo>>,
    headers: &HeaderMap,
    write: bool,
) -> Result<(), Response> {
    // Without the API context (a bare router in a unit test) there is nobody to check against.
    let Some(Extension(ctx)) = ctx else {
        return Ok(());
    };
    let conn = conn
        .as_ref()
        .map(|Extension(c)| c.clone())
        .unwrap_or_default();
    let user = match api::authenticate(ctx, &conn, headers) {
        Ok(Some(u)) => u,
        _ => return Err(api::unauthorized()),
    };
    if write && ctx.auth.read_only_users.contains(&user) {
        return Err(api::error_response(&ApiError::new(
            403,
            "Forbidden",
            format!("User \"{user}\" cannot run commands on nodes"),
        )));
    }
    Ok(())
}

fn not_found(e: ShellError) -> Response {
    let ShellError::NodeNotFound(node) = &e;
    let mut err = ApiError::new(404, "NotFound", e.to_string());
    err.name = Some(node.clone());
    err.kind = Some("nodes".into());
    api::error_response(&err)
}

fn bad_request(msg: String) -> Response {
    api::error_response(&ApiError::bad_request(msg))
}

async fn exec(
    State(lab): State<Arc<Lab>>,
    ctx: Option<Extension<Arc<ApiContext>>>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&ctx, &conn, &headers, true) {
        return r;
    }
    let req: ExecRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "invalid exec request: {e}; expected {{\"argv\": [\"cmd\", \"arg\"], \"stdin\": \"\"}}"
            ));
        }
    };
    if req.argv.is_empty() {
        return bad_request(
            "invalid exec request: argv is empty; pass the command and its arguments".into(),
        );
    }
    let shells = NodeShells::get(&lab);
    if !req.installed.is_empty() {
        match shells.report_installed(&lab, &node, &req.installed) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return bad_request(msg),
            Err(e) => return not_found(e),
        }
    }
    match shells.exec(&lab, &node, &req.argv, &req.stdin) {
        Ok(out) => {
            // A command that restarted the only kube-apiserver returns once the API is back,
            // as kubeadm waits for its new static pods through the API. The node shell is the
            // lab's stand-in for ssh, so its own connection stays up meanwhile.
            crate::sim::controlplane::ApiOutage::get(&lab)
                .wait_over(&lab)
                .await;
            api::json_response(
                200,
                &serde_json::to_value(ExecResponse::from(out)).unwrap_or_default(),
            )
        }
        Err(e) => not_found(e),
    }
}

async fn host(
    State(lab): State<Arc<Lab>>,
    ctx: Option<Extension<Arc<ApiContext>>>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Response {
    if let Err(r) = authorize(&ctx, &conn, &headers, false) {
        return r;
    }
    match NodeShells::get(&lab).summary(&lab, &node) {
        Ok(s) => api::json_response(200, &serde_json::to_value(s).unwrap_or_default()),
        Err(e) => not_found(e),
    }
}

async fn list_faults(
    State(lab): State<Arc<Lab>>,
    ctx: Option<Extension<Arc<ApiContext>>>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Response {
    if let Err(r) = authorize(&ctx, &conn, &headers, false) {
        return r;
    }
    match NodeShells::get(&lab).summary(&lab, &node) {
        Ok(s) => api::json_response(200, &json!({"faults": s.faults})),
        Err(e) => not_found(e),
    }
}

async fn add_fault(
    State(lab): State<Arc<Lab>>,
    ctx: Option<Extension<Arc<ApiContext>>>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&ctx, &conn, &headers, true) {
        return r;
    }
    let fault: ShellFault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return bad_request(format!(
                "invalid node fault: {e}; expected {{\"fail\": \"kubeadm upgrade node\", \"times\": 1}}"
            ));
        }
    };
    if fault.fail.split_whitespace().next().is_none() {
        return bad_request(
            "invalid node fault: \"fail\" must name a command, e.g. \"kubeadm upgrade node\""
                .into(),
        );
    }
    match NodeShells::get(&lab).add_fault(&lab, &node, fault) {
        Ok(all) => api::json_response(200, &json!({"faults": all})),
        Err(e) => not_found(e),
    }
}

async fn clear_faults(
    State(lab): State<Arc<Lab>>,
    ctx: Option<Extension<Arc<ApiContext>>>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Response {
    if let Err(r) = authorize(&ctx, &conn, &headers, true) {
        return r;
    }
    match NodeShells::get(&lab).clear_faults(&lab, &node) {
        Ok(()) => api::json_response(200, &json!({"faults": []})),
        Err(e) => not_found(e),
    }
}
