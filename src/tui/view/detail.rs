//! One object up close (its status, the scheduler's decision for a pod, what the store holds
//! and the watch events it produced, its Events and its YAML, as one scrollable page), a pod's
//! logs, and the help with every key.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use serde_json::Value;

use super::{Theme, block, fit};
use crate::tui::model::{HELP, Model, object_words};

/// The first line to show of `total` lines in `height`, for a scroll position (`usize::MAX`:
/// the end).
fn scroll_to(scroll: usize, total: usize, height: usize) -> u16 {
    let last = total.saturating_sub(height);
    u16::try_from(scroll.min(last)).unwrap_or(u16::MAX)
}

fn heading(text: impl Into<String>, theme: Theme) -> Line<'static> {
    Line::styled(text.into(), theme.heading())
}

/// The status summary of the object, from its YAML's `status` (phase, conditions, replicas).
fn status_lines(model: &Model, yaml: &str, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let Some((kind, ns, name)) = &model.detail_target else {
        return lines;
    };
    let key = format!("{ns}/{name}");
    match kind.as_str() {
        "Pod" => {
            if let Some(p) = model.pods.get(&key) {
                lines.push(Line::from(vec![
                    Span::raw(format!("{:10}", "status")),
                    Span::styled(
                        p.status.clone(),
                        theme.pod(crate::tui::model::PodClass::of(p)),
                    ),
                    Span::raw(format!(
                        "   ready {}/{}   restarts {}   node {}",
                        p.ready,
                        p.containers,
                        p.restarts_text(model.now),
                        p.node.as_deref().unwrap_or("<none>")
                    )),
                ]));
                if !p.owner.is_empty() {
                    lines.push(Line::raw(format!("{:10}{}", "story", p.owner)));
                }
            }
        }
        "Deployment" => {
            if let Some(d) = model.deployments.get(&key) {
                lines.push(Line::raw(format!(
                    "{:10}{}/{} ready   {} up-to-date   {} available",
                    "replicas", d.ready, d.desired, d.updated, d.available
                )));
            }
        }
        "Node" => {
            if let Some(n) = model.nodes.get(name) {
                lines.push(Line::raw(format!(
                    "{:10}Ready={}{}   kubelet {}",
                    "status",
                    n.ready,
                    if n.unschedulable { "   cordoned" } else { "" },
                    if model.kubelet_running(name) {
                        "running"
                    } else {
                        "stopped"
                    }
                )));
            }
        }
        _ => {}
    }
    // Conditions as the object's YAML has them (`- type: Ready` / `status: "True"`).
    let mut in_conditions = false;
    let mut current: Option<String> = None;
    for l in yaml.lines() {
        let t = l.trim_start();
        if t.starts_with("conditions:") {
            in_conditions = true;
            continue;
        }
        if in_conditions {
            if !t.starts_with('-') && !l.starts_with("  ") {
                break;
            }
            if let Some(ty) = t
                .strip_prefix("- type: ")
                .or_else(|| t.strip_prefix("type: "))
            {
                current = Some(ty.trim_matches('"').to_owned());
            }
            if let (Some(ty), Some(st)) = (&current, t.strip_prefix("status: ")) {
                let st = st.trim_matches(|c| c == '"' || c == '\'').to_owned();
                let style = if st == "True" {
                    theme.fg(Color::Green)
                } else {
                    theme.fg(Color::Yellow)
                };
                lines.push(Line::from(vec![
                    Span::raw(format!("{:10}{ty}=", "condition")),
                    Span::styled(st, style),
                ]));
                current = None;
            }
        }
    }
    lines
}

/// The scheduler's decision as a table: per node passed or rejected (plugin: reason), per
/// plugin raw/normalised score, the total, the winner marked.
fn decision_lines(decision: &Value, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let chosen = decision["chosen"].as_str().unwrap_or_default().to_owned();
    lines.push(heading(
        format!(
            "scheduler's decision (attempt {}): {} nodes, {} evaluated, {} feasible{}",
            decision["attempt"].as_u64().unwrap_or(0),
            decision["nodes"].as_u64().unwrap_or(0),
            decision["evaluated"].as_u64().unwrap_or(0),
            decision["feasible"].as_u64().unwrap_or(0),
            if chosen.is_empty() {
                String::new()
            } else {
                format!(" -> {chosen}")
            }
        ),
        theme,
    ));
    let empty = serde_json::Map::new();
    let scores = decision["scores"].as_object().unwrap_or(&empty);
    let rejected = decision["rejected"].as_object().unwrap_or(&empty);
    let totals = decision["totals"].as_object().unwrap_or(&empty);
    let mut plugins: Vec<&str> = scores
        .values()
        .filter_map(|s| s.as_object())
        .flat_map(|s| s.keys().map(String::as_str))
        .collect();
    plugins.sort_unstable();
    plugins.dedup();
    let mut nodes: Vec<&str> = scores
        .keys()
        .chain(rejected.keys())
        .chain(totals.keys())
        .map(String::as_str)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let node_width = nodes.iter().map(|n| n.len()).max().unwrap_or(4).max(4) + 2;
    let plugin_widths: Vec<usize> = plugins.iter().map(|p| p.len().max(7)).collect();
    let mut header = format!("{:node_width$}  {:8}", "NODE", "RESULT");
    for (p, w) in plugins.iter().zip(&plugin_widths) {
        header.push_str(&format!("  {p:>w$}"));
    }
    header.push_str("  TOTAL");
    lines.push(Line::styled(
        header,
        Style::new().add_modifier(Modifier::BOLD),
    ));
    if !plugins.is_empty() {
        let mut sub = format!("{:node_width$}  {:8}", "", "");
        for w in &plugin_widths {
            sub.push_str(&format!("  {:>w$}", "raw/norm"));
        }
        lines.push(Line::styled(sub, theme.dim()));
    }
    for node in nodes {
        let mark = if node == chosen { " *" } else { "" };
        let name = format!("{node}{mark}");
        if let Some(r) = rejected.get(node) {
            let reasons = r["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .or_else(|| r["reason"].as_str().map(str::to_owned))
                .unwrap_or_default();
            lines.push(Line::from(vec![
                Span::raw(format!("{name:node_width$}  ")),
                Span::styled(
                    format!(
                        "rejected by {}: {reasons}",
                        r["plugin"].as_str().unwrap_or("?")
                    ),
                    theme.fg(Color::Red),
                ),
            ]));
            continue;
        }
        let style = if node == chosen {
            theme.fg(Color::Green).add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        let mut row = format!("{name:node_width$}  {:8}", "passed");
        for (p, w) in plugins.iter().zip(&plugin_widths) {
            let s = &scores[node][*p];
            let cell = if s.is_null() {
                "-".to_owned()
            } else {
                format!(
                    "{}/{}",
                    s["raw"].as_i64().unwrap_or(0),
                    s["normalized"].as_i64().unwrap_or(0)
                )
            };
            row.push_str(&format!("  {cell:>w$}"));
        }
        row.push_str(&format!(
            "  {:>5}",
            totals
                .get(node)
                .and_then(Value::as_i64)
                .map_or("-".to_owned(), |t| t.to_string())
        ));
        lines.push(Line::styled(row, style));
    }
    if let Some(message) = decision["message"].as_str() {
        lines.push(Line::styled(message.to_owned(), theme.fg(Color::Red)));
    }
    lines
}

/// `text` as lines of at most `width` columns, broken between words, the first after `label`
/// and the others indented as far.
fn wrapped(label: &str, text: &str, width: usize, style: Style) -> Vec<Line<'static>> {
    let indent = label.chars().count();
    let room = width.saturating_sub(indent).max(20);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let used = line.chars().count();
        if used > 0 && used + 1 + word.chars().count() > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
        .into_iter()
        .enumerate()
        .map(|(n, text)| {
            let lead = if n == 0 {
                label.to_owned()
            } else {
                " ".repeat(indent)
            };
            Line::from(vec![
                Span::styled(lead, Style::new().add_modifier(Modifier::BOLD)),
                Span::styled(text, style),
            ])
        })
        .collect()
}

/// The hop the detail was opened from: when, who to whom, what, why it happens, and for a
/// scheduling hop what the scheduler found on the chosen node.
fn hop_lines(model: &Model, theme: Theme) -> Vec<Line<'static>> {
    let Some(hop) = &model.detail_hop else {
        return Vec::new();
    };
    let width = usize::from(model.size.0.saturating_sub(2));
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{:10}", "hop"),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!(
                "{}  {} -> {}  {}  {}",
                super::timeline::clock(&hop.time),
                hop.from,
                hop.to,
                hop.verb,
                object_words(&hop.kind, &hop.namespace, &hop.name)
            ),
            theme.heading(),
        ),
    ])];
    if !hop.detail.is_empty() {
        lines.extend(wrapped(&" ".repeat(10), &hop.detail, width, theme.dim()));
    }
    lines.extend(wrapped(
        &format!("{:10}", "why"),
        &crate::flow::explain::why(hop),
        width,
        Style::new(),
    ));
    if let Some(found) = model
        .decision_of(hop)
        .and_then(|d| crate::flow::explain::decision(&d))
    {
        lines.extend(wrapped(
            &format!("{:10}", "decision"),
            &found,
            width,
            theme.fg(Color::Green),
        ));
    }
    lines.push(Line::raw(""));
    lines
}

/// The detail page's lines.
pub(super) fn page(model: &Model, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = hop_lines(model, theme);
    let Some((kind, ns, name)) = &model.detail_target else {
        if lines.is_empty() {
            lines.push(Line::styled("nothing selected", theme.dim()));
        }
        return lines;
    };
    let Some(detail) = &model.detail else {
        lines.push(Line::styled(
            format!("fetching {} ...", object_words(kind, ns, name)),
            theme.dim(),
        ));
        return lines;
    };
    lines.extend(status_lines(model, &detail.yaml, theme));
    if let Some(decision) = &detail.decision {
        lines.push(Line::raw(""));
        lines.extend(decision_lines(decision, theme));
    }
    lines.push(Line::raw(""));
    lines.push(heading("store", theme));
    match &detail.store {
        Some(s) => {
            lines.push(Line::raw(format!("key             {}", s.key)));
            lines.push(Line::raw(format!(
                "createRevision  {}   modRevision  {}   version  {}",
                s.create_revision,
                s.mod_revision,
                s.version
                    .map_or_else(|| "? (compacted)".to_owned(), |v| v.to_string())
            )));
        }
        None => lines.push(Line::styled(
            "(the store view is not available)",
            theme.dim(),
        )),
    }
    let watches: Vec<Line<'static>> = model
        .events
        .iter()
        .filter(|e| {
            e.verb.starts_with("WATCH ") && e.kind == *kind && e.namespace == *ns && e.name == *name
        })
        .map(|e| {
            Line::raw(format!(
                "  {}  {:>6}  {:16}  {} -> {}",
                super::timeline::clock(&e.time),
                e.revision.map(|r| r.to_string()).unwrap_or_default(),
                e.verb,
                e.from,
                e.to
            ))
        })
        .collect();
    lines.push(Line::raw(format!(
        "watch events it produced: {}",
        watches.len()
    )));
    lines.extend(watches);
    lines.push(Line::raw(""));
    lines.push(heading(format!("events ({})", detail.events.len()), theme));
    for e in &detail.events {
        let style = if e.type_ == "Warning" {
            theme.fg(Color::Yellow)
        } else {
            Style::new()
        };
        lines.push(Line::styled(
            format!(
                "{:>5}  {:7}  {:16}  {}",
                super::lists::age(&e.last, model.now),
                e.type_,
                fit(&e.reason, 16),
                e.message
            ),
            style,
        ));
    }
    lines.push(Line::raw(""));
    lines.push(heading("yaml", theme));
    lines.extend(detail.yaml.lines().map(|l| Line::raw(l.to_owned())));
    lines
}

/// The detail view.
pub(super) fn draw(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let title = match (&model.detail_target, &model.detail_hop) {
        (Some((k, ns, n)), _) => format!(
            " {} (j/k scroll, l logs, esc back) ",
            object_words(k, ns, n)
        ),
        (None, Some(hop)) => format!(" hop {} {} (esc back) ", hop.seq, hop.verb),
        (None, None) => String::new(),
    };
    let b = block(title, theme);
    let inner = b.inner(area);
    let lines = page(model, theme);
    let top = scroll_to(model.scroll, lines.len(), usize::from(inner.height));
    frame.render_widget(Paragraph::new(lines).block(b).scroll((top, 0)), area);
}

/// The logs view.
pub(super) fn logs(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let (title, text) = match (&model.logs, &model.detail_target) {
        (Some((ns, name, text)), _) => (format!(" logs {ns}/{name} "), Some(text)),
        (None, Some((_, ns, name))) => (format!(" logs {ns}/{name} "), None),
        (None, None) => (" logs ".to_owned(), None),
    };
    let b = block(title, theme);
    let inner = b.inner(area);
    let height = usize::from(inner.height);
    let lines: Vec<Line<'_>> = match text {
        Some(text) if text.is_empty() => vec![Line::styled("(no output)", theme.dim())],
        Some(text) => {
            let total = text.lines().count();
            let top = usize::from(scroll_to(model.scroll, total, height));
            text.lines().skip(top).take(height).map(Line::raw).collect()
        }
        None => vec![Line::styled("fetching logs ...", theme.dim())],
    };
    frame.render_widget(Paragraph::new(lines).block(b), area);
}

/// The help: every key.
pub(super) fn help(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let b = block(" help (esc back) ".to_owned(), theme);
    let inner = b.inner(area);
    let width = HELP.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {key:width$}  "),
                    theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    let top = scroll_to(model.scroll, lines.len(), usize::from(inner.height));
    frame.render_widget(Paragraph::new(lines).block(b).scroll((top, 0)), area);
}
