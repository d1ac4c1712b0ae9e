//! The lesson format: [`Lesson`] and its parts as a lesson file says them, [`Lesson::parse`] and
//! the validation that refuses a broken file before anything runs, naming the file and the
//! field's path in it (`steps[1].check[0].matches`, as Kubernetes names a field), and
//! [`expand`], which fills in a lesson's `${variables}`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use crate::flow::{Focus, HopPattern};

/// What a lesson file can get wrong, or a lesson that cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum LessonError {
    /// The file is not YAML of the lesson's shape (serde's words, with the field's path).
    #[error("{file}: {message}")]
    Syntax {
        /// The lesson file.
        file: String,
        /// What is wrong, where.
        message: String,
    },
    /// A field holds a value the format does not allow.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The lesson file.
        file: String,
        /// The field's path (`steps[1].check[0].matches`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file's name is not `NN-name.yaml`.
    #[error(
        "{0}: a lesson file is named NN-name.yaml (two digits that order the catalogue, then \
         the lesson's name in lowercase letters, digits and '-')"
    )]
    FileName(String),
    /// Two files give the same lesson name.
    #[error("{first} and {second} are both lesson {name:?}")]
    Duplicate {
        /// The lesson's name.
        name: String,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// No lesson has this name.
    #[error("no lesson named {0:?} (orrery learn list lists them)")]
    Unknown(String),
    /// A lessons directory or file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was read.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// One lesson.
#[derive(Clone, Debug, PartialEq)]
pub struct Lesson {
    /// The file it came from (`01-deployment.yaml`).
    pub file: String,
    /// Its place in the catalogue (`01`).
    pub order: String,
    /// Its name (`deployment`): what `orrery learn run` takes.
    pub name: String,
    /// One line.
    pub title: String,
    /// The architecture claim it checks.
    pub claim: String,
    /// The cluster it runs on.
    pub cluster: ClusterSpec,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// Real or simulated containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `--runtime sim`.
    Sim,
    /// Real containers (`--runtime libcontainer`, root).
    Real,
}

impl Runtime {
    /// How `orrery learn list` says it.
    pub fn word(self) -> &'static str {
        match self {
            Runtime::Sim => "sim",
            Runtime::Real => "real",
        }
    }
}

/// The cluster a lesson starts (`orrery learn NAME`, `orrery learn run NAME`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpec {
    /// Its containers.
    pub runtime: Runtime,
    /// Its worker nodes.
    pub nodes: u16,
    /// Its store, as `--store` takes it (`None`: the embedded one).
    pub store: Option<String>,
    /// Further `orrery up` flags.
    pub args: Vec<String>,
}

impl ClusterSpec {
    /// `1 node`, `3 nodes`.
    pub fn nodes_words(&self) -> String {
        match self.nodes {
            1 => "1 node".to_owned(),
            n => format!("{n} nodes"),
        }
    }
}

/// One step: what to do, what to watch, what must then hold, and why it did.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// One line.
    pub title: String,
    /// What to do and look at, in words.
    pub say: String,
    /// The actions (`do`): the learner types them, `x` in the dashboard performs them, the
    /// headless runner performs them in order.
    pub actions: Vec<Action>,
    /// What to watch.
    pub watch: Watch,
    /// What must hold afterwards, in order.
    pub checks: Vec<Check>,
    /// Shown once the checks hold: what happened and why, naming the component and the hop.
    pub explain: String,
}

impl Step {
    /// Whether the step holds the cluster in step mode: `watch.step`, or an action that asks.
    pub fn steps(&self) -> bool {
        self.watch.step
            || self
                .actions
                .iter()
                .any(|a| matches!(a, Action::Stepper(StepperAction::Step)))
    }
}

/// One action of a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A shell command (`sh -c`), with what to feed its standard input.
    Run {
        /// The command line.
        command: String,
        /// Its standard input.
        stdin: Option<String>,
        /// Whether a non-zero exit is what the lesson expects (not a failed action).
        may_fail: bool,
    },
    /// A stepper command.
    Stepper(StepperAction),
}

impl Action {
    /// The action as the learner would type it: the command, or the dashboard key.
    pub fn words(&self) -> String {
        match self {
            Action::Run { command, stdin, .. } => match stdin {
                Some(_) => format!("{command}  (with the text below on its input)"),
                None => command.clone(),
            },
            Action::Stepper(StepperAction::Step) => "space: step mode".to_owned(),
            Action::Stepper(StepperAction::Run) => "space: run mode".to_owned(),
            Action::Stepper(StepperAction::Next) => "n: let the next hop through".to_owned(),
        }
    }
}

/// What a `stepper:` action asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepperAction {
    /// Step mode: every write waits at its gate.
    Step,
    /// Run mode: every gate opens.
    Run,
    /// Let the oldest waiting gate through.
    Next,
}

/// What a step marks for the learner.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Watch {
    /// Components to mark on the map (`apiserver`, `scheduler`, `kubelet`, ...).
    pub components: Vec<String>,
    /// Hops to mark in the timeline and on the map.
    pub hops: Vec<HopPattern>,
    /// Whether the cluster is in step mode during the step (entering it turns step mode on;
    /// leaving it, run mode again).
    pub step: bool,
    /// The story step mode holds, if only one.
    pub focus: Option<Focus>,
}

/// One check, retried until it holds or `within` passes.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What is checked.
    pub kind: CheckKind,
    /// How long it may take to hold (default 30 s).
    pub within: Duration,
    /// How long it must then keep holding (`for:`), if at all: how an absence is checked.
    pub hold: Option<Duration>,
}

/// The check kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// A command succeeds and its output is as expected.
    Run {
        /// The command line.
        command: String,
        /// Its standard input.
        stdin: Option<String>,
        /// What its standard output must be.
        expect: Expect,
    },
    /// A command fails, and its output (standard output and error) contains `with`.
    Fails {
        /// The command line.
        command: String,
        /// Its standard input.
        stdin: Option<String>,
        /// What its output contains.
        with: String,
    },
    /// These hops happened since the step began, in this order (others may come between).
    Flow(Vec<HopPattern>),
    /// No hop since the step began matches any of these.
    NoFlow(Vec<HopPattern>),
    /// An HTTP GET from the host answers 2xx with the body expected.
    Http {
        /// The URL (`http://` only).
        url: String,
        /// What the body must be.
        expect: Expect,
    },
    /// A command succeeds with output, which is kept as `${var}` for later checks and steps.
    Capture {
        /// The variable.
        var: String,
        /// The command line.
        command: String,
        /// Its standard input.
        stdin: Option<String>,
    },
}

/// What a text must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Anything.
    Anything,
    /// Exactly this, once both are trimmed.
    Equals(String),
    /// Containing this.
    Contains(String),
    /// Matching this regular expression, the text's trailing newline and spaces left out
    /// (checked when the lesson is read; `${var}`s are filled in before it is compiled).
    Matches(String),
}

impl Expect {
    /// Whether `text` is as expected (`want` is the expectation with its variables filled in).
    pub fn holds(&self, want: &str, text: &str) -> bool {
        match self {
            Expect::Anything => true,
            Expect::Equals(_) => text.trim() == want.trim(),
            Expect::Contains(_) => text.contains(want),
            Expect::Matches(_) => {
                regex::Regex::new(want).is_ok_and(|r| r.is_match(text.trim_end()))
            }
        }
    }

    /// The expectation's text (before its variables are filled in).
    pub fn text(&self) -> Option<&str> {
        match self {
            Expect::Anything => None,
            Expect::Equals(t) | Expect::Contains(t) | Expect::Matches(t) => Some(t),
        }
    }

    /// How it reads with `want` (its text, filled in): `= "3"`, `contains "Hello"`.
    pub fn words(&self, want: &str) -> String {
        match self {
            Expect::Anything => "succeeds".to_owned(),
            Expect::Equals(_) => format!("= {want:?}"),
            Expect::Contains(_) => format!("contains {want:?}"),
            Expect::Matches(_) => format!("matches /{want}/"),
        }
    }
}

/// The variables every lesson has: the cluster's state directory, its admin kubeconfig, a
/// directory of the run's own, and the cluster's name.
pub const BUILT_IN: [&str; 4] = ["state_dir", "kubeconfig", "tmp", "name"];

/// How long a check may take to hold, when it does not say.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(30);

/// The longest `within` or `for` a check may ask.
const LONGEST: Duration = Duration::from_secs(600);

/// The most worker nodes a lesson's cluster may have.
const MOST_NODES: u16 = 50;

// ---------------------------------------------------------------------------------------------
// The file as YAML.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLesson {
    title: String,
    claim: String,
    #[serde(default)]
    cluster: RawCluster,
    steps: Vec<RawStep>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    nodes: Option<u16>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    title: String,
    #[serde(default)]
    say: String,
    #[serde(default, rename = "do")]
    actions: Vec<RawAction>,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    check: Vec<RawCheck>,
    #[serde(default)]
    explain: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default, rename = "may-fail")]
    may_fail: bool,
    #[serde(default)]
    stepper: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    hops: Vec<HopPattern>,
    #[serde(default)]
    step: bool,
    #[serde(default)]
    focus: Option<Focus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default)]
    contains: Option<String>,
    #[serde(default)]
    matches: Option<String>,
    #[serde(default, rename = "fails-with")]
    fails_with: Option<String>,
    #[serde(default)]
    flow: Option<Vec<HopPattern>>,
    #[serde(default, rename = "no-flow")]
    no_flow: Option<Vec<HopPattern>>,
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    capture: Option<String>,
    #[serde(default)]
    within: Option<String>,
    #[serde(default, rename = "for")]
    hold: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Parsing and validation.

/// The order and name of a lesson file (`01-deployment.yaml` → `01`, `deployment`).
pub fn file_name_parts(file: &str) -> Option<(String, String)> {
    let stem = file.strip_suffix(".yaml")?;
    let (order, name) = stem.split_once('-')?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
        && !name.starts_with('-');
    (order.len() == 2 && order.bytes().all(|b| b.is_ascii_digit()) && name_ok)
        .then(|| (order.to_owned(), name.to_owned()))
}

/// A duration as lessons write it: `500ms`, `30s`, `2m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    match &text[digits..] {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

/// Collects a file's mistakes, each with the field's path.
struct Validator<'a> {
    file: &'a str,
    first: Option<LessonError>,
}

impl Validator<'_> {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.first.is_none() {
            self.first = Some(LessonError::Invalid {
                file: self.file.to_owned(),
                field: field.into(),
                message: message.into(),
            });
        }
    }

    /// Checks the `${variables}` of `text` are known (built in, or captured before).
    fn variables(&mut self, field: &str, text: &str, known: &BTreeSet<String>) {
        match variables(text) {
            Ok(used) => {
                for var in used {
                    if !known.contains(&var) {
                        self.fail(
                            field,
                            format!(
                                "${{{var}}} is not a variable here: the built-in ones are {}, \
                                 and a `capture:` check before this one makes more (write $$ \
                                 for a literal $)",
                                BUILT_IN.map(|v| format!("${{{v}}}")).join(", ")
                            ),
                        );
                    }
                }
            }
            Err(message) => self.fail(field, message),
        }
    }

    fn duration(&mut self, field: &str, text: Option<&str>) -> Option<Duration> {
        let text = text?;
        match parse_duration(text) {
            Some(d) if d.is_zero() => {
                self.fail(field, format!("{text:?} is no time at all"));
                None
            }
            Some(d) if d > LONGEST => {
                self.fail(
                    field,
                    format!("{text:?} is longer than the 10m a check may take"),
                );
                None
            }
            Some(d) => Some(d),
            None => {
                self.fail(
                    field,
                    format!("{text:?} is not a duration (write 500ms, 30s or 2m)"),
                );
                None
            }
        }
    }

    fn patterns(&mut self, field: &str, patterns: &[HopPattern], known: &BTreeSet<String>) {
        if patterns.is_empty() {
            self.fail(field, "names no hop");
        }
        for (i, p) in patterns.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if *p == HopPattern::default() {
                self.fail(
                    &at,
                    "matches every hop: give at least one of from, to, verb, kind, namespace, name",
                );
            }
            for value in [&p.from, &p.to, &p.verb, &p.kind, &p.namespace, &p.name]
                .into_iter()
                .flatten()
            {
                self.variables(&at, value, known);
            }
        }
    }
}

impl Lesson {
    /// Reads and validates the lesson file named `file` (`01-deployment.yaml`) with this text.
    pub fn parse(file: &str, text: &str) -> Result<Lesson, LessonError> {
        let (order, name) =
            file_name_parts(file).ok_or_else(|| LessonError::FileName(file.to_owned()))?;
        let raw: RawLesson = serde_yaml::from_str(text).map_err(|e| LessonError::Syntax {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let mut v = Validator { file, first: None };
        if raw.title.trim().is_empty() || raw.title.contains('\n') {
            v.fail("title", "must be one line, not empty");
        }
        if raw.claim.trim().is_empty() {
            v.fail("claim", "must say the claim the lesson checks");
        }
        let cluster = cluster(&mut v, raw.cluster);
        if raw.steps.is_empty() {
            v.fail("steps", "a lesson has at least one step");
        }
        let mut known: BTreeSet<String> = BUILT_IN.iter().map(|v| (*v).to_owned()).collect();
        let steps = raw
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| step(&mut v, &format!("steps[{i}]"), s, &mut known))
            .collect();
        match v.first {
            Some(error) => Err(error),
            None => Ok(Lesson {
                file: file.to_owned(),
                order,
                name,
                title: raw.title.trim().to_owned(),
                claim: raw.claim.trim().to_owned(),
                cluster,
                steps,
            }),
        }
    }
}

fn cluster(v: &mut Validator<'_>, raw: RawCluster) -> ClusterSpec {
    let runtime = match raw.runtime.as_deref() {
        None | Some("sim") => Runtime::Sim,
        Some("real") => Runtime::Real,
        Some(other) => {
            v.fail(
                "cluster.runtime",
                format!("Unsupported value: {other:?}: supported values: \"sim\", \"real\""),
            );
            Runtime::Sim
        }
    };
    let nodes = raw.nodes.unwrap_or(2);
    if nodes > MOST_NODES {
        v.fail(
            "cluster.nodes",
            format!("{nodes} nodes: a lesson's cluster has at most {MOST_NODES}"),
        );
    }
    let store = raw.store.filter(|s| s != "embedded");
    if store.as_deref().is_some_and(|s| s.trim().is_empty()) {
        v.fail(
            "cluster.store",
            "empty: leave it out for the embedded store",
        );
    }
    // These the runner sets itself.
    const OWN: [&str; 9] = [
        "--runtime",
        "--nodes",
        "--state-dir",
        "--name",
        "--port",
        "--store",
        "--headless",
        "--cluster-cidr",
        "--no-kubeconfig-merge",
    ];
    for (i, arg) in raw.args.iter().enumerate() {
        let flag = arg.split('=').next().unwrap_or_default();
        if OWN.contains(&flag) {
            v.fail(
                format!("cluster.args[{i}]"),
                format!("{flag} is set by the lesson runner (use cluster.runtime, cluster.nodes or cluster.store)"),
            );
        }
    }
    ClusterSpec {
        runtime,
        nodes,
        store,
        args: raw.args,
    }
}

fn step(v: &mut Validator<'_>, at: &str, raw: RawStep, known: &mut BTreeSet<String>) -> Step {
    if raw.title.trim().is_empty() || raw.title.contains('\n') {
        v.fail(format!("{at}.title"), "must be one line, not empty");
    }
    for (field, text) in [("say", &raw.say), ("explain", &raw.explain)] {
        v.variables(&format!("{at}.{field}"), text, known);
    }
    let actions = raw
        .actions
        .into_iter()
        .enumerate()
        .filter_map(|(i, a)| action(v, &format!("{at}.do[{i}]"), a, known))
        .collect();
    for (i, c) in raw.watch.components.iter().enumerate() {
        if c.trim().is_empty() {
            v.fail(format!("{at}.watch.components[{i}]"), "an empty name");
        }
    }
    for (i, p) in raw.watch.hops.iter().enumerate() {
        if *p == HopPattern::default() {
            v.fail(
                format!("{at}.watch.hops[{i}]"),
                "marks every hop: give at least one of from, to, verb, kind, namespace, name",
            );
        }
    }
    if raw.watch.focus.is_some() && !raw.watch.step {
        v.fail(
            format!("{at}.watch.focus"),
            "a focus is for step mode: set watch.step too",
        );
    }
    if raw.check.is_empty() {
        v.fail(
            format!("{at}.check"),
            "a step checks at least one thing on the cluster",
        );
    }
    let checks = raw
        .check
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| check(v, &format!("{at}.check[{i}]"), c, known))
        .collect();
    Step {
        title: raw.title.trim().to_owned(),
        say: raw.say.trim_end().to_owned(),
        actions,
        watch: Watch {
            components: raw.watch.components,
            hops: raw.watch.hops,
            step: raw.watch.step,
            focus: raw.watch.focus,
        },
        checks,
        explain: raw.explain.trim_end().to_owned(),
    }
}

fn action(
    v: &mut Validator<'_>,
    at: &str,
    raw: RawAction,
    known: &BTreeSet<String>,
) -> Option<Action> {
    match (raw.run, raw.stepper) {
        (Some(command), None) => {
            v.variables(&format!("{at}.run"), &command, known);
            if let Some(stdin) = &raw.stdin {
                v.variables(&format!("{at}.stdin"), stdin, known);
            }
            if command.trim().is_empty() {
                v.fail(format!("{at}.run"), "an empty command");
            }
            Some(Action::Run {
                command,
                stdin: raw.stdin,
                may_fail: raw.may_fail,
            })
        }
        (None, Some(word)) => {
            if raw.stdin.is_some() || raw.may_fail {
                v.fail(at, "stdin and may-fail go with run, not stepper");
            }
            let action = match word.as_str() {
                "step" => StepperAction::Step,
                "run" => StepperAction::Run,
                "next" => StepperAction::Next,
                other => {
                    v.fail(
                        format!("{at}.stepper"),
                        format!(
                            "Unsupported value: {other:?}: supported values: \"step\", \"run\", \"next\""
                        ),
                    );
                    return None;
                }
            };
            Some(Action::Stepper(action))
        }
        (Some(_), Some(_)) => {
            v.fail(at, "an action is one of run or stepper, not both");
            None
        }
        (None, None) => {
            v.fail(
                at,
                "an action needs run (a command) or stepper (step, run, next)",
            );
            None
        }
    }
}

fn check(
    v: &mut Validator<'_>,
    at: &str,
    raw: RawCheck,
    known: &mut BTreeSet<String>,
) -> Option<Check> {
    let kinds: Vec<&str> = [
        (raw.fails_with.is_some(), "fails-with"),
        (raw.flow.is_some(), "flow"),
        (raw.no_flow.is_some(), "no-flow"),
        (raw.http.is_some(), "http"),
        (raw.capture.is_some(), "capture"),
    ]
    .into_iter()
    .filter(|(given, _)| *given)
    .map(|(_, name)| name)
    .collect();
    let expectations: Vec<(&str, &String)> = [
        ("expect", &raw.expect),
        ("contains", &raw.contains),
        ("matches", &raw.matches),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value.as_ref()?)))
    .collect();
    if kinds.len() > 1 {
        v.fail(
            at,
            format!(
                "a check is one kind: run (with expect, contains or matches), fails-with, flow, \
                 no-flow, http or capture; this one has {}",
                kinds.join(" and ")
            ),
        );
        return None;
    }
    if expectations.len() > 1 {
        v.fail(
            at,
            format!(
                "one of expect, contains and matches, not {}",
                expectations
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        );
        return None;
    }
    for (name, text) in &expectations {
        let field = format!("{at}.{name}");
        v.variables(&field, text, known);
        if *name == "matches"
            && variables(text).is_ok_and(|vars| vars.is_empty())
            && let Err(e) = regex::Regex::new(&unescape(text))
        {
            v.fail(&field, format!("not a regular expression: {e}"));
        }
    }
    let expect = match expectations.first() {
        None => Expect::Anything,
        Some(("expect", t)) => Expect::Equals((*t).clone()),
        Some(("contains", t)) => Expect::Contains((*t).clone()),
        Some((_, t)) => Expect::Matches((*t).clone()),
    };
    let command_fields = |v: &mut Validator<'_>, command: &str, known: &BTreeSet<String>| {
        v.variables(&format!("{at}.run"), command, known);
        if let Some(stdin) = &raw.stdin {
            v.variables(&format!("{at}.stdin"), stdin, known);
        }
        if command.trim().is_empty() {
            v.fail(format!("{at}.run"), "an empty command");
        }
    };
    let not_here = |v: &mut Validator<'_>, fields: &[(&str, bool)], kind: &str| {
        for (name, given) in fields {
            if *given {
                v.fail(format!("{at}.{name}"), format!("does not go with {kind}"));
            }
        }
    };
    let kind = match kinds.first().copied() {
        None => {
            let Some(command) = raw.run else {
                v.fail(
                    at,
                    "a check needs one of run, fails-with (with run), flow, no-flow, http or capture",
                );
                return None;
            };
            command_fields(v, &command, known);
            CheckKind::Run {
                command,
                stdin: raw.stdin,
                expect,
            }
        }
        Some("fails-with") => {
            let with = raw.fails_with.unwrap_or_default();
            let Some(command) = raw.run else {
                v.fail(
                    format!("{at}.run"),
                    "fails-with needs the command that fails",
                );
                return None;
            };
            command_fields(v, &command, known);
            v.variables(&format!("{at}.fails-with"), &with, known);
            not_here(v, &[("expect", !expectations.is_empty())], "fails-with");
            CheckKind::Fails {
                command,
                stdin: raw.stdin,
                with,
            }
        }
        Some("http") => {
            let url = raw.http.unwrap_or_default();
            v.variables(&format!("{at}.http"), &url, known);
            if !url.starts_with("http://") {
                v.fail(
                    format!("{at}.http"),
                    "an http check GETs an http:// URL from the host",
                );
            }
            not_here(
                v,
                &[("run", raw.run.is_some()), ("stdin", raw.stdin.is_some())],
                "http",
            );
            CheckKind::Http { url, expect }
        }
        Some("capture") => {
            let var = raw.capture.unwrap_or_default();
            let Some(command) = raw.run else {
                v.fail(
                    format!("{at}.run"),
                    "capture needs the command whose output it keeps",
                );
                return None;
            };
            command_fields(v, &command, known);
            let name_ok = var
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && var
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !name_ok {
                v.fail(
                    format!("{at}.capture"),
                    format!(
                        "{var:?} is not a variable name (lowercase letters, digits and _, not \
                         starting with a digit)"
                    ),
                );
            } else if BUILT_IN.contains(&var.as_str()) {
                v.fail(format!("{at}.capture"), format!("${{{var}}} is built in"));
            }
            not_here(v, &[("expect", !expectations.is_empty())], "capture");
            known.insert(var.clone());
            CheckKind::Capture {
                var,
                command,
                stdin: raw.stdin,
            }
        }
        Some(kind) => {
            let (patterns, field) = match kind {
                "flow" => (raw.flow.unwrap_or_default(), "flow"),
                _ => (raw.no_flow.unwrap_or_default(), "no-flow"),
            };
            v.patterns(&format!("{at}.{field}"), &patterns, known);
            not_here(
                v,
                &[
                    ("run", raw.run.is_some()),
                    ("stdin", raw.stdin.is_some()),
                    ("expect", !expectations.is_empty()),
                ],
                field,
            );
            if field == "flow" {
                CheckKind::Flow(patterns)
            } else {
                CheckKind::NoFlow(patterns)
            }
        }
    };
    let within = v
        .duration(&format!("{at}.within"), raw.within.as_deref())
        .unwrap_or(DEFAULT_WITHIN);
    let hold = v.duration(&format!("{at}.for"), raw.hold.as_deref());
    Some(Check { kind, within, hold })
}

// ---------------------------------------------------------------------------------------------
// Variables.

/// The lesson variables `text` uses: each `${name}` whose name is lowercase letters, digits and
/// `_` (an upper-case `${HOME}` is left to the shell); `$$` is a literal `$`.
pub fn variables(text: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    scan(text, |name| {
        found.push(name.to_owned());
        Ok(String::new())
    })?;
    Ok(found)
}

/// `text` with each lesson variable replaced by its value from `lookup`, and `$$` by `$`.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    scan(text, |name| {
        lookup(name).ok_or_else(|| format!("${{{name}}} has no value (no capture set it)"))
    })
}

/// `text` with `$$` read as `$` (for a text with no variables).
fn unescape(text: &str) -> String {
    text.replace("$$", "$")
}

/// Walks `text`, replacing `$$` with `$` and each lesson variable with what `value` gives.
fn scan(
    text: &str,
    mut value: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(more) = after.strip_prefix('$') {
            out.push('$');
            rest = more;
            continue;
        }
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let name = &inner[..end];
            let lesson_variable = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if lesson_variable {
                out.push_str(&value(name)?);
                rest = &inner[end + 1..];
                continue;
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
title: A Deployment, hop by hop
claim: The API server stores it; controllers make the rest.
cluster: {runtime: sim, nodes: 1}
steps:
  - title: Apply
    say: Apply it.
    do:
      - run: kubectl apply -f -
        stdin: "kind: Deployment"
      - stepper: step
    watch:
      components: [apiserver]
      hops: [{from: kubectl, verb: POST}]
      step: true
    check:
      - capture: pod
        run: kubectl get pods -o name
      - run: echo ${pod} $HOME ${HOME} $$x
        expect: ${pod}
        within: 2m
      - flow: [{from: kubectl, to: apiserver, name: "${pod}"}]
      - no-flow: [{from: "!apiserver", to: store}]
        for: 3s
      - run: kubectl get pods
        fails-with: "503"
      - http: http://127.0.0.1:8080/
        contains: Hello
    explain: The API server did it.
"#;

    fn error_of(text: &str) -> String {
        Lesson::parse("07-bad.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_lesson_parses_whole() {
        let lesson = Lesson::parse("01-deployment.yaml", GOOD).unwrap();
        assert_eq!(
            (lesson.order.as_str(), lesson.name.as_str()),
            ("01", "deployment")
        );
        assert_eq!(lesson.cluster.runtime, Runtime::Sim);
        assert_eq!(lesson.cluster.nodes, 1);
        let step = &lesson.steps[0];
        assert!(step.steps());
        assert_eq!(step.actions.len(), 2);
        assert_eq!(step.checks.len(), 6);
        assert_eq!(step.checks[1].within, Duration::from_secs(120));
        assert_eq!(step.checks[0].within, DEFAULT_WITHIN);
        assert_eq!(step.checks[3].hold, Some(Duration::from_secs(3)));
        assert!(matches!(step.checks[4].kind, CheckKind::Fails { ref with, .. } if with == "503"));
    }

    #[test]
    fn a_broken_file_is_refused_with_its_file_and_field() {
        // serde's own words carry the path.
        let e = error_of(&GOOD.replace("expect: ${pod}", "expct: ${pod}"));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].check[1]: unknown field `expct`"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("within: 2m", "within: soon"));
        assert_eq!(
            e,
            "07-bad.yaml: steps[0].check[1].within: \"soon\" is not a duration (write 500ms, 30s or 2m)"
        );
        let e = error_of(&GOOD.replace("contains: Hello", "contains: Hello\n        matches: H"));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].check[5]: one of expect, contains and matches"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("capture: pod", "capture: Pod"));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].check[0].capture: \"Pod\""),
            "{e}"
        );
        let e = error_of(&GOOD.replace("- stepper: step", "- stepper: walk"));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].do[1].stepper: Unsupported value: \"walk\""),
            "{e}"
        );
        let e = error_of(&GOOD.replace(
            "fails-with: \"503\"",
            "fails-with: \"503\"\n        flow: [{to: store}]",
        ));
        assert!(e.contains("steps[0].check[4]: a check is one kind"), "{e}");
        assert!(e.contains("fails-with and flow"), "{e}");
        let e = error_of(&GOOD.replace("runtime: sim", "runtime: vm"));
        assert!(
            e.starts_with("07-bad.yaml: cluster.runtime: Unsupported value: \"vm\""),
            "{e}"
        );
        let e = error_of(&GOOD.replace(
            "no-flow: [{from: \"!apiserver\", to: store}]",
            "no-flow: [{}]",
        ));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].check[3].no-flow[0]: matches every hop"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("contains: Hello", "matches: \"(\""));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].check[5].matches: not a regular expression"),
            "{e}"
        );
        let e = error_of(&GOOD.replace(
            "flow: [{from: kubectl, to: apiserver",
            "flow: [{form: kubectl, to: apiserver",
        ));
        assert!(
            e.contains("steps[0].check[2].flow[0]: unknown field `form`"),
            "{e}"
        );
    }

    #[test]
    fn variables_must_be_known_before_they_are_used() {
        // Used before the capture that makes it.
        let e = error_of(&GOOD.replace("say: Apply it.", "say: Apply ${pod}."));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].say: ${pod} is not a variable here"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("http://127.0.0.1", "http://${host}"));
        assert!(
            e.starts_with("07-bad.yaml: steps[0].check[5].http: ${host}"),
            "{e}"
        );
        assert!(Lesson::parse("01-x.yaml", &GOOD.replace("Apply it.", "In ${state_dir}.")).is_ok());
    }

    #[test]
    fn file_names_give_the_order_and_the_name() {
        assert_eq!(
            file_name_parts("06-self-healing.yaml"),
            Some(("06".to_owned(), "self-healing".to_owned()))
        );
        for bad in [
            "6-x.yaml",
            "06-.yaml",
            "06-X.yaml",
            "06x.yaml",
            "06-x.yml",
            "ab-x.yaml",
        ] {
            assert_eq!(file_name_parts(bad), None, "{bad}");
        }
        assert!(matches!(
            Lesson::parse("lesson.yaml", GOOD),
            Err(LessonError::FileName(_))
        ));
    }

    #[test]
    fn variables_expand_and_dollars_escape() {
        let lookup = |name: &str| (name == "ip").then(|| "10.0.0.1".to_owned());
        assert_eq!(
            expand("curl ${ip}:80 $HOME ${HOME} $$ip ${ip", lookup).unwrap(),
            "curl 10.0.0.1:80 $HOME ${HOME} $ip ${ip"
        );
        assert_eq!(
            expand("${nope}", lookup).unwrap_err(),
            "${nope} has no value (no capture set it)"
        );
        assert_eq!(variables("${a} ${B} ${c_1} $$ {d}").unwrap(), ["a", "c_1"]);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2h"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
