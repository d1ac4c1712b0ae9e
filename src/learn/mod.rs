//! Lessons: each architecture claim a guide makes (the API server is the only one that talks to
//! the store; a ReplicaSet replaces a deleted pod, ...) as a sequence of steps run on the live
//! cluster, each with checks that the claim really held there. A lesson is data, one YAML file
//! per lesson (`lessons/NN-name.yaml`, embedded in the binary; the format is in
//! `lessons/README.md`), so a teacher adds one without touching code.
//!
//! `lesson` is the format (types, parsing, validation with the file, step and field of every
//! mistake), `catalogue` the lessons known (embedded, plus `--lessons DIR`), `check` what a step
//! does and checks against a cluster (shared by the headless runner and the dashboard), `run`
//! the headless runner (`orrery learn run NAME --check`: its own cluster as a child `orrery up`,
//! every step performed, every check retried until it holds or its time is up), and `progress`
//! the learner's progress in the state directory.

pub mod catalogue;
pub mod check;
pub mod lesson;
pub mod progress;
pub mod run;

pub use catalogue::Catalogue;
pub use lesson::{Lesson, LessonError};
