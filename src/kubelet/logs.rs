//! The kubelet's log endpoint, `GET /containerLogs/<namespace>/<pod>/<container>`, which the API
//! server's `pods/log` proxies to. It reads [`ContainerRuntime::container_logs`] and applies the
//! kubelet's options: `previous` (the container before the newest, removed ones included),
//! `sinceSeconds`/`sinceTime`, `tailLines`, `timestamps` (RFC 3339 with nine fractional
//! digits, as the kubelet writes them), `limitBytes`, and `follow`, which streams new lines as
//! the runtime gets them (read again every 150 ms, so any runtime can be followed) and ends
//! once the container has exited and everything it wrote has been sent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tokio_stream::wrappers::ReceiverStream;

use crate::apimachinery::params::Params;
use crate::runtime::{ContainerRuntime, ContainerState, LogLine};

/// How often a followed container's logs are read again.
const FOLLOW_POLL: Duration = Duration::from_millis(150);

/// The options of a log request (`PodLogOptions`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    since: Option<jiff::Timestamp>,
}

impl Options {
    fn parse(params: &Params, now: jiff::Timestamp) -> Result<Self, String> {
        let flag = |k: &str| crate::apimachinery::params::flag(params, k);
        let number = |k: &str| -> Result<Option<i64>, String> {
            params
                .get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("invalid value {v:?} for {k}"))
                })
                .transpose()
        };
        let since = match (number("sinceSeconds")?, params.get("sinceTime")) {
            (Some(_), Some(_)) => {
                return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
            }
            // Clamped to the earliest (or latest) time there is: no overflow at i64's ends.
            (Some(seconds), None) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(seconds))
                    .unwrap_or(if seconds > 0 {
                        jiff::Timestamp::MIN
                    } else {
                        jiff::Timestamp::MAX
                    }),
            ),
            (None, Some(time)) => Some(
                time.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("invalid sinceTime {time:?}: {e}"))?,
            ),
            (None, None) => None,
        };
        let non_negative = |k: &str| -> Result<Option<usize>, String> {
            match number(k)? {
                Some(n) if n < 0 => Err(format!("{k}: must be greater than or equal to 0")),
                n => Ok(n.map(|n| usize::try_from(n).unwrap_or(usize::MAX))),
            }
        };
        Ok(Options {
            follow: flag("follow"),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            tail_lines: non_negative("tailLines")?,
            limit_bytes: non_negative("limitBytes")?,
            since,
        })
    }
}

/// One line as sent.
fn render(line: &LogLine, timestamps: bool) -> String {
    let mut text = String::with_capacity(line.text.len() + 32);
    if timestamps {
        text.push_str(&line.time.strftime("%Y-%m-%dT%H:%M:%S%.9fZ ").to_string());
    }
    text.push_str(&line.text);
    text.push('\n');
    text
}

/// The lines to send first: those since `since`, then the last `tail_lines` of them.
fn select(lines: &[LogLine], options: &Options) -> usize {
    let first = options.since.map_or(0, |since| {
        lines
            .iter()
            .position(|l| l.time >= since)
            .unwrap_or(lines.len())
    });
    match options.tail_lines {
        Some(tail) => first.max(lines.len().saturating_sub(tail)),
        None => first,
    }
}

/// Sends lines from `lines[from..]` to `out` while the byte budget lasts; returns how many
/// were taken and whether the budget is spent.
fn take(
    lines: &[LogLine],
    from: usize,
    timestamps: bool,
    budget: &mut Option<usize>,
    out: &mut String,
) -> (usize, bool) {
    for (i, line) in lines.iter().enumerate().skip(from) {
        let text = render(line, timestamps);
        match budget {
            Some(left) if text.len() >= *left => {
                let mut end = *left;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&text[..end]);
                *left = 0;
                return (i + 1, true);
            }
            Some(left) => *left -= text.len(),
            None => {}
        }
        out.push_str(&text);
    }
    (lines.len(), false)
}

/// Serves `/containerLogs/{namespace}/{pod}/{container}`.
pub(super) async fn serve(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = crate::apimachinery::params::parse(query.as_deref().unwrap_or_default());
    let options = match Options::parse(&params, jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let Some(id) = runtime
        .find_container(&namespace, &pod, &container, options.previous)
        .await
    else {
        let message = if options.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    let Ok(lines) = runtime.container_logs(&id).await else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container} is not valid for pod {pod}"),
        )
            .into_response();
    };
    let mut budget = options.limit_bytes;
    let mut body = String::new();
    let (mut sent, spent) = take(
        &lines,
        select(&lines, &options),
        options.timestamps,
        &mut budget,
        &mut body,
    );
    let headers = [(http::header::CONTENT_TYPE, "text/plain")];
    if !options.follow || spent {
        return (StatusCode::OK, headers, body).into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(16);
    tokio::spawn(async move {
        if !body.is_empty() && tx.send(Ok(body)).await.is_err() {
            return;
        }
        loop {
            // Read the state before the lines, so lines written just before the exit are sent.
            let exited = runtime
                .container_status(&id)
                .await
                .map_or(true, |s| s.state == ContainerState::Exited);
            let Ok(lines) = runtime.container_logs(&id).await else {
                return;
            };
            let mut chunk = String::new();
            let (taken, spent) = take(&lines, sent, options.timestamps, &mut budget, &mut chunk);
            sent = taken;
            if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
                return;
            }
            if exited || spent {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tx.closed() => return,
            }
        }
    });
    (
        StatusCode::OK,
        headers,
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: i64) -> Vec<LogLine> {
        (0..n)
            .map(|i| LogLine {
                time: jiff::Timestamp::from_second(1_700_000_000 + i).unwrap(),
                stream: "stdout",
                text: format!("line {i}"),
            })
            .collect()
    }

    fn options(query: &[(&str, &str)]) -> Result<Options, String> {
        let params = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Options::parse(
            &params,
            jiff::Timestamp::from_second(1_700_000_010).unwrap(),
        )
    }

    fn output(query: &[(&str, &str)]) -> String {
        let options = options(query).unwrap();
        let all = lines(5);
        let mut budget = options.limit_bytes;
        let mut out = String::new();
        take(
            &all,
            select(&all, &options),
            options.timestamps,
            &mut budget,
            &mut out,
        );
        out
    }

    #[test]
    fn options_select_lines() {
        assert_eq!(output(&[]), "line 0\nline 1\nline 2\nline 3\nline 4\n");
        assert_eq!(output(&[("tailLines", "2")]), "line 3\nline 4\n");
        assert_eq!(output(&[("tailLines", "0")]), "");
        assert_eq!(output(&[("sinceSeconds", "7")]), "line 3\nline 4\n");
        assert_eq!(
            output(&[("sinceTime", "2023-11-14T22:13:24Z"), ("tailLines", "9")]),
            "line 4\n"
        );
        assert_eq!(
            output(&[("tailLines", "1"), ("timestamps", "true")]),
            "2023-11-14T22:13:24.000000000Z line 4\n"
        );
        assert_eq!(output(&[("limitBytes", "10")]), "line 0\nlin");
        assert_eq!(
            options(&[("tailLines", "-1")]),
            Err("tailLines: must be greater than or equal to 0".into())
        );
        assert!(options(&[("sinceSeconds", "1"), ("sinceTime", "2023-11-14T22:13:24Z")]).is_err());
        // i64's ends neither panic nor wrap: everything, or nothing yet.
        let max = i64::MAX.to_string();
        assert_eq!(output(&[("sinceSeconds", &max)]), output(&[]));
        let min = i64::MIN.to_string();
        assert_eq!(output(&[("sinceSeconds", &min)]), "");
    }
}
