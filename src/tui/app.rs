//! The dashboard's shell: it owns the terminal (raw mode, alternate screen, hidden cursor, and
//! their restoration on every way out: return, error, panic, SIGTERM/SIGINT), runs the event
//! loop that feeds the [`Model`] its [`Msg`]s (keys, resizes, a tick every second, and whatever
//! `tui::source` reads from the cluster), draws at most ~30 frames a second and only when
//! something changed, and hands the model's [`Effect`]s to `tui::effects`. `attach` is
//! `orrery tui`; `orrery up` calls [`run`] with its in-process client.

use std::io::{IsTerminal, Stdout};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use crossterm::{cursor, execute, terminal};
use futures::StreamExt;
use kube::Client;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::effects::{Effects, LessonPlace};
use super::model::{Effect, Host, Model, Msg};
use super::{source, view};

/// The shortest time between two frames (~30 frames a second).
pub const FRAME: Duration = Duration::from_millis(33);

/// How many messages wait for the dashboard before its readers wait for it.
const CHANNEL: usize = 16_384;

/// How many messages are applied before a frame is drawn and input is read again.
const BATCH: usize = 4_096;

/// What the dashboard was given.
pub struct Options {
    /// Inside `orrery up`, or attached.
    pub host: Host,
    /// The cluster's name.
    pub cluster: String,
    /// The client it reads and acts through.
    pub client: Client,
    /// The manifests directory, if any ([`source::manifests_dir`]).
    pub manifests: Option<PathBuf>,
    /// The lessons, and where their commands run and their progress is kept.
    pub learn: Option<LearnOptions>,
}

/// What the dashboard needs for lessons (`:learn`).
pub struct LearnOptions {
    /// The lessons, or why they could not be read.
    pub catalogue: Result<crate::learn::Catalogue, String>,
    /// The cluster's state directory (where its commands reach it).
    pub state_dir: PathBuf,
    /// The progress file.
    pub progress: PathBuf,
    /// A lesson to open at once (`orrery learn NAME`).
    pub open: Option<String>,
}

impl LearnOptions {
    /// The built-in lessons (and `ORRERY_LESSONS`'s) for the cluster in `state_dir`, its
    /// progress kept there.
    pub fn for_cluster(state_dir: &Path) -> LearnOptions {
        let lessons = std::env::var_os("ORRERY_LESSONS")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        LearnOptions {
            catalogue: crate::learn::Catalogue::load(lessons.as_deref()).map_err(|e| e.to_string()),
            state_dir: state_dir.to_owned(),
            progress: crate::learn::progress::path(state_dir),
            open: None,
        }
    }
}

/// How the dashboard ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The learner left; the cluster keeps running.
    Quit,
    /// The learner left and asked to stop the cluster.
    QuitAndStop,
    /// SIGTERM or SIGINT arrived (`orrery down`, `kill`): the cluster stops.
    Signal,
}

/// What went wrong running the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The terminal could not be set up, read or drawn on.
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// Standard output is not a terminal.
    #[error("standard output is not a terminal: the dashboard needs one")]
    NotATerminal,
    /// No cluster runs with this state directory.
    #[error(
        "no cluster is running with state directory {0} (no orrery.pid there): start one with \
         orrery up, or pass its --state-dir / --name"
    )]
    NoCluster(PathBuf),
    /// The cluster's kubeconfig could not be read or used.
    #[error("{path}: {message}")]
    Kubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The cluster does not answer.
    #[error("the cluster at {server} does not answer ({message}); is it still running?")]
    Unreachable {
        /// Its API server's URL.
        server: String,
        /// The error.
        message: String,
    },
}

/// Whether the dashboard should draw without colours: `NO_COLOR` is set and not empty
/// (<https://no-color.org>). The model's `monochrome` flag is set from it.
pub fn monochrome() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// `orrery tui`: attaches a dashboard to the cluster running with `state_dir`, through its
/// admin kubeconfig. Quitting leaves the cluster running.
pub async fn attach(state_dir: &Path, cluster: &str) -> Result<Exit, TuiError> {
    let client = connect(state_dir).await?;
    if !std::io::stdout().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    // kube-rs's warnings (a watch retrying) must not draw over the dashboard; a state directory
    // this user cannot write to only costs the log.
    let _stderr = redirect_stderr(&state_dir.join("orrery-tui.log")).ok();
    run(Options {
        host: Host::Attached,
        cluster: cluster.to_owned(),
        client,
        manifests: source::manifests_dir(),
        learn: Some(LearnOptions::for_cluster(state_dir)),
    })
    .await
}

/// A client for the cluster running with `state_dir`, from its kubeconfig, that has answered
/// once. Its requests name the dashboard (`orrery/dashboard`), so the flow shows them as the
/// dashboard's.
pub async fn connect(state_dir: &Path) -> Result<Client, TuiError> {
    if !crate::cluster::pid_file(state_dir).exists() {
        return Err(TuiError::NoCluster(state_dir.to_owned()));
    }
    let path = state_dir.join("kubeconfig");
    let kubeconfig_error = |message: String| TuiError::Kubeconfig {
        path: path.clone(),
        message,
    };
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&path).map_err(|e| kubeconfig_error(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| kubeconfig_error(e.to_string()))?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("orrery/dashboard"),
    ));
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| kubeconfig_error(e.to_string()))?;
    source::get_components(&client)
        .await
        .map_err(|e| TuiError::Unreachable {
            server,
            message: e.to_string(),
        })?;
    Ok(client)
}

/// Runs the dashboard in this terminal until the learner quits or a signal arrives, and leaves
/// the terminal as it found it.
pub async fn run(options: Options) -> Result<Exit, TuiError> {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let sources = source::spawn(
        options.client.clone(),
        tx.clone(),
        options.manifests.clone(),
    );
    let mut effects = Effects::new(options.client, tx, options.manifests, sources.poker());
    let mut model = Model::new(options.host, &options.cluster);
    model.monochrome = monochrome();
    let mut first = Vec::new();
    if let Some(learn) = options.learn {
        effects = effects.with_lessons(LessonPlace {
            state_dir: learn.state_dir.clone(),
            name: options.cluster.clone(),
            tmp: learn.state_dir.join("learn").join("tmp"),
            progress: learn.progress.clone(),
        });
        first = learn_model(&mut model, learn);
    }
    let screen = Screen::enter()?;
    let exit = event_loop(screen.terminal()?, model, rx, &effects, first).await;
    drop(screen);
    drop(sources);
    exit
}

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Gives the model its lessons and progress, and opens the lesson asked for: the effects that
/// opening it asks for.
fn learn_model(model: &mut Model, learn: LearnOptions) -> Vec<Effect> {
    let progress = crate::learn::progress::Progress::load(&learn.progress);
    match learn.catalogue {
        Ok(catalogue) => model.learn.catalogue = catalogue,
        Err(error) => model.learn.error = Some(error),
    }
    match progress {
        Ok(progress) => model.learn.progress = progress,
        Err(error) => model.learn.error = Some(error.to_string()),
    }
    model.learn.exports = format!(
        "KUBECONFIG={} ORRERY_STATE_DIR={}",
        learn.state_dir.join("kubeconfig").display(),
        learn.state_dir.display()
    );
    match learn.open {
        Some(name) => model.open_lesson_named(&name),
        None => Vec::new(),
    }
}

async fn event_loop(
    mut terminal: Term,
    mut model: Model,
    mut rx: mpsc::Receiver<Msg>,
    effects: &Effects,
    first: Vec<Effect>,
) -> Result<Exit, TuiError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let size = terminal.size()?;
    let mut pending = first;
    pending.extend(model.update(Msg::Resize(size.width, size.height)));
    let mut pacer = Pacer::default();
    pacer.changed();
    loop {
        for effect in pending.drain(..) {
            match effect {
                Effect::Quit => return Ok(Exit::Quit),
                Effect::QuitAndStop => return Ok(Exit::QuitAndStop),
                effect => effects.spawn(effect),
            }
        }
        if pacer.ready(Instant::now()) {
            terminal.draw(|frame| view::draw(frame, &model))?;
            pacer.drew(Instant::now());
        }
        let wake = pacer.wake();
        tokio::select! {
            _ = term.recv() => return Ok(Exit::Signal),
            _ = interrupt.recv() => return Ok(Exit::Signal),
            _ = hangup.recv() => return Ok(Exit::Signal),
            event = input.next() => match event {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    pending = model.update(Msg::Key(key));
                    pacer.changed();
                }
                Some(Ok(TermEvent::Resize(width, height))) => {
                    pending = model.update(Msg::Resize(width, height));
                    pacer.changed();
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => return Err(TuiError::Terminal(std::io::Error::other("the terminal closed"))),
            },
            Some(msg) = rx.recv() => {
                // A burst is applied whole (up to a batch) before the next frame.
                pending = model.update(msg);
                for _ in 1..BATCH {
                    match rx.try_recv() {
                        Ok(msg) => pending.extend(model.update(msg)),
                        Err(_) => break,
                    }
                }
                pacer.changed();
            }
            _ = tick.tick() => {
                pending = model.update(Msg::Tick(jiff::Timestamp::now()));
                pacer.changed();
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
    }
}

/// When to draw: only when something changed since the last frame, and at most one frame per
/// [`FRAME`], however many messages arrive.
#[derive(Debug, Default)]
pub struct Pacer {
    dirty: bool,
    last: Option<Instant>,
}

impl Pacer {
    /// Something changed: a frame is owed.
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// Whether to draw at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.dirty && self.last.is_none_or(|last| now >= last + FRAME)
    }

    /// When the owed frame may be drawn, if one is owed.
    pub fn wake(&self) -> Option<Instant> {
        self.dirty
            .then(|| self.last.map_or_else(Instant::now, |last| last + FRAME))
    }

    /// A frame was drawn at `now`.
    pub fn drew(&mut self, now: Instant) {
        self.dirty = false;
        self.last = Some(now);
    }
}

/// The terminal while the dashboard owns it; dropping it restores the terminal.
struct Screen;

/// Whether the dashboard has the terminal now (the panic hook restores it only then).
static ACTIVE: AtomicBool = AtomicBool::new(false);

impl Screen {
    fn enter() -> Result<Screen, TuiError> {
        if !std::io::stdout().is_terminal() {
            return Err(TuiError::NotATerminal);
        }
        install_panic_hook();
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(screen)
    }

    fn terminal(&self) -> Result<Term, TuiError> {
        let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        terminal.clear()?;
        Ok(terminal)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, once.
fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Installs, once, a panic hook that restores the terminal and standard error, then runs the
/// hook that was there before (which prints the panic where the learner can read it).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            restore_stderr();
            previous(info);
        }));
    });
}

/// Standard error as it was before [`redirect_stderr`].
static SAVED_STDERR: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Standard error sent to a file while it lives (see [`redirect_stderr`]).
pub struct StderrToFile(());

impl Drop for StderrToFile {
    fn drop(&mut self) {
        restore_stderr();
    }
}

/// Sends this process's standard error (tracing, and whatever a child started from now on
/// writes there) to `path`, appended, until the returned guard is dropped or the process
/// panics, so that nothing draws over the dashboard.
pub fn redirect_stderr(path: &Path) -> std::io::Result<StderrToFile> {
    install_panic_hook();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let saved = nix::unistd::dup(std::io::stderr()).map_err(std::io::Error::from)?;
    nix::unistd::dup2_stderr(&file).map_err(std::io::Error::from)?;
    *SAVED_STDERR.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
    Ok(StderrToFile(()))
}

/// Gives standard error back (after [`redirect_stderr`]); the guard's drop does the same.
pub fn restore_stderr() {
    // try_lock: a panic while the lock is held must not deadlock the hook.
    if let Ok(mut saved) = SAVED_STDERR.try_lock()
        && let Some(fd) = saved.take()
    {
        let _ = nix::unistd::dup2_stderr(&fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn frames_are_drawn_only_on_change_and_at_most_every_frame() {
        let mut pacer = Pacer::default();
        let start = Instant::now();
        assert!(!pacer.ready(start), "nothing changed: no frame");
        assert_eq!(pacer.wake(), None, "and no wake-up");
        pacer.changed();
        assert!(pacer.ready(start), "the first change draws at once");
        pacer.drew(start);
        assert!(!pacer.ready(start));
        // A burst right after a frame waits for the next frame, and makes one frame.
        tokio::time::advance(Duration::from_millis(5)).await;
        for _ in 0..1000 {
            pacer.changed();
        }
        assert!(!pacer.ready(Instant::now()));
        assert_eq!(pacer.wake(), Some(start + FRAME));
        tokio::time::advance(FRAME).await;
        assert!(pacer.ready(Instant::now()));
        pacer.drew(Instant::now());
        assert!(!pacer.ready(Instant::now() + FRAME * 10), "idle: no frame");
        assert_eq!(pacer.wake(), None);
    }
}
