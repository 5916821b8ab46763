//! Child processes in their own process group: output to the node's log and the
//! reporter, SIGTERM to the group on cancel, SIGKILL after the grace period.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::Cancel;

/// How a command ended.
#[derive(Debug)]
pub enum Exit {
    Code(i32),
    Signal,
    Cancelled,
    SpawnFailed(String),
}

/// Signal a whole process group (the child and everything it started).
fn signal_group(pid: u32, signal: i32) {
    // SAFETY: `killpg` has no memory effects; a stale group id only yields ESRCH.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
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
    let pid = child.id().unwrap_or(0);
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Small (a Dockerfile); written whole, then closed so the child sees its end.
        let input = input.to_owned();
        tokio::spawn(async move {
            let _ = pipe.write_all(input.as_bytes()).await;
        });
    }
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut err = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let (mut out_open, mut err_open) = (true, true);
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
            line = out.next_line(), if out_open => match line {
                Ok(Some(l)) => { let _ = log.write_all(format!("{l}\n").as_bytes()).await; on_line(&l); }
                _ => out_open = false,
            },
            line = err.next_line(), if err_open => match line {
                Ok(Some(l)) => { let _ = log.write_all(format!("{l}\n").as_bytes()).await; on_line(&l); }
                _ => err_open = false,
            },
            status = child.wait(), if !out_open && !err_open => {
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
