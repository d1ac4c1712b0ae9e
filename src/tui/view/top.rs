//! `:top` (key `t`): live CPU and memory as pictures. Each node gets a CPU and a memory bar
//! against its allocatable and a sparkline of its recent scrapes; each pod a CPU and a memory
//! bar with its request (`│`) and limit (`┃`) marked on it, green within the request, yellow
//! past it, red past the limit (a pod that asks for nothing is drawn against its node's
//! allocatable); and below, the HorizontalPodAutoscaler controller's recent decisions, from its
//! `DECIDE` and `SCALE` hops. Usage is what the metrics API last answered; when it does not
//! answer (the metrics server stopped) the titles say so and the bars show the last answer.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, LineGauge, Paragraph, Sparkline};

use super::lists::age;
use super::{Theme, block, fit, offset};
use crate::tui::metrics::{Decision, MetricsState, Resource, Series, Usage};
use crate::tui::model::{Model, PodRow, View};

/// The width of a node's name column.
const NODE_NAME: u16 = 14;

/// The width of an amount's text after a bar (`400m/2`, `64Mi/7.8Gi`).
const AMOUNT: u16 = 12;

/// The most replicas a decision draws as dots.
const DOTS: i64 = 16;

/// Draws `:top` into `area`.
pub(super) fn draw(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let metrics = &model.metrics;
    let node_lines = (model.nodes.len() as u16 * 2).max(1);
    let hpa_lines = hpa_lines(model).max(1);
    let nodes_h = (node_lines + 2)
        .min(area.height * 40 / 100)
        .max(area.height.min(4));
    let hpa_h = (hpa_lines + 2).min(area.height * 30 / 100).max(3);
    let [nodes, pods, hpas] = Layout::vertical([
        Constraint::Length(nodes_h),
        Constraint::Min(3),
        Constraint::Length(hpa_h),
    ])
    .areas(area);
    let stale = match &metrics.state {
        MetricsState::Serving => String::new(),
        MetricsState::Waiting => " · waiting for the metrics API".to_owned(),
        MetricsState::Unavailable(_) => " · metrics API unavailable: last answer".to_owned(),
    };
    let scrape = metrics.scrape.as_ref().map(|s| {
        let failed = if s.failed.is_empty() {
            String::new()
        } else {
            format!(", {} failed", s.failed.len())
        };
        format!(
            " · metrics-server scraped {} nodes, {} pods{failed} {} ",
            s.nodes,
            s.pods,
            when(&s.time, model)
        )
    });
    let shown = usize::from(nodes.height.saturating_sub(2) / 2);
    let hidden = model.nodes.len().saturating_sub(shown.max(1));
    let more = if hidden > 0 {
        format!(" (+{hidden} more)")
    } else {
        String::new()
    };
    let mut b = block(
        format!(
            " nodes{more} · cpu and memory of allocatable{stale}{} ",
            scrape.as_deref().unwrap_or("")
        ),
        theme,
    );
    if let MetricsState::Unavailable(why) = &metrics.state {
        b = b.title_bottom(Line::styled(format!(" {why} "), theme.fg(Color::Yellow)));
    }
    draw_nodes(frame, model, b, nodes, theme);
    draw_pods(frame, model, pods, theme);
    draw_autoscalers(frame, model, hpas, theme);
}

/// `time` as an age (`12s ago`), or as a clock time without a tick.
fn when(time: &str, model: &Model) -> String {
    match model.now {
        Some(_) => format!("{} ago", age(time, model.now)),
        None => format!("at {}", age(time, model.now)),
    }
}

/// A usage ratio's colour: green, yellow from 70 %, red from 90 %.
fn load_style(ratio: f64, theme: Theme) -> Style {
    if ratio >= 0.9 {
        theme.bad()
    } else if ratio >= 0.7 {
        theme.fg(Color::Yellow)
    } else {
        theme.fg(Color::Green)
    }
}

/// A bar: `label` then cells filled to `ratio` in `style` (`█`, and `░` for the rest, so it
/// reads without colour too).
fn bar(frame: &mut Frame<'_>, area: Rect, label: &str, ratio: f64, style: Style, theme: Theme) {
    if area.width == 0 {
        return;
    }
    let gauge = LineGauge::default()
        .label(Span::styled(label.to_owned(), theme.dim()))
        .ratio(ratio.clamp(0.0, 1.0))
        .filled_symbol("█")
        .unfilled_symbol("░")
        .filled_style(style)
        .unfilled_style(theme.dim());
    frame.render_widget(&gauge, area);
}

/// A sparkline of `values` scaled to `max`, newest at the right.
fn spark(frame: &mut Frame<'_>, area: Rect, values: &[u64], max: u64, style: Style) {
    if area.width == 0 || values.is_empty() {
        return;
    }
    let shown = &values[values.len().saturating_sub(usize::from(area.width))..];
    let width = shown.len() as u16;
    let area = Rect {
        x: area.x + area.width - width,
        width,
        ..area
    };
    frame.render_widget(
        Sparkline::default()
            .data(shown)
            .max(max.max(1))
            .style(style),
        area,
    );
}

/// The values of `resource` in `series`' history.
fn history(series: &Series, resource: Resource) -> Vec<u64> {
    series
        .history
        .iter()
        .map(|u| resource.of(*u).max(0) as u64)
        .collect()
}

fn draw_nodes(frame: &mut Frame<'_>, model: &Model, b: Block<'_>, area: Rect, theme: Theme) {
    let inner = b.inner(area);
    frame.render_widget(b, area);
    if model.nodes.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(" no nodes", theme.dim())),
            inner,
        );
        return;
    }
    let width = inner.width;
    let name_w = NODE_NAME.min(width);
    let rest = width.saturating_sub(name_w + AMOUNT + 1);
    let spark_w = if rest >= 40 { (rest / 3).min(30) } else { 0 };
    let bar_w = rest.saturating_sub(spark_w + u16::from(spark_w > 0));
    let rows = usize::from(inner.height / 2);
    for (i, (name, _)) in model.nodes.iter().take(rows).enumerate() {
        let y = inner.y + 2 * i as u16;
        let series = model.metrics.nodes.get(name);
        let alloc = model.metrics.allocatable.get(name).copied();
        let running = model.kubelet_running(name);
        let name_style = if running {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            theme.dim()
        };
        frame.render_widget(
            Paragraph::new(Span::styled(
                fit(&format!(" {name}"), name_w.into()),
                name_style,
            )),
            Rect::new(inner.x, y, name_w, 1),
        );
        for (row, resource, label) in [(0, Resource::Cpu, "cpu"), (1, Resource::Memory, "mem")] {
            let y = y + row;
            if y >= inner.y + inner.height {
                break;
            }
            let x = inner.x + name_w;
            let Some(series) = series else {
                if row == 0 {
                    frame.render_widget(
                        Paragraph::new(Span::styled("no metrics for this node yet", theme.dim())),
                        Rect::new(x, y, width - name_w, 1),
                    );
                }
                continue;
            };
            let used = series.latest().map_or(0, |u| resource.of(u));
            let total = alloc.map_or(0, |a| resource.of(a));
            let ratio = if total > 0 {
                used as f64 / total as f64
            } else {
                0.0
            };
            let style = load_style(ratio, theme);
            bar(frame, Rect::new(x, y, bar_w, 1), label, ratio, style, theme);
            let amount = if total > 0 {
                format!(" {}/{}", resource.text(used), resource.text(total))
            } else {
                format!(" {}", resource.text(used))
            };
            frame.render_widget(
                Paragraph::new(fit(&amount, AMOUNT.into())),
                Rect::new(x + bar_w, y, AMOUNT.min(width - name_w - bar_w), 1),
            );
            if spark_w > 0 {
                let values = history(series, resource);
                let max = if total > 0 {
                    total as u64
                } else {
                    values.iter().copied().max().unwrap_or(1)
                };
                spark(
                    frame,
                    Rect::new(x + bar_w + AMOUNT + 1, y, spark_w, 1),
                    &values,
                    max,
                    style,
                );
            }
        }
    }
}

/// What a pod's bar of `resource` is drawn against, and its request and limit: the limit (or
/// twice the request) when it set them, else its node's allocatable.
fn pod_scale(
    model: &Model,
    pod: &PodRow,
    resource: Resource,
    used: i64,
) -> (i64, Option<i64>, Option<i64>) {
    let (request, limit) = model
        .metrics
        .resources
        .get(&format!("{}/{}", pod.namespace, pod.name))
        .map_or((None, None), |r| r.of(resource));
    let node = pod
        .node
        .as_ref()
        .and_then(|n| model.metrics.allocatable.get(n))
        .map_or(0, |a| resource.of(*a));
    let scale = match (request, limit) {
        (_, Some(limit)) => limit.max(used),
        (Some(request), None) => (request * 2).max(used),
        (None, None) if node > 0 => node.max(used),
        (None, None) => (used * 2).max(1),
    };
    (scale.max(1), request, limit)
}

/// A pod's colour: green within its request, yellow past it, red past its limit.
fn pod_style(used: i64, request: Option<i64>, limit: Option<i64>, theme: Theme) -> Style {
    if limit.is_some_and(|l| used > l) {
        theme.bad()
    } else if request.is_some_and(|r| used > r) {
        theme.fg(Color::Yellow)
    } else {
        theme.fg(Color::Green)
    }
}

/// One pod's bar of `resource` with its request and limit marked.
#[allow(clippy::too_many_arguments)]
fn pod_bar(
    frame: &mut Frame<'_>,
    model: &Model,
    pod: &PodRow,
    usage: Usage,
    resource: Resource,
    label: &str,
    area: Rect,
    theme: Theme,
) {
    let used = resource.of(usage);
    let (scale, request, limit) = pod_scale(model, pod, resource, used);
    let style = pod_style(used, request, limit, theme);
    bar(frame, area, label, used as f64 / scale as f64, style, theme);
    // LineGauge draws the label, a space, then the cells.
    let start = area.x + label.chars().count() as u16 + 1;
    let cells = (area.x + area.width).saturating_sub(start);
    if cells == 0 {
        return;
    }
    let filled = (f64::from(cells) * (used as f64 / scale as f64).clamp(0.0, 1.0)).floor() as u16;
    for (mark, at) in [("│", request), ("┃", limit)] {
        let Some(at) = at else { continue };
        let cell = ((f64::from(cells) * at as f64 / scale as f64).floor() as u16).min(cells - 1);
        let mark_style = if cell < filled {
            // Inside the fill: the mark cut out of it.
            if theme.mono {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
                    .fg(Color::Black)
                    .bg(style.fg.unwrap_or(Color::Reset))
            }
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        let position = (start + cell, area.y);
        if let Some(c) = frame.buffer_mut().cell_mut(position) {
            c.set_symbol(mark).set_style(mark_style);
        }
    }
}

fn draw_pods(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.pod_rows();
    let filter = if model.filter.is_empty() {
        String::new()
    } else {
        format!(" /{}", model.filter)
    };
    let cursor = model.selected(View::Top, rows.len());
    let mut b = block(
        format!(
            " pods({}){filter} · █ usage  │ request  ┃ limit ",
            rows.len()
        ),
        theme,
    );
    if let Some(pod) = cursor.map(|i| rows[i]) {
        b = b.title_bottom(Line::styled(selected_words(model, pod), theme.dim()));
    }
    let inner = b.inner(area);
    frame.render_widget(b, area);
    if rows.is_empty() {
        let empty = if model.filter.is_empty() {
            " no pods"
        } else {
            " nothing matches the filter (esc clears it)"
        };
        frame.render_widget(Paragraph::new(Span::styled(empty, theme.dim())), inner);
        return;
    }
    let height = usize::from(inner.height);
    let first = offset(cursor, height);
    let width = inner.width;
    let name_w = (width / 4).clamp(8.min(width), 30);
    let rest = width.saturating_sub(name_w);
    let spark_w = if rest >= 70 { (rest / 5).min(30) } else { 0 };
    let per = rest.saturating_sub(spark_w + u16::from(spark_w > 0)) / 2;
    let amount_w = 7.min(per);
    let bar_w = per.saturating_sub(amount_w);
    for (row, i) in (first..(first + height).min(rows.len())).enumerate() {
        let pod = rows[i];
        let y = inner.y + row as u16;
        let selected = Some(i) == cursor;
        let name_style = if selected {
            theme.selected()
        } else {
            Style::new()
        };
        let name = if pod.namespace == "default" {
            format!(" {}", pod.name)
        } else {
            format!(" {}/{}", pod.namespace, pod.name)
        };
        frame.render_widget(
            Paragraph::new(Span::styled(fit(&name, name_w.into()), name_style)),
            Rect::new(inner.x, y, name_w, 1),
        );
        let x = inner.x + name_w;
        let series = model
            .metrics
            .pods
            .get(&format!("{}/{}", pod.namespace, pod.name));
        let Some((series, usage)) = series.and_then(|s| Some((s, s.latest()?))) else {
            let why = if pod.phase == "Running" {
                " no metrics yet (scraped every resolution)"
            } else {
                " no metrics: not running"
            };
            frame.render_widget(
                Paragraph::new(Span::styled(why, theme.dim())),
                Rect::new(x, y, rest, 1),
            );
            continue;
        };
        for (n, resource, label) in [(0, Resource::Cpu, " cpu"), (1, Resource::Memory, " mem")] {
            let bx = x + n * per;
            pod_bar(
                frame,
                model,
                pod,
                usage,
                resource,
                label,
                Rect::new(bx, y, bar_w, 1),
                theme,
            );
            frame.render_widget(
                Paragraph::new(fit(
                    &format!(" {}", resource.text(resource.of(usage))),
                    amount_w.into(),
                )),
                Rect::new(bx + bar_w, y, amount_w, 1),
            );
        }
        if spark_w > 0 {
            let values = history(series, Resource::Cpu);
            let (scale, request, limit) = pod_scale(model, pod, Resource::Cpu, usage.cpu);
            spark(
                frame,
                Rect::new(x + 2 * per + 1, y, spark_w, 1),
                &values,
                scale as u64,
                pod_style(usage.cpu, request, limit, theme),
            );
        }
    }
}

/// The selected pod's numbers, for the pods block's bottom line.
fn selected_words(model: &Model, pod: &PodRow) -> String {
    let key = format!("{}/{}", pod.namespace, pod.name);
    let resources = model
        .metrics
        .resources
        .get(&key)
        .copied()
        .unwrap_or_default();
    let usage = model.metrics.pods.get(&key).and_then(Series::latest);
    let part = |resource: Resource, name: &str| {
        let (request, limit) = resources.of(resource);
        let used = usage.map_or("-".to_owned(), |u| resource.text(resource.of(u)));
        let show = |v: Option<i64>| v.map_or("none".to_owned(), |v| resource.text(v));
        format!(
            "{name} {used} (request {}, limit {})",
            show(request),
            show(limit)
        )
    };
    format!(
        " {key}: {} · {} ",
        part(Resource::Cpu, "cpu"),
        part(Resource::Memory, "memory")
    )
}

/// How many lines the autoscalers want.
fn hpa_lines(model: &Model) -> u16 {
    model
        .metrics
        .decisions
        .values()
        .map(|d| 1 + d.len() as u16)
        .sum()
}

/// Replicas as dots: those kept, those added (green) and those removed (yellow, hollow).
fn replica_dots(d: &Decision, theme: Theme) -> Vec<Span<'static>> {
    let kept = d.current.min(d.desired).clamp(0, DOTS);
    let all = d.current.max(d.desired).clamp(0, DOTS);
    let mut spans = vec![Span::raw("●".repeat(kept as usize))];
    if d.desired > d.current {
        spans.push(Span::styled(
            "●".repeat((all - kept) as usize),
            theme.fg(Color::Green).add_modifier(Modifier::BOLD),
        ));
    } else {
        spans.push(Span::styled(
            "○".repeat((all - kept) as usize),
            theme.fg(Color::Yellow),
        ));
    }
    if d.current.max(d.desired) > DOTS {
        spans.push(Span::styled("…", theme.dim()));
    }
    spans
}

/// One decision, as a line.
fn decision_line(d: &Decision, model: &Model, theme: Theme) -> Line<'static> {
    let mut spans = vec![Span::styled(
        format!("   {:>9}  ", when(&d.time, model)),
        theme.dim(),
    )];
    if !d.error.is_empty() {
        spans.push(Span::raw(format!("{} → {}  ", d.current, d.desired)));
        spans.push(Span::styled(
            format!("no decision: {}", d.error),
            theme.bad(),
        ));
        return Line::from(spans);
    }
    let (arrow, style) = match d.desired.cmp(&d.current) {
        std::cmp::Ordering::Greater => ("▲", theme.fg(Color::Green).add_modifier(Modifier::BOLD)),
        std::cmp::Ordering::Less => ("▼", theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)),
        std::cmp::Ordering::Equal => ("=", theme.dim()),
    };
    spans.push(Span::styled(
        format!("{:>2} → {:<2} {arrow} ", d.current, d.desired),
        style,
    ));
    spans.extend(replica_dots(d, theme));
    let metric = d.metric.split(" (").next().unwrap_or_default();
    let metric = metric.trim_end_matches(" utilization");
    let metric = metric.trim_end_matches(" resource");
    if !d.value.is_empty() {
        spans.push(Span::raw(format!("  {metric} {} of {}", d.value, d.target)));
    }
    if let Some(p) = d.proposed.filter(|p| *p != d.desired) {
        spans.push(Span::styled(format!("  proposed {p}"), theme.dim()));
    }
    if !d.limit.is_empty() && d.limit != "DesiredWithinRange" {
        spans.push(Span::styled(
            format!("  {}", d.limit),
            theme.fg(Color::Yellow),
        ));
    }
    if d.scaled {
        spans.push(Span::styled(
            "  scaled",
            theme.fg(Color::Green).add_modifier(Modifier::BOLD),
        ));
    }
    if d.repeats > 0 {
        spans.push(Span::styled(format!("  ×{}", d.repeats + 1), theme.dim()));
    }
    Line::from(spans)
}

fn draw_autoscalers(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let mut lines = Vec::new();
    for (key, decisions) in model.metrics.autoscalers() {
        let mut heading = vec![Span::styled(format!(" {key}"), theme.heading())];
        if let Some(last) = decisions.back()
            && let (Some(min), Some(max)) = (last.min, last.max)
        {
            heading.push(Span::styled(format!("  min {min} max {max}"), theme.dim()));
        }
        lines.push(Line::from(heading));
        // Newest first.
        lines.extend(
            decisions
                .iter()
                .rev()
                .map(|d| decision_line(d, model, theme)),
        );
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            " no HorizontalPodAutoscaler decisions seen in the flow yet",
            theme.dim(),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines).block(block(
            " autoscaling · the HPA controller's recent decisions (DECIDE, SCALE) ".to_owned(),
            theme,
        )),
        area,
    );
}
