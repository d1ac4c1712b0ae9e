//! The dashboard's side of lessons: the catalogue and the learner's progress (`:learn` lists
//! them), and the lesson open in its pane: the step, when it began (the flow's sequence number,
//! for its flow checks), what `x` and `c` gave, and whether this dashboard put the cluster in
//! step mode for it. Entering a step sets [`Model::highlight`] from its `watch` and, when the
//! step asks, turns step mode on through the stepper effect; leaving it turns run mode back on.
//! Pure, like the rest of the model: the actions and checks run in `tui::effects`.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Effect, Highlight, Model, View};
use crate::learn::Catalogue;
use crate::learn::check::Outcome;
use crate::learn::lesson::{Action, Lesson, Step};
use crate::learn::progress::Progress;

/// The lessons the dashboard knows, the learner's progress, and the lesson open, if any.
#[derive(Clone, Debug, Default)]
pub struct Learn {
    /// The lessons.
    pub catalogue: Catalogue,
    /// Why the lessons or the progress could not be read, if they could not.
    pub error: Option<String>,
    /// The learner's progress.
    pub progress: Progress,
    /// What the learner's other terminal needs to reach this cluster
    /// (`KUBECONFIG=... ORRERY_STATE_DIR=...`).
    pub exports: String,
    /// The lesson in the pane.
    pub open: Option<OpenLesson>,
}

/// What `x` or `c` is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// The step's actions run.
    Performing,
    /// The step's checks run.
    Checking,
}

/// The lesson in the pane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenLesson {
    /// Its index in the catalogue.
    pub lesson: usize,
    /// The step shown (from 0).
    pub step: usize,
    /// The last flow event seen when the step began: its flow checks look at the hops after.
    pub since: u64,
    /// The variables its checks captured so far.
    pub vars: BTreeMap<String, String>,
    /// What the step's actions did (after `x`).
    pub actions: Vec<Outcome>,
    /// What the step's checks found (after `c`).
    pub checks: Vec<Outcome>,
    /// What runs now.
    pub busy: Option<Busy>,
    /// Whether every check held at the last `c`.
    pub held: bool,
    /// Whether this dashboard put the cluster in step mode for the step.
    pub stepping: bool,
}

impl Learn {
    /// The open lesson and its step.
    pub fn current(&self) -> Option<(&OpenLesson, &Lesson, &Step)> {
        let open = self.open.as_ref()?;
        let lesson = self.catalogue.lessons().get(open.lesson)?;
        Some((open, lesson, lesson.steps.get(open.step)?))
    }

    /// Whether every step of lesson `index` has held.
    pub fn complete(&self, index: usize) -> bool {
        self.catalogue
            .lessons()
            .get(index)
            .is_some_and(|l| self.progress.summary(&l.name, l.steps.len()) == "done")
    }
}

/// `text` with the variables known so far filled in (left as written where one has no value).
pub fn fill(text: &str, vars: &BTreeMap<String, String>) -> String {
    crate::learn::lesson::expand(text, |name| vars.get(name).cloned())
        .unwrap_or_else(|_| text.to_owned())
}

impl Model {
    /// The last flow event the dashboard has seen.
    fn last_seq(&self) -> u64 {
        self.events.back().map_or(0, |e| e.seq)
    }

    /// Opens lesson `index` at its first step not yet held, on the home screen.
    pub fn open_lesson(&mut self, index: usize) -> Vec<Effect> {
        let Some(lesson) = self.learn.catalogue.lessons().get(index) else {
            return Vec::new();
        };
        let steps = lesson.steps.len();
        let step = if self.learn.complete(index) {
            0
        } else {
            self.learn.progress.next_step(&lesson.name, steps)
        };
        let mut effects = self.leave_step();
        self.learn.open = Some(OpenLesson {
            lesson: index,
            ..OpenLesson::default()
        });
        self.open(View::Home);
        self.status = None;
        effects.extend(self.enter_step(step));
        effects
    }

    /// Opens the lesson called `name` (name, number or file stem).
    pub fn open_lesson_named(&mut self, name: &str) -> Vec<Effect> {
        match self.learn.catalogue.position(name) {
            Some(index) => self.open_lesson(index),
            None => {
                self.say(
                    format!("no lesson named {name:?} (:learn lists them)"),
                    true,
                );
                Vec::new()
            }
        }
    }

    /// Leaves the open step: run mode again if this dashboard turned step mode on for it.
    fn leave_step(&mut self) -> Vec<Effect> {
        let Some(open) = self.learn.open.as_mut() else {
            return Vec::new();
        };
        if std::mem::take(&mut open.stepping) {
            vec![Effect::Stepper(json!({"mode": "run", "focus": null}))]
        } else {
            Vec::new()
        }
    }

    /// Shows step `step` of the open lesson: its results cleared, its hops counted from now,
    /// its `watch` marked, and step mode on if it asks.
    fn enter_step(&mut self, step: usize) -> Vec<Effect> {
        let since = self.last_seq();
        let mut effects = self.leave_step();
        let Some(open) = self.learn.open.as_mut() else {
            return effects;
        };
        let Some(lesson) = self.learn.catalogue.lessons().get(open.lesson) else {
            return effects;
        };
        let Some(watch) = lesson.steps.get(step).map(|s| s.watch.clone()) else {
            return effects;
        };
        *open = OpenLesson {
            lesson: open.lesson,
            step,
            since,
            vars: std::mem::take(&mut open.vars),
            ..OpenLesson::default()
        };
        let vars = open.vars.clone();
        let fill_pattern = |p: &crate::flow::HopPattern| crate::flow::HopPattern {
            from: p.from.as_deref().map(|t| fill(t, &vars)),
            to: p.to.as_deref().map(|t| fill(t, &vars)),
            verb: p.verb.as_deref().map(|t| fill(t, &vars)),
            kind: p.kind.as_deref().map(|t| fill(t, &vars)),
            namespace: p.namespace.as_deref().map(|t| fill(t, &vars)),
            name: p.name.as_deref().map(|t| fill(t, &vars)),
        };
        self.highlight = Highlight {
            components: watch.components.iter().cloned().collect(),
            hops: watch.hops.iter().map(fill_pattern).collect(),
        };
        if watch.step {
            open.stepping = true;
            effects.push(Effect::Stepper(
                json!({"mode": "step", "focus": watch.focus}),
            ));
        }
        effects
    }

    /// Closes the lesson pane: run mode again if the step was stepping, nothing marked, and
    /// back to the lesson list.
    pub(super) fn close_lesson(&mut self) -> Vec<Effect> {
        let effects = self.leave_step();
        self.learn.open = None;
        self.highlight = Highlight::default();
        match self.back.last() {
            Some((View::Learn, _)) => self.go_back(),
            _ => self.open(View::Learn),
        }
        self.status = None;
        effects
    }

    /// A key on the home screen while a lesson is open: `x`, `c`, `]`, `[`; `None` for any
    /// other key.
    pub(super) fn lesson_key(&mut self, code: crossterm::event::KeyCode) -> Option<Vec<Effect>> {
        use crossterm::event::KeyCode;
        let (open, lesson, step) = self.learn.current()?;
        let (index, at, steps) = (open.lesson, open.step, lesson.steps.len());
        let busy = open.busy;
        let vars = open.vars.clone();
        let since = open.since;
        let actions: Vec<Action> = step.actions.clone();
        let checks = step.checks.clone();
        let effects = match code {
            KeyCode::Char('x') | KeyCode::Char('c') if busy.is_some() => {
                self.say("the lesson is still busy with this step", true);
                Vec::new()
            }
            KeyCode::Char('x') if actions.is_empty() => {
                self.say("this step has nothing to perform: c checks it", false);
                Vec::new()
            }
            KeyCode::Char('x') => {
                if let Some(open) = self.learn.open.as_mut() {
                    open.busy = Some(Busy::Performing);
                    open.actions.clear();
                }
                self.say("performing the step's actions", false);
                vec![Effect::LessonDo {
                    lesson: index,
                    step: at,
                    actions,
                    vars,
                }]
            }
            KeyCode::Char('c') => {
                if let Some(open) = self.learn.open.as_mut() {
                    open.busy = Some(Busy::Checking);
                    open.checks.clear();
                    open.held = false;
                }
                self.say("checking the step on the cluster", false);
                vec![Effect::LessonCheck {
                    lesson: index,
                    step: at,
                    checks,
                    vars,
                    since,
                }]
            }
            KeyCode::Char(']') if at + 1 < steps => {
                self.status = None;
                self.enter_step(at + 1)
            }
            KeyCode::Char(']') => {
                let done = if self.learn.complete(index) {
                    "the lesson is complete: esc closes it"
                } else {
                    "this is the lesson's last step"
                };
                self.say(done, false);
                Vec::new()
            }
            KeyCode::Char('[') if at > 0 => {
                self.status = None;
                self.enter_step(at - 1)
            }
            KeyCode::Char('[') => {
                self.say("this is the lesson's first step", false);
                Vec::new()
            }
            _ => return None,
        };
        Some(effects)
    }

    /// One action's outcome (`Some`), or the end of the actions (`None`), for step `step` of
    /// lesson `lesson`; dropped if the learner has moved on.
    pub(super) fn lesson_acted(&mut self, lesson: usize, step: usize, outcome: Option<Outcome>) {
        let Some(open) = self.learn.open.as_mut() else {
            return;
        };
        if (open.lesson, open.step) != (lesson, step) {
            return;
        }
        match outcome {
            Some(outcome) => open.actions.push(outcome),
            None => {
                open.busy = None;
                let failed = open.actions.iter().any(|o| !o.held);
                let message = if failed {
                    "an action failed: see the lesson pane"
                } else {
                    "done: now watch, then c checks the step"
                };
                self.say(message, failed);
            }
        }
    }

    /// What the step's checks found; if every one held, the step is recorded as passed.
    pub(super) fn lesson_checked(
        &mut self,
        lesson: usize,
        step: usize,
        outcomes: Vec<Outcome>,
        vars: BTreeMap<String, String>,
    ) -> Vec<Effect> {
        let Some(open) = self.learn.open.as_mut() else {
            return Vec::new();
        };
        if (open.lesson, open.step) != (lesson, step) {
            return Vec::new();
        }
        let Some(entry) = self.learn.catalogue.lessons().get(lesson) else {
            return Vec::new();
        };
        let checks = entry.steps.get(step).map_or(0, |s| s.checks.len());
        let (name, steps) = (entry.name.clone(), entry.steps.len());
        open.busy = None;
        open.held = outcomes.len() == checks && outcomes.iter().all(|o| o.held);
        open.checks = outcomes;
        open.vars.extend(vars);
        if !open.held {
            self.say(
                "a check did not hold yet: see the lesson pane (c checks again)",
                true,
            );
            return Vec::new();
        }
        self.learn.progress.pass(&name, step, steps);
        if self.learn.complete(lesson) {
            self.say(format!("lesson {name} complete: every step held"), false);
        } else if step + 1 < steps {
            self.say(format!("step {} held: ] for the next", step + 1), false);
        } else {
            self.say(
                format!(
                    "step {} held; [ goes back to the steps not held yet",
                    step + 1
                ),
                false,
            );
        }
        vec![Effect::SaveProgress {
            lesson: name,
            step,
            steps,
        }]
    }

    /// Whether the cluster the dashboard shows differs from the one lesson `lesson` is written
    /// for (its worker nodes, its runtime), in words.
    pub fn lesson_mismatch(&self, lesson: &Lesson) -> Option<String> {
        let workers: Vec<_> = self
            .nodes
            .values()
            .filter(|n| !n.name.ends_with("-control-plane"))
            .collect();
        if workers.is_empty() {
            return None;
        }
        let sim = workers.iter().all(|n| n.runtime.contains("sim"));
        let runtime = if sim { "sim" } else { "real" };
        let wanted = lesson.cluster.runtime.word();
        (workers.len() != usize::from(lesson.cluster.nodes) || runtime != wanted).then(|| {
            format!(
                "written for {} {wanted} nodes; this cluster has {} {runtime}",
                lesson.cluster.nodes,
                workers.len()
            )
        })
    }
}
