//! Snapshot tests of every view: the fixture cluster, driven by key events through
//! [`Model::update`], drawn on a `TestBackend` and compared with the committed snapshots in
//! `src/tui/snapshots/` (what a learner sees).

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::draw;
use crate::flow::{FlowEvent, HopPattern};
use crate::tui::model::tests::{command, component, ctrl, decision, fixture, gate, key, typing};
use crate::tui::model::{
    ComponentRow, Detail, EventRow, Highlight, Host, Model, Msg, PodRow, StepperView, StoreInfo,
};

/// Draws `model` on a `width` x `height` terminal.
fn render(model: &Model, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, model)).unwrap();
    terminal
}

/// Asserts the snapshot of `model` at 80x24.
macro_rules! snap {
    ($name:expr, $model:expr) => {
        snap!($name, $model, 80, 24)
    };
    ($name:expr, $model:expr, $w:expr, $h:expr) => {
        insta::assert_snapshot!($name, render(&$model, $w, $h).backend())
    };
}

#[test]
fn home_80x24() {
    snap!("home_80x24", fixture(Host::Up));
}

#[test]
fn home_120x40() {
    snap!("home_120x40", fixture(Host::Up), 120, 40);
}

#[test]
fn home_with_a_selected_event_and_a_stopped_kubelet_200x50() {
    let mut m = fixture(Host::Attached);
    for _ in 0..4 {
        m.update(key(KeyCode::Up));
    }
    snap!("home_selected_200x50", m, 200, 50);
}

#[test]
fn home_with_10000_pods_summarises_the_nodes() {
    let mut m = fixture(Host::Attached);
    for i in 0..10_000 {
        let node = format!("node-{}", 1 + i % 2);
        let (phase, ready) = if i % 10 == 0 {
            ("Pending", 0)
        } else {
            ("Running", 1)
        };
        m.update(Msg::Pod(PodRow {
            namespace: "bench".into(),
            name: format!("p-{i:05}"),
            node: Some(node),
            phase: phase.into(),
            status: phase.into(),
            ready,
            containers: 1,
            ..Default::default()
        }));
    }
    snap!("home_10000_pods", m);
}

#[test]
fn home_with_the_control_plane_node_and_its_mirror_pods_120x40() {
    let mut m = fixture(Host::Up);
    m.update(Msg::Node(crate::tui::model::NodeRow {
        name: "orrery-control-plane".into(),
        ready: "True".into(),
        taints: vec!["node-role.kubernetes.io/control-plane:NoSchedule".into()],
        runtime: "orrery-sim://0.1.0".into(),
        ..Default::default()
    }));
    for (component, ready) in [
        ("kube-apiserver", 1),
        ("kube-controller-manager", 1),
        ("kube-scheduler", 0),
        ("orrery-store", 1),
    ] {
        m.update(Msg::Pod(PodRow {
            namespace: "kube-system".into(),
            name: format!("{component}-orrery-control-plane"),
            node: Some("orrery-control-plane".into()),
            phase: "Running".into(),
            status: if ready == 1 { "Running" } else { "Error" }.into(),
            ready,
            containers: 1,
            restarts: 0,
            owner: "Node/orrery-control-plane".into(),
            ..Default::default()
        }));
    }
    snap!("home_control_plane_120x40", m, 120, 40);
}

/// A hop at second 40 of the fixture's minute, numbered after its flow.
fn later(seq: u64, from: &str, to: &str, verb: &str, kind: &str, name: &str) -> FlowEvent {
    let mut e = FlowEvent::new(from, to, verb).object(kind, "default", name);
    e.seq = seq;
    e.time = format!("2026-01-01T12:00:40.{seq:03}000Z");
    e.root = "Deployment/web".into();
    e
}

/// The fixture as an HA cluster: three etcd members (etcd-2 down), two schedulers and two
/// controller managers (one leading, one standing by), the cluster DNS seen in the flow, and a
/// watch delivery to node-2's kubelet in flight after a store write and a status update.
fn architecture() -> Model {
    let mut m = fixture(Host::Attached);
    let electing = |name: &str, lease: &str, leading: bool| ComponentRow {
        lease: Some(format!("kube-system/{lease}")),
        leading: Some(leading),
        ..component(name, "component", true)
    };
    m.update(Msg::Components(vec![
        component("apiserver", "component", true),
        component("etcd-1", "component", true),
        component("etcd-2", "component", false),
        component("etcd-3", "component", true),
        electing("scheduler-1", "kube-scheduler", true),
        electing("scheduler-2", "kube-scheduler", false),
        electing("controller-manager-1", "kube-controller-manager", true),
        electing("controller-manager-2", "kube-controller-manager", false),
        component("kube-dns", "component", true),
        component("node-1", "node", true),
        component("node-2", "node", true),
    ]));
    for e in [
        later(30, "kube-dns", "apiserver", "WATCH", "Service", ""),
        later(
            31,
            "controller/endpointslice",
            "apiserver",
            "UPDATE",
            "EndpointSlice",
            "web-x1",
        ),
        later(
            32,
            "kubelet/node-2",
            "apiserver",
            "STATUS",
            "Pod",
            "web-7d4b9-fghij",
        ),
        later(33, "apiserver", "store", "UPDATE", "Pod", "web-7d4b9-fghij"),
        later(
            34,
            "apiserver",
            "kubelet/node-2",
            "WATCH MODIFIED",
            "Pod",
            "web-7d4b9-fghij",
        ),
    ] {
        m.update(Msg::Flow(e));
    }
    m
}

#[test]
fn home_as_the_architecture_diagram() {
    let m = architecture();
    snap!("architecture_80x24", m);
    snap!("architecture_120x40", m, 120, 40);
    snap!("architecture_200x50", m, 200, 50);
}

#[test]
fn home_draws_the_hop_in_flight_s_ends_reversed() {
    let m = architecture();
    let terminal = render(&m, 120, 40);
    let buffer = terminal.backend().buffer();
    let find = |text: &str| {
        (0..40u16)
            .find_map(|y| {
                let row: Vec<String> = (0..120u16)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect();
                let joined = row.concat();
                let at = joined.find(text)?;
                Some((joined[..at].chars().count() as u16, y))
            })
            .unwrap_or_else(|| panic!("{text} is not drawn"))
    };
    use ratatui::style::Modifier;
    let reversed = |text: &str| buffer[find(text)].modifier.contains(Modifier::REVERSED);
    assert!(reversed("apiserver"), "the hop leaves the API server");
    assert!(reversed("kubelet/node-2"), "and reaches node-2's kubelet");
    assert!(!reversed("kubelet/node-1"));
    assert!(!reversed("scheduler-1"));
}

#[test]
fn home_with_clients_outside_and_nodes_that_do_not_fit() {
    let mut m = architecture();
    m.update(Msg::Flow(later(
        35,
        "kubectl",
        "apiserver",
        "POST",
        "Deployment",
        "web",
    )));
    snap!("client_hop_80x24", m);
    for n in 3..=12 {
        m.update(Msg::Node(crate::tui::model::NodeRow {
            name: format!("node-{n:02}"),
            ready: "True".into(),
            ..Default::default()
        }));
    }
    m.update(Msg::Flow(later(
        36,
        "apiserver",
        "pods.policy.example",
        "ADMIT",
        "Pod",
        "web-7d4b9-pqrst",
    )));
    m.update(Msg::Flow(later(
        37,
        "apiserver",
        "kubelet/node-12",
        "WATCH ADDED",
        "Pod",
        "web-7d4b9-pqrst",
    )));
    snap!("many_nodes_120x40", m, 120, 40);
}

#[test]
fn home_with_a_lesson_s_highlights_and_a_selected_bind() {
    let mut m = architecture();
    m.set_highlight(Highlight {
        components: ["scheduler".to_owned(), "etcd-2".to_owned()].into(),
        hops: vec![HopPattern {
            verb: Some("BIND".into()),
            ..Default::default()
        }],
    });
    // The BIND row: its sentence in the step bar.
    for _ in 0..10 {
        m.update(key(KeyCode::Up));
    }
    assert_eq!(m.selected_event().unwrap().verb, "BIND");
    snap!("highlights_80x24", m);
    snap!("highlights_120x40", m, 120, 40);
    // Marked cells are drawn bold and underlined, in monochrome too.
    m.monochrome = true;
    let terminal = render(&m, 120, 40);
    let buffer = terminal.backend().buffer();
    let row = |y: u16| -> String {
        (0..120)
            .map(|x| buffer[(x, y)].symbol().to_owned())
            .collect()
    };
    let (y, x) = (0..40)
        .find_map(|y| row(y).find("etcd-2").map(|x| (y, x)))
        .expect("etcd-2 is drawn");
    let x = row(y)[..x].chars().count() as u16;
    let cell = &buffer[(x, y)];
    assert!(cell.modifier.contains(ratatui::style::Modifier::UNDERLINED));
    assert_eq!(cell.fg, ratatui::style::Color::Reset);
}

#[test]
fn detail_of_a_bind_hop_says_why_and_what_the_scheduler_found() {
    let mut m = fixture(Host::Attached);
    m.size = (100, 34);
    // The BIND row of the timeline, described.
    for _ in 0..5 {
        m.update(key(KeyCode::Up));
    }
    assert_eq!(m.selected_event().unwrap().verb, "BIND");
    m.update(key(KeyCode::Char('d')));
    let mut detail = pod_detail();
    detail.yaml = "apiVersion: v1\nkind: Pod\n".into();
    m.update(Msg::Detail(detail));
    snap!("detail_bind_hop", m, 100, 34);
}

#[test]
fn flow_live() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "flow");
    snap!("flow_live", m);
}

#[test]
fn flow_by_story() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "flow");
    m.update(key(KeyCode::Char('g')));
    m.update(key(KeyCode::Home));
    snap!("flow_by_story", m, 100, 30);
}

#[test]
fn flow_filtered() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "flow");
    typing(&mut m, "/lonely");
    snap!("flow_filter_typing", m);
    m.update(key(KeyCode::Enter));
    snap!("flow_filtered", m);
}

#[test]
fn pods() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "pods");
    m.update(key(KeyCode::Down));
    snap!("pods", m);
}

#[test]
fn services() {
    let mut m = crate::tui::model::tests::services_fixture();
    command(&mut m, "svc");
    m.update(key(KeyCode::Down));
    snap!("services", m, 110, 30);
}

#[test]
fn top() {
    let mut m = crate::tui::model::tests::top_fixture();
    m.update(key(KeyCode::Char('t')));
    m.update(key(KeyCode::Down));
    snap!("top_120x40", m, 120, 40);
    snap!("top_80x24", m);
    // The metrics server stops: the bars keep its last answer, and the title says so.
    m.update(Msg::Metrics(crate::tui::metrics::MetricsRead::Unavailable(
        "503: no metrics yet".into(),
    )));
    snap!("top_unavailable_100x16", m, 100, 16);
}

#[test]
fn top_before_any_metrics() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "top");
    snap!("top_empty", m);
}

#[test]
fn home_with_add_ons_and_kube_proxy_in_flight_120x40() {
    let mut m = crate::tui::model::tests::services_fixture();
    for (seq, from) in [(950, "kube-dns"), (951, "service-lb-controller")] {
        let mut e = crate::flow::FlowEvent::new(from, "apiserver", "LIST");
        e.seq = seq;
        e.time = "2026-01-01T12:00:29.000000Z".into();
        m.update(Msg::Flow(e));
    }
    let mut e = crate::flow::FlowEvent::new("kube-proxy/node-2", "nftables", "SYNC")
        .detail("3 services, 4 endpoints");
    e.seq = 952;
    e.time = "2026-01-01T12:00:29.500000Z".into();
    m.update(Msg::Flow(e));
    snap!("home_add_ons_kube_proxy_120x40", m, 120, 40);
}

#[test]
fn deployments() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "deploy");
    snap!("deploy", m);
}

#[test]
fn statefulsets_replicationcontrollers_cronjobs_and_budgets() {
    use crate::tui::model::WorkloadRow;
    let mut m = fixture(Host::Attached);
    let row = |kind: &str, name: &str, columns: &[&str], healthy| WorkloadRow {
        kind: kind.into(),
        namespace: "default".into(),
        name: name.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        healthy,
    };
    m.update(Msg::Workload(row("StatefulSet", "db", &["2/3"], false)));
    m.update(Msg::Workload(row(
        "ReplicationController",
        "legacy",
        &["3", "3", "2"],
        false,
    )));
    m.update(Msg::Workload(row(
        "CronJob",
        "backup",
        &["*/5 * * * *", "Europe/Paris", "False", "1", "10:05:00"],
        true,
    )));
    m.update(Msg::Workload(row(
        "PodDisruptionBudget",
        "web",
        &["2", "N/A", "1"],
        true,
    )));
    command(&mut m, "sts");
    snap!("statefulsets", m, 100, 8);
    command(&mut m, "rc");
    snap!("replicationcontrollers", m, 100, 8);
    command(&mut m, "cj");
    snap!("cronjobs", m, 100, 8);
    command(&mut m, "pdb");
    snap!("budgets", m, 100, 8);
}

#[test]
fn nodes() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "nodes");
    m.update(Msg::Node(crate::tui::model::NodeRow {
        name: "node-1".into(),
        ready: "True".into(),
        unschedulable: true,
        taints: vec!["node.kubernetes.io/unschedulable:NoSchedule".into()],
        runtime: "orrery-sim://0.1.0".into(),
    }));
    snap!("nodes", m, 100, 12);
}

#[test]
fn events() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "events");
    snap!("events", m, 100, 12);
}

#[test]
fn store() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "store");
    snap!("store", m);
}

fn pod_detail() -> Detail {
    Detail {
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "web-7d4b9-abcde".into(),
        yaml: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-7d4b9-abcde\n  namespace: default\n  resourceVersion: \"108\"\nspec:\n  nodeName: node-1\n  containers:\n  - name: web\n    image: hello\nstatus:\n  phase: Running\n  conditions:\n  - type: PodScheduled\n    status: \"True\"\n  - type: Ready\n    status: \"True\"\n".into(),
        decision: Some(decision()),
        store: Some(StoreInfo {
            key: "/registry/pods/default/web-7d4b9-abcde".into(),
            create_revision: 104,
            mod_revision: 108,
            version: Some(3),
        }),
        events: vec![EventRow {
            namespace: "default".into(),
            name: "abcde.1".into(),
            type_: "Normal".into(),
            reason: "Scheduled".into(),
            object: "Pod/web-7d4b9-abcde".into(),
            message: "Successfully assigned default/web-7d4b9-abcde to node-1".into(),
            count: 1,
            last: "2026-01-01T12:00:04Z".into(),
        }],
    }
}

#[test]
fn detail_of_a_pod_with_its_decision() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "pods");
    m.update(key(KeyCode::Down));
    m.update(key(KeyCode::Char('d')));
    snap!("detail_fetching", m);
    m.update(Msg::Detail(pod_detail()));
    snap!("detail_pod", m, 100, 40);
    for _ in 0..12 {
        m.update(key(KeyCode::Char('j')));
    }
    snap!("detail_pod_scrolled", m);
}

#[test]
fn logs() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "pods");
    m.update(key(KeyCode::Down));
    m.update(key(KeyCode::Char('l')));
    let text: String = (1..=40)
        .map(|i| format!("hello from web, request {i}\n"))
        .collect();
    m.update(Msg::Logs("default".into(), "web-7d4b9-abcde".into(), text));
    snap!("logs_end", m);
    m.update(key(KeyCode::Home));
    snap!("logs_top", m);
}

#[test]
fn help() {
    let mut m = fixture(Host::Attached);
    m.update(key(KeyCode::Char('?')));
    snap!("help", m, 100, 30);
}

#[test]
fn command_line() {
    let mut m = fixture(Host::Attached);
    typing(&mut m, ":dep");
    snap!("command_line", m);
    m.update(key(KeyCode::Esc));
    command(&mut m, "nope");
    snap!("command_unknown", m);
}

#[test]
fn step_bar_with_a_pending_gate() {
    let mut m = fixture(Host::Attached);
    let mut announce = crate::flow::FlowEvent::new("scheduler", "apiserver", "GATE")
        .object("Pod", "default", "web-7d4b9-fghij")
        .detail("scheduler wants to BIND default/web-7d4b9-fghij to node-2");
    announce.seq = 22;
    announce.time = "2026-01-01T12:00:07.000000Z".into();
    announce.root = "Deployment/web".into();
    m.update(Msg::Flow(announce));
    m.update(Msg::Stepper(StepperView {
        mode: "step".into(),
        pending: vec![gate(
            22,
            "scheduler wants to BIND default/web-7d4b9-fghij to node-2",
        )],
        focus: Some(serde_json::json!({"root": "Deployment/web"})),
    }));
    m.update(Msg::Lost(12));
    snap!("step_gate", m);
    snap!("step_gate_120x30", m, 120, 30);
    m.update(key(KeyCode::Char('n')));
    snap!("step_no_gate", m);
}

#[test]
fn quit_confirm() {
    let mut m = fixture(Host::Up);
    m.update(key(KeyCode::Char('q')));
    snap!("quit_confirm", m);
}

#[test]
fn manifest_picker() {
    let mut m = fixture(Host::Attached);
    m.update(key(KeyCode::Char('a')));
    m.update(key(KeyCode::Down));
    snap!("manifest_picker", m);
}

#[test]
fn scale_prompt() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "deploy");
    m.update(key(KeyCode::Char('s')));
    m.update(key(KeyCode::Backspace));
    typing(&mut m, "5");
    snap!("scale_prompt", m);
}

#[test]
fn delete_pod_confirm_and_done() {
    let mut m = fixture(Host::Attached);
    command(&mut m, "pods");
    m.update(ctrl('d'));
    snap!("delete_confirm", m);
    m.update(key(KeyCode::Char('y')));
    m.update(Msg::Done(
        "delete pod default/lonely: forbidden".into(),
        true,
    ));
    snap!("done_failed", m);
}

#[test]
fn tiny_and_empty() {
    let m = Model::new(Host::Attached, "orrery");
    snap!("empty_80x24", m);
    snap!("tiny_40x10", fixture(Host::Attached), 40, 10);
}

#[test]
fn monochrome_draws_no_colour_but_still_highlights() {
    use ratatui::style::{Color, Modifier};
    let mut m = fixture(Host::Attached);
    let coloured = render(&m, 80, 24);
    let colours = |t: &Terminal<TestBackend>| {
        t.backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    assert!(colours(&coloured) > 0);
    m.monochrome = true;
    let mono = render(&m, 80, 24);
    assert_eq!(colours(&mono), 0);
    assert!(
        mono.backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.modifier.contains(Modifier::REVERSED))
    );
    // Only named ANSI colours, so 16-colour terminals draw the same.
    assert!(coloured.backend().buffer().content().iter().all(|c| {
        !matches!(c.fg, Color::Rgb(..) | Color::Indexed(_))
            && !matches!(c.bg, Color::Rgb(..) | Color::Indexed(_))
    }));
}

/// A guard against rendering that grows with the cluster rather than the screen: 10,000 pods
/// and a full flow ring draw every view quickly even unoptimised (the release benchmark,
/// `orrery bench tui`, measures the real figure).
#[test]
fn every_view_draws_a_big_cluster_quickly() {
    use crate::tui::model::{KEPT_EVENTS, View};
    let mut m = fixture(Host::Attached);
    for i in 0..10_000u32 {
        m.update(Msg::Pod(PodRow {
            namespace: "bench".into(),
            name: format!("p-{i:05}"),
            node: Some(format!("node-{}", 1 + i % 2)),
            phase: "Running".into(),
            status: "Running".into(),
            ready: 1,
            containers: 1,
            ..Default::default()
        }));
    }
    let flow = crate::tui::model::tests::flow();
    for seq in 0..KEPT_EVENTS as u64 {
        let mut e = flow[(seq % 21) as usize].clone();
        e.seq = 100 + seq;
        m.update(Msg::Flow(e));
    }
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
    for (view, grouped, filter) in [
        (View::Home, false, ""),
        (View::Home, true, ""),
        (View::Flow, false, "abcde"),
        (View::Pods, false, ""),
        (View::Pods, false, "p-09"),
        (View::Store, false, ""),
        (View::Events, false, ""),
        (View::Top, false, ""),
    ] {
        m.view = view;
        m.grouped = grouped;
        m.filter = filter.to_owned();
        let start = std::time::Instant::now();
        for _ in 0..5 {
            terminal.draw(|frame| draw(frame, &m)).unwrap();
        }
        let each = start.elapsed() / 5;
        assert!(
            each < std::time::Duration::from_millis(150),
            "{view:?} grouped={grouped} filter={filter:?}: {each:?} a frame"
        );
        eprintln!("{view:?} grouped={grouped} filter={filter:?}: {each:?} a frame");
    }
}

/// Any size draws without a panic, however small (a terminal being resized passes through
/// them all).
#[test]
fn every_view_survives_tiny_terminals() {
    use crate::tui::model::View;
    let mut m = crate::tui::model::tests::top_fixture();
    m.update(Msg::Detail(pod_detail()));
    m.detail_target = Some(("Pod".into(), "default".into(), "web-7d4b9-abcde".into()));
    m.update(Msg::Logs(
        "default".into(),
        "web-7d4b9-abcde".into(),
        "a\nb\n".into(),
    ));
    for view in [
        View::Home,
        View::Flow,
        View::Pods,
        View::Deployments,
        View::StatefulSets,
        View::ReplicationControllers,
        View::CronJobs,
        View::Budgets,
        View::Nodes,
        View::Events,
        View::Services,
        View::Top,
        View::Store,
        View::Detail,
        View::Logs,
        View::Help,
    ] {
        m.view = view;
        for (w, h) in [(1, 1), (10, 3), (20, 5), (33, 7), (80, 8)] {
            let terminal = render(&m, w, h);
            assert_eq!(terminal.backend().buffer().area.width, w);
        }
    }
    m.view = View::Home;
    m.update(key(KeyCode::Char('a')));
    render(&m, 12, 4);
}

/// The fixture with the test lessons open in `:learn`.
fn lesson_list() -> Model {
    let mut m = crate::tui::model::tests::learning(Host::Up);
    command(&mut m, "learn");
    m
}

/// The fixture with lesson 01 open at its first step, after `x` and a `c` that held.
fn lesson_checked() -> Model {
    use crate::learn::check::Outcome;
    let mut m = lesson_list();
    m.update(key(KeyCode::Enter));
    m.update(key(KeyCode::Char('[')));
    m.update(key(KeyCode::Char('x')));
    m.update(Msg::LessonAction(
        0,
        0,
        Some(Outcome {
            held: true,
            expected: "kubectl apply -f -".into(),
            seen: "exit 0: deployment.apps/web created".into(),
            hops: Vec::new(),
        }),
    ));
    m.update(Msg::LessonAction(0, 0, None));
    m.update(key(KeyCode::Char('c')));
    let held = |expected: &str, seen: &str| Outcome {
        held: true,
        expected: expected.into(),
        seen: seen.into(),
        hops: Vec::new(),
    };
    m.update(Msg::LessonChecked(
        0,
        0,
        vec![
            held(
                "${pod} from kubectl get pods -o name",
                "${pod} = \"pod/web-7d4b9-abcde\"",
            ),
            held(
                "kubectl get deployment web -o jsonpath={.status.readyReplicas} = \"3\"",
                "\"3\"",
            ),
            held("flow: kubectl -> apiserver POST *", "#1"),
        ],
        Default::default(),
    ));
    m
}

#[test]
fn learn_list_80x24() {
    snap!("learn_list_80x24", lesson_list());
}

#[test]
fn learn_list_120x40() {
    let mut m = lesson_list();
    m.update(key(KeyCode::Down));
    snap!("learn_list_120x40", m, 120, 40);
}

#[test]
fn lesson_pane_80x24() {
    let mut m = lesson_list();
    m.update(key(KeyCode::Enter));
    m.update(key(KeyCode::Char('[')));
    snap!("lesson_pane_80x24", m);
}

#[test]
fn lesson_pane_120x40() {
    let mut m = lesson_list();
    m.update(key(KeyCode::Enter));
    snap!("lesson_pane_120x40", m, 120, 40);
}

#[test]
fn lesson_pane_checked_80x24() {
    snap!("lesson_pane_checked_80x24", lesson_checked());
}

#[test]
fn lesson_pane_checked_120x40() {
    snap!("lesson_pane_checked_120x40", lesson_checked(), 120, 40);
}

#[test]
fn lesson_pane_a_check_did_not_hold_80x24() {
    use crate::learn::check::Outcome;
    let mut m = lesson_list();
    m.update(key(KeyCode::Enter));
    m.update(key(KeyCode::Char('c')));
    m.update(Msg::LessonChecked(
        0,
        1,
        vec![Outcome {
            held: false,
            expected: "kubectl get deployment web -o jsonpath={.status.readyReplicas} = \"4\""
                .into(),
            seen: "\"3\"".into(),
            hops: Vec::new(),
        }],
        Default::default(),
    ));
    snap!("lesson_pane_failed_80x24", m);
}
