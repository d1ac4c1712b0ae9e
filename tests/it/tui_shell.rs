//! The dashboard's shell against a real cluster (`orrery up --runtime sim` as a child process,
//! reached through its kubeconfig as `orrery tui` reaches it): the sources deliver rows, flow
//! events, the stepper and the components, and every effect really changes the cluster (seen
//! with kubectl) and shows up in the flow as the dashboard's own request.

use crate::common;

use std::time::Duration;

use common::Cluster;
use orrery::tui::effects::Effects;
use orrery::tui::model::{Effect, Msg, Operation};
use orrery::tui::source;
use serde_json::json;
use tokio::sync::mpsc;

/// Everything the shell received, and the channel it arrives on.
struct Inbox {
    rx: mpsc::Receiver<Msg>,
    seen: Vec<Msg>,
    /// The highest flow sequence number received.
    last: u64,
}

impl Inbox {
    /// Waits (at most `seconds`) for a message that satisfies `want`, keeping every message;
    /// returns a copy of it.
    async fn until(&mut self, seconds: u64, what: &str, want: impl Fn(&Msg) -> bool) -> Msg {
        if let Some(msg) = self.seen.iter().find(|m| want(m)) {
            return msg.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(msg)) => {
                    if let Msg::Flow(e) = &msg {
                        self.last = self.last.max(e.seq);
                    }
                    let hit = want(&msg);
                    self.seen.push(msg.clone());
                    if hit {
                        return msg;
                    }
                }
                Ok(None) => panic!("the channel closed while waiting for {what}"),
                Err(_) => panic!("no {what} within {seconds} s"),
            }
        }
    }

    /// Forgets what arrived so far, carries out `effect`, and returns the last flow sequence
    /// number received before it (so the next `until` sees only what came after).
    async fn act(&mut self, effects: &Effects, effect: Effect) -> u64 {
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Flow(e) = &msg {
                self.last = self.last.max(e.seq);
            }
        }
        self.seen.clear();
        let before = self.last;
        effects.perform(effect).await;
        before
    }
}

/// A request of the dashboard's own in the flow after `after`, about `kind` `name`.
fn dashboard_hop(msg: &Msg, after: u64, verb: &str, kind: &str, name: &str) -> bool {
    matches!(msg, Msg::Flow(e) if e.seq > after && e.from == "dashboard" && e.to == "apiserver"
        && e.verb == verb && e.kind == kind && e.name == name)
}

fn done(msg: &Msg) -> Option<(&str, bool)> {
    match msg {
        Msg::Done(text, failed) => Some((text.as_str(), *failed)),
        _ => None,
    }
}

/// kubectl from an async test: on a blocking-allowed thread.
fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    tokio::task::block_in_place(|| cluster.ok(args))
}

fn eventually(cluster: &Cluster, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    tokio::task::block_in_place(|| cluster.eventually(args, 30, done))
}

const APP: &str = "\
# A deployment and a config map, applied by the dashboard.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shell
spec:
  replicas: 2
  selector:
    matchLabels: {app: shell}
  template:
    metadata:
      labels: {app: shell}
    spec:
      containers:
      - name: hello
        image: orrery/hello
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: shell-settings
data:
  greeting: hello
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_reads_the_cluster_and_every_action_goes_through_the_api() {
    let cluster = Cluster::with_nodes(2);
    let client = orrery::tui::app::connect(cluster.dir.path())
        .await
        .expect("the dashboard connects with the cluster's kubeconfig");
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(manifests.path().join("app.yaml"), APP).unwrap();
    std::fs::write(manifests.path().join("notes.txt"), "not a manifest").unwrap();
    let (tx, rx) = mpsc::channel(100_000);
    let sources = source::spawn(
        client.clone(),
        tx.clone(),
        Some(manifests.path().to_path_buf()),
    );
    let effects = Effects::new(
        client,
        tx,
        Some(manifests.path().to_path_buf()),
        sources.poker(),
    );
    let mut inbox = Inbox {
        rx,
        seen: Vec::new(),
        last: 0,
    };

    // What the sources deliver on their own.
    for node in ["node-1", "node-2"] {
        inbox
            .until(
                30,
                node,
                |m| matches!(m, Msg::Node(n) if n.name == node && n.ready == "True"),
            )
            .await;
    }
    inbox
        .until(
            10,
            "the stepper",
            |m| matches!(m, Msg::Stepper(s) if s.mode == "run"),
        )
        .await;
    let Msg::Components(components) = inbox
        .until(10, "the components", |m| matches!(m, Msg::Components(_)))
        .await
    else {
        unreachable!()
    };
    for name in [
        "apiserver",
        "scheduler",
        "controller-manager",
        "node-1",
        "node-2",
    ] {
        assert!(
            components.iter().any(|c| c.name == name && c.running),
            "{name} in {components:?}"
        );
    }
    inbox
        .until(
            10,
            "the manifests",
            |m| matches!(m, Msg::Manifests(list) if list == &["app.yaml"]),
        )
        .await;
    inbox
        .until(
            10,
            "a flow event",
            |m| matches!(m, Msg::Flow(e) if e.seq >= 1),
        )
        .await;

    // Apply: both objects, through server-side apply, as the dashboard.
    let before = inbox.act(&effects, Effect::Apply("app.yaml".into())).await;
    let msg = inbox
        .until(30, "the apply's answer", |m| done(m).is_some())
        .await;
    assert_eq!(
        done(&msg),
        Some((
            "applied 2 objects from app.yaml: deployment.apps/shell, configmap/shell-settings",
            false
        ))
    );
    assert_eq!(
        kubectl(
            &cluster,
            &[
                "get",
                "configmap",
                "shell-settings",
                "-o",
                "jsonpath={.data.greeting}"
            ]
        ),
        "hello"
    );
    let managers = kubectl(
        &cluster,
        &[
            "get",
            "deploy",
            "shell",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
    );
    assert!(managers.contains("orrery-dashboard"), "{managers}");
    inbox
        .until(10, "the apply in the flow", |m| {
            dashboard_hop(m, before, "PATCH", "Deployment", "shell")
        })
        .await;
    // Its pods arrive as rows, named by their story, and get to Running.
    let Msg::Pod(pod) = inbox
        .until(60, "a running pod of the deployment", |m| {
            matches!(m, Msg::Pod(p) if p.owner == "Deployment/shell" && p.status == "Running"
                && p.node.is_some() && p.ready == 1 && p.containers == 1)
        })
        .await
    else {
        unreachable!()
    };
    inbox
        .until(30, "the deployment's row", |m| {
            matches!(m, Msg::Deployment(d) if d.name == "shell" && d.desired == 2 && d.ready == 2)
        })
        .await;
    inbox
        .until(30, "the pod's Scheduled Event", |m| {
            matches!(m, Msg::Event(e) if e.reason == "Scheduled" && e.object == format!("Pod/{}", pod.name))
        })
        .await;

    // Describe: YAML without managedFields, the scheduler's decision, the pod's Events.
    inbox
        .act(
            &effects,
            Effect::Describe("Pod".into(), "default".into(), pod.name.clone()),
        )
        .await;
    let Msg::Detail(detail) = inbox
        .until(30, "the pod's detail", |m| matches!(m, Msg::Detail(_)))
        .await
    else {
        unreachable!()
    };
    assert!(detail.yaml.contains("kind: Pod"), "{}", detail.yaml);
    assert!(
        detail.yaml.contains(&format!("name: {}", pod.name)),
        "{}",
        detail.yaml
    );
    assert!(!detail.yaml.contains("managedFields"), "{}", detail.yaml);
    let decision = detail.decision.expect("the scheduler's decision");
    assert_eq!(
        decision["chosen"].as_str(),
        pod.node.as_deref(),
        "{decision}"
    );
    assert!(
        detail.events.iter().any(|e| e.reason == "Scheduled"),
        "{:?}",
        detail.events
    );
    // A Deployment has no scheduling decision; a missing object is the API's NotFound.
    inbox
        .act(
            &effects,
            Effect::Describe("Deployment".into(), "default".into(), "shell".into()),
        )
        .await;
    let Msg::Detail(detail) = inbox
        .until(
            30,
            "the deployment's detail",
            |m| matches!(m, Msg::Detail(d) if d.kind == "Deployment"),
        )
        .await
    else {
        unreachable!()
    };
    assert!(detail.decision.is_none());
    assert!(detail.yaml.contains("replicas: 2"), "{}", detail.yaml);
    inbox
        .act(
            &effects,
            Effect::Describe("Pod".into(), "default".into(), "nope".into()),
        )
        .await;
    let msg = inbox.until(30, "the NotFound", |m| done(m).is_some()).await;
    assert_eq!(done(&msg), Some(("pods \"nope\" not found", true)));

    // Logs.
    inbox
        .act(&effects, Effect::Logs("default".into(), pod.name.clone()))
        .await;
    inbox
        .until(
            30,
            "the pod's logs",
            |m| matches!(m, Msg::Logs(_, name, _) if name == &pod.name),
        )
        .await;

    // Scale through the scale subresource.
    let before = inbox
        .act(&effects, Effect::Scale("default".into(), "shell".into(), 3))
        .await;
    let msg = inbox
        .until(30, "the scale's answer", |m| done(m).is_some())
        .await;
    assert_eq!(
        done(&msg),
        Some(("deployment.apps/shell scaled to 3", false))
    );
    eventually(
        &cluster,
        &["get", "deploy", "shell", "-o", "jsonpath={.spec.replicas}"],
        |r| r == "3",
    );
    inbox
        .until(10, "the scale in the flow", |m| {
            dashboard_hop(m, before, "PATCH", "Deployment", "shell")
        })
        .await;

    // Delete a pod.
    let before = inbox
        .act(
            &effects,
            Effect::DeletePod("default".into(), pod.name.clone()),
        )
        .await;
    let msg = inbox
        .until(30, "the delete's answer", |m| done(m).is_some())
        .await;
    assert_eq!(
        done(&msg),
        Some((format!("pod \"{}\" deleted", pod.name).as_str(), false))
    );
    inbox
        .until(
            30,
            "the pod gone",
            |m| matches!(m, Msg::PodGone(_, name) if name == &pod.name),
        )
        .await;
    assert!(
        inbox
            .seen
            .iter()
            .any(|m| dashboard_hop(m, before, "DELETE", "Pod", &pod.name)),
        "the delete is the dashboard's request in the flow"
    );

    // Cordon and uncordon.
    inbox
        .act(&effects, Effect::Cordon("node-1".into(), true))
        .await;
    inbox
        .until(
            30,
            "node-1 cordoned",
            |m| matches!(m, Msg::Node(n) if n.name == "node-1" && n.unschedulable),
        )
        .await;
    assert_eq!(
        kubectl(
            &cluster,
            &[
                "get",
                "node",
                "node-1",
                "-o",
                "jsonpath={.spec.unschedulable}"
            ]
        ),
        "true"
    );
    inbox
        .act(&effects, Effect::Cordon("node-1".into(), false))
        .await;
    inbox
        .until(
            30,
            "node-1 uncordoned",
            |m| matches!(m, Msg::Node(n) if n.name == "node-1" && !n.unschedulable),
        )
        .await;
    assert_eq!(
        kubectl(
            &cluster,
            &[
                "get",
                "node",
                "node-1",
                "-o",
                "jsonpath={.spec.unschedulable}"
            ]
        ),
        ""
    );

    // Drain node-2: cordoned, its pods evicted (the Deployment replaces them on node-1).
    eventually(
        &cluster,
        &[
            "get",
            "pods",
            "-l",
            "app=shell",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
        |out| out.lines().count() == 3,
    );
    let on_node_2 = kubectl(
        &cluster,
        &[
            "get",
            "pods",
            "-l",
            "app=shell",
            "--field-selector",
            "spec.nodeName=node-2",
            "-o",
            "name",
        ],
    );
    let before = inbox.act(&effects, Effect::Drain("node-2".into())).await;
    let msg = inbox
        .until(60, "the drain's answer", |m| done(m).is_some())
        .await;
    let (text, failed) = done(&msg).unwrap();
    assert!(!failed, "{text}");
    assert!(text.starts_with("node/node-2 cordoned; evicted "), "{text}");
    if !on_node_2.is_empty() {
        assert!(
            !text.starts_with("node/node-2 cordoned; evicted 0 pods"),
            "{text}"
        );
    }
    eventually(
        &cluster,
        &[
            "get",
            "pods",
            "-l",
            "app=shell",
            "--field-selector",
            "spec.nodeName=node-2",
            "-o",
            "name",
        ],
        str::is_empty,
    );
    if let Some(evicted) = on_node_2.lines().next() {
        let name = evicted.trim_start_matches("pod/");
        assert!(
            inbox
                .seen
                .iter()
                .any(|m| dashboard_hop(m, before, "POST", "Pod", name)),
            "the eviction of {name} is the dashboard's request in the flow"
        );
    }
    inbox
        .act(&effects, Effect::Cordon("node-2".into(), false))
        .await;

    // Stop and start a kubelet and a component.
    for (effect, name, words) in [
        (
            Effect::Kubelet("node-2".into(), false),
            "node-2",
            "kubelet node-2 stopped",
        ),
        (
            Effect::Kubelet("node-2".into(), true),
            "node-2",
            "kubelet node-2 started",
        ),
        (
            Effect::Component("scheduler".into(), Operation::Stop),
            "scheduler",
            "component scheduler stopped",
        ),
        (
            Effect::Component("scheduler".into(), Operation::Start),
            "scheduler",
            "component scheduler started",
        ),
        (
            Effect::Component("scheduler".into(), Operation::Kill),
            "scheduler",
            "component scheduler killed",
        ),
        (
            Effect::Component("scheduler".into(), Operation::Start),
            "scheduler",
            "component scheduler started",
        ),
    ] {
        let running = matches!(
            effect,
            Effect::Kubelet(_, true) | Effect::Component(_, Operation::Start)
        );
        inbox.act(&effects, effect).await;
        let msg = inbox.until(30, words, |m| done(m).is_some()).await;
        assert_eq!(done(&msg), Some((words, false)));
        inbox
            .until(10, "the components after it", |m| {
                matches!(m, Msg::Components(list)
                    if list.iter().any(|c| c.name == name && c.running == running))
            })
            .await;
    }
    inbox
        .act(
            &effects,
            Effect::Component("nothing".into(), Operation::Stop),
        )
        .await;
    let msg = inbox.until(30, "the refusal", |m| done(m).is_some()).await;
    assert!(matches!(done(&msg), Some((_, true))), "{msg:?}");

    // Step mode: the dashboard's own scale waits at its gate until it is released by id. The
    // Deployment settles first, so that the only gate it has is the scale's.
    tokio::task::block_in_place(|| {
        cluster.eventually(
            &[
                "get",
                "deploy",
                "shell",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ],
            60,
            |r| r == "3",
        );
        cluster.settled_rv("deploy", "shell")
    });
    inbox
        .act(&effects, Effect::Stepper(json!({"mode": "step"})))
        .await;
    inbox
        .until(
            10,
            "step mode",
            |m| matches!(m, Msg::Stepper(s) if s.mode == "step"),
        )
        .await;
    inbox.seen.clear();
    let scaling = {
        let effects = effects.clone();
        tokio::spawn(async move {
            effects
                .perform(Effect::Scale("default".into(), "shell".into(), 4))
                .await
        })
    };
    let Msg::Stepper(stepper) = inbox
        .until(30, "the scale's gate", |m| {
            matches!(m, Msg::Stepper(s) if s.pending.iter().any(|g| g.name == "shell" && g.kind == "Deployment"))
        })
        .await
    else {
        unreachable!()
    };
    let gate = stepper
        .pending
        .iter()
        .find(|g| g.name == "shell" && g.kind == "Deployment")
        .unwrap()
        .clone();
    assert!(gate.words.contains("shell"), "{}", gate.words);
    inbox
        .until(10, "the GATE event", |m| {
            matches!(m, Msg::Flow(e) if e.verb == "GATE" && e.seq == gate.id && e.detail == gate.words)
        })
        .await;
    assert_eq!(
        kubectl(
            &cluster,
            &["get", "deploy", "shell", "-o", "jsonpath={.spec.replicas}"]
        ),
        "3",
        "held at its gate"
    );
    inbox
        .act(&effects, Effect::Stepper(json!({"releaseGate": gate.id})))
        .await;
    let msg = inbox
        .until(30, "the scale's answer", |m| done(m).is_some())
        .await;
    assert_eq!(
        done(&msg),
        Some(("deployment.apps/shell scaled to 4", false))
    );
    scaling.await.unwrap();
    eventually(
        &cluster,
        &["get", "deploy", "shell", "-o", "jsonpath={.spec.replicas}"],
        |r| r == "4",
    );
    // Releasing a gate that is not waiting is the API's NotFound; back to run.
    inbox
        .act(&effects, Effect::Stepper(json!({"releaseGate": gate.id})))
        .await;
    let msg = inbox.until(10, "the refusal", |m| done(m).is_some()).await;
    assert!(matches!(done(&msg), Some((_, true))), "{msg:?}");
    inbox
        .act(&effects, Effect::Stepper(json!({"mode": "run"})))
        .await;
    inbox
        .until(
            10,
            "run mode",
            |m| matches!(m, Msg::Stepper(s) if s.mode == "run" && s.pending.is_empty()),
        )
        .await;
    drop(sources);
}

#[test]
fn orrery_tui_says_when_no_cluster_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(dir.path())
        .arg("tui")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no cluster is running with state directory"),
        "{stderr}"
    );
}

#[test]
fn orrery_up_without_a_terminal_runs_headless() {
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["up", "--port", "0", "--nodes", "0", "--no-kubeconfig-merge"])
        .args(["--ingress-port", "0", "--ingress-https-port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("orrery.pid");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "orrery up did not start"
        );
        #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
        std::thread::sleep(Duration::from_millis(50));
    }
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(dir.path())
        .arg("down")
        .output()
        .unwrap();
    assert!(down.status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("standard output is not a terminal"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is up at"));
}

/// `tmux` on a socket of this test's own, or `None` (the test then says so and passes) when
/// tmux is not installed.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, width: u16, height: u16, command: &str) -> Option<Tmux> {
        if std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("skipped: tmux is not installed");
            return None;
        }
        let tmux = Tmux(format!("orrery-{name}-{}", std::process::id()));
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .args(["-L", &self.0, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// `#{alternate_on}` and the pane's text.
    fn pane(&self) -> (bool, String) {
        let on = self.run(&["display-message", "-p", "#{alternate_on}"]);
        let text = self.run(&["capture-pane", "-p"]);
        (
            String::from_utf8_lossy(&on.stdout).trim() == "1",
            String::from_utf8_lossy(&text.stdout).into_owned(),
        )
    }

    /// Waits (at most `seconds`) until the pane satisfies `done`.
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    fn until(&self, seconds: u64, what: &str, done: impl Fn(bool, &str) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let (alternate, text) = self.pane();
            if done(alternate, &text) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} within {seconds} s; alternate screen {alternate}, pane:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn the_dashboard_takes_the_terminal_and_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let orrery = env!("CARGO_BIN_EXE_orrery");
    let state = dir.path().display().to_string();
    let up = format!(
        "{orrery} --state-dir {state} up --runtime sim --nodes 1 --port 0 --no-kubeconfig-merge \
         --ingress-port 0 --ingress-https-port 0; \
         echo UP-EXITED $?; sleep 120"
    );
    let Some(tmux) = Tmux::start("up", 80, 24, &up) else {
        return;
    };
    // `orrery up` opens the dashboard on the alternate screen; its log goes to the state dir.
    tmux.until(
        30,
        "the dashboard on the alternate screen",
        |alternate, _| alternate,
    );
    assert!(dir.path().join("orrery.log").exists());
    assert!(dir.path().join("orrery.pid").exists());

    // `orrery tui` attaches a second one; SIGTERM closes it, the cluster keeps running.
    tmux.run(&[
        "new-window",
        "-d",
        "-t",
        ":1",
        &format!("{orrery} --state-dir {state} tui; echo TUI-EXITED $?; sleep 120"),
    ]);
    let attached = Tmux(tmux.0.clone());
    let window = |args: &[&str]| {
        let mut all = vec![args[0], "-t", ":1"];
        all.extend_from_slice(&args[1..]);
        attached.run(&all)
    };
    let alternate_1 = || {
        String::from_utf8_lossy(&window(&["display-message", "-p", "#{alternate_on}"]).stdout)
            .trim()
            == "1"
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !alternate_1() {
        assert!(
            std::time::Instant::now() < deadline,
            "orrery tui took the screen"
        );
        #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = String::from_utf8_lossy(&window(&["display-message", "-p", "#{pane_pid}"]).stdout)
        .trim()
        .to_owned();
    // The pane runs `sh -c`: its child is `orrery tui`.
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let tui = children.split_whitespace().next().expect("orrery tui runs");
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", tui])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(&window(&["capture-pane", "-p"]).stdout).into_owned();
        if text.contains("TUI-EXITED 0") && !alternate_1() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orrery tui restored the terminal: {text}"
        );
        #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        dir.path().join("orrery.pid").exists(),
        "the cluster still runs"
    );

    // `orrery down`: the dashboard gives the terminal back and the cluster stops cleanly.
    let down = std::process::Command::new(orrery)
        .arg("--state-dir")
        .arg(dir.path())
        .arg("down")
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    tmux.until(
        30,
        "orrery up stopped and the screen restored",
        |alternate, text| !alternate && text.contains("UP-EXITED 0"),
    );
    let (_, text) = tmux.pane();
    assert!(
        text.contains("is up at"),
        "the screen from before the dashboard: {text}"
    );
    assert!(text.contains("stopping cluster"), "{text}");
}

/// The in-process client `orrery up` gives its dashboard, and a dashboard too slow for the bus:
/// the components' `emit` never waits for it, it loses events, and it is told how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_dashboard_loses_flow_events_and_is_told_how_many() {
    use orrery::flow::{Flow, FlowEvent};
    use orrery::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(
        orrery::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
    );
    let flow = Flow::new();
    let api = orrery::apiserver::ApiServer::new(store, flow.clone());
    api.bootstrap().await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    let _sources = source::spawn(api.client("dashboard"), tx, None);
    let mut inbox = Inbox {
        rx,
        seen: Vec::new(),
        last: 0,
    };
    // Connected: the bootstrap's events arrive, and the stepper and components (none here).
    inbox
        .until(10, "a flow event", |m| matches!(m, Msg::Flow(_)))
        .await;
    inbox
        .until(
            10,
            "the stepper",
            |m| matches!(m, Msg::Stepper(s) if s.mode == "run"),
        )
        .await;
    inbox
        .until(
            10,
            "the components",
            |m| matches!(m, Msg::Components(c) if c.is_empty()),
        )
        .await;
    // The dashboard reads nothing while 20,000 events are emitted.
    let mut first = 0;
    let mut last = 0;
    for i in 0..20_000 {
        let seq = flow.emit(FlowEvent::new("test", "apiserver", "PING").detail(i.to_string()));
        if i == 0 {
            first = seq;
        }
        last = seq;
    }
    inbox.seen.clear();
    inbox
        .until(
            60,
            "the last event",
            |m| matches!(m, Msg::Flow(e) if e.seq == last),
        )
        .await;
    let lost: u64 = inbox
        .seen
        .iter()
        .map(|m| match m {
            Msg::Lost(n) => *n,
            _ => 0,
        })
        .sum();
    let seqs: Vec<u64> = inbox
        .seen
        .iter()
        .filter_map(|m| match m {
            Msg::Flow(e) => Some(e.seq),
            _ => None,
        })
        .collect();
    assert!(lost > 0, "a reader that reads nothing loses events");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "what arrives arrives in order"
    );
    let received = seqs.iter().filter(|s| (first..=last).contains(*s)).count() as u64;
    let emitted = last - first + 1;
    assert!(
        received + lost >= emitted,
        "every event is received or counted as lost: {received} + {lost} of {emitted}"
    );
}
