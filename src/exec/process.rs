//! Child processes in their own process group: output to the node's log and the
//! reporter, SIGTERM to the group on cancel, SIGKILL after the grace period.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::Cancel;

/// The read buffer of each pipe and the log's write buffer.
const PIPE_BUFFER: usize = 64 * 1024;

/// How a command ended.
#[derive(Debug)]
pub enum Exit {
    Code(i32),
    Signal,
    Cancelled,
    SpawnFailed(String),
}

/// Signal a whole process group (the child and everything it started); nothing when the child
/// has no pid any more.
fn signal_group(pid: Option<u32>, signal: i32) {
    let Some(pid) = pid
        .and_then(|p| libc::pid_t::try_from(p).ok())
        .filter(|&p| p > 0)
    else {
        return;
    };
    // SAFETY: `killpg` has no memory effects; a stale group id only yields ESRCH.
    unsafe {
        libc::killpg(pid, signal);
    }
}

/// The longest line handed on whole: a longer one (a progress bar redrawn with `\r` for a
/// whole download, a binary dump) is handed on in pieces, so a line never grows without bound.
const LINE_LIMIT: u64 = 64 * 1024;

/// One open pipe of the child, and the line being read from it.
struct Pipe<R> {
    reader: Option<BufReader<R>>,
    line: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> Pipe<R> {
    fn new(pipe: Option<R>) -> Pipe<R> {
        Pipe {
            reader: pipe.map(|p| BufReader::with_capacity(PIPE_BUFFER, p)),
            line: Vec::new(),
        }
    }

    fn open(&self) -> bool {
        self.reader.is_some()
    }

    /// Read up to the end of a line, [`LINE_LIMIT`] bytes, or the end of the pipe, appending to
    /// the line being read (cancel-safe: what was read stays for the next call).
    async fn read(&mut self) -> std::io::Result<usize> {
        match &mut self.reader {
            Some(r) => {
                (&mut *r)
                    .take(LINE_LIMIT)
                    .read_until(b'\n', &mut self.line)
                    .await
            }
            None => Ok(0),
        }
    }

    /// Hand what `read` returned to the log and `on_line`, decoded lossily; close the pipe
    /// when it ended or failed; flush the log once the reader has caught up with the child.
    async fn hand_on(
        &mut self,
        read: std::io::Result<usize>,
        log: &mut (impl tokio::io::AsyncWrite + Unpin),
        on_line: &mut (dyn FnMut(&str) + Send),
    ) {
        if !self.line.is_empty() {
            let mut bytes = &self.line[..];
            bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let text = String::from_utf8_lossy(bytes);
            let _ = log.write_all(format!("{text}\n").as_bytes()).await;
            on_line(&text);
            self.line.clear();
        }
        if !matches!(read, Ok(n) if n > 0) {
            self.reader = None;
        }
        if self.reader.as_ref().is_none_or(|r| r.buffer().is_empty()) {
            let _ = log.flush().await;
        }
    }
}

/// Run `argv` in `dir` with `stdin` as its input, appending its output to `log` and calling
/// `on_line` per line.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    argv: &[String],
    stdin: Option<&str>,
    dir: &Path,
    log: &mut tokio::fs::File,
    cancel: &mut watch::Receiver<Cancel>,
    grace: Duration,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Exit {
    let Some((program, args)) = argv.split_first() else {
        return Exit::SpawnFailed("empty command".to_owned());
    };
    if *cancel.borrow() != Cancel::None {
        return Exit::Cancelled;
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Exit::SpawnFailed(format!("cannot run `{program}`: {e}")),
    };
    // The group to signal. `None` only if the child was already reaped, when there is nothing
    // left to signal: a pid of 0 would signal mab's own process group.
    let pid = child.id();
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Small (a Dockerfile); written whole, then closed so the child sees its end.
        let input = input.to_owned();
        tokio::spawn(async move {
            let _ = pipe.write_all(input.as_bytes()).await;
        });
    }
    // Both pipes are read as bytes until their end, whatever they carry: a line that is not
    // UTF-8 is decoded lossily, never a reason to stop reading (a pipe left open and unread
    // fills, and the child then blocks on its next write forever). A pipe whose read fails is
    // dropped, which closes it: the child gets EPIPE instead of a full pipe.
    //
    // The reading must keep up: buildah's chroot isolation drops a step's output, rather than
    // wait, when the pipe it writes to is full (seen: 661 to 892 of 1,200 lines kept behind a
    // slow reader). So lines go to the log through a buffer, flushed whenever the reader has
    // caught up with the child, not with a write per line.
    let mut out = Pipe::new(child.stdout.take());
    let mut err = Pipe::new(child.stderr.take());
    let mut log = tokio::io::BufWriter::with_capacity(PIPE_BUFFER, log);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut cancelled = false;
    let mut watching = true;
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = out.read(), if out.open() => out.hand_on(read, &mut log, on_line).await,
            read = err.read(), if err.open() => err.hand_on(read, &mut log, on_line).await,
            status = child.wait(), if !out.open() && !err.open() => {
                let _ = log.flush().await;
                return match status {
                    _ if cancelled => Exit::Cancelled,
                    Ok(s) => s.code().map_or(Exit::Signal, Exit::Code),
                    Err(e) => Exit::SpawnFailed(e.to_string()),
                };
            },
            changed = cancel.changed(), if watching => {
                let level = if changed.is_ok() { *cancel.borrow() } else { Cancel::Kill };
                cancelled = true;
                watching = level != Cancel::Kill;
                match level {
                    Cancel::None => {}
                    Cancel::Graceful => {
                        signal_group(pid, libc::SIGTERM);
                        deadline = Some(tokio::time::Instant::now() + grace);
                    }
                    Cancel::Kill => signal_group(pid, libc::SIGKILL),
                }
            },
            () = sleep => {
                signal_group(pid, libc::SIGKILL);
                deadline = None;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `sh -c SCRIPT` to its end (or fail after 60 s), returning the exit and the lines.
    async fn sh(script: &str) -> (Exit, Vec<String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let mut log = tokio::fs::File::create(&log_path).await.unwrap();
        let (_tx, mut cancel) = watch::channel(Cancel::None);
        let mut lines = Vec::new();
        let argv = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let exit = tokio::time::timeout(
            Duration::from_secs(60),
            run(
                &argv,
                None,
                dir.path(),
                &mut log,
                &mut cancel,
                Duration::from_secs(1),
                &mut |l: &str| lines.push(l.to_owned()),
            ),
        )
        .await
        .expect("the child's output is drained to its end");
        let text = std::fs::read_to_string(&log_path).unwrap();
        (exit, lines, text)
    }

    #[tokio::test]
    async fn a_byte_that_is_not_utf8_does_not_stop_the_reading() {
        // An invalid byte, then far more than a pipe holds (64 KiB), on both pipes; the last
        // lines say the child got to its end.
        let script = r"printf 'caf\351\n'; printf 'caf\351\n' >&2
            i=0; while [ $i -lt 3000 ]; do
              echo 'line of output that fills the pipe ......................................'
              echo 'and its standard error, as full .........................................' >&2
              i=$((i+1)); done
            echo stdout-end; echo stderr-end >&2; exit 3";
        let (exit, lines, log) = sh(script).await;
        assert!(matches!(exit, Exit::Code(3)), "{exit:?}");
        assert_eq!(lines.len(), 2 + 6000 + 2);
        assert_eq!(lines.iter().filter(|l| *l == "caf\u{fffd}").count(), 2);
        assert!(lines.contains(&"stdout-end".to_owned()));
        assert!(lines.contains(&"stderr-end".to_owned()));
        assert!(
            log.contains("caf\u{fffd}\n") && log.ends_with("-end\n"),
            "{}",
            &log[log.len() - 40..]
        );
    }

    #[tokio::test]
    async fn a_last_line_without_newline_and_crlf_lines_are_kept() {
        let (exit, lines, _) = sh(r"printf 'one\r\ntwo'").await;
        assert!(matches!(exit, Exit::Code(0)), "{exit:?}");
        assert_eq!(lines, ["one", "two"]);
    }

    /// A line without end (a progress bar redrawn with `\r` for a whole download) is handed on
    /// in pieces of at most the limit, every byte of it, never held whole.
    #[tokio::test]
    async fn a_line_without_end_is_handed_on_in_pieces() {
        let (exit, lines, _) = sh("head -c 300000 /dev/zero | tr '\\0' x; echo; echo after").await;
        assert!(matches!(exit, Exit::Code(0)), "{exit:?}");
        let (long, rest) = lines.split_at(lines.len() - 1);
        assert_eq!(rest, ["after"]);
        assert!(long.len() >= 5, "{} pieces", long.len());
        assert!(
            long.iter()
                .all(|l| l.len() as u64 <= 2 * LINE_LIMIT && l.bytes().all(|b| b == b'x'))
        );
        assert_eq!(long.iter().map(String::len).sum::<usize>(), 300_000);
    }

    #[test]
    fn no_pid_signals_nothing() {
        // A child without a pid (already reaped) must not become killpg(0), mab's own group:
        // were it sent, this test process would die of it.
        signal_group(None, libc::SIGTERM);
        signal_group(Some(0), libc::SIGTERM);
    }
}
