//! An interim `Model::update` so the shell (`tui::app`) builds and runs before the model's own
//! update function lands: it keeps the rows, flow events and stepper the shell feeds it, and
//! quits on `q` (asking nothing). **Delete this file (and its `mod` line) when `model.rs`'s
//! `Model::update` is merged**: the two would be duplicate definitions.

use crossterm::event::{KeyCode, KeyModifiers};

use super::model::{Effect, Host, KEPT_EVENTS, Model, Msg};

impl Model {
    /// Applies one message; returns what the shell must do.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) => {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.code == KeyCode::Char('q') || ctrl_c {
                    return vec![match self.host {
                        Host::Up => Effect::QuitAndStop,
                        Host::Attached => Effect::Quit,
                    }];
                }
            }
            Msg::Resize(width, height) => self.size = (width, height),
            Msg::Flow(event) => {
                if self.events.len() == KEPT_EVENTS {
                    self.events.pop_front();
                }
                self.events.push_back(event);
            }
            Msg::Lost(n) => self.lost += n,
            Msg::Pod(row) => {
                self.pods
                    .insert(format!("{}/{}", row.namespace, row.name), row);
            }
            Msg::PodGone(namespace, name) => {
                self.pods.remove(&format!("{namespace}/{name}"));
            }
            Msg::Node(row) => {
                self.nodes.insert(row.name.clone(), row);
            }
            Msg::NodeGone(name) => {
                self.nodes.remove(&name);
            }
            Msg::Deployment(row) => {
                self.deployments
                    .insert(format!("{}/{}", row.namespace, row.name), row);
            }
            Msg::DeploymentGone(namespace, name) => {
                self.deployments.remove(&format!("{namespace}/{name}"));
            }
            Msg::Event(row) => {
                self.kube_events
                    .insert(format!("{}/{}", row.namespace, row.name), row);
            }
            Msg::Components(rows) => self.components = rows,
            Msg::Stepper(view) => self.stepper = view,
            Msg::Manifests(list) => self.manifests = list,
            Msg::Tick(now) => self.now = Some(now),
            Msg::Detail(_) | Msg::Logs(..) | Msg::Done(..) => {}
        }
        Vec::new()
    }
}
