//! Protobuf request bodies, as far as the lab decodes them.
//!
//! client-go's typed clients in kubectl send `application/vnd.kubernetes.protobuf` bodies for
//! built-in types: `kubectl drain --disable-eviction` deletes pods with a protobuf
//! `DeleteOptions`, and kubectl's generators (`kubectl create deployment|namespace|...`) post
//! protobuf objects. The envelope is the magic `k8s\0` followed by a `runtime.Unknown`
//! (k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go). The lab decodes
//! `DeleteOptions`; any other kind answers 415 naming it, instead of a JSON parse error.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// True for a Kubernetes protobuf body (JSON never starts with `k`).
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// The 415 for a protobuf body the lab cannot decode.
pub fn unsupported(body: &[u8]) -> ApiError {
    let what = match envelope(body) {
        Ok(e) if !e.kind.is_empty() => format!("{} {}", e.api_version, e.kind),
        _ => "this object".to_string(),
    };
    ApiError::unsupported_media(format!(
        "the lab does not decode application/vnd.kubernetes.protobuf bodies for {what} (only DeleteOptions); send application/json"
    ))
}

/// A protobuf `DeleteOptions` body as its JSON form.
pub fn delete_options(body: &[u8]) -> ApiResult<Value> {
    let e = envelope(body)?;
    if e.kind != "DeleteOptions" {
        return Err(unsupported(body));
    }
    // k8s.io/apimachinery/pkg/apis/meta/v1/types.go DeleteOptions: gracePeriodSeconds=1,
    // preconditions=2 {uid=1, resourceVersion=2}, orphanDependents=3, propagationPolicy=4,
    // dryRun=5 (repeated).
    let mut out = Map::new();
    let mut dry_run = Vec::new();
    for f in fields(e.raw)? {
        match (f.number, f.value) {
            (1, Wire::Varint(v)) => {
                out.insert("gracePeriodSeconds".into(), json!(v as i64));
            }
            (2, Wire::Bytes(b)) => {
                let mut pre = Map::new();
                for p in fields(b)? {
                    match (p.number, p.value) {
                        (1, Wire::Bytes(s)) => {
                            pre.insert("uid".into(), json!(text(s)?));
                        }
                        (2, Wire::Bytes(s)) => {
                            pre.insert("resourceVersion".into(), json!(text(s)?));
                        }
                        _ => {}
                    }
                }
                out.insert("preconditions".into(), Value::Object(pre));
            }
            (3, Wire::Varint(v)) => {
                out.insert("orphanDependents".into(), json!(v != 0));
            }
            (4, Wire::Bytes(s)) => {
                out.insert("propagationPolicy".into(), json!(text(s)?));
            }
            (5, Wire::Bytes(s)) => dry_run.push(json!(text(s)?)),
            _ => {}
        }
    }
    if !dry_run.is_empty() {
        out.insert("dryRun".into(), Value::Array(dry_run));
    }
    Ok(Value::Object(out))
}

/// `runtime.Unknown`: typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4.
pub(super) struct Envelope<'a> {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) raw: &'a [u8],
}

pub(super) fn envelope(body: &[u8]) -> ApiResult<Envelope<'_>> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return Err(ApiError::bad_request(
            "the protobuf body lacks the k8s magic prefix",
        ));
    };
    let mut e = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    for f in fields(rest)? {
        match (f.number, f.value) {
            (1, Wire::Bytes(tm)) => {
                for t in fields(tm)? {
                    match (t.number, t.value) {
                        (1, Wire::Bytes(s)) => e.api_version = text(s)?.to_string(),
                        (2, Wire::Bytes(s)) => e.kind = text(s)?.to_string(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(raw)) => e.raw = raw,
            _ => {}
        }
    }
    Ok(e)
}

pub(super) enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

pub(super) struct Field<'a> {
    pub(super) number: u64,
    pub(super) value: Wire<'a>,
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf body is malformed")
}

fn varint(b: &[u8], i: &mut usize) -> ApiResult<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or_else(malformed)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(malformed())
}

/// The fields of one message, in wire order (https://protobuf.dev/programming-guides/encoding/).
pub(super) fn fields(b: &[u8]) -> ApiResult<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => Wire::Varint(varint(b, &mut i)?),
            1 => {
                i = i
                    .checked_add(8)
                    .filter(|&n| n <= b.len())
                    .ok_or_else(malformed)?;
                Wire::Fixed64
            }
            2 => {
                let len = usize::try_from(varint(b, &mut i)?).map_err(|_| malformed())?;
                let end = i
                    .checked_add(len)
                    .filter(|&n| n <= b.len())
                    .ok_or_else(malformed)?;
                let v = &b[i..end];
                i = end;
                Wire::Bytes(v)
            }
            5 => {
                i = i
                    .checked_add(4)
                    .filter(|&n| n <= b.len())
                    .ok_or_else(malformed)?;
                Wire::Fixed32
            }
            _ => return Err(malformed()),
        };
        out.push(Field { number, value });
    }
    Ok(out)
}

pub(super) fn text(b: &[u8]) -> ApiResult<&str> {
    std::str::from_utf8(b).map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubectl drain --disable-eviction --grace-period=7` sends (captured with -v=8).
    const KUBECTL_DELETE: &[u8] =
        b"k8s\0\x0a\x13\x0a\x02v1\x12\x0dDeleteOptions\x12\x02\x08\x07\x1a\x00\x22\x00";

    #[test]
    fn kubectl_delete_options() {
        assert!(is_protobuf(KUBECTL_DELETE));
        assert_eq!(
            delete_options(KUBECTL_DELETE).unwrap(),
            json!({"gracePeriodSeconds": 7})
        );
    }

    fn enc_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn num(n: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        enc_varint(n << 3, &mut out);
        enc_varint(v, &mut out);
        out
    }

    fn bytes(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        enc_varint((n << 3) | 2, &mut out);
        enc_varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
        out
    }

    fn wrap(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes(1, api_version.as_bytes()), bytes(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            bytes(1, &type_meta),
            bytes(2, raw),
            bytes(3, b""),
            bytes(4, b""),
        ]
        .concat()
    }

    #[test]
    fn the_encoders_match_what_kubectl_sends() {
        assert_eq!(wrap("v1", "DeleteOptions", &num(1, 7)), KUBECTL_DELETE);
    }

    #[test]
    fn every_delete_option() {
        let preconditions = [bytes(1, b"u1"), bytes(2, b"42")].concat();
        let raw = [
            num(1, 300),
            bytes(2, &preconditions),
            num(3, 0),
            bytes(4, b"Foreground"),
            bytes(5, b"All"),
        ]
        .concat();
        assert_eq!(
            delete_options(&wrap("v1", "DeleteOptions", &raw)).unwrap(),
            json!({
                "gracePeriodSeconds": 300,
                "preconditions": {"uid": "u1", "resourceVersion": "42"},
                "orphanDependents": false,
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            })
        );
    }

    #[test]
    fn other_kinds_are_a_415_naming_the_kind() {
        let e = delete_options(&wrap("apps/v1", "Deployment", &bytes(1, b""))).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("apps/v1 Deployment"), "{}", e.message);
    }

    #[test]
    fn truncated_bodies_are_a_400() {
        assert_eq!(
            delete_options(b"k8s\0\x0a\x13\x0a\x02v1").unwrap_err().code,
            400
        );
        assert_eq!(delete_options(b"k8s\0\x0a").unwrap_err().code, 400);
    }
}
