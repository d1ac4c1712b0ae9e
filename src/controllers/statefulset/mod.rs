//! The StatefulSet controller, as kube-controller-manager's (`pkg/controller/statefulset`):
//! pods with stable names (`<set>-<ordinal>`), hostnames under the set's headless Service and
//! one PersistentVolumeClaim per template and ordinal, created in order and each only once the
//! one before is Running and Ready (`OrderedReady`) or all at once (`Parallel`), removed from the
//! highest ordinal down; a ControllerRevision per template, updated by `RollingUpdate` (highest
//! ordinal first, down to the partition) or `OnDelete`; and the status `kubectl rollout` reads.
//!
//! [`identity`] is what makes a pod the set's, [`revision`] its history, [`claims`] the claims'
//! retention policy and [`plan`] the decision of each pass; all pure.

pub mod claims;
pub mod identity;
pub mod plan;
pub mod revision;
