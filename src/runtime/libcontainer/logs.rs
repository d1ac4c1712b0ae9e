//! Container logs in the CRI format the kubelet reads (`<RFC3339Nano time> <stream> <P|F>
//! <text>`, one record a line; `P` marks a long line cut into parts, `F` its last part), written
//! by the helper from a container's stdout and stderr pipes and parsed for `container_logs`.

use crate::runtime::LogLine;

/// containerd's `max_container_log_line_size`: longer lines are cut into `P` records.
pub const MAX_LINE: usize = 16 * 1024;

/// Cuts a stream's bytes into log records, remembering an unfinished line between chunks.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Takes a chunk and returns the CRI records it completes, stamped `time`.
    pub fn push(&mut self, time: jiff::Timestamp, stream: &str, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            match memchr::memchr(b'\n', &self.pending) {
                Some(end) if end <= MAX_LINE => {
                    record(&mut out, time, stream, "F", &self.pending[..end]);
                    self.pending.drain(..=end);
                }
                _ if self.pending.len() > MAX_LINE => {
                    record(&mut out, time, stream, "P", &self.pending[..MAX_LINE]);
                    self.pending.drain(..MAX_LINE);
                }
                _ => break,
            }
        }
        out
    }

    /// The stream ended: the unfinished line, if any, as a last `F` record.
    pub fn finish(&mut self, time: jiff::Timestamp, stream: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            record(&mut out, time, stream, "F", &self.pending);
            self.pending.clear();
        }
        out
    }
}

fn record(out: &mut Vec<u8>, time: jiff::Timestamp, stream: &str, tag: &str, text: &[u8]) {
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    out.extend_from_slice(format!("{time:.9} {stream} {tag} ").as_bytes());
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// Parses a CRI log file into lines, joining `P` parts with the record that ends them. Lines
/// that do not parse are skipped.
pub fn parse(text: &str) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let mut partial: Option<(jiff::Timestamp, &'static str, String)> = None;
    for record in text.lines() {
        let mut fields = record.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let rest = fields.next().unwrap_or("");
        let Ok(time) = time.parse::<jiff::Timestamp>() else {
            continue;
        };
        let stream = match stream {
            "stdout" => "stdout",
            "stderr" => "stderr",
            _ => continue,
        };
        let (start, _, mut text) = partial.take().unwrap_or((time, stream, String::new()));
        text.push_str(rest);
        if tag == "P" {
            partial = Some((start, stream, text));
        } else {
            lines.push(LogLine {
                time: start,
                stream,
                text,
            });
        }
    }
    if let Some((time, stream, text)) = partial {
        lines.push(LogLine { time, stream, text });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_records_and_back() {
        let t: jiff::Timestamp = "2026-11-22T01:02:03.123456789Z".parse().unwrap();
        let mut out = LineSplitter::default();
        let mut file = out.push(t, "stdout", b"hello\nwor");
        assert_eq!(file, b"2026-11-22T01:02:03.123456789Z stdout F hello\n");
        file.extend(out.push(t, "stdout", b"ld\n"));
        file.extend(out.push(t, "stdout", b"tail"));
        file.extend(out.finish(t, "stdout"));
        let text = String::from_utf8(file).unwrap();
        assert_eq!(
            text,
            "2026-11-22T01:02:03.123456789Z stdout F hello\n\
             2026-11-22T01:02:03.123456789Z stdout F world\n\
             2026-11-22T01:02:03.123456789Z stdout F tail\n"
        );
        let lines = parse(&text);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["hello", "world", "tail"]);
        assert_eq!(lines[0].time, t);
    }

    #[test]
    fn long_lines_are_cut_into_partial_records_and_joined() {
        let t = jiff::Timestamp::UNIX_EPOCH;
        let mut out = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE + 10];
        let mut file = out.push(t, "stderr", &long);
        file.extend(out.push(t, "stderr", b"\n"));
        let text = String::from_utf8(file).unwrap();
        let tags: Vec<_> = text.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["P", "F"]);
        let lines = parse(&text);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text.len(), MAX_LINE + 10);
        assert_eq!(lines[0].stream, "stderr");
    }
}
