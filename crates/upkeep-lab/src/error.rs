//! API errors as kube-apiserver reports them: a `meta/v1 Status` with reason, code, details.
//! Message wording follows k8s.io/apimachinery pkg/api/errors/errors.go.

use serde_json::{Value, json};

use crate::resources::Resource;

/// One `details.causes[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: Option<String>,
}

/// An error answered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
    /// Sets `details.retryAfterSeconds` and the Retry-After header.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn for_resource(mut self, res: &Resource, name: &str) -> Self {
        self.name = Some(name.to_string());
        self.group = Some(res.group.to_string());
        self.kind = Some(res.plural.to_string());
        self
    }

    pub fn with_cause(
        mut self,
        reason: &str,
        message: impl Into<String>,
        field: Option<&str>,
    ) -> Self {
        self.causes.push(Cause {
            reason: reason.to_string(),
            message: message.into(),
            field: field.map(str::to_string),
        });
        self
    }

    /// `pods "x" not found`
    pub fn not_found(res: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", res.qualified(), name),
        )
        .for_resource(res, name)
    }

    /// `pods "x" already exists`
    pub fn already_exists(res: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", res.qualified(), name),
        )
        .for_resource(res, name)
    }

    /// `Operation cannot be fulfilled on pods "x": <msg>`
    pub fn conflict(res: &Resource, name: &str, msg: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                res.qualified(),
                name,
                msg
            ),
        )
        .for_resource(res, name)
    }

    /// The optimistic-concurrency conflict (apiserver registry/generic/registry/store.go).
    pub fn stale(res: &Resource, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `Pod "x" is invalid: <field>: <msg>`, reason Invalid, 422.
    pub fn invalid(res: &Resource, name: &str, causes: Vec<Cause>) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| match &c.field {
                Some(f) => format!("{f}: {}", c.message),
                None => c.message.clone(),
            })
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{}\" is invalid: {}", res.kind, name, joined),
        );
        e.name = Some(name.to_string());
        e.group = Some(res.group.to_string());
        e.kind = Some(res.kind.to_string());
        e.causes = causes;
        e
    }

    pub fn invalid_field(
        res: &Resource,
        name: &str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::invalid(
            res,
            name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: message.into(),
                field: Some(field.into()),
            }],
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `pods "x" is forbidden: User "u" cannot create resource "pods" in API group "" in the namespace "default"`
    pub fn forbidden(res: &Resource, name: &str, message: impl Into<String>) -> Self {
        let msg = if name.is_empty() {
            format!("{} is forbidden: {}", res.qualified(), message.into())
        } else {
            format!(
                "{} \"{}\" is forbidden: {}",
                res.qualified(),
                name,
                message.into()
            )
        };
        Self::new(403, "Forbidden", msg).for_resource(res, name)
    }

    /// `the server could not find the requested resource`
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(verb: &str, what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {what})"
            ),
        )
    }

    /// 410 Gone for a watch or list from a resourceVersion that left the history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name
            && !n.is_empty()
        {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group
            && !g.is_empty()
        {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut o = json!({"reason": c.reason, "message": c.message});
                    if let Some(f) = &c.field {
                        o["field"] = json!(f);
                    }
                    o
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(r) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            s["details"] = Value::Object(details);
        }
        if self.reason.is_empty() {
            s.as_object_mut().map(|o| o.remove("reason"));
        }
        s
    }
}
