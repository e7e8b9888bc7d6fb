//! Protobuf bodies of the objects kubectl's typed clients create (`kubectl create namespace`,
//! `create configmap|secret|serviceaccount|service`, `create deployment|job|pdb`, `auth can-i`,
//! `auth whoami`), decoded to
//! JSON through a small field table taken from k8s.io/api's generated.proto files
//! (core/v1, apps/v1, batch/v1, policy/v1, authorization/v1, authentication/v1) and
//! apimachinery's meta/v1.
//!
//! Go's protobuf marshalling writes every non-pointer field, zero or not, so zero scalars and
//! empty messages are dropped (JSON `omitempty`), except pointer fields where zero means
//! something (`IntP`, e.g. `replicas: 0`). A field the table does not know makes the whole body
//! a 415 naming the kind: better refused than stored with a field missing.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::protobuf::{Wire, envelope, fields, text};
use crate::error::{ApiError, ApiResult};

#[derive(Clone, Copy)]
enum T {
    Str,
    Int,
    /// A pointer int: zero is kept.
    IntP,
    Bool,
    /// A pointer bool: false is kept.
    BoolP,
    Msg(&'static [F]),
    MapStr,
    MapBytes,
    MapQty,
    IntOrStr,
    Time,
    /// Decoded but dropped (status of a created object: the server resets it).
    Ignore,
}

/// (field number, JSON name, type, repeated)
type F = (u64, &'static str, T, bool);

const META: &[F] = &[
    (1, "name", T::Str, false),
    (2, "generateName", T::Str, false),
    (3, "namespace", T::Str, false),
    (4, "selfLink", T::Str, false),
    (5, "uid", T::Str, false),
    (6, "resourceVersion", T::Str, false),
    (7, "generation", T::Int, false),
    (8, "creationTimestamp", T::Time, false),
    (9, "deletionTimestamp", T::Time, false),
    (10, "deletionGracePeriodSeconds", T::IntP, false),
    (11, "labels", T::MapStr, false),
    (12, "annotations", T::MapStr, false),
    (14, "finalizers", T::Str, true),
];
const NS_SPEC: &[F] = &[(1, "finalizers", T::Str, true)];
const NAMESPACE: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "spec", T::Msg(NS_SPEC), false),
    (3, "status", T::Ignore, false),
];
const CONFIGMAP: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "data", T::MapStr, false),
    (3, "binaryData", T::MapBytes, false),
    (4, "immutable", T::Bool, false),
];
const SECRET: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "data", T::MapBytes, false),
    (3, "type", T::Str, false),
    (4, "stringData", T::MapStr, false),
    (5, "immutable", T::Bool, false),
];
const RES_ATTRS: &[F] = &[
    (1, "namespace", T::Str, false),
    (2, "verb", T::Str, false),
    (3, "group", T::Str, false),
    (4, "version", T::Str, false),
    (5, "resource", T::Str, false),
    (6, "subresource", T::Str, false),
    (7, "name", T::Str, false),
];
const NONRES_ATTRS: &[F] = &[(1, "path", T::Str, false), (2, "verb", T::Str, false)];
const SSAR_SPEC: &[F] = &[
    (1, "resourceAttributes", T::Msg(RES_ATTRS), false),
    (2, "nonResourceAttributes", T::Msg(NONRES_ATTRS), false),
];
const SSAR: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "spec", T::Msg(SSAR_SPEC), false),
    (3, "status", T::Ignore, false),
];
const SSR: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "status", T::Ignore, false),
];
const LABEL_REQ: &[F] = &[
    (1, "key", T::Str, false),
    (2, "operator", T::Str, false),
    (3, "values", T::Str, true),
];
const LABEL_SELECTOR: &[F] = &[
    (1, "matchLabels", T::MapStr, false),
    (2, "matchExpressions", T::Msg(LABEL_REQ), true),
];
const PORT: &[F] = &[
    (1, "name", T::Str, false),
    (2, "hostPort", T::Int, false),
    (3, "containerPort", T::Int, false),
    (4, "protocol", T::Str, false),
    (5, "hostIP", T::Str, false),
];
const ENV: &[F] = &[(1, "name", T::Str, false), (2, "value", T::Str, false)];
const RESOURCES: &[F] = &[
    (1, "limits", T::MapQty, false),
    (2, "requests", T::MapQty, false),
];
// core/v1 Container (the same numbers as EphemeralContainerCommon)
const CONTAINER: &[F] = &[
    (1, "name", T::Str, false),
    (2, "image", T::Str, false),
    (3, "command", T::Str, true),
    (4, "args", T::Str, true),
    (5, "workingDir", T::Str, false),
    (6, "ports", T::Msg(PORT), true),
    (7, "env", T::Msg(ENV), true),
    (8, "resources", T::Msg(RESOURCES), false),
    (13, "terminationMessagePath", T::Str, false),
    (14, "imagePullPolicy", T::Str, false),
    (16, "stdin", T::Bool, false),
    (17, "stdinOnce", T::Bool, false),
    (18, "tty", T::Bool, false),
    (20, "terminationMessagePolicy", T::Str, false),
];
const POD_SPEC: &[F] = &[
    (2, "containers", T::Msg(CONTAINER), true),
    (3, "restartPolicy", T::Str, false),
    (4, "terminationGracePeriodSeconds", T::IntP, false),
    (5, "activeDeadlineSeconds", T::IntP, false),
    (6, "dnsPolicy", T::Str, false),
    (7, "nodeSelector", T::MapStr, false),
    (8, "serviceAccountName", T::Str, false),
    (9, "serviceAccount", T::Str, false),
    (10, "nodeName", T::Str, false),
    (11, "hostNetwork", T::Bool, false),
    (12, "hostPID", T::Bool, false),
    (13, "hostIPC", T::Bool, false),
    (16, "hostname", T::Str, false),
    (17, "subdomain", T::Str, false),
    (19, "schedulerName", T::Str, false),
    (20, "initContainers", T::Msg(CONTAINER), true),
    (21, "automountServiceAccountToken", T::BoolP, false),
    (24, "priorityClassName", T::Str, false),
    (25, "priority", T::IntP, false),
    (27, "shareProcessNamespace", T::BoolP, false),
    (29, "runtimeClassName", T::Str, false),
    (30, "enableServiceLinks", T::BoolP, false),
    (31, "preemptionPolicy", T::Str, false),
    (35, "setHostnameAsFQDN", T::BoolP, false),
];
const POD_TEMPLATE: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "spec", T::Msg(POD_SPEC), false),
];
const ROLLING: &[F] = &[
    (1, "maxUnavailable", T::IntOrStr, false),
    (2, "maxSurge", T::IntOrStr, false),
];
const STRATEGY: &[F] = &[
    (1, "type", T::Str, false),
    (2, "rollingUpdate", T::Msg(ROLLING), false),
];
const DEPLOY_SPEC: &[F] = &[
    (1, "replicas", T::IntP, false),
    (2, "selector", T::Msg(LABEL_SELECTOR), false),
    (3, "template", T::Msg(POD_TEMPLATE), false),
    (4, "strategy", T::Msg(STRATEGY), false),
    (5, "minReadySeconds", T::Int, false),
    (6, "revisionHistoryLimit", T::IntP, false),
    (7, "paused", T::Bool, false),
    (9, "progressDeadlineSeconds", T::IntP, false),
];
const DEPLOYMENT: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "spec", T::Msg(DEPLOY_SPEC), false),
    (3, "status", T::Ignore, false),
];

const PDB_SPEC: &[F] = &[
    (1, "minAvailable", T::IntOrStr, false),
    (2, "selector", T::Msg(LABEL_SELECTOR), false),
    (3, "maxUnavailable", T::IntOrStr, false),
    (4, "unhealthyPodEvictionPolicy", T::Str, false),
];
const PDB: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "spec", T::Msg(PDB_SPEC), false),
    (3, "status", T::Ignore, false),
];
// batch/v1 JobSpec
const JOB_SPEC: &[F] = &[
    (1, "parallelism", T::IntP, false),
    (2, "completions", T::IntP, false),
    (3, "activeDeadlineSeconds", T::IntP, false),
    (4, "selector", T::Msg(LABEL_SELECTOR), false),
    (5, "manualSelector", T::BoolP, false),
    (6, "template", T::Msg(POD_TEMPLATE), false),
    (7, "backoffLimit", T::IntP, false),
    (8, "ttlSecondsAfterFinished", T::IntP, false),
    (9, "completionMode", T::Str, false),
    (10, "suspend", T::BoolP, false),
];
const JOB: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "spec", T::Msg(JOB_SPEC), false),
    (3, "status", T::Ignore, false),
];
const SERVICE_PORT: &[F] = &[
    (1, "name", T::Str, false),
    (2, "protocol", T::Str, false),
    (3, "port", T::Int, false),
    (4, "targetPort", T::IntOrStr, false),
    (5, "nodePort", T::Int, false),
    (6, "appProtocol", T::Str, false),
];
const SERVICE_SPEC: &[F] = &[
    (1, "ports", T::Msg(SERVICE_PORT), true),
    (2, "selector", T::MapStr, false),
    (3, "clusterIP", T::Str, false),
    (4, "type", T::Str, false),
    (5, "externalIPs", T::Str, true),
    (7, "sessionAffinity", T::Str, false),
    (8, "loadBalancerIP", T::Str, false),
    (9, "loadBalancerSourceRanges", T::Str, true),
    (10, "externalName", T::Str, false),
    (11, "externalTrafficPolicy", T::Str, false),
    (12, "healthCheckNodePort", T::Int, false),
    (13, "publishNotReadyAddresses", T::Bool, false),
    (17, "ipFamilyPolicy", T::Str, false),
    (18, "clusterIPs", T::Str, true),
    (19, "ipFamilies", T::Str, true),
    (20, "allocateLoadBalancerNodePorts", T::BoolP, false),
    (21, "loadBalancerClass", T::Str, false),
    (22, "internalTrafficPolicy", T::Str, false),
    (23, "trafficDistribution", T::Str, false),
];
const SERVICE: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (2, "spec", T::Msg(SERVICE_SPEC), false),
    (3, "status", T::Ignore, false),
];
const SERVICE_ACCOUNT: &[F] = &[
    (1, "metadata", T::Msg(META), false),
    (4, "automountServiceAccountToken", T::BoolP, false),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [F]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIGMAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("batch/v1", "Job") => JOB,
        ("policy/v1", "PodDisruptionBudget") => PDB,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SSAR,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SSR,
        _ => return None,
    })
}

/// Decode a protobuf object body to JSON, or a 415 naming the kind if the lab cannot.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let e = envelope(body)?;
    let unsupported = |why: &str| {
        ApiError::unsupported_media(format!(
            "the lab cannot decode this application/vnd.kubernetes.protobuf body for {} {} ({why}); send application/json",
            e.api_version, e.kind
        ))
    };
    let Some(fs) = schema(&e.api_version, &e.kind) else {
        return Err(unsupported("kind not decoded"));
    };
    let mut obj =
        message(e.raw, fs, &e.kind).map_err(|f| unsupported(&format!("field {f} not decoded")))?;
    obj.insert("apiVersion".into(), json!(e.api_version));
    obj.insert("kind".into(), json!(e.kind));
    Ok(Value::Object(obj))
}

/// Err names the unknown field (`Type.number`).
fn message(b: &[u8], fs: &'static [F], path: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for f in fields(b).map_err(|_| format!("{path} (malformed)"))? {
        let Some(&(_, name, ty, repeated)) = fs.iter().find(|x| x.0 == f.number) else {
            return Err(format!("{path}.{}", f.number));
        };
        let sub = format!("{path}.{name}");
        let v = match (ty, f.value) {
            (T::Ignore, _) => continue,
            (T::Str, Wire::Bytes(s)) => json!(text(s).map_err(|_| sub.clone())?),
            (T::Int | T::IntP, Wire::Varint(v)) => json!(v as i64),
            (T::Bool | T::BoolP, Wire::Varint(v)) => json!(v != 0),
            (T::Msg(inner), Wire::Bytes(s)) => Value::Object(message(s, inner, &sub)?),
            (T::Time, Wire::Bytes(s)) => {
                let mut secs = 0i64;
                for t in fields(s).map_err(|_| sub.clone())? {
                    if let (1, Wire::Varint(v)) = (t.number, t.value) {
                        secs = v as i64;
                    }
                }
                match jiff::Timestamp::from_second(secs) {
                    // the zero time.Time marshals as year 1
                    Ok(ts) if secs > 0 => json!(crate::clock::format_time(ts)),
                    _ => continue,
                }
            }
            (T::IntOrStr, Wire::Bytes(s)) => {
                let (mut kind, mut iv, mut sv) = (0u64, 0i64, String::new());
                for t in fields(s).map_err(|_| sub.clone())? {
                    match (t.number, t.value) {
                        (1, Wire::Varint(v)) => kind = v,
                        (2, Wire::Varint(v)) => iv = v as i64,
                        (3, Wire::Bytes(b)) => sv = text(b).map_err(|_| sub.clone())?.to_string(),
                        _ => return Err(sub),
                    }
                }
                if kind == 1 { json!(sv) } else { json!(iv) }
            }
            (T::MapStr | T::MapBytes | T::MapQty, Wire::Bytes(s)) => {
                let (mut k, mut v) = (String::new(), Value::Null);
                for t in fields(s).map_err(|_| sub.clone())? {
                    match (t.number, t.value) {
                        (1, Wire::Bytes(b)) => k = text(b).map_err(|_| sub.clone())?.to_string(),
                        (2, Wire::Bytes(b)) => {
                            v = match ty {
                                T::MapBytes => {
                                    json!(base64::engine::general_purpose::STANDARD.encode(b))
                                }
                                T::MapQty => {
                                    let mut q = String::new();
                                    for x in fields(b).map_err(|_| sub.clone())? {
                                        if let (1, Wire::Bytes(qs)) = (x.number, x.value) {
                                            q = text(qs).map_err(|_| sub.clone())?.to_string();
                                        }
                                    }
                                    json!(q)
                                }
                                _ => json!(text(b).map_err(|_| sub.clone())?),
                            }
                        }
                        _ => return Err(sub),
                    }
                }
                if v.is_null() {
                    v = json!("");
                }
                let m = out.entry(name).or_insert_with(|| json!({}));
                m[k.as_str()] = v;
                continue;
            }
            _ => return Err(sub),
        };
        if repeated {
            out.entry(name)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("array")
                .push(v);
            continue;
        }
        let zero = match &v {
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.as_i64() == Some(0) && !matches!(ty, T::IntP),
            Value::Bool(b) => !b && !matches!(ty, T::BoolP),
            Value::Object(m) => m.is_empty() && !matches!(name, "selector"),
            _ => false,
        };
        if !zero {
            out.insert(name.to_string(), v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn namespace_with_go_zero_fields() {
        // ObjectMeta{name: "team-a", generateName: "", creationTimestamp: zero time}
        let mut meta = field(1, b"team-a");
        meta.extend(field(2, b""));
        meta.extend(field(
            8,
            &[
                0x08, 0x80, 0x92, 0xb8, 0xc3, 0x98, 0xfe, 0xff, 0xff, 0xff, 0x01,
            ],
        ));
        let mut raw = field(1, &meta);
        raw.extend(field(2, b""));
        let mut tm = field(1, b"v1");
        tm.extend(field(2, b"Namespace"));
        let mut body = b"k8s\0".to_vec();
        body.extend(field(1, &tm));
        body.extend(field(2, &raw));
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut tm = field(1, b"v1");
        tm.extend(field(2, b"ConfigMap"));
        let mut body = b"k8s\0".to_vec();
        body.extend(field(1, &tm));
        body.extend(field(2, &field(9, b"x")));
        let e = decode(&body).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("ConfigMap.9"), "{}", e.message);
    }
}
