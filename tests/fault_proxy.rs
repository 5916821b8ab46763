//! A fault-injecting proxy for the end-to-end tests (tokio), between `mab` and a real
//! registry. HTTP mode reads each request and response and can answer with a status of
//! its own, flip a byte, cut a body short, stall, or reset the connection; TCP mode
//! forwards bytes and can reset a connection after so many bytes. Every request is
//! logged (`METHOD PATH`), which also proves the order of pushes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and headers instead of forwarding.
    Status(u16, Vec<(String, String)>, String),
    /// Forward, but flip one byte in the middle of the response body.
    FlipByte,
    /// Forward, but send only half the body, then close.
    Truncate,
    /// Wait this long before answering.
    Stall(Duration),
    /// Close the connection without an answer.
    Reset,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub path_contains: String,
    /// How many matching requests the fault hits; later ones pass.
    pub times: usize,
    pub fault: Fault,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<String>,
    /// Bearer mode: (basic credentials `user:password` base64, token) the proxy demands.
    bearer: Option<(String, String)>,
    /// Scoped bearer mode: the basic credentials (base64) the token endpoint demands; each
    /// token grants the scopes it was asked for, as Docker Hub's do.
    scoped: Option<String>,
    /// Scoped tokens issued: token → (repository, actions) granted.
    grants: std::collections::HashMap<String, Vec<(String, String)>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    /// Per repository: writes (PUT, POST, PATCH) being answered now; the most at once of any.
    writing: std::collections::HashMap<String, usize>,
    max_writers: usize,
}

/// A request being answered: counted in flight until dropped.
struct InFlight {
    state: Arc<Mutex<State>>,
    repository: Option<String>,
}

impl InFlight {
    fn new(state: &Arc<Mutex<State>>, method: &str, path: &str) -> InFlight {
        let write = !matches!(method, "GET" | "HEAD");
        let repository = scopes_needed(method, path)
            .into_iter()
            .next()
            .map(|(r, _)| r)
            .filter(|_| write);
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        if let Some(r) = &repository {
            let n = {
                let n = s.writing.entry(r.clone()).or_default();
                *n += 1;
                *n
            };
            s.max_writers = s.max_writers.max(n);
        }
        InFlight {
            state: state.clone(),
            repository,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap();
        s.in_flight -= 1;
        if let Some(r) = &self.repository
            && let Some(n) = s.writing.get_mut(r)
        {
            *n -= 1;
        }
    }
}

pub struct Proxy {
    pub addr: String,
    state: Arc<Mutex<State>>,
    runtime: tokio::runtime::Runtime,
}

impl Proxy {
    pub fn rule(&self, method: &'static str, path_contains: &str, times: usize, fault: Fault) {
        self.state.lock().unwrap().rules.push(Rule {
            method,
            path_contains: path_contains.to_owned(),
            times,
            fault,
        });
    }

    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap();
        s.rules.clear();
        s.log.clear();
        s.max_in_flight = s.in_flight;
        s.max_writers = 0;
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// The most requests answered at once (stalls included), since the start or `clear`.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// The most writes to one repository answered at once.
    pub fn max_writers_per_repository(&self) -> usize {
        self.state.lock().unwrap().max_writers
    }

    /// Put the registry behind bearer-token auth: every request needs `Bearer TOKEN`; the
    /// token is served at `/token` to a client presenting basic `credentials` (base64).
    pub fn require_bearer(&self, credentials: &str, token: &str) {
        self.state.lock().unwrap().bearer = Some((credentials.to_owned(), token.to_owned()));
    }

    /// Put the registry behind tokens scoped to repositories, as Docker Hub, GHCR and quay.io
    /// do: a request needs a token granting its repository (`pull` to read, `pull,push` to
    /// write; a cross-repository mount also `pull` of the source), else a 401 whose challenge
    /// names the scopes. `/token?scope=…` (each scope a parameter) grants what it is asked
    /// to a client presenting basic `credentials` (base64).
    pub fn require_scoped_bearer(&self, credentials: &str) {
        self.state.lock().unwrap().scoped = Some(credentials.to_owned());
    }
}

/// The scopes a registry request needs: `repository:NAME:pull` or `…:pull,push`, and the
/// source's pull for a mount.
fn scopes_needed(method: &str, path: &str) -> Vec<(String, String)> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Vec::new();
    };
    let name = ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .map(|i| rest[..i].to_owned());
    let Some(name) = name else {
        return Vec::new();
    };
    let actions = if matches!(method, "GET" | "HEAD") {
        "pull"
    } else {
        "pull,push"
    };
    let mut out = vec![(name, actions.to_owned())];
    for pair in query.split('&') {
        if let Some(from) = pair.strip_prefix("from=") {
            out.push((from.replace("%2F", "/"), "pull".to_owned()));
        }
    }
    out
}

/// Whether `granted` covers `needed` (push implies pull).
fn covers(granted: &[(String, String)], needed: &[(String, String)]) -> bool {
    needed.iter().all(|(repo, actions)| {
        granted
            .iter()
            .any(|(r, a)| r == repo && actions.split(',').all(|x| a.split(',').any(|y| y == x)))
    })
}

/// The scopes a token request asks for: each `scope=repository:NAME:ACTIONS` parameter.
fn scopes_asked(path: &str) -> Vec<(String, String)> {
    let query = path.split_once('?').map_or("", |q| q.1);
    query
        .split('&')
        .filter_map(|p| p.strip_prefix("scope="))
        .flat_map(|s| {
            let s = s
                .replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",");
            s.split([' ', '+'])
                .filter_map(|one| {
                    let one = one.strip_prefix("repository:")?;
                    let (name, actions) = one.rsplit_once(':')?;
                    Some((name.to_owned(), actions.to_owned()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropping the runtime stops every connection task.
        let rt = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        rt.shutdown_background();
    }
}

/// An HTTP-mode proxy to `upstream` (`host:port`).
pub fn http(upstream: &str) -> Proxy {
    start(upstream, false, 0, false)
}

/// A TCP-mode proxy that resets the first connection carrying more than `after` bytes
/// from upstream (a download), once.
pub fn tcp_reset_after(upstream: &str, after: usize) -> Proxy {
    start(upstream, true, after, false)
}

/// A TCP-mode proxy that resets the first connection carrying more than `after` bytes
/// to upstream (an upload), once.
pub fn tcp_reset_upload_after(upstream: &str, after: usize) -> Proxy {
    start(upstream, true, after, true)
}

fn start(upstream: &str, tcp: bool, reset_after: usize, upload: bool) -> Proxy {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(State::default()));
    let upstream = upstream.to_owned();
    let shared = state.clone();
    let resets_left = Arc::new(Mutex::new(if tcp { 1usize } else { 0 }));
    runtime.spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (state, upstream, resets_left) =
                (shared.clone(), upstream.clone(), resets_left.clone());
            tokio::spawn(async move {
                if tcp {
                    let _ = pipe_tcp(client, &upstream, reset_after, upload, resets_left).await;
                } else {
                    let _ = serve_http(client, &upstream, state).await;
                }
            });
        }
    });
    Proxy {
        addr,
        state,
        runtime,
    }
}

async fn pipe_tcp(
    mut client: TcpStream,
    upstream: &str,
    after: usize,
    upload: bool,
    resets_left: Arc<Mutex<usize>>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    // The faulty direction is copied by hand, counting bytes; the other plainly.
    let (from, to, plain_from, plain_to): (
        &mut (dyn tokio::io::AsyncRead + Unpin + Send),
        &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        &mut (dyn tokio::io::AsyncRead + Unpin + Send),
        &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) = if upload {
        (&mut cr, &mut sw, &mut sr, &mut cw)
    } else {
        (&mut sr, &mut cw, &mut cr, &mut sw)
    };
    let plain = tokio::io::copy(plain_from, plain_to);
    let faulty = async {
        let mut sent = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            sent += n;
            let reset = sent > after && {
                let mut left = resets_left.lock().unwrap();
                let now = *left > 0;
                *left = left.saturating_sub(1);
                now
            };
            if reset {
                // Half the chunk, then a reset.
                to.write_all(&buf[..n / 2]).await?;
                return Err(std::io::Error::other("reset"));
            }
            to.write_all(&buf[..n]).await?;
        }
    };
    let broken = tokio::select! {
        _ = plain => false,
        r = faulty => r.is_err(),
    };
    if broken {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    Ok(())
}

/// Read one HTTP message head (through the blank line).
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf[..end + 4].to_vec();
            buf.drain(..end + 4);
            return Ok(Some(head));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    while buf.len() < len {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let take = len.min(buf.len());
    Ok(buf.drain(..take).collect())
}

/// The value of header `name` in a request's head, or empty.
fn header(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default()
}

async fn serve_http(
    mut client: TcpStream,
    upstream: &str,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut client, &mut buf).await? {
        let head_text = String::from_utf8_lossy(&head).into_owned();
        let mut first = head_text.lines().next().unwrap_or("").split_whitespace();
        let (method, path) = (
            first.next().unwrap_or("").to_owned(),
            first.next().unwrap_or("").to_owned(),
        );
        let body = read_body(&mut client, &mut buf, content_length(&head_text)).await?;
        let auth_header = header(&head_text, "authorization");
        let scoped = state.lock().unwrap().scoped.clone();
        if let Some(credentials) = scoped {
            let answer = {
                let mut s = state.lock().unwrap();
                if path.starts_with("/token") {
                    s.log.push(format!("{method} {path}"));
                    if auth_header == format!("Basic {credentials}") {
                        let token = format!("scoped-token-secret-{}", s.grants.len());
                        s.grants.insert(token.clone(), scopes_asked(&path));
                        let body = format!("{{\"token\": \"{token}\"}}");
                        Some(format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        ))
                    } else {
                        Some("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_owned())
                    }
                } else {
                    let needed = scopes_needed(&method, &path);
                    let granted = auth_header
                        .strip_prefix("Bearer ")
                        .and_then(|t| s.grants.get(t))
                        .cloned()
                        .unwrap_or_default();
                    if needed.is_empty() || covers(&granted, &needed) {
                        None
                    } else {
                        let host = header(&head_text, "host");
                        s.log.push(format!("401 {method} {path}"));
                        let scope = needed
                            .iter()
                            .map(|(r, a)| format!("repository:{r}:{a}"))
                            .collect::<Vec<_>>()
                            .join(" ");
                        Some(format!(
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"fault-proxy\",scope=\"{scope}\"\r\nContent-Length: 0\r\n\r\n"
                        ))
                    }
                }
            };
            if let Some(a) = answer {
                client.write_all(a.as_bytes()).await?;
                continue;
            }
            // Granted: logged and forwarded below.
        }
        let bearer = state.lock().unwrap().bearer.clone();
        if let Some((credentials, token)) = bearer {
            state.lock().unwrap().log.push(format!("{method} {path}"));
            let answer = if path.starts_with("/token") {
                if auth_header == format!("Basic {credentials}") {
                    let body = format!("{{\"token\": \"{token}\"}}");
                    Some(format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ))
                } else {
                    Some("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_owned())
                }
            } else if auth_header != format!("Bearer {token}") {
                let host = header(&head_text, "host");
                Some(format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"fault-proxy\"\r\nContent-Length: 0\r\n\r\n"
                ))
            } else {
                None
            };
            if let Some(a) = answer {
                client.write_all(a.as_bytes()).await?;
                continue;
            }
        }
        let fault = {
            let mut s = state.lock().unwrap();
            s.log.push(format!("{method} {path}"));
            let hit = s
                .rules
                .iter_mut()
                .find(|r| r.method == method && path.contains(&r.path_contains) && r.times > 0);
            hit.map(|r| {
                r.times -= 1;
                r.fault.clone()
            })
        };
        // In flight until the proxy starts to answer: the client cannot have the answer (and
        // start its next request) before that.
        let mut in_flight = Some(InFlight::new(&state, &method, &path));
        if let Some(Fault::Stall(d)) = &fault {
            tokio::time::sleep(*d).await;
        }
        match &fault {
            Some(Fault::Status(code, headers, body)) => {
                let mut resp = format!(
                    "HTTP/1.1 {code} Fault\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(body);
                in_flight.take();
                client.write_all(resp.as_bytes()).await?;
                continue;
            }
            Some(Fault::Reset) => {
                let _ = client.set_zero_linger();
                return Ok(());
            }
            _ => {}
        }
        // Forward on a connection of its own, closed after the answer.
        let mut server = TcpStream::connect(upstream).await?;
        let forwarded = head_text
            .replacen("\r\n\r\n", "", 1)
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\nConnection: close\r\n\r\n";
        server.write_all(forwarded.as_bytes()).await?;
        server.write_all(&body).await?;
        let mut sbuf = Vec::new();
        let Some(rhead) = read_head(&mut server, &mut sbuf).await? else {
            return Ok(());
        };
        let rhead_text = String::from_utf8_lossy(&rhead).into_owned();
        let rlen = if method == "HEAD" {
            0
        } else {
            content_length(&rhead_text)
        };
        let mut rbody = read_body(&mut server, &mut sbuf, rlen).await?;
        match fault {
            Some(Fault::FlipByte) if !rbody.is_empty() => {
                let mid = rbody.len() / 2;
                rbody[mid] ^= 0x01;
            }
            Some(Fault::Truncate) => {
                in_flight.take();
                client.write_all(&rhead).await?;
                client.write_all(&rbody[..rbody.len() / 2]).await?;
                let _ = client.set_zero_linger();
                return Ok(());
            }
            _ => {}
        }
        in_flight.take();
        client.write_all(&rhead).await?;
        client.write_all(&rbody).await?;
    }
    Ok(())
}
