//! The flow timeline (live, or grouped by story) and the `:store` view of the store's writes.
//! A row reads `HH:MM:SS.mmm  from -> to  VERB  Kind ns/name  rev  detail`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Theme, block, fit, offset};
use crate::flow::FlowEvent;
use crate::tui::model::{Model, TimelineRow, View, object_words};

/// `HH:MM:SS.mmm` of an RFC 3339 time (the flow's times are UTC, microseconds).
pub(super) fn clock(time: &str) -> &str {
    time.get(11..23).unwrap_or(time)
}

/// Column widths, from the rows drawn.
struct Widths {
    /// Columns are two spaces apart, or one on a narrow terminal.
    gap: usize,
    hop: usize,
    verb: usize,
    object: usize,
    rev: usize,
}

impl Widths {
    fn of<'a>(events: impl Iterator<Item = &'a FlowEvent>, width: u16) -> Widths {
        let mut w = Widths {
            gap: if width < 100 { 1 } else { 2 },
            hop: 0,
            verb: 0,
            object: 0,
            rev: 0,
        };
        for e in events {
            w.hop = w.hop.max(e.from.len() + 4 + e.to.len());
            w.verb = w.verb.max(e.verb.len());
            w.object = w
                .object
                .max(object_words(&e.kind, &e.namespace, &e.name).chars().count());
            w.rev = w.rev.max(e.revision.map_or(0, |r| r.to_string().len()));
        }
        w.hop = w.hop.min(34);
        w.verb = w.verb.min(16);
        // The object gets what the time, hop and verb leave, at least 12 columns.
        let left = usize::from(width).saturating_sub(12 + w.hop + w.verb + 3 * w.gap);
        w.object = w.object.min(40).min(left.max(12));
        w
    }
}

/// The event's object in `width` columns: `Kind ns/name`; on a narrow terminal `Kind name`,
/// then `Kind …` and the end of the name (where generated names differ).
pub(super) fn fit_object(e: &FlowEvent, width: usize) -> String {
    let full = object_words(&e.kind, &e.namespace, &e.name);
    if full.chars().count() <= width || e.name.is_empty() {
        return fit(&full, width);
    }
    let short = object_words(&e.kind, "", &e.name);
    if short.chars().count() <= width {
        return fit(&short, width);
    }
    let keep = width.saturating_sub(e.kind.chars().count() + 2);
    if keep < 4 {
        return fit(&short, width);
    }
    let tail: String = e.name.chars().skip(e.name.chars().count() - keep).collect();
    fit(&format!("{} …{tail}", e.kind), width)
}

/// One flow event as a timeline row.
fn event_line(e: &FlowEvent, w: &Widths, style: Style, theme: Theme) -> Line<'static> {
    let verb_style = if style == Style::new() {
        match e.verb.as_str() {
            v if v.starts_with("WATCH") => theme.fg(Color::Blue),
            "DELETE" | "STOP" | "KILL" => theme.fg(Color::Red),
            "CREATE" | "POST" | "BIND" | "START" => theme.fg(Color::Green),
            _ => theme.fg(Color::Yellow),
        }
    } else {
        style
    };
    let rev = e.revision.map(|r| r.to_string()).unwrap_or_default();
    let gap = " ".repeat(w.gap);
    Line::from(vec![
        Span::styled(format!("{}{gap}", clock(&e.time)), style.patch(theme.dim())),
        Span::styled(
            format!("{}{gap}", fit(&format!("{} -> {}", e.from, e.to), w.hop)),
            style,
        ),
        Span::styled(
            format!("{}{gap}", fit(&e.verb, w.verb)),
            verb_style.add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("{}{gap}", fit_object(e, w.object)), style),
        Span::styled(
            if w.rev > 0 {
                format!("{rev:>width$}{gap}", width = w.rev)
            } else {
                String::new()
            },
            style.patch(theme.fg(Color::Cyan)),
        ),
        Span::styled(e.detail.clone(), style),
    ])
    .style(style)
}

/// Who made a request and which rule allowed it (or why it was refused), from the data the API
/// server puts on a request's hop: `alice [dev system:authenticated]: RBAC: allowed by ...`.
pub(super) fn authorization(e: &FlowEvent) -> Option<String> {
    let data: serde_json::Value = serde_json::from_str(e.data.as_ref()?.get()).ok()?;
    let user = data.get("user")?;
    let name = user["name"].as_str()?;
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(|g| g.as_str()).collect())
        .unwrap_or_default();
    let verdict = if data["allowed"].as_bool() == Some(true) {
        ""
    } else {
        "refused: "
    };
    let reason =
        data["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or(if verdict.is_empty() {
                "allowed"
            } else {
                "no rule allows it"
            });
    Some(format!(" {name} [{}]: {verdict}{reason}", groups.join(" ")))
}

/// The timeline of the home screen and `:flow`.
pub(super) fn draw(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.timeline_rows();
    let shown = rows
        .iter()
        .filter(|r| matches!(r, TimelineRow::Event(_)))
        .count();
    let mode = if model.grouped {
        "by story"
    } else if model.timeline_selected.is_some() {
        "live, paused (end: follow)"
    } else {
        "live"
    };
    let name = if model.view == View::Home {
        "flow"
    } else {
        ":flow"
    };
    let title = format!(" {name} · {mode} · {shown} hops (g: group) ");
    let b = block(title, theme);
    let mut inner = b.inner(area);
    frame.render_widget(b, area);
    let cursor = model.timeline_cursor(&rows);
    // A selected request says who made it and why it was allowed (or refused), on the last line.
    let why = model
        .timeline_selected
        .and(cursor)
        .and_then(|c| match rows.get(c) {
            Some(TimelineRow::Event(i)) => model.events.get(*i).and_then(authorization),
            _ => None,
        });
    if let Some(why) = why
        && inner.height > 2
    {
        inner.height -= 1;
        let line = Rect {
            y: inner.y + inner.height,
            height: 1,
            ..inner
        };
        frame.render_widget(Paragraph::new(Line::styled(why, theme.heading())), line);
    }
    let height = usize::from(inner.height);
    let first = offset(cursor, height);
    let visible = &rows[first.min(rows.len())..(first + height).min(rows.len())];
    // A lesson's hops are marked `▶` in a column of their own.
    let marking = !model.highlight.hops.is_empty();
    let widths = Widths::of(
        visible.iter().filter_map(|r| match r {
            TimelineRow::Event(i) => model.events.get(*i),
            TimelineRow::Story(..) => None,
        }),
        inner.width.saturating_sub(if marking { 2 } else { 0 }),
    );
    let lines: Vec<Line<'_>> = visible
        .iter()
        .enumerate()
        .map(|(n, row)| {
            let style = match row {
                _ if Some(first + n) == cursor => theme.selected(),
                // What the open lesson's step asks the learner to watch.
                TimelineRow::Event(i) if model.highlight.hop(&model.events[*i]) => theme.marked(),
                _ => Style::new(),
            };
            match row {
                TimelineRow::Story(root, count) => {
                    let name = if root.is_empty() { "(no story)" } else { root };
                    Line::from(vec![
                        Span::styled(format!("▾ {name}"), theme.heading()),
                        Span::styled(
                            format!("  {count} {}", if *count == 1 { "hop" } else { "hops" }),
                            theme.dim(),
                        ),
                    ])
                }
                TimelineRow::Event(i) => {
                    let e = &model.events[*i];
                    let marked = marking && model.highlight.hop(e);
                    let style = if marked {
                        style.add_modifier(Modifier::BOLD)
                    } else {
                        style
                    };
                    let mut line = event_line(e, &widths, style, theme);
                    if model.grouped {
                        line.spans.insert(0, Span::raw("  "));
                    }
                    if marked {
                        line.spans.insert(0, Span::styled("▶ ", theme.marked()));
                    } else if marking {
                        line.spans.insert(0, Span::raw("  "));
                    }
                    line
                }
            }
        })
        .collect();
    if lines.is_empty() {
        let empty = if model.filter.is_empty() {
            " no flow events yet: kubectl apply something, or press a to apply a manifest"
        } else {
            " no flow event matches the filter (esc clears it)"
        };
        frame.render_widget(Paragraph::new(Line::styled(empty, theme.dim())), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

/// `:store`: the store's writes from the flow, newest last.
pub(super) fn draw_store(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let rows = model.store_rows();
    let b = block(
        format!(" :store · {} writes (revision, verb, key) ", rows.len()),
        theme,
    );
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let height = usize::from(inner.height.saturating_sub(1));
    let cursor = model.selected(View::Store, rows.len());
    let first = offset(cursor, height);
    let visible = &rows[first.min(rows.len())..(first + height).min(rows.len())];
    let rev_width = visible
        .iter()
        .filter_map(|i| model.events[*i].revision)
        .map(|r| r.to_string().len())
        .max()
        .unwrap_or(0)
        .max(8);
    let mut lines = vec![Line::styled(
        format!(
            "{:rev_width$}  {:12}  {:6}  {:36}  STORY",
            "REVISION", "TIME", "VERB", "OBJECT"
        ),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    for (n, i) in visible.iter().enumerate() {
        let e = &model.events[*i];
        let style = if Some(first + n) == cursor {
            theme.selected()
        } else {
            Style::new()
        };
        let rev = e.revision.map(|r| r.to_string()).unwrap_or_default();
        lines.push(Line::styled(
            format!(
                "{rev:>rev_width$}  {:12}  {:6}  {}  {}",
                clock(&e.time),
                e.verb,
                fit(&object_words(&e.kind, &e.namespace, &e.name), 36),
                e.root
            ),
            style,
        ));
    }
    if rows.is_empty() {
        lines.push(Line::styled("no store writes seen yet", theme.dim()));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_says_who_made_it_and_why_it_was_allowed() {
        let allowed = FlowEvent::new("kubectl", "apiserver", "GET").data(json!({
            "user": {"name": "alice", "groups": ["dev", "system:authenticated"]},
            "allowed": true,
            "reason": "RBAC: allowed by RoleBinding \"dev-edit/team\" of ClusterRole \"edit\" to Group \"dev\"",
        }));
        assert_eq!(
            authorization(&allowed).unwrap(),
            " alice [dev system:authenticated]: RBAC: allowed by RoleBinding \"dev-edit/team\" of ClusterRole \"edit\" to Group \"dev\""
        );
        let refused = FlowEvent::new("kubectl", "apiserver", "FORBIDDEN")
            .data(json!({"user": {"name": "bob", "groups": []}, "allowed": false, "reason": ""}));
        assert_eq!(
            authorization(&refused).unwrap(),
            " bob []: refused: no rule allows it"
        );
        assert_eq!(authorization(&FlowEvent::new("a", "b", "c")), None);
    }
}
