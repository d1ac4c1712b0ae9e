//! `:svc`: Services as `kubectl get svc -A` prints them, above the selected Service up close:
//! its ports, its endpoints with their readiness, and what each node's kube-proxy last
//! programmed for it (stale when that differs from the EndpointSlices).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph};

use super::lists::{age, list};
use super::{Theme, block};
use crate::tui::model::{Model, View};
use crate::tui::services::{EndpointRow, ProxyState, ServiceRow, proxy_state};

/// Draws the list and, below it, the selected Service.
pub(super) fn draw(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.service_rows();
    let want = rows.len() as u16 + 3;
    let list_height = want.min(area.height * 45 / 100).max(area.height.min(5));
    let [top, bottom] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Min(0)]).areas(area);
    list(
        frame,
        model,
        View::Services,
        top,
        theme,
        "services",
        &[
            "NAMESPACE",
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        &[
            Constraint::Max(12),
            Constraint::Fill(1),
            Constraint::Length(12),
            Constraint::Length(14),
            Constraint::Length(14),
            Constraint::Fill(1),
            Constraint::Length(5),
        ],
        rows.len(),
        |i| {
            let s = rows[i];
            let external = if s.external == "<pending>" {
                Span::styled(s.external.clone(), theme.fg(Color::Yellow))
            } else {
                Span::raw(s.external.clone())
            };
            vec![
                Cell::from(s.namespace.clone()),
                Cell::from(s.name.clone()),
                Cell::from(s.type_.clone()),
                Cell::from(s.cluster_ip.clone()),
                Cell::from(external),
                Cell::from(s.ports_text()),
                Cell::from(age(&s.created, model.now)),
            ]
        },
    );
    if bottom.height < 3 {
        return;
    }
    let Some(service) = model.selected_service() else {
        return;
    };
    let title = format!(" service {}/{} ", service.namespace, service.name);
    let lines = detail_lines(model, service, theme);
    frame.render_widget(Paragraph::new(lines).block(block(title, theme)), bottom);
}

/// How long ago `time` was, or when, without a clock.
fn since(time: &str, model: &Model) -> String {
    match model.now {
        Some(_) => format!("{} ago", age(time, model.now)),
        None => format!("at {}", age(time, model.now)),
    }
}

fn endpoint_state(e: &EndpointRow, theme: Theme) -> Span<'static> {
    let (text, style) = if e.terminating {
        let text = if e.serving {
            "terminating (serving)"
        } else {
            "terminating"
        };
        (text, theme.fg(Color::Yellow))
    } else if e.ready {
        ("ready", theme.fg(Color::Green))
    } else if e.serving {
        ("serving, not ready", theme.fg(Color::Yellow))
    } else {
        ("not ready", theme.bad())
    };
    Span::styled(text, style)
}

/// The selected Service's ports, endpoints and kube-proxy state, one line each.
pub(super) fn detail_lines(
    model: &Model,
    service: &ServiceRow,
    theme: Theme,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    lines.push(Line::from(vec![
        Span::styled(" ports", theme.heading()),
        Span::styled(
            format!("   {} {}", service.type_, service.cluster_ip),
            theme.dim(),
        ),
    ]));
    if service.ports.is_empty() {
        lines.push(Line::styled("   none", theme.dim()));
    }
    for p in &service.ports {
        let name = if p.name.is_empty() { "-" } else { &p.name };
        let mut text = format!("   {name:10} {}/{} → {}", p.port, p.protocol, p.target_port);
        if let Some(np) = p.node_port.filter(|n| *n != 0) {
            text.push_str(&format!("   nodePort {np}"));
        }
        lines.push(Line::raw(text));
    }
    let slices = model.slices_of(&service.namespace, &service.name);
    let endpoints: Vec<&EndpointRow> = slices.iter().flat_map(|s| &s.endpoints).collect();
    let ready = endpoints.iter().filter(|e| e.ready).count();
    lines.push(Line::from(vec![
        Span::styled(" endpoints", theme.heading()),
        Span::styled(
            format!("   {ready} ready of {}", endpoints.len()),
            theme.dim(),
        ),
    ]));
    if endpoints.is_empty() {
        lines.push(Line::styled("   none", theme.dim()));
    }
    for e in &endpoints {
        let node = if e.node.is_empty() { "-" } else { &e.node };
        let pod = if e.pod.is_empty() { "-" } else { &e.pod };
        lines.push(Line::from(vec![
            Span::raw(format!("   {:15} {node:10} {pod:28} ", e.ip)),
            endpoint_state(e, theme),
        ]));
    }
    lines.push(Line::styled(" kube-proxy", theme.heading()));
    if service.cluster_ip == "None" || service.type_ == "ExternalName" {
        lines.push(Line::styled(
            "   not proxied: headless and ExternalName Services have no rules",
            theme.dim(),
        ));
        return lines;
    }
    let key = format!("{}/{}", service.namespace, service.name);
    let mut nodes: Vec<&String> = model.nodes.keys().collect();
    for n in model.kube_proxy.keys() {
        if !model.nodes.contains_key(n) {
            nodes.push(n);
        }
    }
    nodes.sort();
    if nodes.is_empty() {
        lines.push(Line::styled("   no nodes", theme.dim()));
    }
    for node in nodes {
        let Some(proxy) = model.kube_proxy.get(node) else {
            lines.push(Line::styled(
                format!("   {node}: no kube-proxy sync seen in the flow"),
                theme.dim(),
            ));
            continue;
        };
        let when = since(&proxy.synced, model);
        let (text, style) = match proxy_state(proxy, &key, &slices) {
            ProxyState::Current(n) => (
                format!(
                    "   {node}: programmed, {n} endpoint{} — synced {when}",
                    if n == 1 { "" } else { "s" }
                ),
                theme.fg(Color::Green),
            ),
            ProxyState::Stale => (
                format!("   {node}: stale — kube-proxy last synced {when}"),
                theme.fg(Color::Yellow),
            ),
            ProxyState::Missing => (
                format!("   {node}: stale, not programmed — kube-proxy last synced {when}"),
                theme.fg(Color::Yellow),
            ),
            ProxyState::Failed => (
                format!("   {node}: rules not applied — kube-proxy last synced {when}"),
                theme.bad(),
            ),
        };
        lines.push(Line::styled(text, style));
    }
    lines
}
