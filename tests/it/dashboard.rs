//! The dashboard end to end, as a learner sees it: `orrery up` (and `orrery tui`) inside a real
//! pseudo-terminal (`tmux`), driven by key presses (`tmux send-keys`) and read back from the
//! screen (`tmux capture-pane`). The flow timeline must show a Deployment's hops in the order
//! they really happened; in step mode each hop must appear only after its `n`; quitting must
//! stop the cluster (`orrery up`) or leave it running (`orrery tui`), and give the terminal back.
//! The cluster runs on the simulated runtime: the dashboard draws the same flow for real
//! containers, and the runtime's own hops are tested in `tests/kubelet.rs` and friends.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;

/// A tmux server of this test's own (its own socket), with one session; killed when dropped.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a `sh` command line) in a detached `width`x`height` session.
    pub(crate) fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("orrery-test-{}-{name}", std::process::id()),
        };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux is installed (scripts/test installs it)")
    }

    /// What the pane shows now, one line per row (wrapped lines joined).
    pub(crate) fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-t", "main"]);
        assert!(
            out.status.success(),
            "tmux capture-pane: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses keys, named as tmux names them (`Space`, `Escape`, `Enter`, `n`).
    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "tmux send-keys {keys:?}");
    }

    /// Captures every 50 ms until `done` holds of the screen, for at most `seconds`; returns
    /// that screen or fails with the last one.
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    pub(crate) fn wait_for(&self, what: &str, seconds: u64, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the pane did not show {what} within {seconds} s; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// `text` in single quotes for `sh`.
fn quote(text: impl AsRef<std::ffi::OsStr>) -> String {
    format!(
        "'{}'",
        text.as_ref().to_string_lossy().replace('\'', r"'\''")
    )
}

/// A pane command: `orrery <args>`, then what it exited with and whether the terminal is back
/// in cooked mode with echo (`stty`), then a long sleep so the pane stays to be read.
pub(crate) fn orrery_then_report(state_dir: &Path, args: &str) -> String {
    format!(
        "{} --state-dir {} {args}; echo ORRERY-EXIT=$?; stty -a | tr -s ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | sed 's/^/TTY=/'; sleep 600",
        quote(env!("CARGO_BIN_EXE_orrery")),
        quote(state_dir)
    )
}

/// One flow timeline row as drawn: `HH:MM:SS.mmm  from -> to  VERB  Kind ns/name  rev  detail`.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    /// Milliseconds since midnight.
    ms: u64,
    from: String,
    to: String,
    verb: String,
    kind: String,
    /// `ns/name`, `name`, or empty.
    object: String,
}

/// The `HH:MM:SS.mmm` at `at` in `line`, in milliseconds since midnight.
fn clock(line: &str, at: usize) -> Option<u64> {
    let b = line.as_bytes().get(at..at + 12)?;
    let digits = [0, 1, 3, 4, 6, 7, 9, 10, 11];
    if b[2] != b':'
        || b[5] != b':'
        || b[8] != b'.'
        || digits.iter().any(|&i| !b[i].is_ascii_digit())
    {
        return None;
    }
    let n =
        |r: std::ops::Range<usize>| -> u64 { std::str::from_utf8(&b[r]).unwrap().parse().unwrap() };
    Some(((n(0..2) * 60 + n(3..5)) * 60 + n(6..8)) * 1000 + n(9..12))
}

/// A verb is upper case (`POST`, `RUN SANDBOX`, `SCALE UP`).
fn is_verb(token: &str) -> bool {
    token.len() > 1
        && token
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c == '-')
}

/// A kind is CamelCase (`Pod`, `ReplicaSet`).
fn is_kind(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && token.chars().any(|c| c.is_ascii_lowercase())
        && token.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The verb, kind and object at the start of `tokens`.
fn verb_kind_object(tokens: &[&str]) -> (String, String, String) {
    let verbs = tokens.iter().take_while(|t| is_verb(t)).count();
    let verb = tokens[..verbs].join(" ");
    let mut rest = &tokens[verbs..];
    let kind = match rest.first() {
        Some(t) if is_kind(t) => {
            rest = &rest[1..];
            (*t).to_owned()
        }
        _ => String::new(),
    };
    let object = rest
        .first()
        .filter(|t| {
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-./".contains(c))
                && t.chars().any(|c| c.is_ascii_lowercase())
        })
        .map(|t| (*t).to_owned())
        .unwrap_or_default();
    (verb, kind, object)
}

fn parse_row(line: &str) -> Option<Row> {
    let at = (0..line.len().saturating_sub(11))
        .filter(|&i| line.is_char_boundary(i))
        .find(|&i| clock(line, i).is_some())?;
    let ms = clock(line, at)?;
    let tokens: Vec<&str> = line[at + 12..]
        .split(|c: char| c.is_whitespace() || "│┃|".contains(c))
        .filter(|t| !t.is_empty())
        .collect();
    let arrow = tokens.iter().position(|t| *t == "->")?;
    if arrow != 1 || tokens.len() < 4 {
        return None;
    }
    let (verb, kind, object) = verb_kind_object(&tokens[3..]);
    if verb.is_empty() {
        return None;
    }
    Some(Row {
        ms,
        from: tokens[0].to_owned(),
        to: tokens[2].to_owned(),
        verb,
        kind,
        object,
    })
}

/// Every timeline row on a screen.
fn rows(screen: &str) -> Vec<Row> {
    screen.lines().filter_map(parse_row).collect()
}

/// A hop the test looks for; `None` matches anything.
struct Hop {
    from: &'static str,
    to: &'static str,
    verbs: &'static [&'static str],
    kind: Option<&'static str>,
    /// The object's `ns/name` starts with this.
    object: &'static str,
}

impl Hop {
    fn matches(&self, row: &Row) -> bool {
        let component = |want: &str, got: &str| match want.strip_suffix('*') {
            Some(prefix) => got.starts_with(prefix),
            None => got == want,
        };
        component(self.from, &row.from)
            && component(self.to, &row.to)
            && (self.verbs.is_empty() || self.verbs.contains(&row.verb.as_str()))
            && self.kind.is_none_or(|k| k == row.kind)
            && row.object.starts_with(self.object)
    }
}

/// The step bar's gate: `STEP ... <who> wants to <VERB> [Kind] <ns/name> ...`.
#[derive(Clone, Debug, PartialEq)]
struct GateWords {
    words: String,
    who: String,
    verb: String,
    kind: String,
    object: String,
}

fn step_bar(screen: &str) -> Option<&str> {
    screen
        .lines()
        .map(|l| l.trim_start_matches(|c: char| c.is_whitespace() || "│┃|".contains(c)))
        .find(|l| l.starts_with("STEP"))
}

fn gate_words(screen: &str) -> Option<GateWords> {
    let bar = step_bar(screen)?;
    let at = bar.find(" wants to ")?;
    let who = bar[..at].split_whitespace().last()?.to_owned();
    let after: Vec<&str> = bar[at + " wants to ".len()..].split_whitespace().collect();
    let (verb, kind, object) = verb_kind_object(&after);
    let start = bar[..at].rfind(&who)?;
    Some(GateWords {
        words: bar[start..].trim_end().to_owned(),
        who,
        verb,
        kind,
        object,
    })
}

/// Whether `row` is the hop the gate held.
fn is_hop_of(gate: &GateWords, row: &Row) -> bool {
    row.from == gate.who
        && row.verb == gate.verb
        && (gate.kind.is_empty() || row.kind == gate.kind)
        && !gate.object.is_empty()
        && (row.object == gate.object
            || row.object.ends_with(&format!("/{}", gate.object))
            || gate.object.ends_with(&format!("/{}", row.object)))
}

/// Runs kubectl against the cluster in `dir`.
fn kubectl(dir: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("kubectl-cache"))
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

/// Polls kubectl until its output satisfies `done`, for at most `seconds`.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn kubectl_until(dir: &Path, args: &[&str], seconds: u64, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let out = kubectl(dir, args);
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && done(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} did not get there within {seconds} s: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Accumulates the timeline rows seen over many captures, keyed by their time and text.
#[derive(Default)]
struct Seen {
    rows: BTreeMap<(u64, String), Row>,
}

impl Seen {
    fn add(&mut self, screen: &str) {
        for line in screen.lines() {
            if let Some(row) = parse_row(line) {
                let text = line
                    .trim_matches(|c: char| c.is_whitespace() || "│┃|".contains(c))
                    .to_owned();
                self.rows.entry((row.ms, text)).or_insert(row);
            }
        }
    }

    /// The earliest row matching `hop` at or after `after` ms.
    fn first(&self, hop: &Hop, after: u64) -> Option<&Row> {
        self.rows
            .values()
            .filter(|r| r.ms >= after && hop.matches(r))
            .min_by_key(|r| r.ms)
    }
}

/// The hops of `kubectl create deployment web`, in the order they happen.
fn web_story() -> Vec<(&'static str, Hop)> {
    let hop = |from, to, verbs, kind, object| Hop {
        from,
        to,
        verbs,
        kind,
        object,
    };
    vec![
        (
            "kubectl POSTs the Deployment",
            hop(
                "kubectl",
                "apiserver",
                &["POST"],
                Some("Deployment"),
                "default",
            ),
        ),
        (
            "the API server stores it",
            hop(
                "apiserver",
                "store",
                &["CREATE"],
                Some("Deployment"),
                "default/web",
            ),
        ),
        (
            "the deployment controller creates a ReplicaSet",
            hop(
                "controller/deployment",
                "apiserver",
                &["CREATE"],
                Some("ReplicaSet"),
                "default/web-",
            ),
        ),
        (
            "the API server stores the ReplicaSet",
            hop(
                "apiserver",
                "store",
                &["CREATE"],
                Some("ReplicaSet"),
                "default/web-",
            ),
        ),
        (
            "the replicaset controller creates a pod",
            hop(
                "controller/replicaset",
                "apiserver",
                &[],
                None,
                "default/web-",
            ),
        ),
        (
            "the API server stores the pod",
            hop(
                "apiserver",
                "store",
                &["CREATE"],
                Some("Pod"),
                "default/web-",
            ),
        ),
        (
            "the scheduler binds it",
            hop("scheduler", "apiserver", &["BIND"], None, "default/web-"),
        ),
        (
            "the kubelet asks its runtime to run it",
            hop(
                "kubelet/node-*",
                "runtime/node-*",
                &[],
                None,
                "default/web-",
            ),
        ),
        (
            "the kubelet reports its status",
            hop(
                "kubelet/node-*",
                "apiserver",
                &["STATUS", "PATCH"],
                Some("Pod"),
                "default/web-",
            ),
        ),
    ]
}

/// Waits until the cluster in `dir` answers kubectl with `nodes` Ready worker nodes (and its
/// control-plane node Ready too).
pub(crate) fn wait_ready(dir: &Path, nodes: usize) {
    kubectl_until(dir, &["get", "nodes", "--no-headers"], 60, |text| {
        let (control_plane, workers): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| l.contains("control-plane"));
        let ready = |lines: &[&str]| lines.iter().filter(|l| l.contains(" Ready ")).count();
        ready(&workers) == nodes && ready(&control_plane) == 1
    });
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn orrery_up_shows_a_deployment_hop_by_hop_and_steps_through_one() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::start(
        "up",
        200,
        60,
        &orrery_then_report(
            dir.path(),
            "up --runtime sim --nodes 2 --port 0 --no-kubeconfig-merge --ingress-port 0 --ingress-https-port 0",
        ),
    );
    wait_ready(dir.path(), 2);
    tmux.wait_for("the dashboard in run mode", 20, |s| {
        s.lines().any(|l| l.contains("RUN")) && s.contains("node-2")
    });

    // Run mode: the whole story of `web`, read off the screen as it happens.
    let mut seen = Seen::default();
    seen.add(&tmux.capture());
    let create = kubectl(
        dir.path(),
        &["create", "deployment", "web", "--image=orrery/hello"],
    );
    assert!(create.status.success(), "{create:?}");
    let story = web_story();
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let screen = tmux.capture();
        seen.add(&screen);
        if story.iter().all(|(_, hop)| seen.first(hop, 0).is_some()) || Instant::now() > deadline {
            break screen;
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    let story_rows = || {
        seen.rows
            .values()
            .filter(|r| r.object.starts_with("default/web") || r.kind == "Deployment")
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut at = 0;
    let mut times = Vec::new();
    for (i, (what, hop)) in story.iter().enumerate() {
        // The kubelet reports status more than once: the last hop is its first report after
        // the runtime ran the pod.
        let from = if i + 1 == story.len() { at } else { 0 };
        let row = seen.first(hop, from).unwrap_or_else(|| {
            panic!("the timeline never showed the hop where {what}; last screen:\n{last}")
        });
        times.push(row.ms);
        at = row.ms;
    }
    // Each hop's first row follows the first row of the hop before it (a watch delivers a
    // store write only after the write's flow event, so a woken component's hop comes later).
    for j in 1..story.len() {
        let i = j - 1;
        assert!(
            times[i] <= times[j],
            "{} shows before {}; the story's rows:\n{}",
            story[j].0,
            story[i].0,
            story_rows()
        );
    }
    kubectl_until(
        dir.path(),
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        30,
        |n| n == "1",
    );

    // Step mode: each hop of `step` waits at its gate until `n` lets it through.
    tmux.keys(&["Space"]);
    tmux.wait_for("the step bar", 10, |s| step_bar(s).is_some());
    let mut create = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args(["create", "deployment", "step", "--image=orrery/hello"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The hops that must be walked, in this order (who, verb, kind, object prefix).
    let walk: [(&str, &str, &str, &str); 6] = [
        ("apiserver", "CREATE", "Deployment", "default/step"),
        (
            "controller/deployment",
            "CREATE",
            "ReplicaSet",
            "default/step-",
        ),
        ("apiserver", "CREATE", "ReplicaSet", "default/step-"),
        ("controller/replicaset", "", "", "default/step-"),
        ("apiserver", "CREATE", "Pod", "default/step-"),
        ("scheduler", "BIND", "", "default/step-"),
    ];
    let mut walked = 0;
    for _ in 0..60 {
        if walked == walk.len() {
            break;
        }
        let before = tmux.wait_for("a gate in the step bar", 20, |s| gate_words(s).is_some());
        let gate = gate_words(&before).unwrap();
        // The timeline scrolls, so rows are told apart by their time, not counted: the hop let
        // through is drawn later than any of its kind already on the screen.
        let hops_before: Vec<Row> = rows(&before)
            .into_iter()
            .filter(|r| is_hop_of(&gate, r))
            .collect();
        let newest_before = hops_before.iter().map(|r| r.ms).max();
        let (who, verb, kind, object) = walk[walked];
        let expected = gate.who == who
            && (verb.is_empty() || gate.verb == verb)
            && (kind.is_empty() || gate.kind == kind)
            && gate.object.starts_with(object);
        if expected {
            assert!(
                hops_before.is_empty(),
                "the hop {gate:?} shows in the timeline before its `n`:\n{before}"
            );
        }
        tmux.keys(&["n"]);
        tmux.wait_for(&format!("the hop of {:?} after `n`", gate.words), 15, |s| {
            rows(s)
                .iter()
                .any(|r| is_hop_of(&gate, r) && Some(r.ms) > newest_before)
        });
        if expected {
            walked += 1;
        }
        // Wait until the step bar moved on from the gate just released (it is polled).
        let moved = Instant::now() + Duration::from_secs(5);
        while Instant::now() < moved && gate_words(&tmux.capture()).as_ref() == Some(&gate) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(
        walked,
        walk.len(),
        "walked only {walked} of the hops {walk:?}; the pane shows:\n{}",
        tmux.capture()
    );
    tmux.keys(&["Space"]);
    tmux.wait_for("run mode again", 10, |s| {
        s.lines().any(|l| {
            l.trim_start_matches(|c: char| c.is_whitespace() || "│┃|".contains(c))
                .starts_with("RUN")
        })
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while create.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "kubectl create did not return in run mode"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kubectl_until(
        dir.path(),
        &[
            "get",
            "deployment",
            "step",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        30,
        |n| n == "1",
    );

    // Quitting `orrery up` asks, then stops the cluster and gives the terminal back.
    tmux.keys(&["q"]);
    tmux.wait_for("the question before stopping", 10, |s| {
        s.contains("y/n") || s.contains("(y)") || s.contains("[y")
    });
    tmux.keys(&["y"]);
    let end = tmux.wait_for("orrery up's exit", 60, |s| {
        s.contains("ORRERY-EXIT=") && (s.contains("TTY=echo") || s.contains("TTY=-echo"))
    });
    assert!(end.contains("ORRERY-EXIT=0"), "orrery up failed:\n{end}");
    assert!(
        end.contains("TTY=icanon") && end.contains("TTY=echo"),
        "the terminal is back in cooked mode with echo:\n{end}"
    );
    assert!(
        !dir.path().join("orrery.pid").exists(),
        "a clean stop removes the pid file"
    );
    let alternate = tmux.run(&["display-message", "-p", "-t", "main", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&alternate.stdout).trim(), "0");
}

#[test]
fn an_attached_dashboard_quits_and_leaves_the_cluster_running() {
    let cluster = Cluster::with_nodes(1);
    wait_ready(cluster.dir.path(), 1);
    let tmux = Tmux::start(
        "attached",
        120,
        40,
        &orrery_then_report(cluster.dir.path(), "tui"),
    );
    tmux.wait_for("the dashboard with node-1", 20, |s| s.contains("node-1"));
    tmux.keys(&["q"]);
    let end = tmux.wait_for("orrery tui's exit", 20, |s| {
        s.contains("ORRERY-EXIT=") && (s.contains("TTY=echo") || s.contains("TTY=-echo"))
    });
    assert!(end.contains("ORRERY-EXIT=0"), "orrery tui failed:\n{end}");
    assert!(
        end.contains("TTY=icanon") && end.contains("TTY=echo"),
        "the terminal is back in cooked mode with echo:\n{end}"
    );
    let nodes = cluster.ok(&["get", "nodes", "--no-headers"]);
    assert!(nodes.contains("node-1"), "the cluster still runs: {nodes}");
    assert!(cluster.dir.path().join("orrery.pid").exists());
}

#[test]
fn timeline_rows_and_step_words_are_read_as_drawn() {
    let row = parse_row(
        "│ 12:03:04.567  kubelet/node-1 -> runtime/node-1  RUN SANDBOX  Pod default/web-7d4b9-abcde  24  run the pod's sandbox │",
    )
    .unwrap();
    assert_eq!(row.ms, ((12 * 60 + 3) * 60 + 4) * 1000 + 567);
    assert_eq!(
        (row.from.as_str(), row.to.as_str(), row.verb.as_str()),
        ("kubelet/node-1", "runtime/node-1", "RUN SANDBOX")
    );
    assert_eq!(
        (row.kind.as_str(), row.object.as_str()),
        ("Pod", "default/web-7d4b9-abcde")
    );
    assert!(parse_row("  Deployment/web (12 hops)").is_none());
    let gate = gate_words("x\n STEP  scheduler wants to BIND default/web-7d4b9-abcde to node-1\n")
        .unwrap();
    assert_eq!(
        (
            gate.who.as_str(),
            gate.verb.as_str(),
            gate.kind.as_str(),
            gate.object.as_str()
        ),
        ("scheduler", "BIND", "", "default/web-7d4b9-abcde")
    );
    let bind = parse_row("12:00:00.001  scheduler -> apiserver  BIND  Pod default/web-7d4b9-abcde")
        .unwrap();
    assert!(is_hop_of(&gate, &bind));
    let store =
        gate_words("STEP apiserver wants to CREATE Deployment default/step in the store").unwrap();
    let created =
        parse_row("12:00:00.002  apiserver -> store  CREATE  Deployment default/step  17").unwrap();
    assert!(is_hop_of(&store, &created));
    let announced = parse_row(
        "12:00:00.001  apiserver -> store  GATE  Deployment default/step  apiserver wants to CREATE",
    )
    .unwrap();
    assert!(!is_hop_of(&store, &announced), "a GATE row is not the hop");
}
