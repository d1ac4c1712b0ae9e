//! `orrery bench lessons`: how long each lesson's headless check takes (`orrery learn run NAME
//! --check`, its cluster's start and stop included), run one after another as CI runs them,
//! and the total next to the goal: the whole catalogue in a few minutes.

use std::fmt;
use std::time::Duration;

use crate::learn::run::{LessonReport, RunOptions};

/// The goal for the whole catalogue's checks, run one after another.
pub const GOAL_TOTAL: Duration = Duration::from_secs(300);

/// Options of `orrery bench lessons`.
#[derive(Clone, Debug, clap::Args)]
pub struct LessonBenchOptions {
    /// The lessons to run [default: all of them, or those on --runtime].
    pub names: Vec<String>,
    /// Only the lessons on this runtime.
    #[arg(long, value_parser = ["sim", "real"])]
    pub runtime: Option<String>,
    /// The pod network of lessons on real containers.
    #[arg(long)]
    pub cluster_cidr: Option<crate::kubelet::ClusterCidr>,
    /// A directory of lesson files to add to the built-in ones.
    #[arg(long, env = "ORRERY_LESSONS")]
    pub lessons: Option<std::path::PathBuf>,
}

/// Each lesson's verdict and time, and the total.
#[derive(Clone, Debug)]
pub struct LessonReports(pub Vec<LessonReport>);

impl LessonReports {
    /// Whether every lesson held.
    pub fn passed(&self) -> bool {
        self.0.iter().all(LessonReport::passed)
    }
}

impl fmt::Display for LessonReports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| lesson | runtime | result | seconds (cluster start) |\n|---|---|---|---|"
        )?;
        let mut total = Duration::ZERO;
        for report in &self.0 {
            total += report.took;
            let result = if report.passed() {
                format!("held, {} steps", report.steps)
            } else {
                format!("FAILED at step {} of {}", report.passed + 1, report.steps)
            };
            writeln!(
                f,
                "| {} | {} | {result} | {:.1} ({:.1}) |",
                report.name,
                report.runtime.word(),
                report.took.as_secs_f64(),
                report.startup.as_secs_f64()
            )?;
        }
        writeln!(
            f,
            "| all {} | | {} | {:.1} (goal: < {} for the whole catalogue) |",
            self.0.len(),
            if self.passed() { "held" } else { "FAILED" },
            total.as_secs_f64(),
            GOAL_TOTAL.as_secs()
        )
    }
}

/// Runs the benchmark: each lesson's check, quietly, one after another.
pub async fn run_lesson_bench(options: &LessonBenchOptions) -> Result<LessonReports, String> {
    let catalogue =
        crate::learn::Catalogue::load(options.lessons.as_deref()).map_err(|e| e.to_string())?;
    let lessons: Vec<&crate::learn::Lesson> = if options.names.is_empty() {
        catalogue
            .lessons()
            .iter()
            .filter(|l| {
                options
                    .runtime
                    .as_deref()
                    .is_none_or(|r| r == l.cluster.runtime.word())
            })
            .collect()
    } else {
        options
            .names
            .iter()
            .map(|n| catalogue.get(n))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?
    };
    let run_options = RunOptions {
        cluster_cidr: options.cluster_cidr.map(|c| c.to_string()),
        quiet: true,
    };
    let mut reports = Vec::new();
    for lesson in lessons {
        let report = crate::learn::run::run(lesson, &run_options)
            .await
            .map_err(|e| format!("lesson {}: {e}", lesson.name))?;
        eprintln!(
            "orrery bench lessons: {} {} in {:.1}s",
            lesson.name,
            if report.passed() { "held" } else { "FAILED" },
            report.took.as_secs_f64()
        );
        reports.push(report);
    }
    Ok(LessonReports(reports))
}
