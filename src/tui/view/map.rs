//! The cluster map: the control plane (API server, store, scheduler, controller manager and
//! the controllers and add-ons seen in the flow) and one box per node (its kubelet, its
//! runtime, its kube-proxy, its pods as coloured cells, or counts when the cells do not fit),
//! with the hop in flight highlighted.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Theme, block, class_name, glyph};
use crate::tui::model::{Model, NodeRow, PodClass};

/// Pod names are drawn while a node has at most this many pods; beyond, cells or counts.
const NAMED_PODS: usize = 40;

/// The narrowest node box.
const NODE_WIDTH: u16 = 28;

/// The control plane box's height.
const CONTROL_PLANE: u16 = 4;

/// How many node boxes share a row, and how many rows they take.
fn grid(model: &Model, width: u16) -> (usize, usize) {
    let n = model.nodes.len();
    let per_row = usize::from(width / NODE_WIDTH).clamp(1, n.max(1));
    (per_row, n.div_ceil(per_row))
}

/// How tall the map wants to be in `body`: what it needs, at most about half of the screen.
pub(super) fn height(model: &Model, body: Rect) -> u16 {
    let most = body.height.saturating_sub(1) * 55 / 100;
    let (per_row, rows) = grid(model, body.width);
    let inner = usize::from((body.width / per_row as u16).saturating_sub(2));
    let nodes: Vec<&NodeRow> = model.nodes.values().collect();
    let mut needed = CONTROL_PLANE;
    for row in nodes.chunks(per_row).take(rows) {
        let lines = row
            .iter()
            .map(|n| lines_needed(model, &n.name, inner))
            .max()
            .unwrap_or(1);
        needed += 3 + lines as u16;
    }
    needed.min(most.max(CONTROL_PLANE))
}

/// The hop in flight's two components.
fn hop_ends(model: &Model) -> (String, String) {
    model
        .hop_in_flight()
        .map(|(from, to, _, _)| (from, to))
        .unwrap_or_default()
}

/// A component's name, highlighted when the hop in flight starts or ends there and dimmed when
/// it is stopped.
fn component(
    name: &str,
    shown: &str,
    running: bool,
    ends: &(String, String),
    theme: Theme,
) -> Span<'static> {
    let style = if ends.0 == name {
        theme.hop(true)
    } else if ends.1 == name {
        theme.hop(false)
    } else if running {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        theme.dim()
    };
    let text = if running {
        shown.to_owned()
    } else {
        format!("{shown} (stopped)")
    };
    Span::styled(text, style)
}

/// Draws the map into `area`.
pub(super) fn draw(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    if area.height == 0 {
        return;
    }
    let ends = hop_ends(model);
    let cp_height = CONTROL_PLANE.min(area.height);
    let cp = Rect {
        height: cp_height,
        ..area
    };
    draw_control_plane(frame, model, cp, &ends, theme);
    let rest = Rect {
        y: area.y + cp_height,
        height: area.height - cp_height,
        ..area
    };
    if rest.height < 3 || model.nodes.is_empty() {
        return;
    }
    let (per_row, rows) = grid(model, area.width);
    let nodes: Vec<&NodeRow> = model.nodes.values().collect();
    let box_width = area.width / per_row as u16;
    let inner = usize::from(box_width.saturating_sub(2));
    let shown_rows = usize::from(rest.height / 4).clamp(1, rows);
    let mut heights: Vec<u16> = nodes
        .chunks(per_row)
        .take(shown_rows)
        .map(|row| {
            let lines = row
                .iter()
                .map(|n| lines_needed(model, &n.name, inner))
                .max()
                .unwrap_or(1);
            3 + lines as u16
        })
        .collect();
    // Shrink the tallest rows until they fit.
    while heights.iter().sum::<u16>() > rest.height {
        let Some(tallest) = heights.iter_mut().filter(|h| **h > 4).max() else {
            break;
        };
        *tallest -= 1;
    }
    let hidden = nodes.len().saturating_sub(shown_rows * per_row);
    let mut y = rest.y;
    for (r, row) in nodes.chunks(per_row).take(shown_rows).enumerate() {
        let h = heights[r].min(rest.y + rest.height - y);
        for (i, node) in row.iter().enumerate() {
            let x = area.x + i as u16 * box_width;
            let width = if i + 1 == per_row {
                area.x + area.width - x
            } else {
                box_width
            };
            let last = r + 1 == shown_rows && i + 1 == row.len();
            let more = if last && hidden > 0 { hidden } else { 0 };
            draw_node(
                frame,
                model,
                node,
                Rect::new(x, y, width, h),
                more,
                &ends,
                theme,
            );
        }
        y += h;
    }
}

fn draw_control_plane(
    frame: &mut Frame<'_>,
    model: &Model,
    area: Rect,
    ends: &(String, String),
    theme: Theme,
) {
    let on_map = |who: &str| {
        matches!(
            who,
            "apiserver" | "store" | "scheduler" | "controller-manager"
        ) || who.starts_with("controller/")
            || who.starts_with("kubelet/")
            || who.starts_with("runtime/")
            || who.starts_with("kube-proxy/")
            || crate::tui::model::ADDONS.contains(&who)
    };
    let mut first = vec![Span::raw(" ")];
    // A client off the map (kubectl, orrery) is drawn at the left edge while its hop is in
    // flight.
    if !ends.0.is_empty() && !on_map(&ends.0) {
        first.push(Span::styled(ends.0.clone(), theme.hop(true)));
        first.push(Span::raw(" > "));
    }
    let apiserver = model.component_running("apiserver");
    first.push(component("apiserver", "apiserver", apiserver, ends, theme));
    first.push(Span::styled(" = ", theme.dim()));
    first.push(component("store", "store", apiserver, ends, theme));
    first.push(Span::raw("   "));
    first.push(component(
        "scheduler",
        "scheduler",
        model.component_running("scheduler"),
        ends,
        theme,
    ));
    first.push(Span::raw("   "));
    let cm = model.component_running("controller-manager");
    first.push(component(
        "controller-manager",
        "controller-manager",
        cm,
        ends,
        theme,
    ));
    let mut second = vec![Span::raw(" ")];
    if let Some(unbound) = model.node_pods.get("") {
        let n = unbound.keys.len();
        second.push(Span::styled(
            format!("{} {n} unscheduled", glyph(PodClass::Pending)),
            theme.pod(PodClass::Pending),
        ));
        second.push(Span::raw("   "));
    }
    second.push(Span::styled("controllers:", theme.dim()));
    if model.controllers.is_empty() {
        second.push(Span::styled(" none seen in the flow yet", theme.dim()));
    }
    let mut used: usize = second.iter().map(|s| s.width()).sum();
    let room = usize::from(area.width.saturating_sub(2));
    let total = model.controllers.len();
    for (i, name) in model.controllers.iter().enumerate() {
        let short = name.trim_start_matches("controller/");
        let left = total - i - 1;
        let tail = if left > 0 {
            format!(" +{left}").len()
        } else {
            0
        };
        if used + 1 + short.len() + tail > room {
            second.push(Span::styled(format!(" +{}", total - i), theme.dim()));
            break;
        }
        // The add-ons run outside the controller manager.
        let running = if name.starts_with("controller/") {
            cm
        } else {
            model.component_running(name)
        };
        second.push(Span::raw(" "));
        second.push(component(name, short, running, ends, theme));
        used += 1 + short.len();
    }
    let title = format!(" {} · control plane ", model.cluster);
    frame.render_widget(
        Paragraph::new(vec![Line::from(first), Line::from(second)]).block(block(title, theme)),
        area,
    );
}

#[allow(clippy::too_many_arguments)]
fn draw_node(
    frame: &mut Frame<'_>,
    model: &Model,
    node: &NodeRow,
    area: Rect,
    more: usize,
    ends: &(String, String),
    theme: Theme,
) {
    let kubelet = format!("kubelet/{}", node.name);
    let runtime = format!("runtime/{}", node.name);
    let running = model.kubelet_running(&node.name);
    let proxy = format!("kube-proxy/{}", node.name);
    let inner = usize::from(area.width.saturating_sub(2));
    // Full names when they fit, else short ones (the box's title names the node).
    let full = 1 + kubelet.len() + 1 + runtime.len() + 1 + "kube-proxy".len() <= inner;
    let short = "kubelet runtime kube-proxy".len();
    let (lead, kubelet_shown, runtime_shown) = if full {
        (" ", kubelet.as_str(), runtime.as_str())
    } else if short < inner {
        (" ", "kubelet", "runtime")
    } else {
        ("", "kubelet", "runtime")
    };
    let mut lines = vec![Line::from(vec![
        Span::raw(lead),
        component(&kubelet, kubelet_shown, true, ends, theme).patch_style(if running {
            Style::new()
        } else {
            theme.dim()
        }),
        Span::raw(" "),
        component(&runtime, runtime_shown, true, ends, theme),
        Span::raw(" "),
        component(&proxy, "kube-proxy", true, ends, theme),
    ])];
    let room = usize::from(area.height.saturating_sub(3)).max(1);
    lines.extend(pod_lines(model, &node.name, inner, room, theme));
    let count = model.node_pods.get(&node.name).map_or(0, |p| p.keys.len());
    let mut title = vec![Span::styled(format!(" {} ", node.name), theme.heading())];
    let (status, style) = match node.ready.as_str() {
        "True" => ("Ready", theme.fg(Color::Green)),
        "False" => ("NotReady", theme.bad()),
        _ => ("Unknown", theme.fg(Color::Yellow)),
    };
    title.push(Span::styled(status, style));
    if node.unschedulable {
        title.push(Span::styled(",SchedulingDisabled", theme.fg(Color::Yellow)));
    }
    title.push(Span::raw(format!(
        " {count} {} ",
        if count == 1 { "pod" } else { "pods" }
    )));
    if !running {
        title.push(Span::styled("kubelet stopped ", theme.bad()));
    }
    if more > 0 {
        title.push(Span::styled(
            format!("+{more} nodes (:nodes) "),
            theme.dim(),
        ));
    }
    let border = if running { Style::new() } else { theme.dim() };
    frame.render_widget(
        Paragraph::new(lines).block(
            ratatui::widgets::Block::bordered()
                .border_style(border)
                .title(Line::from(title)),
        ),
        area,
    );
}

/// The pods of `node` laid out as names, flowed into `width`.
fn named(model: &Model, node: &str, width: usize) -> Vec<Vec<(PodClass, String)>> {
    let mut lines: Vec<Vec<(PodClass, String)>> = vec![Vec::new()];
    let mut used = 0;
    let Some(on) = model.node_pods.get(node) else {
        return Vec::new();
    };
    for key in &on.keys {
        let Some(pod) = model.pods.get(key) else {
            continue;
        };
        let cell = 2 + pod.name.chars().count();
        let gap = if used == 0 { 1 } else { 2 };
        if used > 0 && used + gap + cell > width {
            lines.push(Vec::new());
            used = 0;
        }
        used += if used == 0 { 1 } else { 2 } + cell;
        if let Some(line) = lines.last_mut() {
            line.push((PodClass::of(pod), pod.name.clone()));
        }
    }
    lines
}

/// How many lines `node`'s pods want at `width`.
fn lines_needed(model: &Model, node: &str, width: usize) -> usize {
    let n = model.node_pods.get(node).map_or(0, |p| p.keys.len());
    if n == 0 {
        1
    } else if n <= NAMED_PODS {
        named(model, node, width).len()
    } else {
        let per_line = width.saturating_sub(2).max(1);
        if n <= per_line * 7 {
            n.div_ceil(per_line) + 1
        } else {
            2
        }
    }
}

/// `node`'s pods in at most `room` lines of `width`: names when they fit, else one cell per pod
/// and a count line, else counts per phase.
fn pod_lines(
    model: &Model,
    node: &str,
    width: usize,
    room: usize,
    theme: Theme,
) -> Vec<Line<'static>> {
    let Some(on) = model.node_pods.get(node) else {
        return vec![Line::styled(" no pods", theme.dim())];
    };
    let n = on.keys.len();
    if n <= NAMED_PODS {
        let lines = named(model, node, width);
        if lines.len() <= room {
            return lines
                .into_iter()
                .map(|cells| {
                    let mut spans = Vec::new();
                    for (class, name) in cells {
                        spans.push(Span::raw(if spans.is_empty() { " " } else { "  " }));
                        spans.push(Span::styled(
                            format!("{} {name}", glyph(class)),
                            theme.pod(class),
                        ));
                    }
                    Line::from(spans)
                })
                .collect();
        }
    }
    let cells_room = width.saturating_sub(2) * room.saturating_sub(1);
    let mut lines = Vec::new();
    if n <= cells_room {
        let per_line = width.saturating_sub(2).max(1);
        let mut spans = vec![Span::raw(" ")];
        for (i, key) in on.keys.iter().enumerate() {
            if i > 0 && i % per_line == 0 {
                lines.push(Line::from(std::mem::replace(
                    &mut spans,
                    vec![Span::raw(" ")],
                )));
            }
            if let Some(pod) = model.pods.get(key) {
                let class = PodClass::of(pod);
                spans.push(Span::styled(glyph(class).to_string(), theme.pod(class)));
            }
        }
        lines.push(Line::from(spans));
    }
    let mut counts = vec![Span::raw(" ")];
    let mut used = 1;
    for class in PodClass::ALL {
        let c = on.counts[class as usize];
        if c > 0 {
            let item = format!("{} {c} {}  ", glyph(class), class_name(class));
            let len = item.chars().count();
            if used > 1 && used + len > width + 2 && lines.len() + 1 < room {
                lines.push(Line::from(std::mem::replace(
                    &mut counts,
                    vec![Span::raw(" ")],
                )));
                used = 1;
            }
            used += len;
            counts.push(Span::styled(item, theme.pod(class)));
        }
    }
    lines.push(Line::from(counts));
    lines
}

/// The hop in flight, as an arrow from one component to the other with its verb and object.
pub(super) fn draw_hop(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let line = match model.hop_in_flight() {
        Some((from, to, verb, object)) => {
            let label = if model.stepping() && model.pending_gate().is_some() {
                " waiting: "
            } else {
                " hop: "
            };
            Line::from(vec![
                Span::styled(label, theme.dim()),
                Span::styled(from, theme.hop(true)),
                Span::styled(
                    format!(" --{verb} {object}--> "),
                    theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ),
                Span::styled(to, theme.hop(false)),
            ])
        }
        None => Line::styled(" no hops yet", theme.dim()),
    };
    frame.render_widget(Paragraph::new(line), area);
}
