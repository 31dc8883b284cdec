//! Container logs: what each container of the lab writes to its stdout (start-up lines, access
//! logs), kept per container instance as the kubelet keeps them, and `pods/{name}/log` with
//! `container`, `follow`, `previous`, `tailLines`, `timestamps`, `sinceSeconds` and `limitBytes`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::watch;

use crate::api::{Body, Query};
use crate::status::ApiError;

/// Lines one container instance kept at most (older ones are dropped, as log rotation does).
pub const MAX_LINES: usize = 10_000;

struct Inner {
    lines: VecDeque<(jiff::Timestamp, String)>,
    /// Index of `lines[0]` since the instance started.
    base: usize,
}

/// The log of one container instance: lines with their time, and whether it has ended.
pub struct LogBuf {
    inner: Mutex<Inner>,
    /// Count of lines written so far, and whether the container has exited.
    tick: watch::Sender<(usize, bool)>,
}

impl Default for LogBuf {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                lines: VecDeque::new(),
                base: 0,
            }),
            tick: watch::Sender::new((0, false)),
        }
    }
}

impl std::fmt::Debug for LogBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, closed) = *self.tick.borrow();
        f.debug_struct("LogBuf")
            .field("lines", &n)
            .field("closed", &closed)
            .finish()
    }
}

/// Where a container writes its stdout.
pub type LogSink = Arc<LogBuf>;

impl LogBuf {
    /// A new, empty log.
    pub fn new() -> LogSink {
        Arc::new(Self::default())
    }

    /// Writes one line (without its newline).
    pub fn line(&self, text: impl Into<String>) {
        let text = text.into();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for l in text.split('\n') {
            inner
                .lines
                .push_back((jiff::Timestamp::now(), l.to_string()));
        }
        while inner.lines.len() > MAX_LINES {
            inner.lines.pop_front();
            inner.base += 1;
        }
        let total = inner.base + inner.lines.len();
        drop(inner);
        self.tick.send_modify(|t| t.0 = total);
    }

    /// The container exited: followers reach the end.
    pub fn close(&self) {
        self.tick.send_modify(|t| t.1 = true);
    }

    /// Whether the container has exited.
    pub fn is_closed(&self) -> bool {
        self.tick.borrow().1
    }

    /// Lines from absolute index `from` on, and the index after them.
    fn since(&self, from: usize) -> (Vec<(jiff::Timestamp, String)>, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let start = from.max(inner.base) - inner.base;
        let lines: Vec<_> = inner.lines.iter().skip(start).cloned().collect();
        (lines, inner.base + inner.lines.len())
    }

    /// Every line kept, as text (for tests and the demo).
    pub fn text(&self) -> String {
        let (lines, _) = self.since(0);
        lines.into_iter().map(|(_, l)| l + "\n").collect()
    }
}

/// What a `pods/{name}/log` request asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// The container (required for a pod with several).
    pub container: Option<String>,
    /// Keep streaming new lines until the container exits.
    pub follow: bool,
    /// The previous, terminated instance.
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

impl LogQuery {
    /// From the request's query parameters.
    pub fn parse(q: &Query) -> Result<Self, ApiError> {
        let num = |k: &str| -> Result<Option<i64>, ApiError> {
            q.get(k)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ApiError::bad_request(format!("invalid value {v:?} for {k}: not a number"))
                    })
                })
                .transpose()
        };
        let flag = |k: &str| matches!(q.get(k), Some("true" | "1"));
        Ok(Self {
            container: q
                .get("container")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            follow: flag("follow"),
            previous: flag("previous"),
            tail_lines: num("tailLines")?.map(|n| n.max(0) as usize),
            timestamps: flag("timestamps"),
            since_seconds: num("sinceSeconds")?,
            limit_bytes: num("limitBytes")?.map(|n| n.max(0) as usize),
        })
    }
}

fn render(line: &(jiff::Timestamp, String), timestamps: bool) -> String {
    if timestamps {
        format!("{} {}\n", line.0.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), line.1)
    } else {
        format!("{}\n", line.1)
    }
}

/// Serves `GET .../pods/{name}/log` from the log the kubelet resolved.
pub fn respond(log: LogSink, lq: LogQuery) -> Response<Body> {
    let (mut lines, next) = log.since(0);
    if let Some(s) = lq.since_seconds {
        let cutoff = jiff::Timestamp::now().as_second() - s;
        lines.retain(|(t, _)| t.as_second() >= cutoff);
    }
    if let Some(n) = lq.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    // limitBytes counts bytes, as the kubelet does (a cut may fall inside a character).
    let mut budget = lq.limit_bytes.unwrap_or(usize::MAX);
    let mut take = move |r: String| -> Bytes {
        let mut b = r.into_bytes();
        b.truncate(budget);
        budget -= b.len();
        Bytes::from(b)
    };
    let mut first = Vec::new();
    for l in &lines {
        first.extend_from_slice(&take(render(l, lq.timestamps)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let follow = lq.follow && lq.limit_bytes.is_none_or(|l| first.len() < l);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Ok(Frame::data(Bytes::from(first)))).await.is_err() {
            return;
        }
        if !follow {
            return;
        }
        let mut at = next;
        let mut rx_tick = log.tick.subscribe();
        loop {
            let (more, after) = log.since(at);
            at = after;
            for l in &more {
                let chunk = take(render(l, lq.timestamps));
                let done = chunk.is_empty();
                if done || tx.send(Ok(Frame::data(chunk))).await.is_err() {
                    return;
                }
            }
            if log.is_closed() && log.since(at).0.is_empty() {
                return;
            }
            tokio::select! {
                changed = rx_tick.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut().insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limit_bytes_cuts_bytes_even_inside_a_character() {
        let log = LogBuf::new();
        log.line("µs µs");
        let lq = LogQuery {
            limit_bytes: Some(3),
            ..Default::default()
        };
        let body = respond(log, lq)
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], &"µs µs".as_bytes()[..3]);
    }

    #[test]
    fn lines_are_kept_and_dropped_past_the_cap() {
        let log = LogBuf::new();
        log.line("Echo server listening on port 8080.");
        log.line("a\nb");
        assert_eq!(log.text(), "Echo server listening on port 8080.\na\nb\n");
        for i in 0..MAX_LINES {
            log.line(format!("{i}"));
        }
        let (all, next) = log.since(0);
        assert_eq!(all.len(), MAX_LINES);
        assert_eq!(next, MAX_LINES + 3);
        assert_eq!(all[0].1, "0");
    }
}
