//! The daemon's log output. Daemon events (through `tracing`) and job output lines are
//! appended whole to one buffer that a writer thread drains in large writes, so lines never
//! interleave and no line is dropped. Job output waits when the buffer is full (as a job
//! writing into a pipe would); daemon events never wait. Formats: text for people (under
//! journald without timestamps and with `<N>` priority prefixes) and JSON, one object per line.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::config::LogFormat;
use crate::run::{RunId, Stream};

/// Above this many pending bytes, job output waits for the writer.
const HIGH_WATER: usize = 1 << 20;

/// How lines are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub format: LogFormat,
    /// stdout is connected to journald: no timestamps, syslog priority prefixes.
    pub journald: bool,
}

impl Style {
    pub fn detect(format: LogFormat) -> Style {
        Style {
            format,
            journald: stdout_is_journal(),
        }
    }
}

/// True when `JOURNAL_STREAM` names the device and inode of our stdout (systemd.exec(5)).
fn stdout_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stdout()) {
        Ok(st) => dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino),
        Err(_) => false,
    }
}

/// A handle to the shared log buffer; cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake_writer: Condvar,
    drained: tokio::sync::Notify,
    style: Style,
}

struct Pending {
    data: Vec<u8>,
    closed: bool,
}

/// Flushes and stops the writer thread when finished or dropped.
pub struct LogFlusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogFlusher {
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake_writer.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(m: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogSink {
    /// Start the writer thread writing to `out`.
    pub fn start(style: Style, out: Box<dyn Write + Send>) -> (LogSink, LogFlusher) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                data: Vec::with_capacity(64 * 1024),
                closed: false,
            }),
            wake_writer: Condvar::new(),
            drained: tokio::sync::Notify::new(),
            style,
        });
        let writer = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("schedctl-log".into())
            .spawn(move || write_loop(&writer, out))
            .expect("cannot start the log writer thread");
        let flusher = LogFlusher {
            shared: Arc::clone(&shared),
            thread: Some(thread),
        };
        (LogSink { shared }, flusher)
    }

    pub fn style(&self) -> Style {
        self.shared.style
    }

    /// Append complete lines; never waits (for the daemon's own events).
    pub fn append(&self, lines: &[u8]) {
        let mut pending = lock(&self.shared.pending);
        let was_empty = pending.data.is_empty();
        pending.data.extend_from_slice(lines);
        drop(pending);
        if was_empty {
            self.shared.wake_writer.notify_one();
        }
    }

    /// Append complete lines from `lines` (which is left empty), waiting first while the
    /// buffer is above its high-water mark: job output is paced by the log's consumer.
    /// Nothing to append costs nothing (no wake-up of the writer).
    pub async fn submit(&self, lines: &mut Vec<u8>) {
        if lines.is_empty() {
            return;
        }
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let mut pending = lock(&self.shared.pending);
                if pending.data.len() < HIGH_WATER || pending.closed {
                    let was_empty = pending.data.is_empty();
                    if was_empty && pending.data.capacity() < lines.capacity() {
                        std::mem::swap(&mut pending.data, lines);
                    } else {
                        pending.data.extend_from_slice(lines);
                    }
                    drop(pending);
                    lines.clear();
                    if was_empty {
                        self.shared.wake_writer.notify_one();
                    }
                    return;
                }
            }
            drained.await;
        }
    }
}

/// The writer, woken for less than [`LINGER_BELOW`] bytes, waits [`LINGER`] for more before
/// writing: appending to a buffer that is not empty wakes no one, so a burst of runs (two
/// daemon events each) costs the writer a wake-up per millisecond rather than per event.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
const LINGER_BELOW: usize = 16 * 1024;

fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut broken = false;
    loop {
        {
            let mut pending = lock(&shared.pending);
            while pending.data.is_empty() && !pending.closed {
                pending = shared
                    .wake_writer
                    .wait(pending)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if pending.data.is_empty() && pending.closed {
                break;
            }
            if pending.data.len() < LINGER_BELOW && !pending.closed {
                // A little, quickly: let more lines come while writers need not wake us.
                drop(pending);
                std::thread::sleep(LINGER);
                pending = lock(&shared.pending);
            }
            std::mem::swap(&mut pending.data, &mut batch);
        }
        shared.drained.notify_waiters();
        // A closed stdout must not stop the daemon or block job output: drop what cannot be written.
        if !broken && (out.write_all(&batch).is_err() || out.flush().is_err()) {
            broken = true;
        }
        batch.clear();
        if batch.capacity() > 4 * HIGH_WATER {
            batch.shrink_to(64 * 1024);
        }
    }
    let _ = out.flush();
}

/// `2026-11-24T23:34:45.123Z`, taken once per batch of lines.
pub fn timestamp_now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => " WARN",
        Level::INFO => " INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// syslog(3) priority prefix understood by journald's stdout stream.
fn syslog_prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// Formats the output lines of one stream of one run; the constant part is rendered once.
pub struct LineFormat {
    style: Style,
    level: Level,
    /// text: `job=NAME run_id=N stream=S: `; json: `,"level":..,"job":..,"run_id":N,"stream":"S","message":"`.
    prefix: Vec<u8>,
}

impl LineFormat {
    pub fn new(style: Style, job: &str, run_id: RunId, stream: Stream) -> Self {
        let level = match stream {
            Stream::Stdout => Level::INFO,
            Stream::Stderr => Level::ERROR,
        };
        let mut prefix = String::new();
        match style.format {
            LogFormat::Text => {
                let _ = write!(
                    prefix,
                    "job={job} run_id={run_id} stream={}: ",
                    stream.as_str()
                );
            }
            LogFormat::Json => {
                let _ = write!(prefix, "\",\"level\":\"{}\",\"job\":", level.as_str());
                push_json_str(&mut prefix, job);
                let _ = write!(
                    prefix,
                    ",\"run_id\":{run_id},\"stream\":\"{}\",\"message\":",
                    stream.as_str()
                );
            }
        }
        LineFormat {
            style,
            level,
            prefix: prefix.into_bytes(),
        }
    }

    /// Render one line (without its newline) into `out`; invalid UTF-8 is replaced.
    pub fn push(&self, out: &mut Vec<u8>, ts: &str, line: &[u8]) {
        // ASCII, then UTF-8, checked first: on valid text that is several times faster
        // than the lossy conversion's own check (which was a third of the daemon's time
        // logging 100-byte lines).
        let text: std::borrow::Cow<'_, [u8]> =
            if line.is_ascii() || std::str::from_utf8(line).is_ok() {
                std::borrow::Cow::Borrowed(line)
            } else {
                std::borrow::Cow::Owned(String::from_utf8_lossy(line).into_owned().into_bytes())
            };
        match self.style.format {
            LogFormat::Text => {
                if self.style.journald {
                    out.extend_from_slice(syslog_prefix(self.level).as_bytes());
                } else {
                    out.extend_from_slice(ts.as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(level_name(self.level).as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(&self.prefix);
                out.extend_from_slice(&text);
            }
            LogFormat::Json => {
                out.extend_from_slice(b"{\"ts\":\"");
                out.extend_from_slice(ts.as_bytes());
                out.extend_from_slice(&self.prefix);
                push_json_utf8(out, &text);
                out.push(b'}');
            }
        }
        out.push(b'\n');
    }
}

fn push_json_str(out: &mut String, s: &str) {
    let mut bytes = std::mem::take(out).into_bytes();
    push_json_bytes(&mut bytes, s);
    *out = String::from_utf8(bytes).unwrap_or_default();
}

/// Append `s` as a JSON string literal (with quotes).
pub fn push_json_bytes(out: &mut Vec<u8>, s: &str) {
    push_json_utf8(out, s.as_bytes());
}

/// [`push_json_bytes`] for bytes known to be UTF-8. Eight bytes at a time are checked for
/// anything to escape and copied whole when there is none (most output): the byte-by-byte
/// check made JSON logs of 100-byte lines cost 2.6 times the daemon CPU of text ones.
fn push_json_utf8(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[..copied]` is in `out` already.
    let mut copied = 0;
    let mut at = 0;
    for word in bytes.chunks_exact(8) {
        if needs_escape(u64::from_ne_bytes(word.try_into().expect("8 bytes"))) {
            copied = escape_into(out, bytes, copied, at..at + 8);
        }
        at += 8;
    }
    copied = escape_into(out, bytes, copied, at..bytes.len());
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// Whether any byte of `word` must be escaped in a JSON string: a control character, DEL,
/// `"` or `\`. (Per byte, `x - 0x01` borrows into the high bit exactly when `x` is 0, and
/// `x - n` when `x < n`, for `n <= 0x80`; bytes of UTF-8 above 0x7f match none of them.)
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let equal = |x: u64, c: u8| below(x ^ (ONES * u64::from(c)), 1);
    (below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') | equal(word, 0x7f)) != 0
}

/// Escape the bytes of `range` that need it, copying what comes before each from
/// `bytes[copied..]`; returns how far `bytes` is in `out` now.
fn escape_into(
    out: &mut Vec<u8>,
    bytes: &[u8],
    mut copied: usize,
    range: std::ops::Range<usize>,
) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in range {
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[copied..i]);
        out.extend_from_slice(escape);
        copied = i + 1;
    }
    copied
}

/// The `tracing` layer that renders the daemon's own events into the sink.
pub struct SinkLayer {
    sink: LogSink,
    max_level: Level,
}

impl SinkLayer {
    pub fn new(sink: LogSink, max_level: Level) -> Self {
        SinkLayer { sink, max_level }
    }
}

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.max_level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = render_event(self.sink.style(), *event.metadata().level(), &fields);
        self.sink.append(line.as_bytes());
    }
}

/// The fields of one event: context fields first, then the message, then the rest.
#[derive(Default)]
struct Fields {
    message: String,
    context: Vec<(&'static str, Value)>,
    other: Vec<(&'static str, Value)>,
}

enum Value {
    Str(String),
    Raw(String),
}

impl Fields {
    fn add(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = match value {
                    Value::Str(s) | Value::Raw(s) => s,
                }
            }
            name @ ("job" | "run_id" | "stream") => self.context.push((name, value)),
            name => self.other.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, Value::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, Value::Raw(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, Value::Raw(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, Value::Raw(value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, Value::Raw(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, Value::Str(format!("{value:?}")));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.add(field, Value::Str(value.to_string()));
    }
}

fn render_event(style: Style, level: Level, fields: &Fields) -> String {
    let mut out = String::with_capacity(128);
    match style.format {
        LogFormat::Text => {
            if style.journald {
                out.push_str(syslog_prefix(level));
            } else {
                let _ = write!(out, "{} {} ", timestamp_now(), level_name(level));
            }
            for (i, (name, value)) in fields.context.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                let _ = write!(out, "{sep}{name}={}", text_value(value));
            }
            if !fields.context.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&fields.message);
            for (name, value) in &fields.other {
                let _ = write!(out, " {name}={}", text_value(value));
            }
        }
        LogFormat::Json => {
            let mut bytes = Vec::with_capacity(128);
            let _ = write!(
                bytes,
                "{{\"ts\":\"{}\",\"level\":\"{}\"",
                timestamp_now(),
                level.as_str()
            );
            for (name, value) in fields
                .context
                .iter()
                .chain(std::iter::once(&(
                    "message",
                    Value::Str(fields.message.clone()),
                )))
                .chain(&fields.other)
            {
                let _ = write!(bytes, ",\"{name}\":");
                match value {
                    Value::Str(s) => push_json_bytes(&mut bytes, s),
                    Value::Raw(s) => bytes.extend_from_slice(s.as_bytes()),
                }
            }
            bytes.push(b'}');
            out = String::from_utf8(bytes).unwrap_or_default();
        }
    }
    out.push('\n');
    out
}

/// A text value, quoted when it would not read as one token.
fn text_value(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::Raw(s) => s.as_str().into(),
        Value::Str(s) if !s.is_empty() && !s.contains([' ', '"', '=', '\n', '\t']) => {
            s.as_str().into()
        }
        Value::Str(s) => format!("{s:?}").into(),
    }
}

/// Install the sink as the global `tracing` subscriber for the daemon. The level of the
/// daemon's own events comes from `SCHEDCTL_LOG` (error, warn, info, debug, trace; default info).
pub fn init(style: Style) -> (LogSink, LogFlusher) {
    use tracing_subscriber::layer::SubscriberExt;
    let (sink, flusher) = LogSink::start(style, Box::new(std::io::stdout()));
    let level = std::env::var("SCHEDCTL_LOG")
        .ok()
        .and_then(|s| s.trim().parse::<Level>().ok())
        .unwrap_or(Level::INFO);
    let subscriber = tracing_subscriber::registry().with(SinkLayer::new(sink.clone(), level));
    let _ = tracing::subscriber::set_global_default(subscriber);
    (sink, flusher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(format: LogFormat) -> Style {
        Style {
            format,
            journald: false,
        }
    }

    #[test]
    fn text_job_lines_carry_job_run_and_stream() {
        let f = LineFormat::new(style(LogFormat::Text), "backup", RunId(42), Stream::Stderr);
        let mut out = Vec::new();
        f.push(&mut out, "2026-11-24T23:34:45.123Z", b"disk full");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "2026-11-24T23:34:45.123Z ERROR job=backup run_id=42 stream=stderr: disk full\n"
        );
    }

    #[test]
    fn json_job_lines_are_one_escaped_object() {
        let f = LineFormat::new(style(LogFormat::Json), "backup", RunId(7), Stream::Stdout);
        let mut out = Vec::new();
        f.push(
            &mut out,
            "2026-11-24T23:34:45.123Z",
            b"say \"hi\"\t\x01\xff",
        );
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "{\"ts\":\"2026-11-24T23:34:45.123Z\",\"level\":\"INFO\",\"job\":\"backup\",\"run_id\":7,\"stream\":\"stdout\",\"message\":\"say \\\"hi\\\"\\t\\u0001\u{fffd}\"}\n"
        );
    }

    #[test]
    fn json_strings_escape_every_byte_the_same_wherever_it_is() {
        // Byte by byte, the plain way.
        fn reference(bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![b'"'];
            for &b in bytes {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                    _ => out.push(b),
                }
            }
            out.push(b'"');
            out
        }
        let check = |line: &[u8]| {
            let mut out = b"kept".to_vec();
            push_json_utf8(&mut out, line);
            assert_eq!(out[4..], reference(line), "{line:?}");
        };
        // Every byte value at each place of two words and a tail, alone and next to `"`.
        for b in 0..=255u8 {
            for at in 0..19 {
                let mut line = vec![b'x'; 19];
                line[at] = b;
                check(&line);
                line[(at + 1) % 19] = b'"';
                check(&line);
            }
        }
        // Lines of every length up to three words, all plain or all escapes.
        for len in 0..=24 {
            check(&vec![b'a'; len]);
            check(&vec![b'\n'; len]);
            check(&"é".repeat(len).into_bytes());
        }
    }

    #[test]
    fn journald_lines_have_priority_and_no_timestamp() {
        let s = Style {
            format: LogFormat::Text,
            journald: true,
        };
        let f = LineFormat::new(s, "b", RunId(1), Stream::Stderr);
        let mut out = Vec::new();
        f.push(&mut out, "ignored", b"x");
        assert_eq!(out, b"<3>job=b run_id=1 stream=stderr: x\n");
    }

    #[test]
    fn events_render_context_then_message_then_fields() {
        let fields = Fields {
            message: "run finished".into(),
            context: vec![
                ("job", Value::Str("backup".into())),
                ("run_id", Value::Raw("3".into())),
            ],
            other: vec![
                ("reason", Value::Str("exited with code 1".into())),
                ("code", Value::Raw("1".into())),
            ],
        };
        let s = Style {
            format: LogFormat::Text,
            journald: true,
        };
        assert_eq!(
            render_event(s, Level::WARN, &fields),
            "<4>job=backup run_id=3: run finished reason=\"exited with code 1\" code=1\n"
        );
        let json = render_event(style(LogFormat::Json), Level::INFO, &fields);
        assert!(json.ends_with(",\"level\":\"INFO\",\"job\":\"backup\",\"run_id\":3,\"message\":\"run finished\",\"reason\":\"exited with code 1\",\"code\":1}\n"), "{json}");
    }

    #[tokio::test]
    async fn writer_keeps_every_line_in_order() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let (sink, flusher) = LogSink::start(style(LogFormat::Text), Box::new(out.clone()));
        let mut expected = Vec::new();
        for i in 0..20_000 {
            let mut chunk = format!("line {i} {}\n", "x".repeat(100)).into_bytes();
            expected.extend_from_slice(&chunk);
            sink.submit(&mut chunk).await;
        }
        flusher.finish();
        assert!(out.0.lock().expect("lock").as_slice() == expected.as_slice());
    }
}
