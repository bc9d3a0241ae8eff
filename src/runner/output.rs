//! Turning a job's output stream into log lines: split on newlines, split lines longer
//! than [`MAX_LINE`] (at a UTF-8 boundary), keep a last line without newline, and hand
//! whole batches to the log sink, which paces us when the log's consumer is slow.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::logging::{LineFormat, LogSink, timestamp_now};
use crate::run::Stream;

/// Lines longer than this are logged in pieces of at most this size.
pub const MAX_LINE: usize = 64 * 1024;
const MIN_BUFFER: usize = 8 * 1024;
const MAX_BUFFER: usize = 2 * MAX_LINE;

/// Read `pipe` to its end, logging every line (in the format `format` makes) and handing
/// it to the run's [`RunOutput`]. A stream that ends without output (most jobs' stderr,
/// many jobs' stdout) costs one read: no buffer, no format, no timestamp.
pub async fn pump(
    mut pipe: pipe::Receiver,
    stream: Stream,
    format: impl FnOnce() -> LineFormat,
    sink: LogSink,
    output: Arc<RunOutput>,
) {
    let mut first = [0u8; 256];
    // EIO and friends end the stream like EOF; what was read is still logged.
    let n = pipe.read(&mut first).await.unwrap_or_default();
    if n == 0 {
        return;
    }
    let format = format();
    let mut splitter = Splitter::new();
    splitter.free_space()[..n].copy_from_slice(&first[..n]);
    let mut n = Some(n);
    let mut out = Vec::new();
    let mut lines: Vec<(usize, usize)> = Vec::new();
    loop {
        let n = match n.take() {
            Some(n) => n,
            None => pipe.read(splitter.free_space()).await.unwrap_or_default(),
        };
        let ts = timestamp_now();
        let mut batch = Vec::new();
        let mut collect = |line: &[u8]| {
            format.push(&mut out, &ts, line);
            lines.push((batch.len(), line.len()));
            batch.extend_from_slice(line);
        };
        if n == 0 {
            splitter.finish(&mut collect);
        } else {
            splitter.filled(n, &mut collect);
        }
        if !lines.is_empty() {
            output.push_lines(stream, lines.iter().map(|&(at, len)| &batch[at..at + len]));
            lines.clear();
        }
        sink.submit(&mut out).await;
        if n == 0 {
            return;
        }
    }
}

/// What someone following a run receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowEvent {
    Line {
        stream: Stream,
        text: String,
    },
    /// This many lines came while the follower was too far behind; they are not sent
    /// (the job never waits for a follower), but counted.
    Skipped {
        lines: u64,
    },
    /// The run ended and is recorded.
    End {
        state: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: Option<String>,
    },
}

/// A follower this far behind misses lines (and is told how many) rather than slow the
/// job down.
const FOLLOW_BUFFER: usize = 8192;

/// A run's output as it happens: the bounded tail kept for the record, and the followers
/// (`run-now --wait`, `logs --follow`) that get each line live.
#[derive(Debug)]
pub struct RunOutput {
    inner: Mutex<OutputInner>,
}

#[derive(Debug)]
struct OutputInner {
    tail: Tail,
    followers: Vec<Follower>,
}

#[derive(Debug)]
struct Follower {
    tx: mpsc::Sender<FollowEvent>,
    /// Lines not sent since it fell behind.
    skipped: u64,
}

impl Follower {
    /// Send `event` if there is room, after the count of what was skipped; false when the
    /// follower is gone.
    fn offer(&mut self, event: FollowEvent) -> bool {
        use mpsc::error::TrySendError;
        if self.skipped > 0 {
            match self.tx.try_send(FollowEvent::Skipped {
                lines: self.skipped,
            }) {
                Ok(()) => self.skipped = 0,
                Err(TrySendError::Full(_)) => {
                    self.skipped += 1;
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.skipped += 1;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

impl RunOutput {
    pub fn new(tail_capacity: usize) -> Arc<RunOutput> {
        Arc::new(RunOutput {
            inner: Mutex::new(OutputInner {
                tail: Tail::new(tail_capacity),
                followers: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutputInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push_lines<'a>(
        &self,
        stream: Stream,
        lines: impl DoubleEndedIterator<Item = &'a [u8]> + Clone,
    ) {
        let mut inner = self.lock();
        if !inner.followers.is_empty() {
            for line in lines.clone() {
                let event = FollowEvent::Line {
                    stream,
                    text: String::from_utf8_lossy(line).into_owned(),
                };
                // The job never waits for a follower; one that is gone stops following.
                inner.followers.retain_mut(|f| f.offer(event.clone()));
            }
        }
        inner.tail.push_lines(stream, lines);
    }

    /// Start following: the tail so far, then every line from now on, then the end.
    pub fn follow(&self) -> (Vec<u8>, mpsc::Receiver<FollowEvent>) {
        let (tx, rx) = mpsc::channel(FOLLOW_BUFFER);
        let mut inner = self.lock();
        inner.followers.push(Follower { tx, skipped: 0 });
        (inner.tail.bytes.iter().copied().collect(), rx)
    }

    /// The run is recorded: tell the followers, however far behind, and let them go.
    pub fn end(&self, event: FollowEvent) {
        let followers = std::mem::take(&mut self.lock().followers);
        for f in followers {
            let event = event.clone();
            // Waits for room in the follower's queue, or ends when the follower goes away.
            tokio::spawn(async move {
                if f.skipped > 0 {
                    let skipped = FollowEvent::Skipped { lines: f.skipped };
                    if f.tx.send(skipped).await.is_err() {
                        return;
                    }
                }
                let _ = f.tx.send(event).await;
            });
        }
    }

    /// The tail for the run record.
    pub fn tail(&self) -> Vec<u8> {
        self.lock().tail.bytes.iter().copied().collect()
    }
}

/// The last lines of a run's output, bounded in bytes, for `schedctl logs`. Each line is
/// stored as `o ` or `e ` (stdout or stderr), the line, and a newline.
#[derive(Debug)]
pub struct Tail {
    bytes: VecDeque<u8>,
    /// Lengths of the stored lines, oldest first, to drop whole lines.
    lines: VecDeque<usize>,
    capacity: usize,
}

impl Tail {
    pub fn new(capacity: usize) -> Self {
        Tail {
            bytes: VecDeque::new(),
            lines: VecDeque::new(),
            capacity,
        }
    }

    pub fn push_lines<'a>(
        &mut self,
        stream: Stream,
        lines: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) {
        let tag: &[u8] = match stream {
            Stream::Stdout => b"o ",
            Stream::Stderr => b"e ",
        };
        // Only the newest lines that fit can survive: skip the rest without copying them.
        let mut keep: Vec<&[u8]> = Vec::new();
        let mut size = 0;
        for line in lines.rev() {
            let room = self.capacity.saturating_sub(3);
            let line = if line.len() > room {
                &line[..utf8_cut(&line[..room])]
            } else {
                line
            };
            if size + line.len() + 3 > self.capacity {
                break;
            }
            size += line.len() + 3;
            keep.push(line);
        }
        for line in keep.into_iter().rev() {
            self.bytes.extend(tag);
            self.bytes.extend(line);
            self.bytes.push_back(b'\n');
            self.lines.push_back(line.len() + 3);
        }
        while self.bytes.len() > self.capacity {
            let Some(len) = self.lines.pop_front() else {
                break;
            };
            self.bytes.drain(..len);
        }
    }

    #[cfg(test)]
    fn into_bytes(self) -> Vec<u8> {
        self.bytes.into()
    }
}

/// Line splitting over a growable read buffer, independent of IO.
pub struct Splitter {
    buf: Vec<u8>,
    /// Bytes of `buf` holding data not yet emitted (a partial line, always < MAX_LINE).
    len: usize,
    /// Pieces of the current line were already emitted: its newline must not add an
    /// empty line when the line's length was an exact multiple of MAX_LINE.
    continued: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Splitter {
    pub fn new() -> Self {
        Splitter {
            buf: vec![0; MIN_BUFFER],
            len: 0,
            continued: false,
        }
    }

    /// Where the next read goes; grows the buffer when the last read filled it.
    pub fn free_space(&mut self) -> &mut [u8] {
        if self.buf.len() - self.len < MIN_BUFFER / 2 && self.buf.len() < MAX_BUFFER {
            self.buf.resize((self.buf.len() * 2).min(MAX_BUFFER), 0);
        }
        &mut self.buf[self.len..]
    }

    /// `n` new bytes were read into [`Splitter::free_space`]: emit every complete line.
    pub fn filled(&mut self, n: usize, mut emit: impl FnMut(&[u8])) {
        let scan_from = self.len;
        self.len += n;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &self.buf[scan_from..self.len]) {
            let end = scan_from + nl;
            if !(self.continued && start == end) {
                emit_split(&self.buf[start..end], &mut emit);
            }
            self.continued = false;
            start = end + 1;
        }
        // A partial line that reached the limit is emitted in pieces now.
        while self.len - start >= MAX_LINE {
            let cut = utf8_cut(&self.buf[start..start + MAX_LINE]);
            emit(&self.buf[start..start + cut]);
            start += cut;
            self.continued = true;
        }
        self.buf.copy_within(start..self.len, 0);
        self.len -= start;
    }

    /// The stream ended: emit the last line even without its newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if self.len > 0 {
            emit_split(&self.buf[..self.len], &mut emit);
            self.len = 0;
        }
    }
}

fn emit_split(mut line: &[u8], emit: &mut impl FnMut(&[u8])) {
    while line.len() > MAX_LINE {
        let cut = utf8_cut(&line[..MAX_LINE]);
        emit(&line[..cut]);
        line = &line[cut..];
    }
    emit(line);
}

/// The longest prefix length of `piece` that does not end inside a UTF-8 sequence
/// (the whole piece when there is no sequence to protect).
fn utf8_cut(piece: &[u8]) -> usize {
    let len = piece.len();
    // Look back at most 3 bytes for the start of a multi-byte sequence.
    for back in 1..=3.min(len) {
        let needed = match piece[len - back] {
            0x80..=0xBF => continue, // a continuation byte: keep looking for the lead
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => break, // ASCII or not UTF-8 at all: nothing to protect
        };
        return if back < needed && len > back {
            len - back
        } else {
            len
        };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = Splitter::new();
        let mut lines = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let space = s.free_space();
                let n = space.len().min(rest.len());
                space[..n].copy_from_slice(&rest[..n]);
                s.filled(n, |l| lines.push(l.to_vec()));
                rest = &rest[n..];
            }
        }
        s.finish(|l| lines.push(l.to_vec()));
        lines
    }

    #[test]
    fn lines_across_reads_and_a_last_line_without_newline() {
        let lines = split(&[b"one\ntw", b"o\n\nthr", b"ee"]);
        assert_eq!(
            lines,
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"".to_vec(),
                b"three".to_vec()
            ]
        );
    }

    #[test]
    fn long_lines_are_split_at_the_limit() {
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\nshort\n");
        let lines = split(&[&input]);
        let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_LINE, MAX_LINE, 10, 5]);
    }

    #[test]
    fn a_line_of_exactly_twice_the_limit_gives_two_pieces_and_no_empty_line() {
        let mut input = vec![b'a'; MAX_LINE * 2];
        input.extend_from_slice(b"\nnext\n");
        // Fed in small reads, so the pieces are emitted before the newline is seen.
        let chunks: Vec<&[u8]> = input.chunks(1000).collect();
        let lines = split(&chunks);
        let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_LINE, MAX_LINE, 4]);
        assert_eq!(
            split(&[b"\n\n"]),
            vec![b"".to_vec(), b"".to_vec()],
            "real empty lines stay"
        );
    }

    #[test]
    fn a_split_never_cuts_a_character_in_two() {
        // 'é' is 2 bytes; place one across the 64 KiB boundary.
        let mut input = vec![b'a'; MAX_LINE - 1];
        input.extend_from_slice("é".as_bytes());
        input.extend_from_slice(b"tail\n");
        let lines = split(&[&input]);
        assert_eq!(lines[0].len(), MAX_LINE - 1);
        assert_eq!(lines[1], "étail".as_bytes());
        assert!(lines.iter().all(|l| std::str::from_utf8(l).is_ok()));
    }

    #[test]
    fn the_tail_keeps_the_newest_whole_lines_within_its_capacity() {
        let mut tail = Tail::new(20);
        tail.push_lines(Stream::Stdout, [&b"first"[..], b"second"].into_iter());
        tail.push_lines(Stream::Stderr, [&b"third"[..]].into_iter());
        assert_eq!(tail.into_bytes(), b"o second\ne third\n");
        let mut tail = Tail::new(10);
        tail.push_lines(
            Stream::Stdout,
            [&b"a very long line indeed"[..]].into_iter(),
        );
        assert_eq!(
            tail.into_bytes(),
            b"o a very \n",
            "a line longer than the tail is cut"
        );
        let mut tail = Tail::new(8);
        tail.push_lines(Stream::Stdout, ["abcd\u{e9}f".as_bytes()].into_iter());
        assert_eq!(tail.into_bytes(), b"o abcd\n", "never inside a character");
    }

    #[test]
    fn utf8_cut_cases() {
        assert_eq!(utf8_cut(b"abc"), 3);
        assert_eq!(utf8_cut("ab\u{e9}".as_bytes()), 4); // complete 2-byte char at the end
        assert_eq!(utf8_cut(&"ab\u{20ac}".as_bytes()[..4]), 2); // 3-byte char cut after 2 bytes
        assert_eq!(utf8_cut(&[0xff, 0xfe]), 2); // not UTF-8: nothing to protect
    }
}
