//! The k9s-style lists: `:pods`, `:deploy`, `:nodes` and `:events`, with kubectl's columns. Only
//! the rows that fit are formatted.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{Theme, block, offset};
use crate::tui::model::{Model, PodClass, View};

/// Draws a list: a titled block, a bold header, and the visible window of `len` rows, the
/// selected one reversed. `row(i)` builds row `i`.
#[allow(clippy::too_many_arguments)]
pub(super) fn list<'a>(
    frame: &mut Frame<'_>,
    model: &Model,
    view: View,
    area: Rect,
    theme: Theme,
    title: &str,
    header: &[&'static str],
    widths: &[Constraint],
    len: usize,
    row: impl Fn(usize) -> Vec<Cell<'a>>,
) {
    let filter = if model.filter.is_empty() {
        String::new()
    } else {
        format!(" /{}", model.filter)
    };
    let b = block(format!(" {title}({len}){filter} "), theme);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let height = usize::from(inner.height.saturating_sub(1));
    let cursor = model.selected(view, len);
    let first = offset(cursor, height);
    let rows: Vec<Row<'_>> = (first..(first + height).min(len))
        .map(|i| {
            let style = if Some(i) == cursor {
                theme.selected()
            } else {
                Style::new()
            };
            Row::new(row(i)).style(style)
        })
        .collect();
    let header = Row::new(header.iter().copied()).style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(2),
        inner,
    );
    if len == 0 {
        let y = inner.y + 1;
        if y < inner.y + inner.height {
            let empty = if model.filter.is_empty() {
                " none"
            } else {
                " nothing matches the filter (esc clears it)"
            };
            frame.render_widget(
                Paragraph::new(Span::styled(empty, theme.dim())),
                Rect::new(inner.x, y, inner.width, 1),
            );
        }
    }
}

/// `:pods`: NAMESPACE NAME READY STATUS RESTARTS NODE.
pub(super) fn pods(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.pod_rows();
    // RESTARTS is as wide as its longest text, as kubectl's columns are: `3 (5m ago)` is only
    // written for pods that restarted and say when.
    let restarts_width = rows
        .iter()
        .filter(|p| p.restarts != 0 && p.last_restart.is_some())
        .map(|p| p.restarts_text(model.now).len() as u16)
        .fold(8, u16::max);
    list(
        frame,
        model,
        View::Pods,
        area,
        theme,
        "pods",
        &["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "NODE"],
        &[
            Constraint::Max(12),
            Constraint::Fill(1),
            Constraint::Length(5),
            Constraint::Length(16),
            Constraint::Length(restarts_width),
            Constraint::Length(10),
        ],
        rows.len(),
        |i| {
            let p = rows[i];
            let class = PodClass::of(p);
            vec![
                Cell::from(p.namespace.clone()),
                Cell::from(p.name.clone()),
                Cell::from(format!("{}/{}", p.ready, p.containers)),
                Cell::from(Span::styled(p.status.clone(), theme.pod(class))),
                Cell::from(p.restarts_text(model.now)),
                Cell::from(p.node.clone().unwrap_or_else(|| "<none>".to_owned())),
            ]
        },
    );
}

/// `:deploy`: NAMESPACE NAME READY UP-TO-DATE AVAILABLE.
pub(super) fn deployments(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.deployment_rows();
    list(
        frame,
        model,
        View::Deployments,
        area,
        theme,
        "deployments",
        &["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE"],
        &[
            Constraint::Max(12),
            Constraint::Fill(2),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(9),
        ],
        rows.len(),
        |i| {
            let d = rows[i];
            let ready = if d.ready >= d.desired {
                theme.fg(Color::Green)
            } else {
                theme.fg(Color::Yellow)
            };
            vec![
                Cell::from(d.namespace.clone()),
                Cell::from(d.name.clone()),
                Cell::from(Span::styled(format!("{}/{}", d.ready, d.desired), ready)),
                Cell::from(d.updated.to_string()),
                Cell::from(d.available.to_string()),
            ]
        },
    );
}

/// `:sts`, `:rc`, `:cj`, `:pdb`: NAMESPACE NAME and the kind's `kubectl get` columns, the ones
/// that say whether it is as wanted coloured by it.
pub(super) fn workloads(
    frame: &mut Frame<'_>,
    model: &Model,
    view: View,
    area: Rect,
    theme: Theme,
) {
    let rows = model.workload_rows(view);
    let columns = view.workload_columns();
    let health_columns: &[usize] = match view {
        View::Budgets => &[0, 2],
        View::ReplicationControllers => &[2],
        _ => &[0],
    };
    let mut headers = vec!["NAMESPACE", "NAME"];
    headers.extend_from_slice(columns);
    let mut widths = vec![Constraint::Max(12), Constraint::Fill(2)];
    widths.extend(
        columns
            .iter()
            .map(|c| Constraint::Length(c.len().max(9) as u16)),
    );
    let title = match view {
        View::StatefulSets => "statefulsets",
        View::ReplicationControllers => "replicationcontrollers",
        View::CronJobs => "cronjobs",
        _ => "poddisruptionbudgets",
    };
    list(
        frame,
        model,
        view,
        area,
        theme,
        title,
        &headers,
        &widths,
        rows.len(),
        |i| {
            let w = rows[i];
            let style = if w.healthy {
                theme.fg(Color::Green)
            } else {
                theme.fg(Color::Yellow)
            };
            let mut cells = vec![Cell::from(w.namespace.clone()), Cell::from(w.name.clone())];
            cells.extend(w.columns.iter().enumerate().map(|(j, c)| {
                if health_columns.contains(&j) {
                    Cell::from(Span::styled(c.clone(), style))
                } else {
                    Cell::from(c.clone())
                }
            }));
            cells
        },
    );
}

/// `:nodes`: NAME STATUS TAINTS RUNTIME KUBELET.
pub(super) fn nodes(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.node_rows();
    list(
        frame,
        model,
        View::Nodes,
        area,
        theme,
        "nodes",
        &["NAME", "STATUS", "TAINTS", "RUNTIME", "KUBELET"],
        &[
            Constraint::Length(10),
            Constraint::Length(27),
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Length(8),
        ],
        rows.len(),
        |i| {
            let n = rows[i];
            let (status, style) = match n.ready.as_str() {
                "True" => ("Ready", theme.fg(Color::Green)),
                "False" => ("NotReady", theme.bad()),
                _ => ("Unknown", theme.fg(Color::Yellow)),
            };
            let status = if n.unschedulable {
                format!("{status},SchedulingDisabled")
            } else {
                status.to_owned()
            };
            let running = model.kubelet_running(&n.name);
            vec![
                Cell::from(n.name.clone()),
                Cell::from(Span::styled(status, style)),
                Cell::from(if n.taints.is_empty() {
                    "<none>".to_owned()
                } else {
                    n.taints.join(",")
                }),
                Cell::from(n.runtime.clone()),
                Cell::from(Span::styled(
                    if running { "running" } else { "stopped" },
                    if running { Style::new() } else { theme.bad() },
                )),
            ]
        },
    );
}

/// `:events`: LAST TYPE REASON OBJECT MESSAGE, oldest first.
pub(super) fn events(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.event_rows();
    list(
        frame,
        model,
        View::Events,
        area,
        theme,
        "events",
        &["LAST", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        &[
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(16),
            Constraint::Fill(1),
            Constraint::Fill(2),
        ],
        rows.len(),
        |i| {
            let e = rows[i];
            let type_style = if e.type_ == "Warning" {
                theme.fg(Color::Yellow)
            } else {
                Style::new()
            };
            vec![
                Cell::from(age(&e.last, model.now)),
                Cell::from(Span::styled(e.type_.clone(), type_style)),
                Cell::from(e.reason.clone()),
                Cell::from(e.object.clone()),
                Cell::from(e.message.clone()),
            ]
        },
    );
}

/// How long ago `time` (RFC 3339) was, as kubectl prints ages (`45s`, `3m`, `5h`, `2d`); the
/// clock time when the dashboard has no tick yet.
pub(super) fn age(time: &str, now: Option<jiff::Timestamp>) -> String {
    let (Some(now), Ok(then)) = (now, time.parse::<jiff::Timestamp>()) else {
        return super::timeline::clock(time)
            .get(..8)
            .unwrap_or_default()
            .to_owned();
    };
    let s = (now.as_second() - then.as_second()).max(0);
    match s {
        0..120 => format!("{s}s"),
        120..3600 => format!("{}m", s / 60),
        3600..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}
