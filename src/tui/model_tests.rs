//! Unit tests of [`Model::update`], and the fixture cluster the view's snapshot tests draw.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use super::*;

/// A flow event at a fixed time.
#[allow(clippy::too_many_arguments)]
fn hop(
    seq: u64,
    second: u32,
    from: &str,
    to: &str,
    verb: &str,
    kind: &str,
    name: &str,
    rev: Option<u64>,
    root: &str,
    detail: &str,
) -> FlowEvent {
    let mut e = FlowEvent::new(from, to, verb)
        .object(kind, "default", name)
        .detail(detail);
    e.seq = seq;
    e.time = format!("2026-01-01T12:00:{second:02}.{:06}Z", seq * 1_000 + 250);
    e.revision = rev;
    e.root = root.to_owned();
    e
}

/// The fixture's flow: a Deployment's story interleaved with a bare pod's and a heartbeat.
pub(crate) fn flow() -> Vec<FlowEvent> {
    let web = "Deployment/web";
    let rs = "web-7d4b9";
    let (a, b, c) = ("web-7d4b9-abcde", "web-7d4b9-fghij", "web-7d4b9-klmno");
    let mut lease = hop(
        5,
        2,
        "kubelet/node-2",
        "apiserver",
        "PUT",
        "Lease",
        "node-2",
        None,
        "",
        "renew lease",
    );
    lease.namespace = "kube-node-lease".to_owned();
    vec![
        hop(
            1,
            1,
            "kubectl",
            "apiserver",
            "POST",
            "Deployment",
            "web",
            None,
            web,
            "POST /apis/apps/v1/namespaces/default/deployments",
        ),
        hop(
            2,
            1,
            "apiserver",
            "store",
            "CREATE",
            "Deployment",
            "web",
            Some(101),
            web,
            "create /registry/deployments/default/web",
        ),
        hop(
            3,
            1,
            "apiserver",
            "controller/deployment",
            "WATCH ADDED",
            "Deployment",
            "web",
            Some(101),
            web,
            "deliver ADDED",
        ),
        hop(
            4,
            2,
            "kubectl",
            "apiserver",
            "POST",
            "Pod",
            "lonely",
            None,
            "Pod/lonely",
            "POST /api/v1/namespaces/default/pods",
        ),
        lease,
        hop(
            6,
            2,
            "controller/deployment",
            "apiserver",
            "CREATE",
            "ReplicaSet",
            rs,
            None,
            web,
            "create replicaset web-7d4b9 for 3 replicas",
        ),
        hop(
            7,
            2,
            "apiserver",
            "store",
            "CREATE",
            "ReplicaSet",
            rs,
            Some(102),
            web,
            "create /registry/replicasets/default/web-7d4b9",
        ),
        hop(
            8,
            3,
            "apiserver",
            "store",
            "CREATE",
            "Pod",
            "lonely",
            Some(103),
            "Pod/lonely",
            "create /registry/pods/default/lonely",
        ),
        hop(
            9,
            3,
            "controller/replicaset",
            "apiserver",
            "CREATE",
            "Pod",
            a,
            None,
            web,
            "create pod 1 of 3",
        ),
        hop(
            10,
            3,
            "apiserver",
            "store",
            "CREATE",
            "Pod",
            a,
            Some(104),
            web,
            "create /registry/pods/default/web-7d4b9-abcde",
        ),
        hop(
            11,
            3,
            "controller/replicaset",
            "apiserver",
            "CREATE",
            "Pod",
            b,
            None,
            web,
            "create pod 2 of 3",
        ),
        hop(
            12,
            3,
            "apiserver",
            "store",
            "CREATE",
            "Pod",
            b,
            Some(105),
            web,
            "create /registry/pods/default/web-7d4b9-fghij",
        ),
        hop(
            13,
            3,
            "controller/replicaset",
            "apiserver",
            "CREATE",
            "Pod",
            c,
            None,
            web,
            "create pod 3 of 3",
        ),
        hop(
            14,
            3,
            "apiserver",
            "store",
            "CREATE",
            "Pod",
            c,
            Some(106),
            web,
            "create /registry/pods/default/web-7d4b9-klmno",
        ),
        hop(
            15,
            4,
            "apiserver",
            "scheduler",
            "WATCH ADDED",
            "Pod",
            a,
            Some(104),
            web,
            "deliver ADDED",
        ),
        hop(
            16,
            4,
            "scheduler",
            "apiserver",
            "BIND",
            "Pod",
            a,
            None,
            web,
            "filter: 2 nodes -> 2 feasible; score node-1=87 node-2=64; bind node-1",
        ),
        hop(
            17,
            4,
            "apiserver",
            "store",
            "UPDATE",
            "Pod",
            a,
            Some(107),
            web,
            "bind to node-1",
        ),
        hop(
            18,
            5,
            "apiserver",
            "kubelet/node-1",
            "WATCH MODIFIED",
            "Pod",
            a,
            Some(107),
            web,
            "deliver MODIFIED",
        ),
        hop(
            19,
            5,
            "kubelet/node-1",
            "runtime/node-1",
            "START CONTAINER",
            "Pod",
            a,
            None,
            web,
            "start container web",
        ),
        hop(
            20,
            6,
            "kubelet/node-1",
            "apiserver",
            "PATCH",
            "Pod",
            a,
            None,
            web,
            "status: Running, 1/1 ready",
        ),
        hop(
            21,
            6,
            "apiserver",
            "store",
            "UPDATE",
            "Pod",
            a,
            Some(108),
            web,
            "update /registry/pods/default/web-7d4b9-abcde",
        ),
    ]
}

fn pod(
    name: &str,
    node: Option<&str>,
    phase: &str,
    status: &str,
    ready: u32,
    restarts: i64,
    owner: &str,
) -> PodRow {
    PodRow {
        namespace: "default".to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        node: node.map(str::to_owned),
        phase: phase.to_owned(),
        status: status.to_owned(),
        ready,
        containers: 1,
        restarts,
        last_restart: None,
        owner: owner.to_owned(),
        created: "2026-01-01T12:00:03Z".to_owned(),
    }
}

fn event(
    name: &str,
    type_: &str,
    reason: &str,
    object: &str,
    message: &str,
    second: u32,
) -> EventRow {
    EventRow {
        namespace: "default".to_owned(),
        name: name.to_owned(),
        type_: type_.to_owned(),
        reason: reason.to_owned(),
        object: object.to_owned(),
        message: message.to_owned(),
        count: 1,
        last: format!("2026-01-01T12:00:{second:02}Z"),
    }
}

/// The scheduler's decision for `web-7d4b9-abcde`, shaped as `GET /orrery/v1/scheduling` answers.
pub(crate) fn decision() -> serde_json::Value {
    json!({
        "pod": "default/web-7d4b9-abcde", "time": "2026-01-01T12:00:04Z", "attempt": 1,
        "nodes": 3, "evaluated": 3, "feasible": 2,
        "rejected": {"node-3": {"plugin": "NodeUnschedulable", "reasons": ["node(s) were unschedulable"]}},
        "scores": {
            "node-1": {"NodeResourcesFit": {"raw": 87, "normalized": 87, "weight": 1}, "ImageLocality": {"raw": 0, "normalized": 0, "weight": 1}},
            "node-2": {"NodeResourcesFit": {"raw": 64, "normalized": 64, "weight": 1}, "ImageLocality": {"raw": 0, "normalized": 0, "weight": 1}}
        },
        "totals": {"node-1": 87, "node-2": 64},
        "chosen": "node-1"
    })
}

/// A small fixed cluster: two nodes, a Deployment with three pods, a crash-looping pod, a few
/// Events and the flow above.
pub(crate) fn fixture(host: Host) -> Model {
    let mut m = Model::new(host, "orrery");
    // The fixture shows heartbeats (`h`), so its one Lease hop is a timeline row.
    m.heartbeats = true;
    let web = "Deployment/web";
    let msgs = [
        Msg::Tick("2026-01-01T12:00:30Z".parse().unwrap()),
        Msg::Node(NodeRow {
            name: "node-1".into(),
            ready: "True".into(),
            runtime: "orrery-sim://0.1.0".into(),
            ..Default::default()
        }),
        Msg::Node(NodeRow {
            name: "node-2".into(),
            ready: "True".into(),
            runtime: "orrery-sim://0.1.0".into(),
            ..Default::default()
        }),
        Msg::Pod(pod(
            "web-7d4b9-abcde",
            Some("node-1"),
            "Running",
            "Running",
            1,
            0,
            web,
        )),
        Msg::Pod(pod(
            "web-7d4b9-fghij",
            Some("node-2"),
            "Running",
            "Running",
            0,
            0,
            web,
        )),
        Msg::Pod(pod(
            "web-7d4b9-klmno",
            None,
            "Pending",
            "Pending",
            0,
            0,
            web,
        )),
        // Its container last ended five seconds before the tick: RESTARTS `4 (5s ago)`.
        Msg::Pod(PodRow {
            last_restart: Some("2026-01-01T12:00:25Z".parse().unwrap()),
            ..pod(
                "lonely",
                Some("node-2"),
                "Running",
                "CrashLoopBackOff",
                0,
                4,
                "Pod/lonely",
            )
        }),
        Msg::Deployment(DeploymentRow {
            namespace: "default".into(),
            name: "web".into(),
            desired: 3,
            ready: 1,
            updated: 3,
            available: 1,
        }),
        Msg::Event(event(
            "web.1",
            "Normal",
            "ScalingReplicaSet",
            "Deployment/web",
            "Scaled up replica set web-7d4b9 from 0 to 3",
            2,
        )),
        Msg::Event(event(
            "abcde.1",
            "Normal",
            "Scheduled",
            "Pod/web-7d4b9-abcde",
            "Successfully assigned default/web-7d4b9-abcde to node-1",
            4,
        )),
        Msg::Event(event(
            "lonely.1",
            "Warning",
            "BackOff",
            "Pod/lonely",
            "Back-off restarting failed container app in pod lonely",
            20,
        )),
        Msg::Components(vec![
            component("apiserver", "component", true),
            component("scheduler", "component", true),
            component("controller-manager", "component", true),
            component("node-1", "node", true),
            component("node-2", "node", false),
        ]),
        Msg::Stepper(StepperView {
            mode: "run".into(),
            ..Default::default()
        }),
        Msg::Manifests(vec![
            "hello-deployment.yaml".into(),
            "service.yaml".into(),
            "job.yaml".into(),
            "crashloop-pod.yaml".into(),
        ]),
    ];
    for msg in msgs {
        assert!(m.update(msg).is_empty());
    }
    for e in flow() {
        assert!(m.update(Msg::Flow(e)).is_empty());
    }
    m
}

/// A component as `/orrery/v1/components` lists it.
pub(crate) fn component(name: &str, role: &str, running: bool) -> ComponentRow {
    ComponentRow {
        name: name.into(),
        role: role.into(),
        running,
        ..Default::default()
    }
}

/// A key press.
pub(crate) fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// A key press with Ctrl.
pub(crate) fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Types `text`, one key per character; returns every effect.
pub(crate) fn typing(m: &mut Model, text: &str) -> Vec<Effect> {
    text.chars()
        .flat_map(|c| m.update(key(KeyCode::Char(c))))
        .collect()
}

/// Runs a `:` command.
pub(crate) fn command(m: &mut Model, text: &str) -> Vec<Effect> {
    let mut effects = typing(m, &format!(":{text}"));
    effects.extend(m.update(key(KeyCode::Enter)));
    effects
}

/// A gate waiting, as the stepper lists it.
pub(crate) fn gate(id: u64, words: &str) -> Gate {
    Gate {
        id,
        words: words.to_owned(),
        from: "scheduler".into(),
        verb: "BIND".into(),
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "web-7d4b9-fghij".into(),
        root: "Deployment/web".into(),
    }
}

#[test]
fn rows_are_upserted_and_removed_and_the_map_counts_follow() {
    let mut m = fixture(Host::Attached);
    assert_eq!(m.pods.len(), 4);
    assert_eq!(m.node_pods["node-2"].keys.len(), 2);
    assert_eq!(m.node_pods["node-2"].counts[PodClass::Failed as usize], 1);
    // web-7d4b9-klmno is bound and runs: it leaves the unscheduled pods for node-1.
    m.update(Msg::Pod(pod(
        "web-7d4b9-klmno",
        Some("node-1"),
        "Running",
        "Running",
        1,
        0,
        "Deployment/web",
    )));
    assert!(!m.node_pods.contains_key(""));
    assert_eq!(m.node_pods["node-1"].counts[PodClass::Ready as usize], 2);
    m.update(Msg::PodGone("default".into(), "lonely".into()));
    assert_eq!(m.pods.len(), 3);
    assert_eq!(m.node_pods["node-2"].counts, [0, 1, 0, 0, 0]);
    m.update(Msg::NodeGone("node-2".into()));
    m.update(Msg::DeploymentGone("default".into(), "web".into()));
    assert_eq!(m.nodes.len(), 1);
    assert!(m.deployments.is_empty());
}

#[test]
fn the_flow_ring_keeps_the_newest_events_and_counts_what_the_bus_lost() {
    let mut m = Model::new(Host::Attached, "orrery");
    for seq in 1..=(KEPT_EVENTS as u64 + 10) {
        m.update(Msg::Flow(hop(
            seq,
            1,
            "kubectl",
            "apiserver",
            "GET",
            "Pod",
            "p",
            None,
            "",
            "",
        )));
    }
    assert_eq!(m.events.len(), KEPT_EVENTS);
    assert_eq!(m.events.front().unwrap().seq, 11);
    assert_eq!(m.event_by_seq(11).unwrap().seq, 11);
    assert!(m.event_by_seq(10).is_none());
    m.update(Msg::Lost(7));
    m.update(Msg::Lost(3));
    assert_eq!(m.lost, 10);
}

#[test]
fn controllers_seen_in_the_flow_are_on_the_map() {
    let m = fixture(Host::Attached);
    let seen: Vec<&str> = m.controllers.iter().map(String::as_str).collect();
    assert_eq!(seen, ["controller/deployment", "controller/replicaset"]);
}

#[test]
fn grouping_by_story_reads_each_story_top_to_bottom() {
    let mut m = fixture(Host::Attached);
    m.update(key(KeyCode::Char('g')));
    assert!(m.grouped);
    let rows = m.timeline_rows();
    let mut stories = Vec::new();
    let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut current = String::new();
    for row in &rows {
        match row {
            TimelineRow::Story(root, _) => {
                stories.push(root.clone());
                current = root.clone();
            }
            TimelineRow::Event(i) => {
                let e = &m.events[*i];
                assert_eq!(e.root, current, "event {} under the wrong story", e.seq);
                let prev = last_seq.insert(current.clone(), e.seq).unwrap_or(0);
                assert!(e.seq > prev, "story events in seq order");
            }
        }
    }
    // Stories in the order of their first event; the lease belongs to no story.
    assert_eq!(stories, ["Deployment/web", "Pod/lonely", ""]);
    assert_eq!(rows[0], TimelineRow::Story("Deployment/web".into(), 18));
    m.update(key(KeyCode::Char('g')));
    assert!(!m.grouped);
    assert_eq!(m.timeline_rows().len(), 21);
}

#[test]
fn gate_events_are_not_timeline_rows() {
    let mut m = fixture(Host::Attached);
    let mut g = hop(
        22,
        7,
        "scheduler",
        "apiserver",
        "GATE",
        "Pod",
        "web-7d4b9-fghij",
        None,
        "Deployment/web",
        "scheduler wants to BIND default/web-7d4b9-fghij to node-2",
    );
    g.root = "Deployment/web".into();
    m.update(Msg::Flow(g));
    assert_eq!(m.events.len(), 22);
    assert_eq!(m.timeline_rows().len(), 21);
}

#[test]
fn the_filter_matches_name_component_or_namespace_and_esc_clears_it() {
    let mut m = fixture(Host::Attached);
    typing(&mut m, "/lonely");
    assert_eq!(m.filter, "lonely");
    assert_eq!(m.timeline_rows().len(), 2);
    m.update(key(KeyCode::Enter));
    assert_eq!(m.prompt, None);
    assert_eq!(m.filter, "lonely");
    m.update(key(KeyCode::Esc));
    assert_eq!(m.filter, "");
    typing(&mut m, "/RUNTIME");
    assert_eq!(m.timeline_rows().len(), 1, "components match, in any case");
    m.update(key(KeyCode::Esc));
    assert_eq!(m.filter, "");
    typing(&mut m, "/kube-node-lease");
    assert_eq!(m.timeline_rows().len(), 1, "namespaces match");
    m.update(key(KeyCode::Enter));
    command(&mut m, "pods");
    assert_eq!(m.filter, "", "a new view starts unfiltered");
    typing(&mut m, "/node-2");
    m.update(key(KeyCode::Enter));
    let names: Vec<&str> = m.pod_rows().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["lonely", "web-7d4b9-fghij"]);
    // Describing a filtered row and coming back keeps the filter.
    m.update(key(KeyCode::Char('d')));
    assert_eq!((m.view, m.filter.as_str()), (View::Detail, ""));
    m.update(key(KeyCode::Esc));
    assert_eq!((m.view, m.filter.as_str()), (View::Pods, "node-2"));
}

#[test]
fn commands_open_views_and_esc_goes_back() {
    let mut m = fixture(Host::Attached);
    for (text, view) in [
        ("pods", View::Pods),
        ("deploy", View::Deployments),
        ("deployments", View::Deployments),
        ("nodes", View::Nodes),
        ("events", View::Events),
        ("flow", View::Flow),
        ("store", View::Store),
        ("help", View::Help),
        ("map", View::Home),
    ] {
        assert!(command(&mut m, text).is_empty());
        assert_eq!(m.view, view, ":{text}");
    }
    m.update(key(KeyCode::Esc));
    assert_eq!(m.view, View::Help);
    m.update(key(KeyCode::Esc));
    assert_eq!(m.view, View::Store);
    command(&mut m, "bogus");
    assert_eq!(m.view, View::Store);
    let (message, failed) = m.status.clone().unwrap();
    assert!(failed);
    assert!(message.contains("unknown command ':bogus'"), "{message}");
    // Esc in the command line abandons it.
    typing(&mut m, ":pod");
    m.update(key(KeyCode::Esc));
    assert_eq!((m.view, m.prompt.clone()), (View::Store, None));
}

#[test]
fn stop_and_start_commands_name_components_and_nodes() {
    let mut m = fixture(Host::Attached);
    assert_eq!(
        command(&mut m, "stop scheduler"),
        [Effect::Component("scheduler".into(), Operation::Stop)]
    );
    assert_eq!(m.status.as_ref().unwrap().0, "stopping scheduler");
    assert_eq!(
        command(&mut m, "start controller-manager"),
        [Effect::Component(
            "controller-manager".into(),
            Operation::Start
        )]
    );
    assert_eq!(
        command(&mut m, "stop apiserver"),
        [Effect::Component("apiserver".into(), Operation::Stop)]
    );
    // A kill is a component's crash; a node's kubelet is only stopped.
    assert_eq!(
        command(&mut m, "kill scheduler"),
        [Effect::Component("scheduler".into(), Operation::Kill)]
    );
    assert_eq!(m.status.as_ref().unwrap().0, "killing scheduler");
    assert!(command(&mut m, "kill node-2").is_empty());
    assert!(m.status.as_ref().unwrap().1);
    assert_eq!(
        command(&mut m, "stop node-2"),
        [Effect::Kubelet("node-2".into(), false)]
    );
    assert_eq!(
        command(&mut m, "start kubelet/node-1"),
        [Effect::Kubelet("node-1".into(), true)]
    );
    assert!(command(&mut m, "stop node-9").is_empty());
    assert!(m.status.as_ref().unwrap().1);
    assert!(command(&mut m, "stop").is_empty());
    assert!(m.status.as_ref().unwrap().0.contains("needs a component"));
    assert_eq!(
        command(&mut m, "apply manifests/job.yaml"),
        [Effect::Apply("manifests/job.yaml".into())]
    );
}

#[test]
fn quitting_an_attached_dashboard_leaves_at_once() {
    let mut m = fixture(Host::Attached);
    assert_eq!(m.update(key(KeyCode::Char('q'))), [Effect::Quit]);
    assert_eq!(m.update(ctrl('c')), [Effect::Quit]);
    assert_eq!(command(&mut m, "q"), [Effect::Quit]);
}

#[test]
fn quitting_orrery_up_asks_first() {
    let mut m = fixture(Host::Up);
    assert!(m.update(key(KeyCode::Char('q'))).is_empty());
    assert_eq!(m.prompt, Some(Prompt::Confirm(Confirm::QuitAndStop)));
    assert!(m.update(key(KeyCode::Char('n'))).is_empty());
    assert_eq!(m.prompt, None);
    assert!(m.update(ctrl('c')).is_empty());
    assert_eq!(m.update(key(KeyCode::Char('y'))), [Effect::QuitAndStop]);
    assert!(command(&mut m, "quit").is_empty());
    assert_eq!(m.update(key(KeyCode::Char('y'))), [Effect::QuitAndStop]);
}

#[test]
fn step_keys_send_the_exact_stepper_requests() {
    let mut m = fixture(Host::Attached);
    assert_eq!(
        m.update(key(KeyCode::Char(' '))),
        [Effect::Stepper(json!({"mode": "step"}))]
    );
    // `n` in run mode releases nothing.
    assert!(m.update(key(KeyCode::Char('n'))).is_empty());
    m.update(Msg::Stepper(StepperView {
        mode: "step".into(),
        pending: vec![],
        focus: None,
    }));
    assert!(
        m.update(key(KeyCode::Char('n'))).is_empty(),
        "no gate waiting"
    );
    m.update(Msg::Stepper(StepperView {
        mode: "step".into(),
        pending: vec![
            gate(
                30,
                "scheduler wants to BIND default/web-7d4b9-fghij to node-2",
            ),
            gate(31, "second"),
        ],
        focus: None,
    }));
    assert_eq!(
        m.update(key(KeyCode::Char('n'))),
        [Effect::Stepper(json!({"releaseGate": 30}))]
    );
    // Before the next poll, the next key releases the next gate, not the same one again.
    assert_eq!(
        m.update(key(KeyCode::Enter)),
        [Effect::Stepper(json!({"releaseGate": 31}))]
    );
    assert!(m.update(key(KeyCode::Char('n'))).is_empty());
    m.update(Msg::Stepper(StepperView {
        mode: "step".into(),
        pending: vec![gate(32, "third")],
        focus: None,
    }));
    assert!(
        m.released.is_empty(),
        "released gates no longer listed are forgotten"
    );
    assert_eq!(
        m.update(key(KeyCode::Char('n'))),
        [Effect::Stepper(json!({"releaseGate": 32}))]
    );
    assert_eq!(
        m.update(key(KeyCode::Char(' '))),
        [Effect::Stepper(json!({"mode": "run"}))]
    );
}

#[test]
fn focus_holds_the_selected_story_and_shift_f_clears_it() {
    let mut m = fixture(Host::Attached);
    // Following: the newest event, of Deployment/web.
    assert_eq!(
        m.update(key(KeyCode::Char('f'))),
        [Effect::Stepper(
            json!({"focus": {"root": "Deployment/web"}})
        )]
    );
    // Up to the lease (no story), then up through the story of the bare pod.
    for _ in 0..13 {
        m.update(key(KeyCode::Up));
    }
    assert_eq!(m.selected_event().unwrap().seq, 8);
    assert_eq!(
        m.update(key(KeyCode::Char('f'))),
        [Effect::Stepper(json!({"focus": {"root": "Pod/lonely"}}))]
    );
    m.update(key(KeyCode::Up));
    m.update(key(KeyCode::Up));
    m.update(key(KeyCode::Up));
    assert_eq!(m.selected_event().unwrap().kind, "Lease");
    assert!(m.update(key(KeyCode::Char('f'))).is_empty());
    assert!(m.status.as_ref().unwrap().1);
    assert_eq!(
        m.update(key(KeyCode::Char('F'))),
        [Effect::Stepper(json!({"focus": null}))]
    );
    command(&mut m, "deploy");
    assert_eq!(
        m.update(key(KeyCode::Char('f'))),
        [Effect::Stepper(
            json!({"focus": {"root": "Deployment/web"}})
        )]
    );
}

#[test]
fn the_timeline_follows_until_the_learner_moves_up() {
    let mut m = fixture(Host::Attached);
    assert_eq!(m.timeline_selected, None);
    assert_eq!(m.selected_event().unwrap().seq, 21);
    m.update(key(KeyCode::Up));
    assert_eq!(m.timeline_selected, Some(20));
    m.update(Msg::Flow(hop(
        22,
        9,
        "kubectl",
        "apiserver",
        "GET",
        "Pod",
        "x",
        None,
        "",
        "",
    )));
    assert_eq!(
        m.selected_event().unwrap().seq,
        20,
        "a paused timeline stays put"
    );
    m.update(key(KeyCode::Down));
    m.update(key(KeyCode::Down));
    assert_eq!(
        m.timeline_selected, None,
        "back at the bottom it follows again"
    );
    m.update(key(KeyCode::Home));
    assert_eq!(m.selected_event().unwrap().seq, 1);
    m.update(key(KeyCode::End));
    assert_eq!(m.selected_event().unwrap().seq, 22);
}

#[test]
fn describe_and_logs_ask_the_shell_for_the_selected_object() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "pods");
    m.update(key(KeyCode::Down));
    assert_eq!(
        m.update(key(KeyCode::Char('d'))),
        [Effect::Describe(
            "Pod".into(),
            "default".into(),
            "web-7d4b9-abcde".into()
        )]
    );
    assert_eq!(m.view, View::Detail);
    m.update(Msg::Detail(Detail {
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "lonely".into(),
        ..Default::default()
    }));
    assert!(
        m.detail.is_none(),
        "a late answer for another object is dropped"
    );
    m.update(Msg::Detail(Detail {
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "web-7d4b9-abcde".into(),
        ..Default::default()
    }));
    assert!(m.detail.is_some());
    assert_eq!(
        m.update(key(KeyCode::Char('l'))),
        [Effect::Logs("default".into(), "web-7d4b9-abcde".into())]
    );
    assert_eq!(m.view, View::Logs);
    m.update(key(KeyCode::Esc));
    m.update(key(KeyCode::Esc));
    assert_eq!(m.view, View::Pods);
    assert_eq!(
        m.update(key(KeyCode::Enter)),
        [Effect::Describe(
            "Pod".into(),
            "default".into(),
            "web-7d4b9-abcde".into()
        )]
    );
    m.update(key(KeyCode::Esc));
    command(&mut m, "nodes");
    assert_eq!(
        m.update(key(KeyCode::Char('d'))),
        [Effect::Describe(
            "Node".into(),
            String::new(),
            "node-1".into()
        )]
    );
    m.update(key(KeyCode::Esc));
    command(&mut m, "events");
    assert_eq!(
        m.update(key(KeyCode::Char('d'))),
        [Effect::Describe(
            "Deployment".into(),
            "default".into(),
            "web".into()
        )]
    );
    m.update(key(KeyCode::Esc));
    assert!(
        m.update(key(KeyCode::Char('l'))).is_empty(),
        "logs only of pods"
    );
    // From the timeline: the newest event's object.
    command(&mut m, "map");
    assert_eq!(
        m.update(key(KeyCode::Char('d'))),
        [Effect::Describe(
            "Pod".into(),
            "default".into(),
            "web-7d4b9-abcde".into()
        )]
    );
}

#[test]
fn enter_releases_in_step_mode_on_the_timeline_and_opens_rows_elsewhere() {
    let mut m = fixture(Host::Attached);
    m.update(Msg::Stepper(StepperView {
        mode: "step".into(),
        pending: vec![gate(40, "w")],
        focus: None,
    }));
    assert_eq!(
        m.update(key(KeyCode::Enter)),
        [Effect::Stepper(json!({"releaseGate": 40}))]
    );
    command(&mut m, "deploy");
    assert_eq!(
        m.update(key(KeyCode::Enter)),
        [Effect::Describe(
            "Deployment".into(),
            "default".into(),
            "web".into()
        )]
    );
}

#[test]
fn actions_on_lists_ask_and_then_act() {
    let mut m = fixture(Host::Attached);
    // Apply from the picker.
    m.update(key(KeyCode::Char('a')));
    assert_eq!(m.prompt, Some(Prompt::Picker(0)));
    m.update(key(KeyCode::Down));
    m.update(key(KeyCode::Char('j')));
    assert_eq!(
        m.update(key(KeyCode::Enter)),
        [Effect::Apply("job.yaml".into())]
    );
    assert_eq!(m.prompt, None);
    // Scale.
    command(&mut m, "deploy");
    m.update(key(KeyCode::Char('s')));
    assert_eq!(
        m.prompt,
        Some(Prompt::Scale("default".into(), "web".into(), "3".into()))
    );
    m.update(key(KeyCode::Backspace));
    typing(&mut m, "x5");
    assert_eq!(
        m.update(key(KeyCode::Enter)),
        [Effect::Scale("default".into(), "web".into(), 5)]
    );
    // Delete a pod: Ctrl-D asks, `n` keeps it, `y` deletes it.
    command(&mut m, "pods");
    assert!(m.update(ctrl('d')).is_empty());
    assert_eq!(
        m.prompt,
        Some(Prompt::Confirm(Confirm::DeletePod(
            "default".into(),
            "lonely".into()
        )))
    );
    m.update(key(KeyCode::Char('n')));
    assert_eq!(m.prompt, None);
    m.update(ctrl('d'));
    assert_eq!(
        m.update(key(KeyCode::Char('y'))),
        [Effect::DeletePod("default".into(), "lonely".into())]
    );
    // Nodes: cordon toggles, drain asks, k toggles the kubelet from the components' state.
    command(&mut m, "nodes");
    assert_eq!(
        m.update(key(KeyCode::Char('c'))),
        [Effect::Cordon("node-1".into(), true)]
    );
    m.update(Msg::Node(NodeRow {
        name: "node-1".into(),
        ready: "True".into(),
        unschedulable: true,
        ..Default::default()
    }));
    assert_eq!(
        m.update(key(KeyCode::Char('c'))),
        [Effect::Cordon("node-1".into(), false)]
    );
    assert_eq!(
        m.update(key(KeyCode::Char('k'))),
        [Effect::Kubelet("node-1".into(), false)]
    );
    m.update(key(KeyCode::Char('j')));
    assert_eq!(
        m.update(key(KeyCode::Char('k'))),
        [Effect::Kubelet("node-2".into(), true)],
        "node-2's kubelet is stopped"
    );
    assert!(m.update(key(KeyCode::Char('r'))).is_empty());
    assert_eq!(
        m.update(key(KeyCode::Char('y'))),
        [Effect::Drain("node-2".into())]
    );
    // Done reports on the status line.
    m.update(Msg::Done("drain node-2: evicted 2 pods".into(), false));
    assert_eq!(
        m.status,
        Some(("drain node-2: evicted 2 pods".into(), false))
    );
}

#[test]
fn the_hop_in_flight_is_the_newest_hop_or_the_pending_gate() {
    let mut m = fixture(Host::Attached);
    m.update(Msg::Flow(hop(
        22,
        9,
        "kubelet/node-2",
        "apiserver",
        "PUT",
        "Lease",
        "node-2",
        None,
        "",
        "",
    )));
    let in_flight = m.hop_in_flight().unwrap();
    assert_eq!(
        (
            in_flight.from.as_str(),
            in_flight.to.as_str(),
            in_flight.verb.as_str()
        ),
        ("apiserver", "store", "UPDATE"),
        "heartbeats are skipped"
    );
    assert_eq!(in_flight.name, "web-7d4b9-abcde");
    m.update(Msg::Flow(hop(
        23,
        9,
        "scheduler",
        "apiserver",
        "GATE",
        "Pod",
        "web-7d4b9-fghij",
        None,
        "Deployment/web",
        "words",
    )));
    m.update(Msg::Stepper(StepperView {
        mode: "step".into(),
        pending: vec![gate(23, "words")],
        focus: None,
    }));
    let in_flight = m.hop_in_flight().unwrap();
    assert_eq!(
        (
            in_flight.from.as_str(),
            in_flight.to.as_str(),
            in_flight.verb.as_str()
        ),
        ("scheduler", "apiserver", "BIND")
    );
    assert_eq!(
        (
            in_flight.kind.as_str(),
            in_flight.namespace.as_str(),
            in_flight.name.as_str()
        ),
        ("Pod", "default", "web-7d4b9-fghij")
    );
    assert_eq!(in_flight.seq, 23, "the gate's id");
}

#[test]
fn a_lesson_s_highlight_marks_components_by_name_or_kind_and_hops_by_pattern() {
    let mut m = fixture(Host::Attached);
    assert!(!m.highlight.component("scheduler"));
    m.set_highlight(Highlight {
        components: ["kubelet", "scheduler", "deployment", "etcd-2", "node-2"]
            .map(String::from)
            .into(),
        hops: vec![serde_yaml::from_str("{verb: BIND, kind: Pod}").unwrap()],
    });
    let marked = |who: &str| m.highlight.component(who);
    assert!(marked("kubelet/node-1"), "every kubelet");
    assert!(
        marked("scheduler") && marked("scheduler-2"),
        "every scheduler"
    );
    assert!(marked("controller/deployment") && !marked("controller/replicaset"));
    assert!(marked("etcd-2") && !marked("etcd-1") && !marked("store"));
    assert!(marked("node-2") && !marked("node-1"));
    assert!(!marked("runtime/node-1") && !marked("apiserver") && !marked(""));
    let hops: Vec<&str> = m
        .events
        .iter()
        .filter(|e| m.highlight.hop(e))
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(hops, ["web-7d4b9-abcde"], "the one BIND");
    m.set_highlight(Highlight::default());
    assert!(!m.highlight.component("scheduler"));
}

#[test]
fn the_step_bar_explains_the_selected_hop_or_the_one_at_the_gate() {
    let mut m = fixture(Host::Attached);
    assert_eq!(m.explained_hop(), None, "nothing selected, nothing waits");
    assert_eq!(m.step_bar_rows(24), 1);
    let web = "Deployment/web";
    let chosen = json!({
        "nodes": 2, "evaluated": 2, "feasible": 2, "rejected": {},
        "scores": {"node-1": {"NodeResourcesFit": {"raw": 90, "normalized": 90, "weight": 1}},
                   "node-2": {"NodeResourcesFit": {"raw": 60, "normalized": 60, "weight": 1}}},
        "totals": {"node-1": 90, "node-2": 60}, "chosen": "node-1"
    });
    let k = "web-7d4b9-klmno";
    let decide = hop(
        30,
        10,
        "scheduler",
        "scheduler",
        "DECIDE",
        "Pod",
        k,
        None,
        web,
        "",
    )
    .data(&chosen);
    m.update(Msg::Flow(decide));
    m.update(Msg::Flow(hop(
        31,
        10,
        "scheduler",
        "apiserver",
        "BIND",
        "Pod",
        k,
        None,
        web,
        "bind to node-1",
    )));
    // The selected BIND row is explained with the decision that chose its node.
    m.timeline_selected = Some(31);
    let bind = m.explained_hop().unwrap();
    assert_eq!((bind.verb.as_str(), bind.name.as_str()), ("BIND", k));
    assert_eq!(m.decision_of(&bind), Some(chosen.clone()));
    let words = m.explanation(&bind);
    assert!(words.starts_with("The scheduler binds the pod"), "{words}");
    assert!(
        words.ends_with(
            "Decision: node-1 passed every filter (NodeUnschedulable, NodeName, \
             TaintToleration, NodeAffinity, NodeResourcesFit, VolumeBinding, PodTopologySpread, \
             InterPodAffinity) and scored 90 (NodeResourcesFit 90) against node-2's 60."
        ),
        "{words}"
    );
    assert_eq!(m.step_bar_rows(24), 2);
    assert_eq!(m.step_bar_rows(11), 1, "no room for it");
    // A BIND whose DECIDE the ring no longer holds takes the detail's decision of its pod.
    let older = m.events.iter().find(|e| e.verb == "BIND").unwrap().clone();
    assert_eq!(m.decision_of(&older), None);
    m.detail = Some(Detail {
        kind: "Pod".into(),
        namespace: "default".into(),
        name: older.name.clone(),
        decision: Some(decision()),
        ..Default::default()
    });
    assert_eq!(m.decision_of(&older), Some(decision()));
    // Not following a selection, in step mode: the hop waiting at the gate.
    m.timeline_selected = None;
    m.update(Msg::Flow(hop(
        32,
        11,
        "scheduler",
        "apiserver",
        "GATE",
        "Pod",
        "web-7d4b9-fghij",
        None,
        web,
        "scheduler wants to BIND default/web-7d4b9-fghij to node-2",
    )));
    m.update(Msg::Stepper(StepperView {
        mode: "step".into(),
        pending: vec![gate(
            32,
            "scheduler wants to BIND default/web-7d4b9-fghij to node-2",
        )],
        focus: None,
    }));
    let waiting = m.explained_hop().unwrap();
    assert_eq!(
        (
            waiting.verb.as_str(),
            waiting.to.as_str(),
            waiting.name.as_str()
        ),
        ("BIND", "apiserver", "web-7d4b9-fghij")
    );
    // The map draws it first, waiting, then the hops before it (not the GATE announcement).
    let hops = m.map_hops(3);
    let drawn: Vec<(&str, &str, bool)> = hops
        .iter()
        .map(|(h, waits)| (h.verb.as_str(), h.name.as_str(), *waits))
        .collect();
    assert_eq!(
        drawn,
        [
            ("BIND", "web-7d4b9-fghij", true),
            ("BIND", k, false),
            ("DECIDE", k, false)
        ]
    );
}

#[test]
fn describing_a_timeline_hop_opens_it_with_its_object() {
    let mut m = fixture(Host::Attached);
    m.timeline_selected = Some(16);
    assert_eq!(
        m.update(key(KeyCode::Char('d'))),
        [Effect::Describe(
            "Pod".into(),
            "default".into(),
            "web-7d4b9-abcde".into()
        )]
    );
    assert_eq!(m.detail_hop.as_ref().map(|h| h.seq), Some(16));
    // A hop that names no object opens alone.
    m.update(key(KeyCode::Esc));
    m.update(Msg::Flow(hop(
        22,
        12,
        "apiserver",
        "controller/job",
        "WATCH SYNC",
        "Job",
        "",
        Some(108),
        "",
        "3 objects to controller/job",
    )));
    m.timeline_selected = Some(22);
    assert!(m.update(key(KeyCode::Char('d'))).is_empty());
    assert_eq!(m.view, View::Detail);
    assert_eq!(m.detail_target, None);
    assert_eq!(
        m.detail_hop.as_ref().map(|h| h.verb.as_str()),
        Some("WATCH SYNC")
    );
    // An object from a list is no hop.
    m.update(key(KeyCode::Esc));
    command(&mut m, "pods");
    m.update(key(KeyCode::Char('d')));
    assert_eq!(m.detail_hop, None);
}

#[test]
fn pods_are_classed_as_the_map_colours_them() {
    let class = |phase: &str, status: &str, ready: u32| {
        PodClass::of(&pod("p", None, phase, status, ready, 0, ""))
    };
    assert_eq!(class("Running", "Running", 1), PodClass::Ready);
    assert_eq!(class("Running", "Running", 0), PodClass::NotReady);
    assert_eq!(class("Pending", "ContainerCreating", 0), PodClass::Pending);
    assert_eq!(class("Running", "CrashLoopBackOff", 0), PodClass::Failed);
    assert_eq!(class("Failed", "OOMKilled", 0), PodClass::Failed);
    assert_eq!(class("Succeeded", "Completed", 0), PodClass::Succeeded);
    assert_eq!(class("Terminating", "Terminating", 1), PodClass::NotReady);
}

#[test]
fn key_releases_are_ignored() {
    let mut m = fixture(Host::Attached);
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = crossterm::event::KeyEventKind::Release;
    assert!(m.update(Msg::Key(release)).is_empty());
}

#[test]
fn scrolling_stops_at_the_last_page() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "pods");
    m.update(key(KeyCode::Down));
    m.update(key(KeyCode::Char('l')));
    let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    m.update(Msg::Logs("default".into(), "web-7d4b9-abcde".into(), text));
    // Logs open at their end; 80x24 shows 20 lines, so 10 lines scroll.
    assert_eq!(m.scroll, usize::MAX);
    m.update(key(KeyCode::Up));
    assert_eq!(m.scroll, 9);
    for _ in 0..5 {
        m.update(key(KeyCode::Down));
    }
    assert_eq!(m.scroll, 10);
    m.update(key(KeyCode::Home));
    assert_eq!(m.scroll, 0);
    m.update(key(KeyCode::PageDown));
    assert_eq!(m.scroll, 10);
    m.update(Msg::Resize(80, 44));
    m.update(key(KeyCode::PageUp));
    assert_eq!(m.scroll, 0, "a taller terminal shows every line");
}

#[test]
fn heartbeats_are_hidden_until_h_shows_them() {
    let mut m = fixture(Host::Attached);
    let leases = |m: &Model| {
        m.timeline_rows()
            .iter()
            .filter(|r| matches!(r, TimelineRow::Event(i) if m.events[*i].kind == "Lease"))
            .count()
    };
    assert_eq!(leases(&m), 1);
    m.update(key(KeyCode::Char('h')));
    assert!(!m.heartbeats);
    assert_eq!(leases(&m), 0, "a fresh dashboard hides Lease hops");
    assert!(m.timeline_rows().len() > 1, "every other hop stays");
    m.update(key(KeyCode::Char('h')));
    assert_eq!(leases(&m), 1);
    assert!(!Model::new(Host::Up, "x").heartbeats);
}

/// A kube-proxy SYNC hop from `node` at `second` with `data`.
fn sync(seq: u64, second: u32, node: &str, data: serde_json::Value) -> FlowEvent {
    let mut e = FlowEvent::new(format!("kube-proxy/{node}"), "nftables", "SYNC")
        .detail("synced")
        .data(data);
    e.seq = seq;
    e.time = format!("2026-01-01T12:00:{second:02}.000000Z");
    e
}

fn programmed(endpoints: serde_json::Value) -> serde_json::Value {
    json!({"namespace": "default", "name": "web", "type": "LoadBalancer",
           "clusterIP": "10.96.0.20",
           "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 31234}],
           "endpoints": endpoints})
}

/// The fixture with the `web` LoadBalancer Service, its slice (two endpoints, one terminating),
/// `kubernetes`, and kube-proxy syncs: node-1 current (at 12:00:28), node-2 stale (at 12:00:18,
/// before the terminating endpoint).
pub(crate) fn services_fixture() -> Model {
    use crate::tui::services::{EndpointRow, PortRow, ServiceRow, SliceRow};
    let mut m = fixture(Host::Attached);
    m.update(Msg::Service(ServiceRow {
        namespace: "default".into(),
        name: "kubernetes".into(),
        type_: "ClusterIP".into(),
        cluster_ip: "10.96.0.1".into(),
        external: "<none>".into(),
        ports: vec![PortRow {
            name: "https".into(),
            port: 443,
            protocol: "TCP".into(),
            node_port: None,
            target_port: "6443".into(),
        }],
        created: "2026-01-01T11:00:00Z".into(),
    }));
    m.update(Msg::Service(ServiceRow {
        namespace: "default".into(),
        name: "web".into(),
        type_: "LoadBalancer".into(),
        cluster_ip: "10.96.0.20".into(),
        external: "127.240.0.1".into(),
        ports: vec![PortRow {
            name: "http".into(),
            port: 80,
            protocol: "TCP".into(),
            node_port: Some(31234),
            target_port: "8080".into(),
        }],
        created: "2026-01-01T11:59:00Z".into(),
    }));
    let endpoint = |ip: &str, node: &str, pod: &str, ready: bool, terminating: bool| EndpointRow {
        ip: ip.into(),
        node: node.into(),
        pod: pod.into(),
        ready,
        serving: !terminating || ready,
        terminating,
    };
    m.update(Msg::Slice(SliceRow {
        namespace: "default".into(),
        name: "web-x2k9q".into(),
        service: "web".into(),
        ports: vec![("http".into(), 8080)],
        endpoints: vec![
            endpoint("10.244.1.5", "node-1", "web-7d4b9-abcde", true, false),
            endpoint("10.244.2.7", "node-2", "web-7d4b9-fghij", false, true),
        ],
    }));
    let now = json!([
        {"ip": "10.244.1.5", "port": 8080, "node": "node-1", "ready": true, "serving": true, "terminating": false},
        {"ip": "10.244.2.7", "port": 8080, "node": "node-2", "ready": false, "serving": false, "terminating": true},
    ]);
    let before = json!([
        {"ip": "10.244.1.5", "port": 8080, "node": "node-1", "ready": true, "serving": true, "terminating": false},
        {"ip": "10.244.2.7", "port": 8080, "node": "node-2", "ready": true, "serving": true, "terminating": false},
    ]);
    m.update(Msg::Flow(sync(
        900,
        18,
        "node-2",
        json!({"node": "node-2", "programmed": true, "full": true, "services": [programmed(before)]}),
    )));
    m.update(Msg::Flow(sync(
        901,
        28,
        "node-1",
        json!({"node": "node-1", "programmed": true, "services": [programmed(now)]}),
    )));
    m
}

#[test]
fn services_and_slices_follow_their_watches() {
    let mut m = services_fixture();
    assert_eq!(m.service_rows().len(), 2);
    assert_eq!(m.slices_of("default", "web").len(), 1);
    assert!(m.slices_of("default", "kubernetes").is_empty());
    assert!(m.slices_of("other", "web").is_empty());
    m.update(Msg::SliceGone("default".into(), "web-x2k9q".into()));
    assert!(m.slices_of("default", "web").is_empty());
    m.update(Msg::ServiceGone("default".into(), "web".into()));
    let names: Vec<&str> = m.service_rows().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["kubernetes"]);
    assert_eq!(m.services["default/kubernetes"].ports_text(), "443/TCP");
}

#[test]
fn kube_proxy_syncs_full_and_incremental_keep_each_nodes_state() {
    use crate::tui::services::{ProxyState, proxy_state};
    let mut m = services_fixture();
    let slices = m
        .slices_of("default", "web")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    let refs: Vec<_> = slices.iter().collect();
    assert_eq!(
        proxy_state(&m.kube_proxy["node-1"], "default/web", &refs),
        ProxyState::Current(2)
    );
    assert_eq!(
        proxy_state(&m.kube_proxy["node-2"], "default/web", &refs),
        ProxyState::Stale
    );
    // An incremental sync changes only the Services it names.
    let other = json!({"namespace": "default", "name": "db", "type": "ClusterIP",
                       "clusterIP": "10.96.0.30", "ports": [], "endpoints": []});
    m.update(Msg::Flow(sync(
        902,
        29,
        "node-2",
        json!({"node": "node-2", "programmed": true, "full": false, "services": [other]}),
    )));
    let node2 = &m.kube_proxy["node-2"];
    assert_eq!(node2.services.len(), 2);
    assert_eq!(node2.synced, "2026-01-01T12:00:29.000000Z");
    assert_eq!(proxy_state(node2, "default/web", &refs), ProxyState::Stale);
    let fixed = programmed(json!([
        {"ip": "10.244.1.5", "port": 8080, "node": "node-1", "ready": true, "serving": true, "terminating": false},
        {"ip": "10.244.2.7", "port": 8080, "node": "node-2", "ready": false, "serving": false, "terminating": true},
    ]));
    m.update(Msg::Flow(sync(
        903,
        30,
        "node-2",
        json!({"node": "node-2", "programmed": true, "full": false,
               "services": [fixed, {"namespace": "default", "name": "db", "removed": true}]}),
    )));
    let node2 = &m.kube_proxy["node-2"];
    assert_eq!(
        node2.services.keys().collect::<Vec<_>>(),
        ["default/web"],
        "db removed"
    );
    assert_eq!(
        proxy_state(node2, "default/web", &refs),
        ProxyState::Current(2)
    );
    // A full sync replaces everything; one that failed is reported as such.
    m.update(Msg::Flow(sync(
        904,
        31,
        "node-2",
        json!({"node": "node-2", "programmed": false, "full": true, "services": []}),
    )));
    assert!(m.kube_proxy["node-2"].services.is_empty());
    assert_eq!(
        proxy_state(&m.kube_proxy["node-2"], "default/web", &refs),
        ProxyState::Failed
    );
    // Not a SYNC to nftables: ignored.
    let mut e = sync(
        905,
        31,
        "node-3",
        json!({"node": "node-3", "programmed": true}),
    );
    e.verb = "LIST".into();
    m.update(Msg::Flow(e));
    assert!(!m.kube_proxy.contains_key("node-3"));
}

#[test]
fn the_services_view_opens_by_command_and_key_and_describes_its_service() {
    let mut m = services_fixture();
    for text in ["svc", "services", "service"] {
        command(&mut m, "map");
        assert!(command(&mut m, text).is_empty());
        assert_eq!(m.view, View::Services, ":{text}");
    }
    command(&mut m, "map");
    m.update(key(KeyCode::Char('S')));
    assert_eq!(m.view, View::Services);
    assert_eq!(m.view.name(), "svc");
    m.update(key(KeyCode::Down));
    assert_eq!(m.selected_service().unwrap().name, "web");
    assert_eq!(
        m.update(key(KeyCode::Char('d'))),
        [Effect::Describe(
            "Service".into(),
            "default".into(),
            "web".into()
        )]
    );
    assert!(HELP.iter().any(|(k, _)| *k == "S"));
}

#[test]
fn add_ons_seen_in_the_flow_join_the_controllers() {
    let mut m = Model::new(Host::Attached, "orrery");
    for from in [
        "kube-dns",
        "ingress-controller",
        "service-lb-controller",
        "local-path-provisioner",
        "kube-proxy/node-1",
    ] {
        m.update(Msg::Flow(FlowEvent::new(from, "apiserver", "LIST")));
    }
    let seen: Vec<&str> = m.controllers.iter().map(String::as_str).collect();
    assert_eq!(
        seen,
        [
            "ingress-controller",
            "kube-dns",
            "local-path-provisioner",
            "service-lb-controller"
        ]
    );
}

/// A hop of the HorizontalPodAutoscaler controller about `default/<hpa>`.
pub(crate) fn hpa_hop(
    seq: u64,
    second: u32,
    verb: &str,
    hpa: &str,
    data: serde_json::Value,
) -> FlowEvent {
    let mut e = FlowEvent::new(crate::tui::metrics::HPA_CONTROLLER, "apiserver", verb)
        .object("HorizontalPodAutoscaler", "default", hpa)
        .detail(format!("Deployment/{hpa}"))
        .data(data);
    e.seq = seq;
    e.time = format!("2026-01-01T12:00:{second:02}.000000Z");
    e
}

/// A DECIDE hop's data, as the HPA controller writes it.
pub(crate) fn decided(current: i64, proposed: i64, desired: i64, value: &str) -> serde_json::Value {
    json!({"current": current, "proposed": proposed, "desired": desired, "min": 1, "max": 10,
           "metric": "cpu resource utilization (percentage of request)",
           "value": value, "target": "50%",
           "limit": if proposed == desired { "DesiredWithinRange" } else { "ScaleUpLimit" }})
}

/// A metrics API answer: nodes `(name, cpu, memory)` and pods `(name, cpu, memory)` in
/// `default`, read at `second`, through the same reader the poll uses.
pub(crate) fn metrics_read(
    second: u32,
    nodes: &[(&str, &str, &str)],
    pods: &[(&str, &str, &str)],
) -> Msg {
    use crate::tui::metrics::{MetricsRead, read_list};
    let time = format!("2026-01-01T12:00:{second:02}Z");
    let nodes = json!({"kind": "NodeMetricsList", "items": nodes.iter().map(|(n, cpu, mem)| json!({
        "metadata": {"name": n}, "timestamp": time, "window": "15s",
        "usage": {"cpu": cpu, "memory": mem}})).collect::<Vec<_>>()});
    let pods = json!({"kind": "PodMetricsList", "items": pods.iter().map(|(n, cpu, mem)| json!({
        "metadata": {"name": n, "namespace": "default"}, "timestamp": time, "window": "15s",
        "containers": [{"name": "app", "usage": {"cpu": cpu, "memory": mem}}]})).collect::<Vec<_>>()});
    Msg::Metrics(MetricsRead::Lists {
        nodes: read_list(&nodes.to_string()).unwrap(),
        pods: read_list(&pods.to_string()).unwrap(),
    })
}

/// The fixture with live usage: both nodes' allocatable (2 CPUs, 4Gi), the web pods' requests
/// and limits (100m/200m CPU, 64Mi/128Mi memory), three scrapes (node-2 nearly full,
/// `web-...-abcde` past its CPU request, `web-...-fghij` past its CPU limit), the metrics
/// server's last SCRAPE, and two autoscalers' decisions (`web` scaled 3 → 5, `api` undecided).
pub(crate) fn top_fixture() -> Model {
    use crate::tui::metrics::{Resources, Usage};
    let mut m = fixture(Host::Attached);
    for node in ["node-1", "node-2"] {
        m.update(Msg::Allocatable(
            node.into(),
            Usage {
                cpu: 2000,
                memory: 4 << 30,
            },
        ));
    }
    for pod in ["web-7d4b9-abcde", "web-7d4b9-fghij", "web-7d4b9-klmno"] {
        m.update(Msg::PodResources(
            "default".into(),
            pod.into(),
            Resources {
                cpu_request: Some(100),
                cpu_limit: Some(200),
                memory_request: Some(64 << 20),
                memory_limit: Some(128 << 20),
            },
        ));
    }
    m.update(Msg::PodResources(
        "default".into(),
        "lonely".into(),
        Resources::default(),
    ));
    for (second, load) in [(0, 1), (15, 2), (30, 3)] {
        let cpu = |m: i64| format!("{}m", m * load);
        let (n1, n2, a, f, l) = (cpu(130), cpu(630), cpu(50), cpu(80), cpu(10));
        m.update(metrics_read(
            second,
            &[("node-1", &n1, "1Gi"), ("node-2", &n2, "3Gi")],
            &[
                ("web-7d4b9-abcde", &a, "80Mi"),
                ("web-7d4b9-fghij", &f, "40Mi"),
                ("lonely", &l, "10Mi"),
            ],
        ));
    }
    let mut scrape = FlowEvent::new("metrics-server", "kubelet", "SCRAPE")
        .detail("scraped 2 node(s), 3 pod(s) with containers running")
        .data(json!({"nodes": 2, "pods": 3, "failed": []}));
    scrape.seq = 959;
    scrape.time = "2026-01-01T12:00:28.000000Z".into();
    m.update(Msg::Flow(scrape));
    let hops = [
        hpa_hop(960, 5, "DECIDE", "web", decided(3, 3, 3, "45%")),
        hpa_hop(961, 20, "DECIDE", "web", decided(3, 3, 3, "45%")),
        hpa_hop(962, 27, "DECIDE", "web", decided(3, 6, 5, "120%")),
        hpa_hop(963, 27, "SCALE", "web", decided(3, 6, 5, "120%")),
        hpa_hop(
            964,
            29,
            "DECIDE",
            "api",
            json!({"current": 2, "desired": 2,
                   "error": "unable to get metrics for resource cpu: no metrics returned from resource metrics API"}),
        ),
    ];
    for hop in hops {
        m.update(Msg::Flow(hop));
    }
    m
}

#[test]
fn metrics_polls_keep_the_latest_usage_and_one_sample_per_scrape() {
    use crate::tui::metrics::{HISTORY, MetricsRead, MetricsState, Usage};
    let mut m = fixture(Host::Attached);
    assert_eq!(m.metrics.state, MetricsState::Waiting);
    let read = |second| {
        metrics_read(
            second,
            &[
                ("node-1", "400m", "64Mi"),
                ("node-2", "17483094n", "12868Ki"),
            ],
            &[("lonely", "2", "1000")],
        )
    };
    m.update(read(0));
    // A poll that finds the same scrape adds no sample.
    m.update(read(0));
    assert_eq!(m.metrics.state, MetricsState::Serving);
    let node1 = &m.metrics.nodes["node-1"];
    assert_eq!(node1.history.len(), 1);
    assert_eq!(
        node1.latest(),
        Some(Usage {
            cpu: 400,
            memory: 64 << 20
        })
    );
    assert_eq!(node1.window, "15s");
    assert_eq!(m.metrics.nodes["node-2"].latest().map(|u| u.cpu), Some(18));
    assert_eq!(
        m.metrics.pods["default/lonely"].latest(),
        Some(Usage {
            cpu: 2000,
            memory: 1000
        })
    );
    // A new scrape is a new sample; the history keeps the last HISTORY.
    for second in 1..=40 {
        m.update(read(second));
    }
    assert_eq!(m.metrics.nodes["node-1"].history.len(), HISTORY);
    assert_eq!(m.metrics.nodes["node-1"].timestamp, "2026-01-01T12:00:40Z");
    // The metrics server stops: the last answer stays, marked unavailable.
    m.update(Msg::Metrics(MetricsRead::Unavailable(
        "503: no metrics yet".into(),
    )));
    assert_eq!(
        m.metrics.state,
        MetricsState::Unavailable("503: no metrics yet".into())
    );
    assert!(m.metrics.nodes.contains_key("node-1"));
    // Objects the API stops listing are forgotten, as are pods and nodes that are gone.
    m.update(metrics_read(
        50,
        &[("node-1", "1", "1Mi")],
        &[("lonely", "1m", "1")],
    ));
    assert_eq!(m.metrics.state, MetricsState::Serving);
    assert!(!m.metrics.nodes.contains_key("node-2"));
    m.update(Msg::Allocatable(
        "node-1".into(),
        Usage {
            cpu: 2000,
            memory: 1 << 30,
        },
    ));
    m.update(Msg::PodResources(
        "default".into(),
        "lonely".into(),
        crate::tui::metrics::Resources::default(),
    ));
    m.update(Msg::PodGone("default".into(), "lonely".into()));
    m.update(Msg::NodeGone("node-1".into()));
    assert!(m.metrics.pods.is_empty());
    assert!(m.metrics.resources.is_empty());
    assert!(m.metrics.nodes.is_empty());
    assert!(m.metrics.allocatable.is_empty());
}

#[test]
fn autoscaler_decisions_come_from_decide_and_scale_hops() {
    let m = top_fixture();
    let web = &m.metrics.decisions["default/web"];
    // Two identical "no change" decisions are one, repeated; the scale marks its decision.
    assert_eq!(web.len(), 2);
    assert_eq!((web[0].current, web[0].desired, web[0].repeats), (3, 3, 1));
    assert_eq!(web[0].time, "2026-01-01T12:00:20.000000Z");
    assert!(!web[0].scaled);
    assert_eq!(
        (web[1].current, web[1].proposed, web[1].desired),
        (3, Some(6), 5)
    );
    assert_eq!(
        (web[1].value.as_str(), web[1].target.as_str()),
        ("120%", "50%")
    );
    assert_eq!(web[1].limit, "ScaleUpLimit");
    assert!(web[1].scaled);
    let api = &m.metrics.decisions["default/api"];
    assert!(api[0].error.starts_with("unable to get metrics"));
    // The autoscaler that decided last comes first.
    let order: Vec<&str> = m
        .metrics
        .autoscalers()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(order, ["default/api", "default/web"]);
    let scrape = m.metrics.scrape.as_ref().unwrap();
    assert_eq!((scrape.nodes, scrape.pods), (2, 3));

    // Only the last few are kept; hops from others, or other verbs, are not decisions.
    let mut m = Model::new(Host::Attached, "orrery");
    for i in 0..8 {
        m.update(Msg::Flow(hpa_hop(
            i,
            i as u32,
            "DECIDE",
            "web",
            decided(i as i64, i as i64 + 1, i as i64 + 1, "90%"),
        )));
    }
    let mut other = hpa_hop(20, 20, "DECIDE", "web", decided(1, 1, 1, "1%"));
    other.from = "controller/deployment".into();
    m.update(Msg::Flow(other));
    m.update(Msg::Flow(hpa_hop(21, 21, "GATE", "web", json!({}))));
    m.update(Msg::Flow(hpa_hop(
        22,
        22,
        "DECIDE",
        "web",
        json!("not an object"),
    )));
    let web = &m.metrics.decisions["default/web"];
    assert_eq!(web.len(), crate::tui::metrics::DECISIONS);
    assert_eq!(web.back().map(|d| d.current), Some(7));
    // A SCALE whose DECIDE was not seen (the ring started later) is a decision of its own.
    m.update(Msg::Flow(hpa_hop(
        23,
        23,
        "SCALE",
        "web",
        decided(9, 9, 4, "10%"),
    )));
    let last = m.metrics.decisions["default/web"].back().cloned().unwrap();
    assert!(last.scaled && last.desired == 4);
}

#[test]
fn top_opens_by_key_and_command_and_its_pods_are_selectable() {
    let mut m = top_fixture();
    m.update(key(KeyCode::Char('t')));
    assert_eq!(m.view, View::Top);
    m.update(key(KeyCode::Esc));
    assert_eq!(m.view, View::Home);
    command(&mut m, "top");
    assert_eq!(m.view, View::Top);
    m.update(key(KeyCode::Down));
    // Pods sort by key: lonely, then the web pods.
    assert_eq!(
        m.update(key(KeyCode::Char('d'))),
        [Effect::Describe(
            "Pod".into(),
            "default".into(),
            "web-7d4b9-abcde".into()
        )]
    );
    assert!(HELP.iter().any(|(k, _)| *k == "t"));
}

/// Two lessons for the dashboard's tests: one of three steps (the second in step mode, with a
/// focus), and one of a single step.
pub(crate) const LESSONS: [(&str, &str); 2] = [
    (
        "01-deployment.yaml",
        r#"
title: A Deployment, hop by hop
claim: kubectl apply of a Deployment; the API server stores it; controllers do the rest.
cluster: {runtime: sim, nodes: 2}
steps:
  - title: Apply the Deployment
    say: |
      In another terminal, apply a Deployment of three hello pods,
      then watch the timeline.
    do:
      - run: kubectl apply -f -
        stdin: "kind: Deployment"
    watch:
      components: [apiserver, controller-manager]
      hops: [{from: kubectl, kind: Deployment}]
    check:
      - capture: pod
        run: kubectl get pods -o name
      - run: kubectl get deployment web -o jsonpath={.status.readyReplicas}
        expect: "3"
      - flow: [{from: kubectl, to: apiserver, verb: POST}]
    explain: |
      kubectl POSTed the Deployment and the API server CREATEd it in the store.
  - title: Scale it hop by hop
    say: Scale ${pod}'s Deployment to four, and press n for each hop.
    do:
      - run: kubectl scale deployment web --replicas=4
    watch:
      step: true
      focus: {root: Deployment/web}
      hops: [{name: "${pod}"}]
    check:
      - run: kubectl get deployment web -o jsonpath={.status.readyReplicas}
        expect: "4"
    explain: The Deployment controller SCALEd its ReplicaSet.
  - title: Read the store
    say: Look at what the store holds.
    check:
      - run: kubectl get deployment web
"#,
    ),
    (
        "02-store.yaml",
        r#"
title: Only the API server talks to the store
claim: Nobody else writes there.
cluster: {runtime: sim, nodes: 3}
steps:
  - title: Look
    check:
      - no-flow: [{from: "!apiserver", to: store}]
"#,
    ),
];

/// The fixture with [`LESSONS`], lesson 01's first step already held, and the exports line.
pub(crate) fn learning(host: Host) -> Model {
    let mut m = fixture(host);
    m.learn.catalogue = crate::learn::Catalogue::parse(&LESSONS).unwrap();
    m.learn.progress.pass("deployment", 0, 3);
    m.learn.exports =
        "KUBECONFIG=/home/learner/.local/state/orrery/orrery/kubeconfig ORRERY_STATE_DIR=/home/learner/.local/state/orrery/orrery".into();
    m
}

fn outcome(held: bool, expected: &str, seen: &str) -> crate::learn::check::Outcome {
    crate::learn::check::Outcome {
        held,
        expected: expected.into(),
        seen: seen.into(),
        hops: Vec::new(),
    }
}

/// The learner's open lesson.
fn open_lesson(m: &Model) -> &OpenLesson {
    m.learn.open.as_ref().expect("a lesson is open")
}

#[test]
fn learn_lists_the_lessons_and_enter_opens_the_first_step_not_held() {
    let mut m = learning(Host::Up);
    assert!(command(&mut m, "learn").is_empty());
    assert_eq!(m.view, View::Learn);
    // Lesson 01 has step 1 held: it opens at step 2, which asks for step mode on its story.
    let effects = m.update(key(KeyCode::Enter));
    assert_eq!(m.view, View::Home);
    let open = open_lesson(&m);
    assert_eq!((open.lesson, open.step), (0, 1));
    assert_eq!(
        open.since,
        m.events.back().unwrap().seq,
        "its hops count from now"
    );
    assert!(open.stepping);
    assert_eq!(
        effects,
        [Effect::Stepper(
            json!({"mode": "step", "focus": {"root": "Deployment/web"}})
        )]
    );
    // What the step watches is marked (its ${pod} has no value yet: left as written).
    assert_eq!(m.highlight.hops.len(), 1);
    assert_eq!(m.highlight.hops[0].name.as_deref(), Some("${pod}"));
    // `[` goes back to step 1: run mode again, and step 1's marks.
    let effects = m.update(key(KeyCode::Char('[')));
    assert_eq!(
        effects,
        [Effect::Stepper(json!({"mode": "run", "focus": null}))]
    );
    assert_eq!(open_lesson(&m).step, 0);
    assert!(!open_lesson(&m).stepping);
    assert_eq!(
        m.highlight.components,
        ["apiserver", "controller-manager"]
            .map(str::to_owned)
            .into_iter()
            .collect()
    );
    assert!(m.update(key(KeyCode::Char('['))).is_empty());
    assert_eq!(
        m.status.as_ref().unwrap().0,
        "this is the lesson's first step"
    );
    // Down the list to lesson 02, which is not begun: it opens at its first step.
    command(&mut m, "learn");
    m.update(key(KeyCode::Down));
    m.update(key(KeyCode::Enter));
    assert_eq!((open_lesson(&m).lesson, open_lesson(&m).step), (1, 0));
    // By name too; an unknown one is said.
    command(&mut m, "learn deployment");
    assert_eq!(open_lesson(&m).lesson, 0);
    assert!(command(&mut m, "learn nothing").is_empty());
    assert_eq!(
        m.status,
        Some((
            "no lesson named \"nothing\" (:learn lists them)".into(),
            true
        ))
    );
}

#[test]
fn x_performs_the_steps_actions_and_c_checks_them() {
    let mut m = learning(Host::Up);
    command(&mut m, "learn");
    m.update(key(KeyCode::Enter));
    m.update(key(KeyCode::Char('[')));
    let since = open_lesson(&m).since;
    let effects = m.update(key(KeyCode::Char('x')));
    let Effect::LessonDo {
        lesson: 0,
        step: 0,
        actions,
        vars,
    } = &effects[0]
    else {
        panic!("{effects:?}");
    };
    assert_eq!(actions.len(), 1);
    assert!(vars.is_empty());
    assert_eq!(open_lesson(&m).busy, Some(Busy::Performing));
    // Busy: neither x nor c again until the actions are done.
    assert!(m.update(key(KeyCode::Char('c'))).is_empty());
    assert!(m.status.as_ref().unwrap().1);
    m.update(Msg::LessonAction(
        0,
        0,
        Some(outcome(
            true,
            "kubectl apply -f -",
            "exit 0: deployment.apps/web created",
        )),
    ));
    // A late answer for another step is dropped.
    m.update(Msg::LessonAction(0, 1, Some(outcome(false, "x", "y"))));
    m.update(Msg::LessonAction(0, 0, None));
    assert_eq!(open_lesson(&m).actions.len(), 1);
    assert_eq!(open_lesson(&m).busy, None);
    // c: every check once, the flow ones on the hops since the step began.
    let effects = m.update(key(KeyCode::Char('c')));
    let Effect::LessonCheck {
        lesson: 0,
        step: 0,
        checks,
        since: checked_since,
        ..
    } = &effects[0]
    else {
        panic!("{effects:?}");
    };
    assert_eq!((checks.len(), *checked_since), (3, since));
    // One did not hold: nothing recorded.
    let effects = m.update(Msg::LessonChecked(
        0,
        0,
        vec![
            outcome(true, "${pod}", "pod/web-1"),
            outcome(false, "= \"3\"", "\"2\""),
        ],
        [("pod".to_owned(), "web-1".to_owned())].into(),
    ));
    assert!(effects.is_empty());
    assert!(!open_lesson(&m).held);
    assert_eq!(open_lesson(&m).vars["pod"], "web-1");
    // All held: the step is passed and saved.
    m.update(key(KeyCode::Char('c')));
    let effects = m.update(Msg::LessonChecked(
        0,
        0,
        vec![
            outcome(true, "a", "b"),
            outcome(true, "c", "d"),
            outcome(true, "e", "f"),
        ],
        Default::default(),
    ));
    assert!(open_lesson(&m).held);
    assert_eq!(
        effects,
        [Effect::SaveProgress {
            lesson: "deployment".into(),
            step: 0,
            steps: 3
        }]
    );
    assert_eq!(m.status.as_ref().unwrap().0, "step 1 held: ] for the next");
    // The next step's marks use the captured ${pod}.
    m.update(key(KeyCode::Char(']')));
    assert_eq!(m.highlight.hops[0].name.as_deref(), Some("web-1"));
    assert_eq!(open_lesson(&m).vars["pod"], "web-1");
}

#[test]
fn the_last_step_completes_the_lesson_and_esc_closes_it() {
    let mut m = learning(Host::Attached);
    m.learn.progress.pass("deployment", 1, 3);
    command(&mut m, "learn");
    m.update(key(KeyCode::Enter));
    assert_eq!(open_lesson(&m).step, 2);
    // Nothing to perform in this step.
    assert!(m.update(key(KeyCode::Char('x'))).is_empty());
    m.update(key(KeyCode::Char('c')));
    let effects = m.update(Msg::LessonChecked(
        0,
        2,
        vec![outcome(true, "kubectl get deployment web", "\"web\"")],
        Default::default(),
    ));
    assert_eq!(effects.len(), 1);
    assert!(m.learn.complete(0));
    assert_eq!(
        m.status.as_ref().unwrap().0,
        "lesson deployment complete: every step held"
    );
    m.update(key(KeyCode::Char(']')));
    assert_eq!(
        m.status.as_ref().unwrap().0,
        "the lesson is complete: esc closes it"
    );
    // The progress the shell saved comes back.
    let saved = m.learn.progress.clone();
    m.update(Msg::Progress(saved.clone()));
    assert_eq!(m.learn.progress, saved);
    // esc: the lesson closes, nothing stays marked, back to the list. A complete lesson opens
    // at its first step again.
    assert!(m.update(key(KeyCode::Esc)).is_empty());
    assert!(m.learn.open.is_none());
    assert_eq!(m.highlight, Highlight::default());
    assert_eq!(m.view, View::Learn);
    m.update(key(KeyCode::Enter));
    assert_eq!(open_lesson(&m).step, 0);
    // Leaving a stepping step by esc turns run mode back on.
    m.update(key(KeyCode::Char(']')));
    assert!(open_lesson(&m).stepping);
    assert_eq!(
        m.update(key(KeyCode::Esc)),
        [Effect::Stepper(json!({"mode": "run", "focus": null}))]
    );
}

#[test]
fn lesson_keys_are_the_home_screens_only() {
    let mut m = learning(Host::Up);
    command(&mut m, "learn");
    m.update(key(KeyCode::Enter));
    // On :nodes, c still cordons the selected node.
    command(&mut m, "nodes");
    assert_eq!(
        m.update(key(KeyCode::Char('c'))),
        [Effect::Cordon("node-1".into(), true)]
    );
    // Without an open lesson, x and ] do nothing on the home screen.
    let mut m = learning(Host::Up);
    assert!(m.update(key(KeyCode::Char('x'))).is_empty());
    assert!(m.update(key(KeyCode::Char(']'))).is_empty());
    assert!(HELP.iter().any(|(k, _)| *k == "x"));
    assert!(HELP.iter().any(|(k, _)| *k == ":learn [name]"));
}

#[test]
fn a_lesson_written_for_another_cluster_says_so() {
    let m = learning(Host::Up);
    let lessons = m.learn.catalogue.lessons();
    assert_eq!(m.lesson_mismatch(&lessons[0]), None);
    assert_eq!(
        m.lesson_mismatch(&lessons[1]).as_deref(),
        Some("written for 3 sim nodes; this cluster has 2 sim")
    );
}
