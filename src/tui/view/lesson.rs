//! Lessons on screen: `:learn` (each lesson with its runtime, steps and the learner's progress,
//! the selected one's claim, and what the learner's other terminal needs), and the lesson pane
//! on the home screen, above the step bar: the step's title, what to do, the commands to type,
//! what to watch, what `x` and `c` found, and the explanation once the step held. The pane
//! keeps to a third or so of the screen, so the map and the timeline it points at stay in
//! view at 80x24.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph};

use super::{Theme, block, fit, lists};
use crate::learn::check::Outcome;
use crate::learn::lesson::Action;
use crate::tui::model::{Busy, Model, View, fill};

/// `text` broken into lines of at most `width` characters, at spaces where it can be (a word
/// longer than the line is cut). As in Markdown, a blank line parts paragraphs and a single
/// line break is a space; but a line that starts with a space or `$` starts a line of its own
/// (a command to type).
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for source in text.lines() {
        let own_line = source.starts_with(' ') || source.starts_with('$');
        if (source.trim().is_empty() || own_line) && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if source.trim().is_empty() {
            lines.push(String::new());
            continue;
        }
        for word in source.split_whitespace() {
            let mut word = word.to_owned();
            loop {
                let used = line.chars().count();
                let needed = word.chars().count() + usize::from(used > 0);
                if used + needed <= width {
                    if used > 0 {
                        line.push(' ');
                    }
                    line.push_str(&word);
                    break;
                }
                if used > 0 {
                    lines.push(std::mem::take(&mut line));
                    continue;
                }
                // A word longer than the line.
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                lines.push(head);
                if word.is_empty() {
                    break;
                }
            }
        }
        if own_line {
            lines.push(std::mem::take(&mut line));
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.dedup_by(|a, b| a.is_empty() && b.is_empty());
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// `:learn`: the lessons and the learner's progress.
pub(super) fn list(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let lessons = model.learn.catalogue.lessons();
    let selected = model.selected(View::Learn, lessons.len());
    // Below the list: the selected lesson's claim and cluster, and how to reach this cluster.
    let width = usize::from(area.width.saturating_sub(4));
    let mut notes: Vec<Line<'_>> = Vec::new();
    if let Some(error) = &model.learn.error {
        for line in wrap(error, width) {
            notes.push(Line::styled(format!(" {line}"), theme.bad()));
        }
    }
    if let Some(lesson) = selected.and_then(|i| lessons.get(i)) {
        for (i, line) in wrap(&format!("claim: {}", lesson.claim), width)
            .into_iter()
            .enumerate()
        {
            let style = if i == 0 {
                theme.heading()
            } else {
                Style::new()
            };
            notes.push(Line::styled(format!(" {line}"), style));
        }
        let steps = lesson.steps.len();
        let mut cluster = format!(
            " for a cluster of {} ({}) · {steps} {}",
            lesson.cluster.nodes_words(),
            lesson.cluster.runtime.word(),
            if steps == 1 { "step" } else { "steps" }
        );
        if let Some(mismatch) = model.lesson_mismatch(lesson) {
            cluster.push_str(&format!(" · {mismatch}"));
        }
        notes.push(Line::styled(cluster, theme.dim()));
    }
    if !model.learn.exports.is_empty() {
        for line in wrap(
            &format!("your other terminal: export {}", model.learn.exports),
            width,
        ) {
            notes.push(Line::styled(format!(" {line}"), theme.dim()));
        }
    }
    notes.push(Line::styled(
        " enter: open the lesson   j/k: choose   esc: back",
        theme.dim(),
    ));
    // The list as tall as its rows (and its header), the selected lesson's notes below.
    let list_height = (lessons.len() as u16 + 3)
        .max(4)
        .min(area.height.saturating_sub(4).max(4));
    let [list_area, notes_area] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Min(0)]).areas(area);
    lists::list(
        frame,
        model,
        View::Learn,
        list_area,
        theme,
        ":learn",
        &["#", "NAME", "RUNTIME", "STEPS", "PROGRESS", "TITLE"],
        &[
            Constraint::Length(2),
            Constraint::Length(16),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Min(10),
        ],
        lessons.len(),
        |i| {
            let l = &lessons[i];
            let progress = model.learn.progress.summary(&l.name, l.steps.len());
            let progress_style = match progress.as_str() {
                "done" => theme.fg(Color::Green),
                "-" => theme.dim(),
                _ => theme.fg(Color::Yellow),
            };
            vec![
                Cell::from(l.order.clone()),
                Cell::from(l.name.clone()),
                Cell::from(l.cluster.runtime.word()),
                Cell::from(l.steps.len().to_string()),
                Cell::from(Span::styled(progress, progress_style)),
                Cell::from(l.title.clone()),
            ]
        },
    );
    if notes_area.height > 0 {
        let title = match selected.and_then(|i| lessons.get(i)) {
            Some(lesson) => format!(" {} ", lesson.title),
            None => " lessons ".to_owned(),
        };
        let b = block(short(title, width), theme);
        let inner = b.inner(notes_area);
        frame.render_widget(b, notes_area);
        frame.render_widget(Paragraph::new(notes), inner);
    }
}

/// A block's title cut to `width` (as it is when it fits, spaces and all).
fn short(title: String, width: usize) -> String {
    if title.chars().count() <= width {
        title
    } else {
        fit(&title, width)
    }
}

/// A check's or action's outcome on one line: `✓ expected — seen`.
fn outcome_line(outcome: &Outcome, prefix: &str, width: usize, theme: Theme) -> Line<'static> {
    let (mark, style) = if outcome.held {
        ("✓", theme.fg(Color::Green))
    } else {
        ("✗", theme.bad())
    };
    let text = format!("{prefix}{} — {}", outcome.expected, outcome.seen);
    Line::from(vec![
        Span::styled(format!("{mark} "), style.add_modifier(Modifier::BOLD)),
        Span::raw(fit(&text, width.saturating_sub(2)).trim_end().to_owned()),
    ])
}

/// The pane's lines for the open lesson at `width` columns, and whether they end in results
/// (which are then the ones kept when the pane is short).
fn pane_lines(model: &Model, width: usize, theme: Theme) -> (Vec<Line<'static>>, bool) {
    let Some((open, lesson, step)) = model.learn.current() else {
        return (Vec::new(), false);
    };
    let vars = &open.vars;
    let mut lines: Vec<Line<'static>> = Vec::new();
    if let Some(mismatch) = model.lesson_mismatch(lesson) {
        lines.push(Line::styled(
            fit(&format!("note: this lesson is {mismatch}"), width)
                .trim_end()
                .to_owned(),
            theme.fg(Color::Yellow),
        ));
    }
    for line in wrap(&fill(&step.say, vars), width) {
        lines.push(Line::raw(line));
    }
    for action in &step.actions {
        let text = match action {
            Action::Run { command, stdin, .. } => {
                let mut text = format!("$ {}", fill(command, vars));
                if let Some(stdin) = stdin {
                    let lines = stdin.lines().count();
                    text.push_str(&format!(
                        "   (with {lines} {} of input: x sends {})",
                        if lines == 1 { "line" } else { "lines" },
                        if lines == 1 { "it" } else { "them" },
                    ));
                }
                text
            }
            other => format!("key: {}", other.words()),
        };
        lines.push(Line::styled(
            fit(&text, width).trim_end().to_owned(),
            theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
    }
    let mut watch = Vec::new();
    if !step.watch.components.is_empty() {
        watch.push(step.watch.components.join(", "));
    }
    match model.highlight.hops.len() {
        0 => {}
        1 => watch.push("its hop, marked in the timeline".to_owned()),
        n => watch.push(format!("{n} kinds of hop, marked in the timeline")),
    }
    if step.watch.step {
        watch.push("step mode: n lets each hop through".to_owned());
    }
    if !watch.is_empty() {
        for (i, line) in wrap(&format!("watch: {}", watch.join(" · ")), width)
            .into_iter()
            .enumerate()
        {
            let style = if i == 0 {
                theme.heading()
            } else {
                Style::new()
            };
            lines.push(Line::styled(line, style));
        }
    }
    let mut results = false;
    for outcome in &open.actions {
        lines.push(outcome_line(outcome, "do: ", width, theme));
        results = true;
    }
    if open.busy == Some(Busy::Performing) {
        lines.push(Line::styled("… performing the actions", theme.dim()));
        results = true;
    }
    for outcome in &open.checks {
        lines.push(outcome_line(outcome, "", width, theme));
        results = true;
    }
    let untried = step.checks.len().saturating_sub(open.checks.len());
    match open.busy {
        Some(Busy::Checking) => {
            lines.push(Line::styled("… checking on the cluster", theme.dim()));
            results = true;
        }
        _ if open.checks.is_empty() => lines.push(Line::styled(
            format!(
                "{} {} to hold: c checks",
                step.checks.len(),
                if step.checks.len() == 1 {
                    "check"
                } else {
                    "checks"
                }
            ),
            theme.dim(),
        )),
        _ if untried > 0 && !open.held => lines.push(Line::styled(
            format!("({untried} more not tried: c checks again)"),
            theme.dim(),
        )),
        _ => {}
    }
    if open.held {
        lines.push(Line::styled(
            "why:",
            theme.fg(Color::Green).add_modifier(Modifier::BOLD),
        ));
        for line in wrap(&fill(&step.explain, vars), width) {
            lines.push(Line::raw(line));
        }
        if model.learn.complete(open.lesson) {
            lines.push(Line::styled(
                format!(
                    "lesson {} complete: every step held (esc closes it)",
                    lesson.name
                ),
                theme.fg(Color::Green).add_modifier(Modifier::BOLD),
            ));
        } else if open.step + 1 < lesson.steps.len() {
            lines.push(Line::styled("] for the next step", theme.dim()));
        }
        results = true;
    }
    (lines, results)
}

/// How tall the lesson pane is on a home screen of `body`'s size: what it needs, at most a
/// good third of the screen and at least five rows; none without an open lesson.
pub(super) fn pane_height(model: &Model, body: Rect) -> u16 {
    if model.learn.open.is_none() || body.height < 12 {
        return 0;
    }
    let (lines, _) = pane_lines(
        model,
        usize::from(body.width.saturating_sub(2)),
        Theme::of(model),
    );
    let most = (body.height * 2 / 5).max(5);
    (lines.len() as u16 + 2).clamp(5, most)
}

/// The lesson pane.
pub(super) fn pane(frame: &mut Frame<'_>, model: &Model, area: Rect, theme: Theme) {
    let Some((open, lesson, step)) = model.learn.current() else {
        return;
    };
    let mark = if open.held { " ✓" } else { "" };
    let title = format!(
        " lesson {} · step {}/{}{mark} · {} ",
        lesson.name,
        open.step + 1,
        lesson.steps.len(),
        step.title
    );
    let b = block(
        short(title, usize::from(area.width.saturating_sub(2))),
        theme,
    )
    .title_bottom(Line::styled(
        " x do  c check  ] next  [ back  esc close ",
        theme.dim(),
    ));
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let (lines, results) = pane_lines(model, usize::from(inner.width), theme);
    let room = usize::from(inner.height);
    // Short of room: the results once there are some, else what to do.
    let shown: Vec<Line<'_>> = if lines.len() > room && results {
        lines[lines.len() - room..].to_vec()
    } else {
        lines.into_iter().take(room).collect()
    };
    frame.render_widget(Paragraph::new(shown), inner);
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn text_wraps_at_spaces_and_cuts_long_words() {
        assert_eq!(
            wrap("the quick brown fox jumps", 10),
            ["the quick", "brown fox", "jumps"]
        );
        assert_eq!(wrap("abcdefghijklmnop", 8), ["abcdefgh", "ijklmnop"]);
        assert_eq!(wrap("one\n\n\ntwo\n", 20), ["one", "", "two"]);
        assert_eq!(
            wrap("a line\nbroken here\n  kubectl get pods\nand on", 40),
            ["a line broken here", "kubectl get pods", "and on"]
        );
    }
}
