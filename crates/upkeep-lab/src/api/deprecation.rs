//! API versions a cluster still serves although they are deprecated, and the record
//! of their use: `apiserver_requested_deprecated_apis`.
//!
//! Upstream: each prerelease version carries its lifecycle
//! (`zz_generated.prerelease-lifecycle.go`: `APILifecycleDeprecated`,
//! `APILifecycleRemoved`); staging/src/k8s.io/apiserver/pkg/endpoints/deprecation/deprecation.go
//! `IsDeprecated` says a version is deprecated once the server's minor reaches the
//! deprecated release, and `RemovedRelease` formats the removal as `"1.25"`. The
//! installer serves the version until the removed release; every request to it
//! sets the gauge (staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go
//! `MonitorRequest`: `deprecatedRequestGauge ... WithLabelValues(group, version,
//! resource, subresource, removedRelease).Set(1)`) and answers with a `Warning` header
//! (deprecation.go, kubernetes.io/blog/2020/09/03/warnings).
//!
//! The lab serves such a version as the stored version's resource, with the stored
//! version's `apiVersion` in the body: no conversion (the lab keeps one version per
//! resource). Discovery does not list it.

use crate::resources::{self, Resource};

/// One deprecated version of a resource the lab stores at another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeprecatedVersion {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub kind: &'static str,
    /// Deprecated from this minor (`APILifecycleDeprecated`).
    pub deprecated: (u32, u32),
    /// Not served from this minor (`APILifecycleRemoved`).
    pub removed: (u32, u32),
    /// The version to use instead.
    pub replacement: &'static str,
    /// Where the lifecycle comes from.
    pub source: &'static str,
}

/// The deprecated versions of resources the lab keeps.
pub const DEPRECATED_VERSIONS: &[DeprecatedVersion] = &[
    DeprecatedVersion {
        group: "policy",
        version: "v1beta1",
        resource: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        deprecated: (1, 21),
        removed: (1, 25),
        replacement: "policy/v1",
        source: "pkg/apis/policy/v1beta1/zz_generated.prerelease-lifecycle.go (PodDisruptionBudget: deprecated 1.21, removed 1.25)",
    },
    DeprecatedVersion {
        group: "events.k8s.io",
        version: "v1beta1",
        resource: "events",
        kind: "Event",
        deprecated: (1, 22),
        removed: (1, 25),
        replacement: "events.k8s.io/v1",
        source: "staging/src/k8s.io/api/events/v1beta1/zz_generated.prerelease-lifecycle.go (Event: deprecated 1.22, removed 1.25)",
    },
];

impl DeprecatedVersion {
    /// `RemovedRelease`: `"1.25"`.
    pub fn removed_release(&self) -> String {
        format!("{}.{}", self.removed.0, self.removed.1)
    }

    /// The resource the lab stores it as.
    pub fn stored(&self) -> Option<&'static Resource> {
        resources::ALL
            .iter()
            .copied()
            .find(|r| r.group == self.group && r.plural == self.resource)
    }

    /// deprecation.go's `Warning` text for it.
    pub fn warning(&self) -> String {
        format!(
            "{}/{} {} is deprecated in v{}.{}+, unavailable in v{}.{}+; use {} {}",
            self.group,
            self.version,
            self.kind,
            self.deprecated.0,
            self.deprecated.1,
            self.removed.0,
            self.removed.1,
            self.replacement,
            self.kind
        )
    }
}

/// The deprecated version a server at `server` (major, minor) serves for this path's
/// group, version and resource, if any: deprecated already and not yet removed.
pub fn served(
    group: &str,
    version: &str,
    resource: &str,
    server: (u32, u32),
) -> Option<&'static DeprecatedVersion> {
    DEPRECATED_VERSIONS.iter().find(|d| {
        d.group == group
            && d.version == version
            && d.resource == resource
            && server >= d.deprecated
            && server < d.removed
    })
}

/// `/apis/{group}/{version}/...` with the version replaced by the stored one, when the
/// path names a deprecated version the server serves; and that version.
pub fn rewrite(path: &str, server: (u32, u32)) -> Option<(String, &'static DeprecatedVersion)> {
    let rest = path.strip_prefix("/apis/")?;
    let mut parts = rest.splitn(3, '/');
    let (group, version, tail) = (parts.next()?, parts.next()?, parts.next()?);
    let segs: Vec<&str> = tail.split('/').filter(|s| !s.is_empty()).collect();
    let resource = match segs.as_slice() {
        ["watch", "namespaces", _, r, ..] | ["namespaces", _, r, ..] | ["watch", r, ..] => *r,
        [r, ..] => *r,
        [] => return None,
    };
    let d = served(group, version, resource, server)?;
    let stored = d.stored()?;
    Some((format!("/apis/{group}/{}/{tail}", stored.version), d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deprecated_version_is_served_until_its_removal() {
        let path = "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets";
        let (to, d) = rewrite(path, (1, 24)).unwrap();
        assert_eq!(
            to,
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
        );
        assert_eq!(d.removed_release(), "1.25");
        assert!(rewrite(path, (1, 25)).is_none(), "removed in 1.25");
        assert!(
            rewrite(path, (1, 20)).is_none(),
            "not deprecated before 1.21"
        );
        assert!(rewrite("/apis/policy/v1/poddisruptionbudgets", (1, 24)).is_none());
        assert_eq!(
            d.warning(),
            "policy/v1beta1 PodDisruptionBudget is deprecated in v1.21+, unavailable in v1.25+; use policy/v1 PodDisruptionBudget"
        );
        for d in DEPRECATED_VERSIONS {
            assert!(d.stored().is_some(), "{d:?}");
        }
    }
}
