//! The one table of every resource the lab serves.
//!
//! Each entry says how a resource appears in discovery (group, version, kind, plural,
//! short names, categories, verbs, subresources) and how the store treats it
//! (namespaced, whether it has a status subresource, whether `metadata.generation` is kept).
//! Look a resource up with [`by_plural`], [`by_kind`] or the `POD`/`NODE`/... constants.

/// Static description of one served resource (one group/version/plural).
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    /// Subresource names, e.g. "status", "eviction", "log", "scale".
    pub subresources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// A status subresource exists: main-resource writes ignore `.status`, `/status` writes
    /// touch only `.status` (upstream registry strategies, e.g. pkg/registry/core/pod/strategy.go).
    pub has_status: bool,
    /// `metadata.generation` is set to 1 on create and bumped when anything other than
    /// metadata or status changes.
    pub generation: bool,
}

impl Resource {
    /// "apps/v1" or "v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// "pods" or "deployments.apps": the name used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const RW_NS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

macro_rules! res {
    ($name:ident, $g:expr, $v:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr,
     subs: $subs:expr, verbs: $verbs:expr, short: $short:expr, cats: $cats:expr,
     status: $status:expr, generation: $generation:expr) => {
        pub static $name: Resource = Resource {
            group: $g,
            version: $v,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            subresources: $subs,
            verbs: $verbs,
            short_names: $short,
            categories: $cats,
            has_status: $status,
            generation: $generation,
        };
    };
}

res!(NAMESPACE, "", "v1", "Namespace", "namespaces", "namespace", false,
    subs: &["status", "finalize"], verbs: RW_NS, short: &["ns"], cats: &[], status: true, generation: false);
res!(NODE, "", "v1", "Node", "nodes", "node", false,
    subs: &["status"], verbs: RW, short: &["no"], cats: &[], status: true, generation: false);
res!(POD, "", "v1", "Pod", "pods", "pod", true,
    subs: &["status", "eviction", "log", "binding"],
    verbs: RW, short: &["po"], cats: &["all"], status: true, generation: true);
res!(CONFIGMAP, "", "v1", "ConfigMap", "configmaps", "configmap", true,
    subs: &[], verbs: RW, short: &["cm"], cats: &[], status: false, generation: false);
res!(SECRET, "", "v1", "Secret", "secrets", "secret", true,
    subs: &[], verbs: RW, short: &[], cats: &[], status: false, generation: false);
res!(SERVICE, "", "v1", "Service", "services", "service", true,
    subs: &["status"], verbs: RW,
    short: &["svc"], cats: &["all"], status: true, generation: false);
res!(SERVICEACCOUNT, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true,
    subs: &[], verbs: RW, short: &["sa"], cats: &[], status: false, generation: false);
res!(ENDPOINTS, "", "v1", "Endpoints", "endpoints", "endpoints", true,
    subs: &[], verbs: RW, short: &["ep"], cats: &[], status: false, generation: false);
res!(EVENT, "", "v1", "Event", "events", "event", true,
    subs: &[], verbs: RW, short: &["ev"], cats: &[], status: false, generation: false);
// Storage: served and stored so pods can use local volumes bound to a node; the scheduler's
// VolumeBinding filter reads them (there is no PV controller or provisioner).
res!(PERSISTENTVOLUME, "", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false,
    subs: &["status"], verbs: RW, short: &["pv"], cats: &[], status: true, generation: false);
res!(PERSISTENTVOLUMECLAIM, "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true,
    subs: &["status"], verbs: RW, short: &["pvc"], cats: &[], status: true, generation: false);
res!(DEPLOYMENT, "apps", "v1", "Deployment", "deployments", "deployment", true,
    subs: &["status", "scale"], verbs: RW, short: &["deploy"], cats: &["all"], status: true, generation: true);
res!(REPLICASET, "apps", "v1", "ReplicaSet", "replicasets", "replicaset", true,
    subs: &["status", "scale"], verbs: RW, short: &["rs"], cats: &["all"], status: true, generation: true);
res!(DAEMONSET, "apps", "v1", "DaemonSet", "daemonsets", "daemonset", true,
    subs: &["status"], verbs: RW, short: &["ds"], cats: &["all"], status: true, generation: true);
res!(STATEFULSET, "apps", "v1", "StatefulSet", "statefulsets", "statefulset", true,
    subs: &["status", "scale"], verbs: RW, short: &["sts"], cats: &["all"], status: true, generation: true);
res!(CONTROLLERREVISION, "apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true,
    subs: &[], verbs: RW, short: &[], cats: &[], status: false, generation: false);
res!(JOB, "batch", "v1", "Job", "jobs", "job", true,
    subs: &["status"], verbs: RW, short: &[], cats: &["all"], status: true, generation: true);
res!(PDB, "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true,
    subs: &["status"], verbs: RW, short: &["pdb"], cats: &[], status: true, generation: true);
res!(LEASE, "coordination.k8s.io", "v1", "Lease", "leases", "lease", true,
    subs: &[], verbs: RW, short: &[], cats: &[], status: false, generation: false);
// Virtual create-only resources: answered, never stored (kubectl auth can-i / whoami).
res!(SELF_SUBJECT_ACCESS_REVIEW, "authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false,
    subs: &[], verbs: &["create"], short: &[], cats: &[], status: false, generation: false);
res!(SELF_SUBJECT_REVIEW, "authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false,
    subs: &[], verbs: &["create"], short: &[], cats: &[], status: false, generation: false);
res!(EVENT_EVENTS, "events.k8s.io", "v1", "Event", "events", "event", true,
    subs: &[], verbs: RW, short: &["ev"], cats: &[], status: false, generation: false);

/// Every served resource, in discovery order.
pub static ALL: &[&Resource] = &[
    &NAMESPACE,
    &NODE,
    &POD,
    &CONFIGMAP,
    &SECRET,
    &SERVICE,
    &SERVICEACCOUNT,
    &ENDPOINTS,
    &EVENT,
    &PERSISTENTVOLUME,
    &PERSISTENTVOLUMECLAIM,
    &DEPLOYMENT,
    &REPLICASET,
    &DAEMONSET,
    &STATEFULSET,
    &CONTROLLERREVISION,
    &JOB,
    &PDB,
    &LEASE,
    &EVENT_EVENTS,
    &SELF_SUBJECT_ACCESS_REVIEW,
    &SELF_SUBJECT_REVIEW,
];

/// The served group/versions, in discovery order (core "v1" first).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in ALL {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Resource by group, version and plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Resource by plural (first match; prefers the core group for "events").
pub fn by_plural(plural: &str) -> Option<&'static Resource> {
    ALL.iter().copied().find(|r| r.plural == plural)
}

/// Resource by apiVersion ("apps/v1", "v1") and kind.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Index of a resource in [`ALL`]; the store keeps one table per entry.
pub fn index_of(res: &Resource) -> usize {
    ALL.iter()
        .position(|r| std::ptr::eq(*r, res) || **r == *res)
        .expect("resource is in the table")
}
