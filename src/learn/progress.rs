//! The learner's progress: which steps of which lessons have held, in
//! `<state-dir>/learn/progress.json` (owner-only, like the rest of the state directory), written
//! whole to a temporary file and renamed over the old one, so a crash leaves the old or the new
//! progress, never half of one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What went wrong reading or writing the progress file.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// It could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not the progress file's JSON.
    #[error("{path}: not a progress file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Every lesson's progress, by lesson name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// By lesson name.
    #[serde(default)]
    pub lessons: BTreeMap<String, LessonProgress>,
}

/// One lesson's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LessonProgress {
    /// The steps whose checks held (indices from 0).
    #[serde(default)]
    pub passed: BTreeSet<usize>,
    /// How many steps the lesson had then.
    #[serde(default)]
    pub steps: usize,
    /// When a step last held (RFC 3339).
    #[serde(default)]
    pub updated: String,
}

impl LessonProgress {
    /// Whether every step has held.
    pub fn complete(&self) -> bool {
        self.steps > 0 && (0..self.steps).all(|i| self.passed.contains(&i))
    }
}

/// Where a cluster's progress is kept.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("learn").join("progress.json")
}

impl Progress {
    /// The progress in `file`; none yet if it does not exist.
    pub fn load(file: &Path) -> Result<Progress, ProgressError> {
        match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ProgressError::Corrupt {
                path: file.to_owned(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(source) => Err(ProgressError::Io {
                path: file.to_owned(),
                source,
            }),
        }
    }

    /// Writes it to `file` atomically (a temporary file beside it, synced, then renamed), owner
    /// only, making its directory (0700) if need be.
    pub fn save(&self, file: &Path) -> Result<(), ProgressError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ProgressError::Io { path, source }
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let temporary = file.with_extension("json.new");
        let text = serde_json::to_vec_pretty(self).map_err(|e| ProgressError::Corrupt {
            path: file.to_owned(),
            message: e.to_string(),
        })?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io(&temporary))?;
        out.write_all(&text).map_err(io(&temporary))?;
        out.write_all(b"\n").map_err(io(&temporary))?;
        out.sync_all().map_err(io(&temporary))?;
        drop(out);
        std::fs::rename(&temporary, file).map_err(io(file))
    }

    /// Records that step `step` of lesson `name` (of `steps` steps) held.
    pub fn pass(&mut self, name: &str, step: usize, steps: usize) {
        let entry = self.lessons.entry(name.to_owned()).or_default();
        entry.passed.insert(step);
        entry.passed.retain(|s| *s < steps);
        entry.steps = steps;
        entry.updated = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
    }

    /// How far lesson `name` of `steps` steps has got, in a word: `-` (not begun), `2/5`, `done`.
    pub fn summary(&self, name: &str, steps: usize) -> String {
        match self.lessons.get(name) {
            None => "-".to_owned(),
            Some(p) if p.steps == steps && p.complete() => "done".to_owned(),
            Some(p) => format!(
                "{}/{steps}",
                p.passed.iter().filter(|s| **s < steps).count()
            ),
        }
    }

    /// The first step of lesson `name` that has not held yet (0 if none has).
    pub fn next_step(&self, name: &str, steps: usize) -> usize {
        let passed = self.lessons.get(name).map(|p| &p.passed);
        (0..steps)
            .find(|s| passed.is_none_or(|p| !p.contains(s)))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_kept_atomically_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        assert_eq!(Progress::load(&file).unwrap(), Progress::default());
        let mut progress = Progress::default();
        progress.pass("deployment", 0, 3);
        progress.pass("deployment", 2, 3);
        assert_eq!(progress.summary("deployment", 3), "2/3");
        assert_eq!(progress.next_step("deployment", 3), 1);
        assert_eq!(progress.summary("store", 2), "-");
        progress.save(&file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        assert!(!file.with_extension("json.new").exists());
        let mut again = Progress::load(&file).unwrap();
        assert_eq!(again, progress);
        again.pass("deployment", 1, 3);
        assert_eq!(again.summary("deployment", 3), "done");
        // A lesson that grew a step since is no longer done.
        assert_eq!(again.summary("deployment", 4), "3/4");
        std::fs::write(&file, "{").unwrap();
        assert!(matches!(
            Progress::load(&file),
            Err(ProgressError::Corrupt { .. })
        ));
    }
}
