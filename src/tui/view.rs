//! Drawing the [`Model`]: the cluster map, the flow timeline, the lists (`:pods`, `:deploy`,
//! `:nodes`, `:events`, `:svc`, `:store`), `:top`'s usage bars and autoscaling decisions, the
//! detail, help, the lessons (`:learn`, and the open lesson's pane) and the step bar. Pure: the same model draws
//! the same frame, which is what the `TestBackend` snapshot tests rely on. Every view formats
//! only the rows it shows, so 10,000 pods and 5,000 flow events draw as fast as ten.

mod detail;
mod lesson;
mod lists;
mod map;
mod services;
mod timeline;
mod top;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::model::{Model, PodClass, Prompt, View};

/// Colours, or none (`NO_COLOR`): named ANSI colours only, so 16-colour terminals show the same.
#[derive(Clone, Copy)]
struct Theme {
    mono: bool,
}

impl Theme {
    fn of(model: &Model) -> Theme {
        Theme {
            mono: model.monochrome,
        }
    }

    /// Text in `color` (plain in monochrome).
    fn fg(self, color: Color) -> Style {
        if self.mono {
            Style::new()
        } else {
            Style::new().fg(color)
        }
    }

    /// A heading.
    fn heading(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The selected row.
    fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// Something stopped or unimportant.
    fn dim(self) -> Style {
        if self.mono {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new().fg(Color::DarkGray)
        }
    }

    /// A failure.
    fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// What a lesson asks the learner to watch.
    fn marked(self) -> Style {
        self.fg(Color::Cyan)
            .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    /// The component a hop comes from / goes to.
    fn hop(self, from: bool) -> Style {
        let color = if from { Color::Yellow } else { Color::Magenta };
        self.fg(color)
            .add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// A pod's colour on the map.
    fn pod(self, class: PodClass) -> Style {
        match class {
            PodClass::Ready => self.fg(Color::Green),
            PodClass::NotReady => self.fg(Color::Yellow),
            PodClass::Pending => self.fg(Color::Blue),
            PodClass::Failed => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            PodClass::Succeeded => self.dim(),
        }
    }
}

/// The glyph a pod of `class` is drawn with (distinct, so the map reads without colour too).
fn glyph(class: PodClass) -> char {
    match class {
        PodClass::Ready => '●',
        PodClass::NotReady => '◐',
        PodClass::Pending => '○',
        PodClass::Failed => '✖',
        PodClass::Succeeded => '·',
    }
}

/// What a [`PodClass`] is called on the map.
fn class_name(class: PodClass) -> &'static str {
    match class {
        PodClass::Ready => "ready",
        PodClass::NotReady => "not ready",
        PodClass::Pending => "pending",
        PodClass::Failed => "failed",
        PodClass::Succeeded => "done",
    }
}

/// A bordered block titled `title`.
fn block(title: String, theme: Theme) -> Block<'static> {
    Block::bordered().title(Span::styled(title, theme.heading()))
}

/// The first row to draw so that `cursor` is visible in `height` rows (at the bottom once the
/// list is scrolled).
fn offset(cursor: Option<usize>, height: usize) -> usize {
    match cursor {
        Some(c) if height > 0 && c >= height => c + 1 - height,
        _ => 0,
    }
}

/// `s` cut to `width` characters (with `…` when cut) and padded to it.
fn fit(s: &str, width: usize) -> String {
    let count = s.chars().count();
    if count <= width {
        format!("{s:width$}")
    } else if width == 0 {
        String::new()
    } else {
        let mut cut: String = s.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}

/// How many lines the detail, logs or help view holds, as drawn (what scrolling is bounded by).
pub(crate) fn scrollable_lines(model: &Model) -> usize {
    match model.view {
        View::Detail => detail::page(model, Theme::of(model)).len(),
        View::Logs => model
            .logs
            .as_ref()
            .map_or(0, |(_, _, text)| text.lines().count()),
        View::Help => super::model::HELP.len(),
        _ => 0,
    }
}

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame<'_>, model: &Model) {
    let theme = Theme::of(model);
    let [body, step, status] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(model.step_bar_rows(frame.area().height)),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    match model.view {
        View::Home => {
            // An open lesson's pane sits at the bottom, above the step bar.
            let pane_height = lesson::pane_height(model, body);
            let [body, pane] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(pane_height)]).areas(body);
            let map = map::Map::plan(model, body, theme);
            let [top, rest] = Layout::vertical([
                Constraint::Length(map.height(body.width)),
                Constraint::Min(0),
            ])
            .areas(body);
            map.draw(frame, top);
            timeline::draw(frame, model, rest, theme);
            if pane_height > 0 {
                lesson::pane(frame, model, pane, theme);
            }
        }
        View::Learn => lesson::list(frame, model, body, theme),
        View::Flow => timeline::draw(frame, model, body, theme),
        View::Store => timeline::draw_store(frame, model, body, theme),
        View::Pods => lists::pods(frame, model, body, theme),
        View::Deployments => lists::deployments(frame, model, body, theme),
        View::StatefulSets | View::ReplicationControllers | View::CronJobs | View::Budgets => {
            lists::workloads(frame, model, model.view, body, theme)
        }
        View::Nodes => lists::nodes(frame, model, body, theme),
        View::Events => lists::events(frame, model, body, theme),
        View::Services => services::draw(frame, model, body, theme),
        View::Top => top::draw(frame, model, body, theme),
        View::Detail => detail::draw(frame, model, body, theme),
        View::Logs => detail::logs(frame, model, body, theme),
        View::Help => detail::help(frame, model, body, theme),
    }
    draw_step_bar(frame, model, step, theme);
    draw_status(frame, model, status, theme);
    if let Some(Prompt::Picker(at)) = &model.prompt {
        draw_picker(frame, model, *at, body, theme);
    }
}

/// The step bar: `RUN`, or `STEP` and the pending gate's words; the focus, lost events and the
/// keys that step; and on a second row, when there is one, why the selected hop (or the one
/// waiting at the gate) happens.
fn draw_step_bar(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    if area.height > 1
        && let Some(hop) = model.explained_hop()
    {
        let why = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        let lead = " why ";
        let room = usize::from(area.width).saturating_sub(lead.len());
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(lead, theme.heading()),
                Span::raw(fit(&model.explanation(&hop), room)),
            ])),
            why,
        );
    }
    let area = Rect { height: 1, ..area };
    let mut spans = Vec::new();
    if model.stepping() {
        spans.push(Span::styled(
            "STEP",
            theme
                .fg(Color::Yellow)
                .add_modifier(Modifier::REVERSED | Modifier::BOLD),
        ));
        spans.push(Span::raw(" "));
        match model.pending_gate() {
            Some(gate) => {
                spans.push(Span::styled(
                    gate.words.clone(),
                    theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ));
                let more = model
                    .stepper
                    .pending
                    .iter()
                    .filter(|g| !model.released.contains(&g.id))
                    .count()
                    - 1;
                if more > 0 {
                    spans.push(Span::raw(format!("  (+{more} waiting)")));
                }
            }
            None => spans.push(Span::raw("(no gate waiting)")),
        }
    } else {
        spans.push(Span::styled(
            "RUN",
            theme
                .fg(Color::Green)
                .add_modifier(Modifier::REVERSED | Modifier::BOLD),
        ));
    }
    if model.lost > 0 {
        spans.push(Span::styled(format!("  lost {}", model.lost), theme.bad()));
    }
    if let Some(focus) = &model.stepper.focus {
        let on = ["root", "namespace"]
            .iter()
            .filter_map(|k| focus.get(k).and_then(|v| v.as_str()))
            .collect::<Vec<_>>()
            .join(" ");
        if !on.is_empty() {
            spans.push(Span::styled(format!("  focus {on}"), theme.fg(Color::Cyan)));
        }
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let hints = if model.stepping() {
        "  n next  space run  f focus  ? help"
    } else {
        "  space step  : cmd  / filter  ? help"
    };
    if used + hints.len() <= usize::from(area.width) {
        let pad = usize::from(area.width) - used - hints.len();
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(Span::styled(hints, theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The bottom line: a prompt, the last message, or where the learner is.
fn draw_status(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let cursor = Span::styled(" ", Style::new().add_modifier(Modifier::REVERSED));
    let line = match &model.prompt {
        Some(Prompt::Command(text)) => Line::from(vec![Span::raw(format!(":{text}")), cursor]),
        Some(Prompt::Filter(text)) => Line::from(vec![Span::raw(format!("/{text}")), cursor]),
        Some(Prompt::Confirm(what)) => Line::from(vec![
            Span::styled(
                what.question(),
                theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw(" "),
            cursor,
        ]),
        Some(Prompt::Scale(ns, name, digits)) => Line::from(vec![
            Span::styled(
                format!("scale deployment {ns}/{name} to (enter: apply, esc: cancel): "),
                theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw(digits.clone()),
            cursor,
        ]),
        Some(Prompt::Picker(_)) => Line::from(Span::styled(
            "apply which manifest? (j/k, enter: apply, esc: cancel)",
            theme.fg(Color::Yellow),
        )),
        None => {
            let mut spans = vec![Span::styled(
                format!(" {} ", model.cluster),
                theme.heading().add_modifier(Modifier::REVERSED),
            )];
            spans.push(Span::raw(format!(" :{} ", model.view.name())));
            if !model.filter.is_empty() {
                spans.push(Span::styled(
                    format!(" /{} ", model.filter),
                    theme.fg(Color::Cyan),
                ));
            }
            match &model.status {
                Some((message, true)) => {
                    spans.push(Span::styled(format!(" {message}"), theme.bad()))
                }
                Some((message, false)) => spans.push(Span::raw(format!(" {message}"))),
                None => spans.push(Span::styled(
                    format!(
                        " {} pods  {} nodes  {} events",
                        model.pods.len(),
                        model.nodes.len(),
                        model.events.len()
                    ),
                    theme.dim(),
                )),
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The manifest picker, over the middle of the screen.
fn draw_picker(frame: &mut Frame<'_>, model: &Model, at: usize, area: Rect, theme: Theme) {
    let width = model
        .manifests
        .iter()
        .map(|m| m.chars().count())
        .max()
        .unwrap_or(0)
        .max(30) as u16
        + 4;
    let inner_rows = area.height.saturating_sub(4).max(1);
    let height = (model.manifests.len() as u16).min(inner_rows) + 2;
    let popup = Rect {
        x: area.x + area.width.saturating_sub(width) / 2,
        y: area.y + area.height.saturating_sub(height) / 2,
        width: width.min(area.width),
        height: height.min(area.height),
    };
    let rows = usize::from(popup.height.saturating_sub(2));
    let first = offset(Some(at), rows);
    let lines: Vec<Line<'_>> = model
        .manifests
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, m)| {
            let style = if i == at {
                theme.selected()
            } else {
                Style::new()
            };
            Line::styled(format!(" {m}"), style)
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(block(" apply a manifest ".to_owned(), theme)),
        popup,
    );
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod snapshot_tests;
