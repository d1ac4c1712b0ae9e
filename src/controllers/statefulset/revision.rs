//! A StatefulSet's history, as upstream's `pkg/controller/history` and `stateful_set_utils.go`
//! keep it: one ControllerRevision per pod template, named `<set>-<hash>`, whose `data` is the
//! strategic merge patch `{"spec":{"template":{"$patch":"replace",...}}}` that `kubectl rollout
//! undo` sends back. The patch is written byte for byte as Go's `json.Marshal` writes it (keys
//! sorted, Go's escaping, the template in Go's shape), so the hash (FNV-1 of those bytes and the
//! collision count, in Kubernetes' name alphabet) and the revision's name are those a real
//! cluster gives the same template, and kubectl's byte comparison ("current template already
//! matches revision N") holds. Pure.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Value, json};

use super::identity::{name, new_controller_ref, revision_of};

/// The label holding a revision's hash (`history.ControllerRevisionHashLabel`; the pods' label
/// `controller-revision-hash` names the whole revision).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The revision's `data`: the set's template as a `$patch: replace` strategic merge patch, as
/// Go's `json.Marshal` writes it (`getPatch`).
pub fn patch_bytes(set: &StatefulSet) -> Vec<u8> {
    let mut value = serde_json::to_value(set).unwrap_or(Value::Null);
    value["apiVersion"] = json!("apps/v1");
    value["kind"] = json!("StatefulSet");
    let shaped = crate::apimachinery::wire::shape(value);
    let mut template = shaped["spec"]["template"].clone();
    if !template.is_object() {
        template = json!({});
    }
    template["$patch"] = json!("replace");
    let mut out = Vec::new();
    crate::apimachinery::wire::generic(&json!({"spec": {"template": template}}), &mut out);
    out
}

/// `history.HashControllerRevision`: FNV-1 (32 bits) of the data and the collision count's
/// digits, its decimal form written in the alphabet of generated names (`rand.SafeEncodeString`).
pub fn hash(data: &[u8], collision_count: i32) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in data
        .iter()
        .copied()
        .chain(collision_count.to_string().bytes())
    {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(byte);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// `<set>-<hash>`, the set's name cut to 223 bytes first (`ControllerRevisionName`).
pub fn revision_name(set: &StatefulSet, hash: &str) -> String {
    let prefix = name(&set.metadata);
    let cut = (0..=prefix.len().min(223))
        .rev()
        .find(|&i| prefix.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}-{hash}", &prefix[..cut])
}

/// A new revision of the set's template numbered `revision` (`newRevision`): the template's
/// labels plus the hash label, the set's annotations, the set as controller, the patch as data.
pub fn new_revision(set: &StatefulSet, revision: i64, collision_count: i32) -> ControllerRevision {
    let data = patch_bytes(set);
    let hash = hash(&data, collision_count);
    let mut labels = set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(set, &hash)),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(set.metadata.annotations.clone().unwrap_or_default()),
            owner_references: Some(vec![new_controller_ref(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(
            serde_json::from_slice(&data).unwrap_or(Value::Null),
        )),
        revision,
    }
}

/// Whether two revisions hold the same state (`history.EqualRevision`: their data).
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// Oldest first: by revision number, then creation time, then name
/// (`history.SortControllerRevisions`).
pub fn sort(revisions: &mut [&ControllerRevision]) {
    revisions.sort_by(|a, b| {
        (
            a.revision,
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            name(&a.metadata),
        )
            .cmp(&(
                b.revision,
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                name(&b.metadata),
            ))
    });
}

/// One more than the newest revision's number, 1 for none (`nextRevision`; sorted input).
pub fn next_revision(sorted: &[&ControllerRevision]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// What the set's current template means for its history (`getStatefulSetRevisions`).
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateRevision {
    /// The newest revision already holds it: nothing changes.
    Newest(usize),
    /// An older revision holds it (a rollback): that one is renumbered `revision`.
    Renumber {
        /// Its index in the sorted revisions.
        index: usize,
        /// Its new number.
        revision: i64,
    },
    /// No revision holds it: this one is to be created.
    Create(Box<ControllerRevision>),
}

/// Decides the update revision from the sorted revisions (`getStatefulSetRevisions`).
pub fn decide(
    set: &StatefulSet,
    sorted: &[&ControllerRevision],
    collision_count: i32,
) -> UpdateRevision {
    let candidate = new_revision(set, next_revision(sorted), collision_count);
    let equal_at: Vec<usize> = sorted
        .iter()
        .enumerate()
        .filter(|(_, r)| equal(r, &candidate))
        .map(|(i, _)| i)
        .collect();
    match equal_at.last() {
        Some(&i) if i + 1 == sorted.len() => UpdateRevision::Newest(i),
        Some(&i) => UpdateRevision::Renumber {
            index: i,
            revision: candidate.revision,
        },
        None => UpdateRevision::Create(Box::new(candidate)),
    }
}

/// The set as the revision describes it (`ApplyRevision`): its template replaced by the one
/// the revision's patch holds.
pub fn apply(set: &StatefulSet, revision: &ControllerRevision) -> StatefulSet {
    let Some(template) = revision
        .data
        .as_ref()
        .and_then(|d| d.0.pointer("/spec/template"))
        .and_then(Value::as_object)
    else {
        return set.clone();
    };
    let mut template = template.clone();
    let replace = template.remove("$patch") == Some(json!("replace"));
    let mut value = serde_json::to_value(set).unwrap_or(Value::Null);
    let merged = if replace {
        Value::Object(template)
    } else {
        let mut current = value["spec"]["template"].clone();
        if let Value::Object(map) = &mut current {
            map.extend(template);
        }
        current
    };
    value["spec"]["template"] = merged;
    serde_json::from_value(value).unwrap_or_else(|_| set.clone())
}

/// The revisions to delete so that at most `revisionHistoryLimit` revisions beyond the live ones
/// (current, update, and any a pod runs) remain, oldest first (`truncateHistory`; sorted input).
pub fn to_truncate<'a>(
    set: &StatefulSet,
    pods: &[&Pod],
    sorted: &[&'a ControllerRevision],
    current: &str,
    update: &str,
) -> Vec<&'a ControllerRevision> {
    let mut live: BTreeSet<&str> = pods.iter().map(|p| revision_of(p)).collect();
    live.insert(current);
    live.insert(update);
    let history: Vec<&ControllerRevision> = sorted
        .iter()
        .copied()
        .filter(|r| !live.contains(name(&r.metadata)))
        .collect();
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    if limit < 0 || history.len() <= limit as usize {
        return Vec::new();
    }
    history[..history.len() - limit as usize].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::tests::web;

    fn with_image(image: &str) -> StatefulSet {
        let mut set = web();
        set.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some(image.into());
        set
    }

    #[test]
    fn the_patch_is_go_json_of_the_template_in_go_shape() {
        let set = web();
        let text = String::from_utf8(patch_bytes(&set)).unwrap();
        // Keys sorted ("$patch" first), compact, the template's Go zero values present
        // (`creationTimestamp: null`, `resources: {}`), nothing but the template.
        assert!(
            text.starts_with(r#"{"spec":{"template":{"$patch":"replace","metadata":{"annotations":{"a":"b"},"creationTimestamp":null,"labels":{"app":"nginx"}},"spec":{"containers":[{"image":"nginx:1","name":"nginx","resources":{}}]"#),
            "{text}"
        );
        assert!(!text.contains("volumeClaimTemplates"), "{text}");
        assert!(!text.contains(' '), "{text}");
    }

    /// Upstream's compatibility fixture (`testdata/compatibility_revision_1.33.0.json`): a set
    /// `test` whose revision kube-controller-manager 1.33 named `test-c77f6d978`.
    #[test]
    fn the_same_template_gets_the_name_kube_controller_manager_gives_it() {
        let data = r#"{"spec":{"template":{"$patch":"replace","metadata":{"annotations":{"test":"value"},"creationTimestamp":null,"labels":{"app":"foo"}},"spec":{"containers":[{"image":"test","imagePullPolicy":"Always","name":"test","resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"terminationGracePeriodSeconds":30}}}}"#;
        assert_eq!(hash(data.as_bytes(), 0), "c77f6d978");
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "test", "namespace": "default", "uid": "u"},
            "spec": {
                "selector": {"matchLabels": {"app": "foo"}},
                "template": {
                    "metadata": {"labels": {"app": "foo"}, "annotations": {"test": "value"}},
                    "spec": {
                        "containers": [{"name": "test", "image": "test", "imagePullPolicy": "Always",
                            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                        "schedulerName": "default-scheduler", "securityContext": {},
                        "terminationGracePeriodSeconds": 30
                    }
                }
            }
        }))
        .unwrap();
        assert_eq!(String::from_utf8(patch_bytes(&set)).unwrap(), data);
        let r = new_revision(&set, 1, 0);
        assert_eq!(r.metadata.name.as_deref(), Some("test-c77f6d978"));
        assert_eq!(r.metadata.labels.unwrap()[HASH_LABEL], "c77f6d978");
    }

    #[test]
    fn hashes_are_fnv1_in_the_name_alphabet() {
        // FNV-1 32 of "" and "0" (the offset basis, then one round), as Go's hash/fnv gives.
        let zero: u32 = 0x811c_9dc5u32.wrapping_mul(0x0100_0193) ^ u32::from(b'0');
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let want: String = zero
            .to_string()
            .bytes()
            .map(|b| ALPHABET[usize::from(b) % 27] as char)
            .collect();
        assert_eq!(hash(b"", 0), want);
        assert_ne!(
            hash(b"a", 0),
            hash(b"a", 1),
            "the collision count changes the name"
        );
        assert!(
            hash(b"{}", 0)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }

    #[test]
    fn a_new_revision_is_named_labelled_owned_and_annotated() {
        let mut set = web();
        set.metadata.annotations = Some([("note".to_owned(), "v1".to_owned())].into());
        let r = new_revision(&set, 3, 0);
        let hash_label = r.metadata.labels.as_ref().unwrap()[HASH_LABEL].clone();
        assert_eq!(
            r.metadata.name.as_deref(),
            Some(&*format!("web-{hash_label}"))
        );
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "nginx");
        assert_eq!(r.metadata.annotations.as_ref().unwrap()["note"], "v1");
        assert_eq!(
            r.metadata.owner_references.as_ref().unwrap()[0].uid,
            "set-uid"
        );
        assert_eq!(r.revision, 3);
        assert_eq!(
            serde_json::to_vec(&r.data.as_ref().unwrap().0).unwrap(),
            patch_bytes(&set),
            "serde_json writes the same bytes back (sorted keys)"
        );
        // The same template gives the same name; another gives another.
        assert_eq!(new_revision(&set, 7, 0).metadata.name, r.metadata.name);
        assert_ne!(
            new_revision(&with_image("nginx:2"), 3, 0).metadata.name,
            r.metadata.name
        );
        let long = "a".repeat(300);
        assert_eq!(
            revision_name(
                &serde_json::from_value(json!({"metadata": {"name": long}})).unwrap(),
                "h"
            )
            .len(),
            225
        );
    }

    #[test]
    fn decide_keeps_renumbers_or_creates() {
        let v1 = with_image("nginx:1");
        let v2 = with_image("nginx:2");
        let r1 = new_revision(&v1, 1, 0);
        let r2 = new_revision(&v2, 2, 0);
        assert!(matches!(decide(&v1, &[], 0), UpdateRevision::Create(r) if r.revision == 1));
        assert_eq!(decide(&v2, &[&r1, &r2], 0), UpdateRevision::Newest(1));
        assert_eq!(
            decide(&v1, &[&r1, &r2], 0),
            UpdateRevision::Renumber {
                index: 0,
                revision: 3
            }
        );
        let v3 = with_image("nginx:3");
        match decide(&v3, &[&r1, &r2], 0) {
            UpdateRevision::Create(r) => {
                assert_eq!(r.revision, 3);
                let restored = apply(&v1, &r).spec.unwrap().template.spec.unwrap();
                assert_eq!(restored.containers[0].image.as_deref(), Some("nginx:3"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn apply_restores_the_template_and_nothing_else() {
        let v1 = with_image("nginx:1");
        let mut v2 = with_image("nginx:2");
        v2.spec.as_mut().unwrap().replicas = Some(5);
        let restored = apply(&v2, &new_revision(&v1, 1, 0));
        let spec = restored.spec.unwrap();
        assert_eq!(spec.replicas, Some(5));
        assert_eq!(
            spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("nginx:1")
        );
    }

    #[test]
    fn sort_next_and_truncate() {
        let mut set = web();
        set.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let revs: Vec<ControllerRevision> = (1..=4)
            .map(|i| {
                let mut r = new_revision(&with_image(&format!("nginx:{i}")), i, 0);
                r.metadata.name = Some(format!("web-r{i}"));
                r
            })
            .collect();
        let mut sorted: Vec<&ControllerRevision> = vec![&revs[2], &revs[0], &revs[3], &revs[1]];
        sort(&mut sorted);
        assert_eq!(
            sorted.iter().map(|r| r.revision).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(next_revision(&sorted), 5);
        assert_eq!(next_revision(&[]), 1);
        // r4 is current and update, a pod runs r1: of r2 and r3 only one may stay (r3, newer).
        let mut pod = Pod::default();
        crate::controllers::statefulset::identity::set_revision(&mut pod, "web-r1");
        let gone = to_truncate(&set, &[&pod], &sorted, "web-r4", "web-r4");
        assert_eq!(
            gone.iter().map(|r| name(&r.metadata)).collect::<Vec<_>>(),
            ["web-r2"]
        );
        set.spec.as_mut().unwrap().revision_history_limit = Some(10);
        assert!(to_truncate(&set, &[], &sorted, "web-r4", "web-r4").is_empty());
    }
}
