//! The cluster map, drawn as the architecture diagram guides draw: the control plane's box with
//! a cell per component (the store and its etcd members, the API server, the scheduler and the
//! controller manager with their replicas, leader `★` or standby, the controllers seen in the
//! flow, and the add-ons), a box per node (its kubelet, runtime and kube-proxy, its pods as
//! coloured cells, or counts when the cells do not fit), and between them the wires: the hop in
//! flight as an arrow from the box it leaves to the box it reaches, its verb and object on it,
//! and the hops before it fading below. A client outside the cluster (`kubectl`) is drawn at the
//! wire's end. What a lesson highlights (`Model::highlight`) is drawn marked.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{Theme, block, class_name, glyph, timeline};
use crate::flow::FlowEvent;
use crate::tui::model::{ADDONS, ComponentRow, Model, NodeRow, PodClass};

/// Pod names are drawn while a node has at most this many pods; beyond, cells or counts.
const NAMED_PODS: usize = 40;

/// The narrowest node box.
const NODE_WIDTH: u16 = 28;

/// A name drawn on the map, and the component it stands for.
#[derive(Clone, Debug)]
struct Item {
    /// The component as the flow names it (`apiserver`, `controller/deployment`, `etcd-2`,
    /// `kubelet/node-1`); empty for words that are no component.
    who: String,
    text: String,
    style: Style,
}

impl Item {
    fn new(who: impl Into<String>, text: impl Into<String>, style: Style) -> Item {
        Item {
            who: who.into(),
            text: text.into(),
            style,
        }
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }
}

/// An item where it is drawn.
struct Placed {
    item: Item,
    x: u16,
    y: u16,
    /// The columns it may take.
    width: u16,
}

/// `s` cut to `width` characters, with `…` when cut (not padded).
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else if width == 0 {
        String::new()
    } else {
        let mut cut: String = s.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}

/// The columns a line of items takes, one space apart.
fn line_len(line: &[Item]) -> usize {
    line.iter().map(Item::len).sum::<usize>() + line.len().saturating_sub(1)
}

/// `groups` laid out in lines of at most `width` columns, each group from a new line; when
/// they need more than `max` lines, the last line ends with `+N`, how many were left out.
fn flow(groups: &[Vec<Item>], width: usize, max: usize, theme: Theme) -> Vec<Vec<Item>> {
    let total: usize = groups.iter().map(Vec::len).sum();
    let mut lines: Vec<Vec<Item>> = Vec::new();
    for group in groups.iter().filter(|g| !g.is_empty()) {
        let mut line: Vec<Item> = Vec::new();
        for item in group {
            let mut item = item.clone();
            item.text = cut(&item.text, width);
            if !line.is_empty() && line_len(&line) + 1 + item.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            line.push(item);
        }
        lines.push(line);
    }
    if lines.len() <= max {
        return lines;
    }
    lines.truncate(max);
    let mut left = total - lines.iter().map(Vec::len).sum::<usize>();
    let Some(last) = lines.last_mut() else {
        return lines;
    };
    loop {
        let more = format!("+{left}");
        if last.is_empty() || line_len(last) + 1 + more.len() <= width {
            last.push(Item::new("", more, theme.dim()));
            break;
        }
        last.pop();
        left += 1;
    }
    lines
}

/// A cell of the control plane: its header, then groups of items, each from a new line.
struct Cell {
    header: Item,
    groups: Vec<Vec<Item>>,
    /// At most how many lines its last group may take before others count (the controllers,
    /// which would otherwise make the box tall).
    last_group_lines: Option<usize>,
}

impl Cell {
    /// The narrowest its content can be without cutting a name.
    fn narrowest(&self) -> usize {
        self.groups
            .iter()
            .flatten()
            .map(Item::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0)
    }

    /// How wide it wants to be: each group on one line.
    fn wanted(&self) -> usize {
        self.groups
            .iter()
            .map(|g| line_len(g))
            .chain([self.header.len()])
            .max()
            .unwrap_or(0)
    }

    /// How many lines it wants at `width`.
    fn lines_wanted(&self, width: usize, theme: Theme) -> usize {
        let all = flow(&self.groups, width, usize::MAX, theme).len();
        let capped = match self.last_group_lines {
            Some(most) => {
                let before = self.groups.len().saturating_sub(1);
                let before = flow(&self.groups[..before], width, usize::MAX, theme).len();
                all.min(before + most)
            }
            None => all,
        };
        1 + capped
    }
}

/// The replicas of `component` the supervisor lists (`scheduler-1`, `scheduler-2`, ... or
/// `etcd-1`, ...), by number.
fn replicas<'a>(model: &'a Model, component: &str) -> Vec<&'a ComponentRow> {
    let mut found: Vec<(u32, &ComponentRow)> = model
        .components
        .iter()
        .filter_map(|c| {
            let n = c.name.strip_prefix(component)?.strip_prefix('-')?;
            Some((n.parse().ok()?, c))
        })
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found.into_iter().map(|(_, c)| c).collect()
}

/// A component's header: its name, bold, or dimmed and marked when it is stopped.
fn header(who: &str, running: bool, theme: Theme) -> Item {
    if running {
        Item::new(who, who, Style::new().add_modifier(Modifier::BOLD))
    } else {
        Item::new(who, format!("{who} (stopped)"), theme.dim())
    }
}

/// A replica of an electing component: leader `★`, standby, or stopped.
fn replica(c: &ComponentRow, theme: Theme) -> Item {
    let (text, style) = if !c.running {
        (format!("{} stopped", c.name), theme.dim())
    } else {
        match c.leading {
            Some(true) => (
                format!("{} ★", c.name),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Some(false) => (format!("{} standby", c.name), Style::new()),
            None => (c.name.clone(), Style::new()),
        }
    };
    Item::new(c.name.clone(), text, style)
}

/// A component that elects a leader: its header, and its replicas when there are several (a
/// single one is marked only when it stands by).
fn electing(model: &Model, component: &str, theme: Theme) -> (Item, Vec<Item>) {
    let several = replicas(model, component);
    if several.is_empty() {
        let one = model.components.iter().find(|c| c.name == component);
        let running = one.is_none_or(|c| c.running);
        let standby = one.is_some_and(|c| c.running && c.leading == Some(false));
        let items = if standby {
            vec![Item::new(component, "standby", theme.dim())]
        } else {
            Vec::new()
        };
        return (header(component, running, theme), items);
    }
    let running = several.iter().any(|c| c.running);
    (
        header(component, running, theme),
        several.iter().map(|c| replica(c, theme)).collect(),
    )
}

/// The control plane's cells (store, API server, scheduler, controller manager) and the
/// add-ons seen in the flow.
fn cells(model: &Model, theme: Theme) -> (Vec<Cell>, Vec<Item>) {
    let apiserver = model.component_running("apiserver");
    let members: Vec<Item> = replicas(model, "etcd")
        .into_iter()
        .map(|c| {
            if c.running {
                Item::new(
                    c.name.clone(),
                    format!("{} {}", glyph(PodClass::Ready), c.name),
                    theme.pod(PodClass::Ready),
                )
            } else {
                Item::new(
                    c.name.clone(),
                    format!("{} {}", glyph(PodClass::Failed), c.name),
                    theme.bad(),
                )
            }
        })
        .collect();
    let store = Cell {
        header: header("store", apiserver || !members.is_empty(), theme),
        groups: vec![members],
        last_group_lines: None,
    };
    let api = Cell {
        header: header("apiserver", apiserver, theme),
        groups: Vec::new(),
        last_group_lines: None,
    };
    let (scheduler_header, schedulers) = electing(model, "scheduler", theme);
    let unscheduled = model
        .node_pods
        .get("")
        .map(|p| p.keys.len())
        .filter(|n| *n > 0)
        .map(|n| {
            vec![Item::new(
                "",
                format!("{} {n} unscheduled", glyph(PodClass::Pending)),
                theme.pod(PodClass::Pending),
            )]
        })
        .unwrap_or_default();
    let scheduler = Cell {
        header: scheduler_header,
        groups: vec![schedulers, unscheduled],
        last_group_lines: None,
    };
    let (cm_header, managers) = electing(model, "controller-manager", theme);
    let cm_running = model.component_running("controller-manager")
        || replicas(model, "controller-manager")
            .iter()
            .any(|c| c.running);
    let mut controllers: Vec<Item> = model
        .controllers
        .iter()
        .filter_map(|who| {
            let short = who.strip_prefix("controller/")?;
            let style = if cm_running {
                Style::new()
            } else {
                theme.dim()
            };
            Some(Item::new(who.clone(), short, style))
        })
        .collect();
    if controllers.is_empty() {
        controllers.push(Item::new("", "no controller seen yet", theme.dim()));
    }
    let cm = Cell {
        header: cm_header,
        groups: vec![managers, controllers],
        last_group_lines: Some(2),
    };
    let addons = model
        .controllers
        .iter()
        .filter(|who| ADDONS.contains(&who.as_str()))
        .map(|who| {
            let style = if model.component_running(who) {
                Style::new()
            } else {
                theme.dim()
            };
            Item::new(who.clone(), who.clone(), style)
        })
        .collect();
    (vec![store, api, scheduler, cm], addons)
}

/// The control plane laid out in a box `width` wide.
struct ControlPlane {
    /// Each cell's content: its column (from the box's left edge), width and lines (the
    /// header's first).
    cells: Vec<(u16, u16, Vec<Vec<Item>>)>,
    /// The add-ons, on a line under the cells when they get no cell of their own.
    addons: Option<Vec<Item>>,
    /// How many lines the cells take.
    lines: u16,
}

impl ControlPlane {
    /// Lays out the cells in `width` columns and at most `most` lines each.
    fn layout(model: &Model, width: u16, most: usize, theme: Theme) -> ControlPlane {
        let (mut cells, addons) = cells(model, theme);
        let inner = usize::from(width.saturating_sub(2));
        let room = |n: usize| inner.saturating_sub(3 * n - 1);
        let mut addons_line = None;
        if !addons.is_empty() {
            let cell = Cell {
                header: Item::new("", "add-ons", theme.dim()),
                groups: vec![addons.clone()],
                last_group_lines: Some(1),
            };
            let narrowest: usize = cells.iter().map(Cell::narrowest).sum();
            if narrowest + cell.narrowest() <= room(cells.len() + 1) {
                cells.push(cell);
            } else {
                addons_line = Some(addons);
            }
        }
        let n = cells.len();
        let room = room(n);
        let mut widths: Vec<usize> = cells.iter().map(Cell::narrowest).collect();
        let wanted: Vec<usize> = cells
            .iter()
            .map(|c| c.wanted().min(room * 45 / 100).max(c.narrowest()))
            .collect();
        // Too narrow: the widest give way, cutting their names.
        while widths.iter().sum::<usize>() > room {
            let Some(widest) = widths.iter_mut().filter(|w| **w > 3).max() else {
                break;
            };
            *widest -= 1;
        }
        // Room to spare: first as much as each wants, then shared, so the cells span the box.
        let mut spare = room.saturating_sub(widths.iter().sum());
        while spare > 0 {
            let before = spare;
            for (w, want) in widths.iter_mut().zip(&wanted) {
                if spare > 0 && *w < *want {
                    *w += 1;
                    spare -= 1;
                }
            }
            if spare == before {
                break;
            }
        }
        let mut i = 0;
        while spare > 0 {
            widths[i % n] += 1;
            spare -= 1;
            i += 1;
        }
        let most = most.max(1);
        let lines = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| c.lines_wanted(*w, theme))
            .max()
            .unwrap_or(1)
            .min(most);
        let mut x = 2;
        let laid = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| {
                let mut header = cell.header.clone();
                header.text = cut(&header.text, *w);
                let mut all = vec![vec![header]];
                all.extend(flow(&cell.groups, *w, lines - 1, theme));
                let column = x;
                x += *w as u16 + 3;
                (column, *w as u16, all)
            })
            .collect();
        ControlPlane {
            cells: laid,
            addons: addons_line,
            lines: lines as u16,
        }
    }

    /// The box's height.
    fn height(&self) -> u16 {
        2 + self.lines + u16::from(self.addons.is_some())
    }
}

/// The side of the wires a box is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The control plane, above the wires.
    Up,
    /// A node, below them.
    Down,
}

/// One end of a hop's wire.
#[derive(Clone, Debug, PartialEq)]
enum End {
    /// A box on the map: the column the wire joins it at, its side, and the item it joins.
    At { x: u16, side: Side, who: String },
    /// A client outside the map (or a box not drawn): named at the wire's end.
    Out(String),
}

/// The map, planned for a screen body: the control plane's layout, how many wires, and the
/// hops they draw.
pub(super) struct Map<'a> {
    model: &'a Model,
    theme: Theme,
    control_plane: ControlPlane,
    wires: u16,
    hops: Vec<(FlowEvent, bool)>,
    /// The most rows the map takes of the body.
    most: u16,
}

impl<'a> Map<'a> {
    /// Plans the map for `body`: a cell line more on tall screens, more fading hops.
    pub(super) fn plan(model: &'a Model, body: Rect, theme: Theme) -> Map<'a> {
        let lines = if body.height >= 30 { 5 } else { 4 };
        let control_plane = ControlPlane::layout(model, body.width, lines, theme);
        let wanted = match body.height {
            45.. => 5,
            30.. => 3,
            _ => 2,
        };
        let hops = model.map_hops(wanted);
        Map {
            model,
            theme,
            control_plane,
            wires: (hops.len() as u16).clamp(1, wanted as u16),
            hops,
            most: body.height.saturating_sub(1) * 62 / 100,
        }
    }

    /// How tall the map wants to be: what it needs, at most about three fifths of the body
    /// (and at least its control plane and wires).
    pub(super) fn height(&self, width: u16) -> u16 {
        let top = self.control_plane.height() + self.wires;
        let (per_row, rows) = grid(self.model, width);
        let inner = usize::from((width / per_row as u16).saturating_sub(2));
        let nodes: Vec<&NodeRow> = self.model.nodes.values().collect();
        let mut needed = top;
        for row in nodes.chunks(per_row).take(rows) {
            let lines = row
                .iter()
                .map(|n| lines_needed(self.model, &n.name, inner))
                .max()
                .unwrap_or(1);
            needed += 3 + lines as u16;
        }
        needed.min(self.most.max(top))
    }

    /// Draws the map into `area`.
    pub(super) fn draw(&self, frame: &mut Frame<'_>, area: Rect) {
        if area.height == 0 || area.width < 4 {
            return;
        }
        let (model, theme) = (self.model, self.theme);
        let cp = Rect {
            height: self.control_plane.height().min(area.height),
            ..area
        };
        let rest = area.height - cp.height;
        let wires = if !model.nodes.is_empty() && rest.saturating_sub(self.wires) < 4 {
            rest.saturating_sub(4).max(1).min(rest)
        } else {
            self.wires.min(rest)
        };
        let wire_area = Rect {
            y: cp.y + cp.height,
            height: wires,
            ..area
        };
        let nodes_area = Rect {
            y: wire_area.y + wires,
            height: rest - wires,
            ..area
        };
        let mut placed = self.place_control_plane(cp);
        let boxes = node_boxes(model, nodes_area);
        let first_row = boxes.first().map(|b| b.area.y);
        for b in &boxes {
            placed.extend(node_parts(model, b.node, b.area, theme));
        }
        // The hop in flight's ends, found among what is drawn.
        let anchor = |who: &str, other: &str| end(model, &placed, first_row, who, other);
        let ends = self
            .hops
            .first()
            .map(|(hop, _)| {
                (
                    end_who(&anchor(&hop.from, &hop.to)),
                    end_who(&anchor(&hop.to, &hop.from)),
                )
            })
            .unwrap_or_default();
        frame.render_widget(
            block(format!(" {} · control plane ", model.cluster), self.theme),
            cp,
        );
        for b in &boxes {
            draw_node(frame, model, b, theme);
        }
        let buf = frame.buffer_mut();
        self.separators(buf, cp);
        for p in &placed {
            let mut style = p.item.style;
            if !p.item.who.is_empty() && model.highlight.component(&p.item.who) {
                style = style.patch(theme.marked());
            }
            if !p.item.who.is_empty() && p.item.who == ends.0 {
                style = style.patch(theme.hop(true));
            } else if !p.item.who.is_empty() && p.item.who == ends.1 {
                style = style.patch(theme.hop(false));
            }
            let clip = if p.y < cp.bottom() { cp } else { nodes_area };
            put(
                buf,
                clip,
                p.x,
                p.y,
                &cut(&p.item.text, usize::from(p.width)),
                style,
            );
        }
        if wire_area.height == 0 {
            return;
        }
        if self.hops.is_empty() {
            put(
                buf,
                wire_area,
                area.x,
                wire_area.y,
                " no hops yet",
                theme.dim(),
            );
            return;
        }
        let mut joins = Vec::new();
        for (row, (hop, waiting)) in self.hops.iter().enumerate().take(usize::from(wires)) {
            let y = wire_area.y + row as u16;
            let (from, to) = (anchor(&hop.from, &hop.to), anchor(&hop.to, &hop.from));
            let style = match row {
                0 => theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                1 => theme.fg(Color::Gray),
                _ => theme.dim(),
            };
            let line = match (row, waiting) {
                (0, true) => '┄',
                (0, false) => '━',
                _ => '─',
            };
            let labels = labels(hop, *waiting, &from, &to, usize::from(area.width));
            let names = if row == 0 {
                (theme.hop(true), theme.hop(false))
            } else {
                (style, style)
            };
            let row_area = Rect {
                y,
                height: 1,
                ..area
            };
            let joined = wire(buf, row_area, &from, &to, &labels, style, names, line);
            if row == 0 {
                joins = joined;
            }
        }
        // The hop in flight's wire joins its boxes, over the fading ones.
        let style = theme.fg(Color::Yellow).add_modifier(Modifier::BOLD);
        connect(buf, &joins, cp, wire_area.y, nodes_area, style);
    }

    /// The control plane's items where they are drawn.
    fn place_control_plane(&self, cp: Rect) -> Vec<Placed> {
        let mut placed = Vec::new();
        if cp.height < 3 {
            return placed;
        }
        for (column, width, lines) in &self.control_plane.cells {
            for (n, line) in lines.iter().enumerate() {
                let mut x = cp.x + column;
                for item in line {
                    placed.push(Placed {
                        item: item.clone(),
                        x,
                        y: cp.y + 1 + n as u16,
                        width: (cp.x + column + width).saturating_sub(x),
                    });
                    x += item.len() as u16 + 1;
                }
            }
        }
        if let Some(addons) = &self.control_plane.addons {
            let y = cp.y + 1 + self.control_plane.lines;
            let lead = " add-ons:";
            placed.push(Placed {
                item: Item::new("", lead, self.theme.dim()),
                x: cp.x + 1,
                y,
                width: lead.len() as u16,
            });
            let room = usize::from(cp.width.saturating_sub(3 + lead.len() as u16));
            let mut x = cp.x + 2 + lead.len() as u16;
            for item in flow(std::slice::from_ref(addons), room, 1, self.theme)
                .into_iter()
                .flatten()
            {
                let width = item.len() as u16;
                placed.push(Placed { item, x, y, width });
                x += width + 1;
            }
        }
        placed
    }

    /// The lines between the control plane's cells, joined to its border.
    fn separators(&self, buf: &mut Buffer, cp: Rect) {
        if cp.height < 3 {
            return;
        }
        let cells = &self.control_plane.cells;
        let style = self.theme.dim();
        for (column, width, _) in cells.iter().take(cells.len().saturating_sub(1)) {
            let x = cp.x + column + width + 1;
            for n in 0..self.control_plane.lines {
                put(buf, cp, x, cp.y + 1 + n, "│", style);
            }
            join(buf, x, cp.y, '┬');
            if self.control_plane.addons.is_none() {
                join(buf, x, cp.bottom() - 1, '┴');
            }
        }
    }
}

/// Puts `glyph` on a box's border at (x, y) when a plain border line is there (not a title).
fn join(buf: &mut Buffer, x: u16, y: u16, glyph: char) {
    if let Some(cell) = buf.cell_mut((x, y))
        && cell.symbol() == "─"
    {
        cell.set_char(glyph);
    }
}

/// Writes `text` at (x, y), clipped to `clip`; returns the column after it.
fn put(buf: &mut Buffer, clip: Rect, x: u16, y: u16, text: &str, style: Style) -> u16 {
    let mut x = x;
    if y < clip.y || y >= clip.bottom() {
        return x;
    }
    for ch in text.chars() {
        if x >= clip.right() {
            break;
        }
        if x >= clip.x
            && let Some(cell) = buf.cell_mut((x, y))
        {
            cell.set_char(ch).set_style(style);
        }
        x += 1;
    }
    x
}

/// The item an end joins (empty for one outside the map).
fn end_who(end: &End) -> String {
    match end {
        End::At { who, .. } => who.clone(),
        End::Out(_) => String::new(),
    }
}

/// Where on the map a hop's end `who` is drawn, the other end being `other`: the item that
/// stands for it (a replica or controller by name, else its component's header), a node's part
/// in the first row of nodes, the other end's box for what lives inside it (a node's
/// `nftables`, the ingress controller's `ingress`, a load balancer's Service), or outside.
fn end(model: &Model, placed: &[Placed], first_row: Option<u16>, who: &str, other: &str) -> End {
    let leader = |component: &str| {
        replicas(model, component)
            .into_iter()
            .find(|c| c.leading == Some(true))
            .map(|c| c.name.clone())
    };
    let base = who.split('/').next().unwrap_or(who);
    let instance_of = |component: &str| {
        who.strip_prefix(component)
            .and_then(|n| n.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    // The API server's own clients (its endpoint reconciler, its CRD controller) are itself.
    let candidates: Vec<String> = if who == "apiserver"
        || who == "kube-apiserver"
        || who.starts_with("kube-apiserver/")
        || who == "apiextensions-controller"
    {
        vec!["apiserver".to_owned()]
    } else if who == "store" || instance_of("etcd") {
        vec![who.to_owned(), "store".to_owned()]
    } else if let Some(component) = ["scheduler", "controller-manager"]
        .into_iter()
        .find(|c| who == *c || instance_of(c))
    {
        // A replica by its name; the component, through its leader.
        let mut names = Vec::new();
        if who == component {
            names.extend(leader(component));
        } else {
            names.push(who.to_owned());
        }
        names.push(component.to_owned());
        names
    } else if who.starts_with("controller/") {
        let mut names = vec![who.to_owned()];
        names.extend(leader("controller-manager"));
        names.push("controller-manager".to_owned());
        names
    } else if ADDONS.contains(&base) {
        vec![base.to_owned()]
    } else {
        vec![who.to_owned()]
    };
    for name in &candidates {
        if let Some(p) = placed.iter().find(|p| p.item.who == *name) {
            let len = (p.item.len() as u16).min(p.width).max(1);
            let side = if first_row.is_some_and(|y| p.y > y) {
                Side::Down
            } else {
                Side::Up
            };
            // A node's part below the first row of nodes has no wire to it.
            if side == Side::Down && first_row.is_some_and(|y| p.y > y + 1) {
                break;
            }
            return End::At {
                x: p.x + (len - 1) / 2,
                side,
                who: name.clone(),
            };
        }
    }
    let inside_other = matches!(who, "nftables" | "ingress") || who.starts_with("service/");
    if inside_other && other != who {
        return end(model, placed, first_row, other, "");
    }
    End::Out(who.to_owned())
}

/// The words on a hop's wire, longest first: its verb and object (the object shortened in the
/// later ones), what it reaches inside its box (`→ nftables`), and `waiting:` for the hop at a
/// gate. The wire takes the first that fits.
fn labels(hop: &FlowEvent, waiting: bool, from: &End, to: &End, width: usize) -> Vec<String> {
    let mut lead = String::new();
    if waiting {
        lead.push_str("waiting: ");
    }
    lead.push_str(&hop.verb);
    // A wire that ends in the box it starts from names what it reaches there.
    let tail = if from == to && hop.from != hop.to {
        format!(" → {}", hop.to)
    } else {
        String::new()
    };
    let mut labels: Vec<String> = Vec::new();
    for room in [width / 2, 28, 20, 14, 0] {
        let object = timeline::fit_object(hop, room);
        let object = object.trim_end();
        let label = if object.is_empty() {
            format!("{lead}{tail}")
        } else {
            format!("{lead} {object}{tail}")
        };
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    labels
}

/// Draws one hop's wire on the row `row`: a line between its ends' columns, a corner at each
/// box's end (up to the control plane, down to a node), an arrowhead at the end it reaches, a
/// client's name at its own end, and a label (the first of `labels` that fits) on the line, or
/// beside it when the line is too short. Returns the ends joined to boxes, for the connectors.
#[allow(clippy::too_many_arguments)]
fn wire(
    buf: &mut Buffer,
    row: Rect,
    from: &End,
    to: &End,
    labels: &[String],
    style: Style,
    names: (Style, Style),
    line: char,
) -> Vec<(u16, Side)> {
    let y = row.y;
    let label = labels.first().map_or("", String::as_str);
    let label_len = label.chars().count() as u16;
    let mut joins = Vec::new();
    // The same box at both ends: a turn on the spot.
    if let (End::At { x, side, .. }, End::At { x: x2, .. }) = (from, to)
        && x == x2
    {
        let start = (*x)
            .min(row.right().saturating_sub(label_len + 3))
            .max(row.x);
        put(buf, row, start, y, "↻", style);
        put(buf, row, start + 2, y, label, style);
        joins.push((*x, *side));
        return joins;
    }
    // Columns: a box's from its anchor; an outsider's beside its name, left of the other end
    // when the name fits there, else right of it.
    let column = |end: &End, other: &End| -> (u16, Option<(u16, bool)>) {
        match end {
            End::At { x, .. } => (*x, None),
            End::Out(name) => {
                let len = name.chars().count() as u16;
                let other_x = match other {
                    End::At { x, .. } => *x,
                    End::Out(_) => row.x + len + 2,
                };
                if row.x + len + 3 < other_x || matches!(other, End::Out(_)) {
                    (row.x + len + 1, Some((row.x, true)))
                } else {
                    let x = (other_x + label_len + 6)
                        .min(row.right().saturating_sub(len + 2))
                        .max(other_x + 2);
                    (x, Some((x + 2, false)))
                }
            }
        }
    };
    let (xa, name_a) = column(from, to);
    let (mut xb, mut name_b) = column(to, from);
    if let (End::Out(_), End::Out(_)) = (from, to) {
        // Two outsiders: the first named on the left, the other after the line.
        xb = xa + label_len + 5;
        name_b = Some((xb + 2, false));
    }
    if xa == xb {
        xb += 1;
    }
    let (lo, hi) = (xa.min(xb), xa.max(xb));
    let line_text: String = std::iter::repeat_n(line, usize::from(hi - lo + 1)).collect();
    put(buf, row, lo, y, &line_text, style);
    for (end, x) in [(from, xa), (to, xb)] {
        if let End::At { side, .. } = end {
            let left = x == lo;
            let corner = match (side, left) {
                (Side::Up, true) => "╰",
                (Side::Up, false) => "╯",
                (Side::Down, true) => "╭",
                (Side::Down, false) => "╮",
            };
            put(buf, row, x, y, corner, style);
            joins.push((x, *side));
        }
    }
    // The arrowhead, at the end the hop reaches.
    let into_box = matches!(to, End::At { .. });
    let (tip, at) = if xb == hi {
        ("▶", if into_box { hi - 1 } else { hi })
    } else {
        ("◀", if into_box { lo + 1 } else { lo })
    };
    if !into_box || (at > lo && at < hi) {
        put(buf, row, at, y, tip, style);
    }
    for (name, end, name_style) in [(name_a, from, names.0), (name_b, to, names.1)] {
        if let (Some((x, _)), End::Out(who)) = (name, end) {
            put(buf, row, x, y, who, name_style);
        }
    }
    // The label: on the line when it fits between the ends, else after the line, else before;
    // shorter words when the longer fit nowhere.
    let inside = (hi - lo).saturating_sub(3);
    let taken_right = [name_a, name_b].iter().flatten().any(|(_, left)| !left);
    let taken_left = [name_a, name_b].iter().flatten().any(|(_, left)| *left);
    for label in labels {
        let words = format!(" {label} ");
        let len = words.chars().count() as u16;
        if inside >= len {
            let start = lo + 1 + (hi - lo - 1 - len) / 2;
            put(buf, row, start, y, &words, style);
            return joins;
        }
        if !taken_right && hi + 1 + len <= row.right() {
            put(buf, row, hi + 1, y, &words, style);
            return joins;
        }
        if !taken_left && lo >= row.x + len {
            put(buf, row, lo - len, y, &words, style);
            return joins;
        }
    }
    let words = format!(" {} ", labels.last().map_or("", String::as_str));
    let room = usize::from(hi.saturating_sub(lo + 2));
    put(buf, row, lo + 1, y, &cut(&words, room), style);
    joins
}

/// Joins the hop in flight's wire (on row `y`) to its boxes: up through the control plane's
/// bottom border, down through the fading wires (crossing their lines, leaving their words) to
/// a node's top border.
fn connect(buf: &mut Buffer, joins: &[(u16, Side)], cp: Rect, y: u16, nodes: Rect, style: Style) {
    for (x, side) in joins {
        match side {
            Side::Up if cp.height > 0 && y == cp.bottom() => join(buf, *x, cp.bottom() - 1, '┬'),
            Side::Up => {}
            Side::Down => {
                for row in y + 1..nodes.y {
                    let Some(cell) = buf.cell_mut((*x, row)) else {
                        continue;
                    };
                    let glyph = match cell.symbol() {
                        "─" => '┼',
                        " " | "│" | "╭" | "╮" | "╰" | "╯" | "▶" | "◀" => '│',
                        _ => continue,
                    };
                    cell.set_char(glyph).set_style(style);
                }
                join(buf, *x, nodes.y, '┴');
            }
        }
    }
}

/// How many node boxes share a row, and how many rows they take.
fn grid(model: &Model, width: u16) -> (usize, usize) {
    let n = model.nodes.len();
    let per_row = usize::from(width / NODE_WIDTH).clamp(1, n.max(1));
    (per_row, n.div_ceil(per_row))
}

/// A node's box on the map.
struct NodeBox<'a> {
    node: &'a NodeRow,
    area: Rect,
    /// How many nodes did not fit (said in the last box's title).
    more: usize,
}

/// The node boxes that fit in `area`, a row at a time, the tallest rows shrunk to fit.
fn node_boxes<'a>(model: &'a Model, area: Rect) -> Vec<NodeBox<'a>> {
    let mut boxes = Vec::new();
    if area.height < 3 || model.nodes.is_empty() {
        return boxes;
    }
    let (per_row, rows) = grid(model, area.width);
    let nodes: Vec<&NodeRow> = model.nodes.values().collect();
    let box_width = area.width / per_row as u16;
    let inner = usize::from(box_width.saturating_sub(2));
    let shown_rows = usize::from(area.height / 4).clamp(1, rows);
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
    while heights.iter().sum::<u16>() > area.height {
        let Some(tallest) = heights.iter_mut().filter(|h| **h > 4).max() else {
            break;
        };
        *tallest -= 1;
    }
    let hidden = nodes.len().saturating_sub(shown_rows * per_row);
    let mut y = area.y;
    for (r, row) in nodes.chunks(per_row).take(shown_rows).enumerate() {
        let h = heights[r].min(area.bottom().saturating_sub(y));
        for (i, node) in row.iter().enumerate() {
            let x = area.x + i as u16 * box_width;
            let width = if i + 1 == per_row {
                area.right() - x
            } else {
                box_width
            };
            let last = r + 1 == shown_rows && i + 1 == row.len();
            boxes.push(NodeBox {
                node,
                area: Rect::new(x, y, width, h),
                more: if last { hidden } else { 0 },
            });
        }
        y += h;
    }
    boxes
}

/// A node's parts (kubelet, runtime, kube-proxy) where its box draws them: full names when they
/// fit, else short ones (the box's title names the node).
fn node_parts(model: &Model, node: &NodeRow, area: Rect, theme: Theme) -> Vec<Placed> {
    if area.height < 3 {
        return Vec::new();
    }
    let kubelet = format!("kubelet/{}", node.name);
    let runtime = format!("runtime/{}", node.name);
    let proxy = format!("kube-proxy/{}", node.name);
    let inner = usize::from(area.width.saturating_sub(2));
    let full = 1 + kubelet.len() + 1 + runtime.len() + 1 + "kube-proxy".len() <= inner;
    let short = "kubelet runtime kube-proxy".len();
    let (lead, kubelet_shown, runtime_shown) = if full {
        (1, kubelet.as_str(), runtime.as_str())
    } else if short < inner {
        (1, "kubelet", "runtime")
    } else {
        (0, "kubelet", "runtime")
    };
    let running = model.kubelet_running(&node.name);
    let kubelet_style = if running {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        theme.dim()
    };
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut x = area.x + 1 + lead;
    let right = area.right().saturating_sub(1);
    let mut placed = Vec::new();
    for (who, shown, style) in [
        (kubelet.clone(), kubelet_shown, kubelet_style),
        (runtime.clone(), runtime_shown, bold),
        (proxy.clone(), "kube-proxy", bold),
    ] {
        if x >= right {
            break;
        }
        let width = (shown.len() as u16).min(right - x);
        placed.push(Placed {
            item: Item::new(who, shown, style),
            x,
            y: area.y + 1,
            width,
        });
        x += shown.len() as u16 + 1;
    }
    placed
}

/// Draws a node's box (title, border, pods) but not its parts (placed and drawn with the
/// control plane's items).
fn draw_node(frame: &mut Frame<'_>, model: &Model, b: &NodeBox<'_>, theme: Theme) {
    let (node, area) = (b.node, b.area);
    let running = model.kubelet_running(&node.name);
    let inner = usize::from(area.width.saturating_sub(2));
    let room = usize::from(area.height.saturating_sub(3)).max(1);
    let mut lines = vec![Line::raw("")];
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
    if b.more > 0 {
        title.push(Span::styled(
            format!("+{} nodes (:nodes) ", b.more),
            theme.dim(),
        ));
    }
    let mut border = if running { Style::new() } else { theme.dim() };
    if model.highlight.component(&node.name) {
        border = border.patch(theme.marked());
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn items(words: &[&str]) -> Vec<Item> {
        words
            .iter()
            .map(|w| Item::new(*w, *w, Style::new()))
            .collect()
    }

    fn texts(lines: &[Vec<Item>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                l.iter()
                    .map(|i| i.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn items_flow_in_lines_and_count_what_does_not_fit() {
        let theme = Theme { mono: true };
        let groups = vec![
            items(&["scheduler-1 ★", "scheduler-2 standby"]),
            items(&["deployment", "replicaset", "job", "cronjob", "daemonset"]),
        ];
        assert_eq!(
            texts(&flow(&groups, 40, 9, theme)),
            [
                "scheduler-1 ★ scheduler-2 standby",
                "deployment replicaset job cronjob",
                "daemonset"
            ]
        );
        assert_eq!(
            texts(&flow(&groups, 20, 3, theme)),
            ["scheduler-1 ★", "scheduler-2 standby", "deployment +4"]
        );
        // A name wider than the cell is cut.
        assert_eq!(
            texts(&flow(
                &[items(&["horizontal-pod-autoscaler"])],
                10,
                1,
                theme
            )),
            ["horizonta…"]
        );
        assert_eq!(texts(&flow(&groups, 30, 1, theme)), ["scheduler-1 ★ +6"]);
    }
}
