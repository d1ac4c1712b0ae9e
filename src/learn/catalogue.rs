//! The lessons known: the files of `lessons/` embedded in the binary by `build.rs` (adding a
//! file is all it takes), plus those of a `--lessons DIR` (`ORRERY_LESSONS`), which add to them
//! or replace one of the same name, so a teacher can try a lesson without rebuilding. Ordered by
//! their `NN`.

use std::path::Path;
use std::sync::Arc;

use super::lesson::{Lesson, LessonError, file_name_parts};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/lessons.rs"));
}

/// The lessons, in catalogue order. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    lessons: Arc<Vec<Lesson>>,
}

impl Catalogue {
    /// The embedded lessons.
    pub fn embedded() -> Result<Catalogue, LessonError> {
        Self::from_files(
            embedded::EMBEDDED
                .iter()
                .map(|(file, text)| ((*file).to_owned(), (*text).to_owned())),
        )
    }

    /// The embedded lessons, with those of `dir` added (a lesson of the same name replaces the
    /// embedded one).
    pub fn load(dir: Option<&Path>) -> Result<Catalogue, LessonError> {
        let mut files: Vec<(String, String)> = embedded::EMBEDDED
            .iter()
            .map(|(file, text)| ((*file).to_owned(), (*text).to_owned()))
            .collect();
        if let Some(dir) = dir {
            let read_error = |source| LessonError::Read {
                path: dir.display().to_string(),
                source,
            };
            let mut own = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(read_error)? {
                let path = entry.map_err(read_error)?.path();
                if path.extension().is_none_or(|e| e != "yaml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|source| LessonError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let file = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                own.push((file, text, path.display().to_string()));
            }
            own.sort();
            let mut own_names: Vec<(String, String)> = Vec::new();
            for (file, text, shown) in own {
                let (_, name) =
                    file_name_parts(&file).ok_or_else(|| LessonError::FileName(shown.clone()))?;
                if let Some((_, first)) = own_names.iter().find(|(n, _)| *n == name) {
                    return Err(LessonError::Duplicate {
                        name,
                        first: first.clone(),
                        second: shown,
                    });
                }
                files.retain(|(f, _)| file_name_parts(f).is_none_or(|(_, n)| n != name));
                own_names.push((name, shown.clone()));
                // Errors name the file as the teacher gave it.
                files.push((shown, text));
            }
        }
        Self::from_files(files)
    }

    /// The lessons in these files (name, text): a test's, or a tool's.
    pub fn parse(files: &[(&str, &str)]) -> Result<Catalogue, LessonError> {
        Self::from_files(
            files
                .iter()
                .map(|(file, text)| ((*file).to_owned(), (*text).to_owned())),
        )
    }

    fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Catalogue, LessonError> {
        let mut lessons = Vec::new();
        for (path, text) in files {
            let file = Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let lesson = Lesson::parse(&file, &text).map_err(|e| shown_as(e, &file, &path))?;
            if let Some(first) = lessons.iter().find(|l: &&Lesson| l.name == lesson.name) {
                return Err(LessonError::Duplicate {
                    name: lesson.name,
                    first: first.file.clone(),
                    second: file,
                });
            }
            lessons.push(lesson);
        }
        lessons.sort_by(|a, b| (&a.order, &a.name).cmp(&(&b.order, &b.name)));
        Ok(Catalogue {
            lessons: Arc::new(lessons),
        })
    }

    /// Every lesson, in order.
    pub fn lessons(&self) -> &[Lesson] {
        &self.lessons
    }

    /// The lesson called `name`: its name (`deployment`), its number (`01`) or its file's stem
    /// (`01-deployment`).
    pub fn get(&self, name: &str) -> Result<&Lesson, LessonError> {
        self.lessons
            .iter()
            .find(|l| {
                l.name == name || l.order == name || format!("{}-{}", l.order, l.name) == name
            })
            .ok_or_else(|| LessonError::Unknown(name.to_owned()))
    }

    /// The index of the lesson called `name` (as [`Catalogue::get`] finds it).
    pub fn position(&self, name: &str) -> Option<usize> {
        let found = self.get(name).ok()?;
        self.lessons.iter().position(|l| std::ptr::eq(l, found))
    }
}

/// A lesson error naming the file by the path it was read from (`path`) instead of its bare
/// name (`file`).
fn shown_as(error: LessonError, file: &str, path: &str) -> LessonError {
    if file == path {
        return error;
    }
    match error {
        LessonError::Syntax { message, .. } => LessonError::Syntax {
            file: path.to_owned(),
            message,
        },
        LessonError::Invalid { field, message, .. } => LessonError::Invalid {
            file: path.to_owned(),
            field,
            message,
        },
        LessonError::FileName(_) => LessonError::FileName(path.to_owned()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_lesson_parses() {
        let catalogue = Catalogue::embedded().unwrap_or_else(|e| panic!("{e}"));
        assert!(catalogue.lessons().len() >= 3);
        let orders: Vec<&str> = catalogue
            .lessons()
            .iter()
            .map(|l| l.order.as_str())
            .collect();
        let mut sorted = orders.clone();
        sorted.sort();
        assert_eq!(orders, sorted);
        let first = &catalogue.lessons()[0];
        let stem = format!("{}-{}", first.order, first.name);
        for name in [first.name.as_str(), first.order.as_str(), stem.as_str()] {
            assert_eq!(catalogue.get(name).unwrap().file, first.file, "{name}");
        }
        assert_eq!(catalogue.position(&first.name), Some(0));
        assert!(matches!(
            catalogue.get("nothing"),
            Err(LessonError::Unknown(_))
        ));
    }

    #[test]
    fn a_directory_adds_and_replaces_lessons() {
        let dir = tempfile::tempdir().unwrap();
        let first = Catalogue::embedded().unwrap().lessons()[0].clone();
        let lesson = |title: &str| {
            format!(
                "title: {title}\nclaim: c\nsteps:\n  - title: t\n    check:\n      - run: \"true\"\n"
            )
        };
        std::fs::write(
            dir.path().join(format!("99-{}.yaml", first.name)),
            lesson("Mine"),
        )
        .unwrap();
        std::fs::write(dir.path().join("98-extra.yaml"), lesson("Extra")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a lesson").unwrap();
        let catalogue = Catalogue::load(Some(dir.path())).unwrap();
        assert_eq!(catalogue.get(&first.name).unwrap().title, "Mine");
        assert_eq!(catalogue.get("extra").unwrap().order, "98");
        assert_eq!(
            catalogue.lessons().len(),
            Catalogue::embedded().unwrap().lessons().len() + 1
        );
        std::fs::write(dir.path().join("97-broken.yaml"), "title: [").unwrap();
        let error = Catalogue::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}/97-broken.yaml: ", dir.path().display())),
            "{error}"
        );
        std::fs::remove_file(dir.path().join("97-broken.yaml")).unwrap();
        std::fs::write(dir.path().join("96-extra.yaml"), lesson("Again")).unwrap();
        assert!(matches!(
            Catalogue::load(Some(dir.path())),
            Err(LessonError::Duplicate { .. })
        ));
    }
}
