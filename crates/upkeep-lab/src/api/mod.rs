//! The Kubernetes REST API over the store: routing, authentication and authorisation,
//! resource verbs, subresources, Table responses, faults and metrics.

pub mod deprecation;
pub mod discovery;
pub mod eviction;
pub mod openapi;
pub mod pbtypes;
pub mod protobuf;
pub mod request;
pub mod strategy;
pub mod table;
pub mod watch;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, Request};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::Lab;
use crate::error::{ApiError, ApiResult};
use crate::faults::FaultConfig;
use crate::patch::{PatchKind, apply_patch};
use crate::resources::{self, Resource};
use crate::selector::{FieldSelector, LabelSelector, supported_field};
use crate::store::{DeleteOpts, DeleteOutcome, ListQuery, Obj, WriteScope, meta_str};
use request::ResourceRequest;

/// Who is calling, decided per connection (client certificate) or per request (token).
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub tls: bool,
    /// User name from a verified client certificate.
    pub cert_user: Option<String>,
}

/// Users and tokens the server accepts.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// bearer token → user name
    pub tokens: HashMap<String, String>,
    /// users that may only get, list and watch
    pub read_only_users: Vec<String>,
}

/// Per-server state of the API layer.
pub struct ApiContext {
    pub lab: Arc<Lab>,
    pub auth: Auth,
    /// "host:port" the server answers on (for /api serverAddressByClientCIDRs).
    pub server_addr: Mutex<String>,
    pages: Mutex<PageCache>,
    cluster_ip: AtomicU32,
}

impl ApiContext {
    pub fn new(lab: Arc<Lab>, auth: Auth) -> Arc<Self> {
        Arc::new(ApiContext {
            lab,
            auth,
            server_addr: Mutex::new("127.0.0.1:6443".into()),
            pages: Mutex::new(PageCache::default()),
            cluster_ip: AtomicU32::new(10),
        })
    }
}

/// Snapshots behind continue tokens: a paged list stays consistent (same resourceVersion,
/// same items) across pages, like etcd reads at a revision.
#[derive(Default)]
struct PageCache {
    next_id: u64,
    entries: VecDeque<(u64, Instant, u64, Arc<Vec<Obj>>)>,
}

const PAGE_CACHE_MAX: usize = 64;
const PAGE_TTL: Duration = Duration::from_secs(300);

/// Build the lab's axum router: plugin routes, then everything else through [`handle`].
pub fn router(ctx: Arc<ApiContext>, extra: Vec<axum::Router<Arc<Lab>>>) -> axum::Router {
    let mut r: axum::Router<Arc<Lab>> = axum::Router::new();
    for e in extra {
        r = r.merge(e);
    }
    r.fallback(handle)
        .layer(Extension(ctx.clone()))
        .with_state(ctx.lab.clone())
}

fn json_bytes(code: u16, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn json_response(code: u16, v: &Value) -> Response {
    json_bytes(code, serde_json::to_vec(v).unwrap_or_default())
}

fn text_response(code: u16, s: String) -> Response {
    let mut r = Response::new(Body::from(s));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

pub fn unauthorized() -> Response {
    json_response(
        401,
        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}),
    )
}

/// A bearer token the server does not know (answered 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthenticated;

/// Identify the caller: client certificate, else bearer token, else (plain HTTP only) admin.
/// `Ok(None)` is an anonymous HTTPS request.
pub fn authenticate(
    ctx: &ApiContext,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> Result<Option<String>, Unauthenticated> {
    if let Some(u) = &conn.cert_user {
        return Ok(Some(u.clone()));
    }
    if let Some(h) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(tok) = h.strip_prefix("Bearer ") {
            return ctx
                .auth
                .tokens
                .get(tok.trim())
                .cloned()
                .map(Some)
                .ok_or(Unauthenticated);
        }
        return Err(Unauthenticated);
    }
    if conn.tls {
        Ok(None)
    } else {
        Ok(Some("admin".into()))
    }
}

/// The single entry point for everything not claimed by a plugin route.
pub async fn handle(Extension(ctx): Extension<Arc<ApiContext>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let conn = parts
        .extensions
        .get::<ConnInfo>()
        .cloned()
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let public = matches!(
        path.as_str(),
        "/version" | "/healthz" | "/livez" | "/readyz"
    ) || path.starts_with("/readyz/")
        || path.starts_with("/livez/")
        || path.starts_with("/healthz/");
    let user = match authenticate(&ctx, &conn, &parts.headers) {
        Ok(Some(u)) => u,
        Ok(None) if public => "system:anonymous".into(),
        _ => return unauthorized(),
    };
    let lab = ctx.lab.clone();
    let method = parts.method.clone();
    if path.starts_with("/lab/v1/") {
        let r = lab_endpoint(
            &ctx,
            &user,
            &method,
            path.trim_end_matches('/'),
            body_bytes(body).await,
        )
        .await;
        lab.metrics.record(
            &method.as_str().to_lowercase(),
            "",
            &path,
            r.status().as_u16(),
        );
        return r;
    }
    // Non-resource paths.
    let nonres: Option<Response> = match (method.clone(), path.trim_end_matches('/')) {
        (Method::GET, "/version") => Some(json_response(
            200,
            &serde_json::to_value(lab.version()).unwrap_or_default(),
        )),
        (Method::GET, p)
            if p == "/healthz"
                || p == "/livez"
                || p == "/readyz"
                || p.starts_with("/healthz/")
                || p.starts_with("/livez/")
                || p.starts_with("/readyz/") =>
        {
            Some(text_response(200, "ok".into()))
        }
        (Method::GET, "/metrics") => Some(text_response(200, lab.metrics.to_prometheus())),
        (Method::GET, "/openapi/v3") => Some(json_response(200, &openapi::root())),
        (Method::GET, p) if p.starts_with("/openapi/v3/") => {
            Some(match openapi::group_version(p) {
                Some(d) => json_response(200, &d),
                None => error_response(&ApiError::no_route()),
            })
        }
        (Method::GET, "/api") => Some(json_response(
            200,
            &discovery::api_versions(&ctx.server_addr.lock()),
        )),
        (Method::GET, "/apis") => Some(json_response(200, &discovery::api_group_list())),
        (Method::GET, "/api/v1") => Some(json_response(
            200,
            &discovery::resource_list("", "v1").unwrap_or_default(),
        )),
        (Method::GET, p) if p.starts_with("/apis/") && p.matches('/').count() <= 3 => {
            let segs: Vec<&str> = p.trim_start_matches("/apis/").split('/').collect();
            let doc = match segs.as_slice() {
                [g] => discovery::api_group(g),
                [g, v] => discovery::resource_list(g, v),
                _ => None,
            };
            Some(match doc {
                Some(d) => json_response(200, &d),
                None => error_response(&ApiError::no_route()),
            })
        }
        (_, p) if !p.starts_with("/api/") && !p.starts_with("/apis/") => {
            Some(error_response(&ApiError::no_route()))
        }
        _ => None,
    };
    if let Some(r) = nonres {
        lab.metrics.record(
            &method.as_str().to_lowercase(),
            "",
            &path,
            r.status().as_u16(),
        );
        return r;
    }
    // A deprecated version the server still serves: answered as the stored version,
    // its use recorded for `apiserver_requested_deprecated_apis` (deprecation.rs).
    let version = lab.version();
    let number = |s: &str| s.trim_end_matches('+').parse::<u32>().unwrap_or(0);
    let deprecated = deprecation::rewrite(&path, (number(&version.major), number(&version.minor)));
    let served_path = deprecated
        .as_ref()
        .map_or(path.as_str(), |(p, _)| p.as_str());
    let rr = match request::parse(&method, served_path, parts.uri.query()) {
        Ok(Some(rr)) => rr,
        Ok(None) => return error_response(&ApiError::no_route()),
        Err(e) => {
            lab.metrics
                .record(&method.as_str().to_lowercase(), "", &path, e.code);
            return error_response(&e);
        }
    };
    // Authorisation: read-only users may get, list and watch (RBAC "view"-like).
    // Every authenticated user may ask about itself (system:basic-user).
    let self_review = rr.res == &resources::SELF_SUBJECT_ACCESS_REVIEW
        || rr.res == &resources::SELF_SUBJECT_REVIEW;
    if !self_review && !allowed(&ctx, &user, rr.verb) {
        let scope = if rr.res.namespaced && !rr.namespace.is_empty() {
            format!("in the namespace \"{}\"", rr.namespace)
        } else {
            "at the cluster scope".to_string()
        };
        let e = ApiError::forbidden(
            rr.res,
            &rr.name,
            format!(
                "User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
                rr.verb,
                rr.resource_path(),
                rr.res.group
            ),
        );
        lab.metrics
            .record(rr.verb, rr.res.plural, &rr.subresource, 403);
        return error_response(&e);
    }
    // Faults.
    let fault = lab
        .faults
        .decide(rr.verb, &rr.resource_path(), &rr.namespace, &rr.name);
    if fault.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
    }
    if fault.timeout {
        // Hang (the latency above), then drop the connection: the body fails before any byte,
        // so the client sees the connection end without a complete answer.
        lab.metrics
            .record(rr.verb, rr.res.plural, &rr.subresource, 0);
        let failing = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "injected timeout: connection dropped",
            ))
        });
        return Response::new(Body::from_stream(failing));
    }
    if let Some(code) = fault.code {
        let reason = match code {
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            409 => "Conflict",
            _ => "InternalError",
        };
        let mut e = ApiError::new(
            code,
            reason,
            fault.message.clone().unwrap_or_else(|| {
                format!(
                    "injected fault: {code} for {} {}",
                    rr.verb,
                    rr.resource_path()
                )
            }),
        );
        e.retry_after = fault.retry_after;
        lab.metrics
            .record(rr.verb, rr.res.plural, &rr.subresource, code);
        return error_response(&e);
    }
    let body = body_bytes(body).await;
    let result = if rr.res == &resources::SELF_SUBJECT_ACCESS_REVIEW
        || rr.res == &resources::SELF_SUBJECT_REVIEW
    {
        review(&ctx, &rr, &user, &body)
    } else {
        serve_resource(&ctx, &rr, &parts.headers, body, fault.cut_watch_after).await
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if let Some((_, d)) = deprecated {
        lab.metrics.record_deprecated(
            d.group,
            d.version,
            d.resource,
            &rr.subresource,
            &d.removed_release(),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", d.warning())) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    lab.metrics.record(
        rr.verb,
        rr.res.plural,
        &rr.subresource,
        resp.status().as_u16(),
    );
    resp
}

async fn body_bytes(body: Body) -> Bytes {
    axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default()
}

fn parse_body(b: &Bytes) -> ApiResult<Value> {
    if b.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if protobuf::is_protobuf(b) {
        return pbtypes::decode(b);
    }
    serde_json::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized: {e}")))
}

/// What representation the client asked for in Accept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Repr {
    Object,
    Table,
    PartialMetadata,
}

fn repr(headers: &HeaderMap) -> Repr {
    let a = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first acceptable alternative wins (kubectl lists Table first, then plain JSON).
    for alt in a.split(',') {
        let alt = alt.replace(' ', "");
        if alt.contains("as=Table") && alt.contains("g=meta.k8s.io") {
            return Repr::Table;
        }
        if alt.contains("as=PartialObjectMetadata") && alt.contains("g=meta.k8s.io") {
            return Repr::PartialMetadata;
        }
        if alt.starts_with("application/json") || alt.starts_with("*/*") {
            return Repr::Object;
        }
    }
    Repr::Object
}

fn list_query(rr: &ResourceRequest) -> ApiResult<ListQuery> {
    let labels = match rr.q("labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => LabelSelector::everything(),
    };
    let fields = match rr.q("fieldSelector") {
        Some(s) => FieldSelector::parse(s).map_err(ApiError::bad_request)?,
        None => FieldSelector::default(),
    };
    for (f, _, _) in &fields.reqs {
        if !supported_field(rr.res.kind, f) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {f}"
            )));
        }
    }
    Ok(ListQuery {
        namespace: if rr.res.namespaced && !rr.namespace.is_empty() {
            Some(rr.namespace.clone())
        } else {
            None
        },
        labels,
        fields,
    })
}

/// Whether `user` may do `verb`: the lab's two roles (admin: everything; read-only users:
/// get, list, watch).
pub fn allowed(ctx: &ApiContext, user: &str, verb: &str) -> bool {
    !ctx.auth.read_only_users.iter().any(|u| u == user) || matches!(verb, "get" | "list" | "watch")
}

/// `kubectl auth can-i` (SelfSubjectAccessReview, pkg/registry/authorization/selfsubjectaccessreview)
/// and `kubectl auth whoami` (SelfSubjectReview): answered from the caller's identity, not stored.
fn review(ctx: &ApiContext, rr: &ResourceRequest, user: &str, body: &Bytes) -> ApiResult<Response> {
    if rr.verb != "create" {
        return Err(ApiError::method_not_allowed(rr.verb, rr.res.plural));
    }
    let mut obj = parse_body(body)?;
    if rr.res == &resources::SELF_SUBJECT_REVIEW {
        let groups = if allowed(ctx, user, "create") {
            json!(["system:masters", "system:authenticated"])
        } else {
            json!(["system:authenticated"])
        };
        obj["status"] = json!({"userInfo": {"username": user, "groups": groups}});
    } else {
        let verb = obj
            .pointer("/spec/resourceAttributes/verb")
            .or_else(|| obj.pointer("/spec/nonResourceAttributes/verb"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let ok = allowed(ctx, user, verb)
            || verb == "*" && !ctx.auth.read_only_users.iter().any(|u| u == user);
        // No reason either way, so `kubectl auth can-i` says a bare "yes" or "no": the admin is
        // in system:masters, whose authorizer allows without one (k8s.io/apiserver
        // pkg/authorization/authorizerfactory/builtin.go privilegedGroupAuthorizer), and RBAC
        // gives one only for rules it could not resolve (plugin/pkg/auth/authorizer/rbac/rbac.go
        // RBACAuthorizer.Authorize).
        obj["status"] = json!({"allowed": ok});
    }
    obj["apiVersion"] = json!(rr.res.api_version());
    obj["kind"] = json!(rr.res.kind);
    Ok(json_response(201, &obj))
}

/// Render one object in the requested representation.
fn render(
    ctx: &ApiContext,
    rr: &ResourceRequest,
    headers: &HeaderMap,
    code: u16,
    obj: &Value,
) -> Response {
    match repr(headers) {
        Repr::Table => {
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
            let t = table::table(
                &ctx.lab.clock,
                kind,
                &[obj],
                rr.q("includeObject").unwrap_or("Metadata"),
                json!({"resourceVersion": meta_str(obj, "resourceVersion")}),
            );
            json_response(code, &t)
        }
        Repr::PartialMetadata => json_response(code, &table::partial_metadata(obj)),
        Repr::Object => json_response(code, obj),
    }
}

async fn serve_resource(
    ctx: &Arc<ApiContext>,
    rr: &ResourceRequest,
    headers: &HeaderMap,
    body: Bytes,
    cut_watch_after: Option<u64>,
) -> ApiResult<Response> {
    let lab = &ctx.lab;
    let store = &lab.store;
    let res = rr.res;
    let dry = rr.dry_run();
    match (rr.verb, rr.subresource.as_str()) {
        ("get", "" | "status") => {
            let o = store.get_or_404(res, &rr.namespace, &rr.name)?;
            Ok(render(ctx, rr, headers, 200, &o))
        }
        ("get", "scale") => {
            let o = store.get_or_404(res, &rr.namespace, &rr.name)?;
            Ok(json_response(200, &scale_of(&o)))
        }
        ("get", "log") => {
            store.get_or_404(res, &rr.namespace, &rr.name)?;
            let text = lab
                .pod_logs
                .lock()
                .get(&(rr.namespace.clone(), rr.name.clone()))
                .cloned()
                .unwrap_or_default();
            let text = match rr.q("tailLines").and_then(|t| t.parse::<usize>().ok()) {
                Some(n) => {
                    let lines: Vec<&str> = text.lines().collect();
                    let start = lines.len().saturating_sub(n);
                    lines[start..].iter().map(|l| format!("{l}\n")).collect()
                }
                None => text,
            };
            Ok(text_response(200, text))
        }
        ("list", "") => {
            // A list of 150,000 pods takes seconds to serialise: let the runtime move other
            // tasks (watches, the simulation, signals) off this worker meanwhile.
            if tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread
            {
                tokio::task::block_in_place(|| list(ctx, rr, headers))
            } else {
                list(ctx, rr, headers)
            }
        }
        ("watch", "") => {
            let q = list_query(rr)?;
            watch::serve(ctx.clone(), rr.clone(), q, repr(headers), cut_watch_after)
        }
        ("create", "") => {
            let mut obj = parse_body(&body)?;
            check_kind(res, &obj)?;
            let next_ip = || {
                let n = ctx.cluster_ip.fetch_add(1, Ordering::Relaxed);
                format!("10.96.{}.{}", n / 250, n % 250 + 1)
            };
            strategy::prepare_create(res, &mut obj, next_ip);
            strategy::validate(res, &obj)?;
            strategy::check_create_resource_version(&obj, dry)?;
            let o = store.create_with(res, &rr.namespace, obj, dry, |o| {
                strategy::finish_create(res, o)
            })?;
            Ok(render(ctx, rr, headers, 201, &o))
        }
        ("create", "eviction") => {
            let b = parse_body(&body)?;
            let st = eviction::evict(lab, &rr.namespace, &rr.name, &b, dry)?;
            Ok(json_response(201, &st))
        }
        ("create", "binding") => {
            // pkg/registry/core/pod/storage/storage.go BindingREST: set spec.nodeName once
            let b = parse_body(&body)?;
            let node = b
                .pointer("/target/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            store.mutate_scoped(res, &rr.namespace, &rr.name, WriteScope::Whole, dry, |p| {
                let cur = p
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !cur.is_empty() {
                    return Err(ApiError::conflict(
                        res,
                        &rr.name,
                        &format!("pod {} is already assigned to node \"{cur}\"", rr.name),
                    ));
                }
                p["spec"]["nodeName"] = json!(node);
                Ok(())
            })?;
            Ok(json_response(
                201,
                &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}),
            ))
        }
        ("update", sub @ ("" | "status" | "finalize")) => {
            let obj = parse_body(&body)?;
            check_kind(res, &obj)?;
            if !meta_str(&obj, "name").is_empty() && meta_str(&obj, "name") != rr.name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    meta_str(&obj, "name"),
                    rr.name
                )));
            }
            let mut obj = obj;
            crate::store::metadata_mut(&mut obj).insert("name".into(), json!(rr.name));
            let scope = match sub {
                "status" => WriteScope::Status,
                "finalize" => WriteScope::Whole,
                _ => WriteScope::Main,
            };
            if scope == WriteScope::Main {
                strategy::validate(res, &obj)?;
                if let Some(old) = store.get(res, &rr.namespace, &rr.name) {
                    strategy::validate_update(res, &old, &obj)?;
                }
            }
            let o = store.update(res, &rr.namespace, obj, scope, dry)?;
            Ok(render(ctx, rr, headers, 200, &o))
        }
        ("update", "scale") => {
            let b = parse_body(&body)?;
            let replicas = b
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let want_rv = meta_str(&b, "resourceVersion").to_string();
            let o =
                store.mutate_scoped(res, &rr.namespace, &rr.name, WriteScope::Main, dry, |o| {
                    if !want_rv.is_empty() && want_rv != meta_str(o, "resourceVersion") {
                        return Err(ApiError::stale(res, &rr.name));
                    }
                    o["spec"]["replicas"] = json!(replicas);
                    Ok(())
                })?;
            Ok(json_response(200, &scale_of(&o)))
        }
        ("patch", sub @ ("" | "status" | "scale")) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let Some(kind) = PatchKind::from_content_type(ct) else {
                return Err(ApiError::unsupported_media(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json ({ct} is not supported by the lab)"
                )));
            };
            let p = parse_body(&body)?;
            if sub == "scale" {
                let o = store.mutate_scoped(
                    res,
                    &rr.namespace,
                    &rr.name,
                    WriteScope::Main,
                    dry,
                    |o| {
                        let mut sc = scale_of(o);
                        apply_patch(&mut sc, kind, &p)
                            .map_err(|m| ApiError::new(422, "Invalid", m))?;
                        let rv = meta_str(&sc, "resourceVersion");
                        if !rv.is_empty() && rv != meta_str(o, "resourceVersion") {
                            return Err(ApiError::stale(res, &rr.name));
                        }
                        o["spec"]["replicas"] =
                            sc.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
                        Ok(())
                    },
                )?;
                return Ok(json_response(200, &scale_of(&o)));
            }
            let scope = if sub == "status" {
                WriteScope::Status
            } else {
                WriteScope::Main
            };
            let o = store.mutate_scoped(res, &rr.namespace, &rr.name, scope, dry, |o| {
                let before = (scope == WriteScope::Main).then(|| o.clone());
                let before_rv = meta_str(o, "resourceVersion").to_string();
                apply_patch(o, kind, &p).map_err(|m| ApiError::new(422, "Invalid", m))?;
                let rv = meta_str(o, "resourceVersion");
                if !rv.is_empty() && rv != before_rv {
                    return Err(ApiError::stale(res, &rr.name));
                }
                if meta_str(o, "name") != rr.name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({})",
                        meta_str(o, "name"),
                        rr.name
                    )));
                }
                if let Some(old) = &before {
                    strategy::validate(res, o)?;
                    strategy::validate_update(res, old, o)?;
                }
                Ok(())
            })?;
            Ok(render(ctx, rr, headers, 200, &o))
        }
        ("delete", "") => {
            let opts = delete_opts(rr, &body)?;
            if res == &resources::NAMESPACE
                && matches!(rr.name.as_str(), "default" | "kube-system" | "kube-public")
            {
                // plugin/pkg/admission/namespace/lifecycle: immortal namespaces
                return Err(ApiError::forbidden(
                    res,
                    &rr.name,
                    "this namespace may not be deleted",
                ));
            }
            let out = store.delete(res, &rr.namespace, &rr.name, &opts)?;
            Ok(deleted_response(ctx, rr, headers, &out))
        }
        ("deletecollection", "") => {
            let opts = delete_opts(rr, &body)?;
            let q = list_query(rr)?;
            let (objs, rv) = store.list(res, &q);
            let mut items = Vec::new();
            for o in objs {
                if res == &resources::NAMESPACE
                    && matches!(
                        meta_str(&o, "name"),
                        "default" | "kube-system" | "kube-public"
                    )
                {
                    continue;
                }
                match store.delete(res, meta_str(&o, "namespace"), meta_str(&o, "name"), &opts) {
                    Ok(out) => items.push((**out.object()).clone()),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                200,
                &json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        (verb, sub) => Err(ApiError::method_not_allowed(
            verb,
            &format!("{}/{}", res.plural, sub),
        )),
    }
}

fn check_kind(res: &Resource, obj: &Value) -> ApiResult<()> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or(res.kind);
    if kind != res.kind {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): kind {kind} in body",
            res.kind
        )));
    }
    Ok(())
}

fn scale_of(o: &Value) -> Value {
    let selector = match o.pointer("/spec/selector") {
        Some(sel) => {
            let mut parts: Vec<String> = Vec::new();
            if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
                for (k, v) in ml {
                    parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
                }
            }
            parts.join(",")
        }
        None => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta_str(o, "name"),
            "namespace": meta_str(o, "namespace"),
            "uid": meta_str(o, "uid"),
            "resourceVersion": meta_str(o, "resourceVersion"),
            "creationTimestamp": meta_str(o, "creationTimestamp"),
        },
        "spec": {"replicas": o.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": o.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

fn delete_opts(rr: &ResourceRequest, body: &Bytes) -> ApiResult<DeleteOpts> {
    let b: Value = if body.is_empty() {
        Value::Null
    } else if protobuf::is_protobuf(body) {
        protobuf::delete_options(body)?
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let grace = rr
        .q("gracePeriodSeconds")
        .and_then(|g| g.parse::<i64>().ok())
        .or_else(|| b.get("gracePeriodSeconds").and_then(Value::as_i64));
    let mut policy = rr.q("propagationPolicy").map(str::to_string).or_else(|| {
        b.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let orphan = rr
        .q("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| b.get("orphanDependents").and_then(Value::as_bool));
    if policy.is_none() && orphan == Some(true) {
        policy = Some("Orphan".into());
    }
    if let Some(p) = &policy
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ),
        ));
    }
    let body_dry = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOpts {
        grace_period_seconds: grace,
        uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        propagation_policy: policy,
        dry_run: rr.dry_run() || body_dry,
    })
}

/// Pods and namespaces answer with the object (registry ReturnDeletedObject); other
/// resources with a Success Status naming what was deleted.
fn deleted_response(
    ctx: &ApiContext,
    rr: &ResourceRequest,
    headers: &HeaderMap,
    out: &DeleteOutcome,
) -> Response {
    let o = out.object();
    if rr.res == &resources::POD
        || rr.res == &resources::NAMESPACE
        || matches!(out, DeleteOutcome::Terminating(_))
    {
        return render(ctx, rr, headers, 200, o);
    }
    json_response(
        200,
        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",
                "details":{"name": rr.name, "group": rr.res.group, "kind": rr.res.plural, "uid": meta_str(o, "uid")}}),
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    id: u64,
    rv: u64,
    off: usize,
}

fn list(ctx: &ApiContext, rr: &ResourceRequest, headers: &HeaderMap) -> ApiResult<Response> {
    let store = &ctx.lab.store;
    let res = rr.res;
    let limit = rr
        .q("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let rv_param = rr.q("resourceVersion");
    let rv_match = rr.q("resourceVersionMatch");
    let (items, rv, next) = if let Some(tok) = rr.q("continue") {
        let t: ContinueToken = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tok)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
        let mut pages = ctx.pages.lock();
        pages.entries.retain(|e| e.1.elapsed() < PAGE_TTL);
        let snap = pages.entries.iter().find(|e| e.0 == t.id).map(|e| e.3.clone()).ok_or_else(|| {
            ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
        })?;
        drop(pages);
        let end = limit.map_or(snap.len(), |l| (t.off + l).min(snap.len()));
        let next = (end < snap.len()).then_some((t.id, end));
        (snap[t.off.min(snap.len())..end].to_vec(), t.rv, next)
    } else {
        let q = list_query(rr)?;
        let current = store.current_rv();
        if let Some(want) = rv_param
            .filter(|v| *v != "0")
            .and_then(|v| v.parse::<u64>().ok())
        {
            if rv_match == Some("Exact") && want != current {
                return Err(ApiError::gone(format!(
                    "too old resource version: {want} ({current})"
                )));
            }
            if want > current {
                let mut e = ApiError::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {want}, current: {current}"),
                );
                e = e.with_cause(
                    "ResourceVersionTooLarge",
                    "Too large resource version",
                    None,
                );
                e.retry_after = Some(1);
                return Err(e);
            }
        }
        let (all, rv) = store.list(res, &q);
        // resourceVersion=0 lists are served from the cache upstream and ignore limit.
        let limit = if rv_param == Some("0") { None } else { limit };
        match limit {
            Some(l) if all.len() > l => {
                let snap = Arc::new(all);
                let mut pages = ctx.pages.lock();
                pages.next_id += 1;
                let id = pages.next_id;
                pages
                    .entries
                    .push_back((id, Instant::now(), rv, snap.clone()));
                while pages.entries.len() > PAGE_CACHE_MAX {
                    pages.entries.pop_front();
                }
                (snap[..l].to_vec(), rv, Some((id, l)))
            }
            _ => (all, rv, None),
        }
    };
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some((id, off)) = next {
        let tok = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&ContinueToken { id, rv, off }).unwrap_or_default());
        meta["continue"] = json!(tok);
        if rr.q("labelSelector").is_none() && rr.q("fieldSelector").is_none() {
            let total = ctx
                .pages
                .lock()
                .entries
                .iter()
                .find(|e| e.0 == id)
                .map_or(0, |e| e.3.len());
            meta["remainingItemCount"] = json!(total.saturating_sub(off));
        }
    }
    Ok(match repr(headers) {
        Repr::Table => {
            let refs: Vec<&Value> = items.iter().map(|o| o.as_ref()).collect();
            json_response(
                200,
                &table::table(
                    &ctx.lab.clock,
                    res.kind,
                    &refs,
                    rr.q("includeObject").unwrap_or("Metadata"),
                    meta,
                ),
            )
        }
        Repr::PartialMetadata => {
            let its: Vec<Value> = items.iter().map(|o| table::partial_metadata(o)).collect();
            json_response(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": its}),
            )
        }
        Repr::Object => {
            // Serialise item by item: no copy of the objects.
            let mut out = Vec::with_capacity(items.len() * 2048 + 256);
            out.extend_from_slice(
                format!(
                    "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":",
                    res.list_kind(),
                    res.api_version()
                )
                .as_bytes(),
            );
            serde_json::to_writer(&mut out, &meta)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            out.extend_from_slice(b",\"items\":[");
            for (i, o) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, o.as_ref())
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            }
            out.extend_from_slice(b"]}");
            json_bytes(200, out)
        }
    })
}

/// `/lab/v1/...`: faults, metrics, clock.
async fn lab_endpoint(
    ctx: &ApiContext,
    user: &str,
    method: &Method,
    path: &str,
    body: Bytes,
) -> Response {
    let lab = &ctx.lab;
    let write = *method != Method::GET;
    if write && ctx.auth.read_only_users.iter().any(|u| u == user) {
        return error_response(&ApiError::new(
            403,
            "Forbidden",
            format!("User \"{user}\" cannot change the lab"),
        ));
    }
    match (method.clone(), path) {
        (Method::GET, "/lab/v1/faults") => json_response(
            200,
            &serde_json::to_value(lab.faults.config()).unwrap_or_default(),
        ),
        (Method::POST | Method::PUT, "/lab/v1/faults") => {
            match serde_json::from_slice::<FaultConfig>(&body) {
                Ok(cfg) => {
                    lab.faults.set(cfg);
                    json_response(
                        200,
                        &serde_json::to_value(lab.faults.config()).unwrap_or_default(),
                    )
                }
                Err(e) => error_response(&ApiError::bad_request(format!(
                    "invalid fault configuration: {e}"
                ))),
            }
        }
        (Method::DELETE, "/lab/v1/faults") => {
            lab.faults.clear();
            json_response(200, &json!({"rules": []}))
        }
        (Method::GET, "/lab/v1/metrics") => json_response(200, &lab.metrics.to_json()),
        (Method::POST, "/lab/v1/metrics/reset") => {
            lab.metrics.reset();
            json_response(200, &json!({"reset": true}))
        }
        (Method::GET, "/lab/v1/clock") => json_response(
            200,
            &json!({"now": lab.clock.now_rfc3339(), "timeScale": lab.clock.time_scale()}),
        ),
        (Method::POST, "/lab/v1/clock") => {
            let b: Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(s) = b.get("timeScale").and_then(Value::as_f64) {
                lab.clock.set_time_scale(s);
            }
            if let Some(s) = b.get("advanceSeconds").and_then(Value::as_f64) {
                lab.clock.advance(Duration::from_secs_f64(s.max(0.0)));
            }
            json_response(
                200,
                &json!({"now": lab.clock.now_rfc3339(), "timeScale": lab.clock.time_scale()}),
            )
        }
        _ => error_response(&ApiError::no_route()),
    }
}
