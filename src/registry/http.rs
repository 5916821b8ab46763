//! HTTP for the registry client: authentication (basic, bearer tokens) and retries that
//! are classified, bounded, visible and shared per host.
//!
//! `oci-client` hides response headers and has no retry hook, so `Retry-After` could not
//! be honoured through it; requests are made here with `reqwest` directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

/// How retries back off.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Backoff before retry `n` is random in `[0, min(cap, base · 2ⁿ)]` (full jitter).
    pub base: Duration,
    pub cap: Duration,
    /// The most a `Retry-After` is waited.
    pub retry_after_cap: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(8),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

/// Why a request failed, and whether trying again could help.
#[derive(Debug)]
pub struct HttpError {
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// 408, 429 and 5xx are worth another try; 400, 401 (after re-auth), 403 and 404 are not.
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Connection refused or reset, timeouts, broken bodies: transient.
pub fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode()
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: HashMap<String, String> = HashMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => match q.split_once('"') {
                Some((v, n)) => (v, n),
                None => (q, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key, value.to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// A bearer token of one scope, and the lock that makes one token request answer every
/// request that needs it at once.
#[derive(Default)]
struct TokenSlot {
    token: Mutex<Option<String>>,
    fetch: tokio::sync::Mutex<()>,
}

/// What the docker config holds for a host, read once (a credential helper is a process).
type Configured = Option<(String, String)>;

pub struct Http {
    client: reqwest::Client,
    insecure: Vec<String>,
    policy: Policy,
    /// Per host: the credentials of the docker config, looked up once, off the runtime.
    configured: crate::once_map::OnceMap<String, Configured>,
    /// Per host: basic credentials the registry asked for.
    basic: Mutex<HashMap<String, (String, String)>>,
    /// Per (host, scope): the bearer token. Docker Hub, GHCR and quay.io scope a token to one
    /// repository, so a token per host would be replaced by the next repository's.
    tokens: Mutex<HashMap<(String, String), Arc<TokenSlot>>>,
    /// Per host: no request before this instant (a 429 or backoff slows every request to it).
    not_before: Mutex<HashMap<String, Instant>>,
    observer: Box<dyn Fn(&str) + Send + Sync>,
}

impl Http {
    /// The client, with the documented timeouts; an error when the TLS stack cannot start
    /// (never a client without timeouts).
    pub fn new(
        insecure: &[String],
        read_timeout: Duration,
        policy: Policy,
        observer: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .user_agent(concat!("mab/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make the registry client: {e}"))?;
        Ok(Http {
            client,
            insecure: insecure.to_vec(),
            policy,
            configured: crate::once_map::OnceMap::default(),
            basic: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            not_before: Mutex::new(HashMap::new()),
            observer,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// `http` for insecure and loopback hosts, `https` otherwise.
    pub fn base(&self, host: &str) -> String {
        let scheme =
            if self.insecure.iter().any(|h| h == host) || super::transport::is_loopback(host) {
                "http"
            } else {
                "https"
            };
        format!("{scheme}://{host}")
    }

    pub fn note(&self, message: &str) {
        (self.observer)(message);
    }

    /// Backoff before try `n` (0-based), full jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        let ceiling = self
            .policy
            .base
            .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
            .min(self.policy.cap);
        ceiling.mul_f64(fastrand::f64())
    }

    /// Hold every request to `host` back by `delay`.
    pub fn slow_down(&self, host: &str, delay: Duration) {
        let until = Instant::now() + delay;
        let mut map = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry(host.to_owned()).or_insert(until);
        *slot = (*slot).max(until);
    }

    pub async fn wait_for(&self, host: &str) {
        let until = self
            .not_before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .copied();
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    fn slot(&self, host: &str, scope: &str) -> Arc<TokenSlot> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((host.to_owned(), scope.to_owned()))
            .or_default()
            .clone()
    }

    fn token(&self, host: &str, scope: &str) -> Option<String> {
        let slot = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(host.to_owned(), scope.to_owned()))
            .cloned()?;
        slot.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The token to send for `scope`: its own, or for a pull the repository's push token,
    /// which grants pulling too.
    fn token_for(&self, host: &str, scope: &str) -> Option<String> {
        self.token(host, scope).or_else(|| {
            let push = format!("{}:pull,push", scope.strip_suffix(":pull")?);
            self.token(host, &push)
        })
    }

    /// Username and password for `host` from the docker config, if any: looked up once per
    /// host, on a blocking thread (a credential helper is a process mab waits for).
    async fn configured(&self, host: &str) -> Configured {
        let owned = host.to_owned();
        self.configured
            .get_or_init(host.to_owned(), || async move {
                tokio::task::spawn_blocking(move || lookup(&owned))
                    .await
                    .ok()
                    .flatten()
            })
            .await
    }

    /// Answer a 401 to a request for `scope` that carried `sent` (its token, if any): basic
    /// credentials, or a bearer token of the scope from the challenge's realm — unless
    /// another request renewed that token meanwhile, which is then used as it is.
    async fn authenticate(
        &self,
        host: &str,
        challenge: &str,
        scope: &str,
        sent: Option<&str>,
    ) -> Result<(), HttpError> {
        let fail = |m: String| HttpError {
            message: m,
            retryable: false,
        };
        match parse_challenge(challenge) {
            Some(Challenge::Basic) => {
                let (u, p) = self.configured(host).await.ok_or_else(|| {
                    fail(format!(
                        "{host} wants credentials and the docker config has none"
                    ))
                })?;
                self.basic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(host.to_owned(), (u, p));
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let slot = self.slot(host, scope);
                let _one_request = slot.fetch.lock().await;
                let current = slot.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if current.is_some() && current.as_deref() != sent {
                    return Ok(());
                }
                let mut url = reqwest::Url::parse(&realm)
                    .map_err(|e| fail(format!("bad token realm {realm}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    // What the request needs (`scope`: one repository's pull, or pull and
                    // push, and for a cross-repository mount the source's pull) and what the
                    // challenge names, one parameter each: the token then serves every later
                    // request of this scope, not only the one that met the challenge (a HEAD
                    // answered with a pull scope must not make the PUT after it ask again).
                    let mut scopes: Vec<&str> = scope.split_whitespace().collect();
                    for s in asked.as_deref().unwrap_or("").split_whitespace() {
                        if !scopes.contains(&s) {
                            scopes.push(s);
                        }
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut req = self.client.get(url);
                if let Some((u, p)) = self.configured(host).await {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req.send().await.map_err(|e| HttpError {
                    message: format!("token request to {realm}: {e}"),
                    retryable: retryable_error(&e),
                })?;
                if !resp.status().is_success() {
                    return Err(fail(format!("token request to {realm}: {}", resp.status())));
                }
                let body: serde_json::Value = resp
                    .json()
                    .await
                    .map_err(|e| fail(format!("token from {realm}: {e}")))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| fail(format!("no token in the answer of {realm}")))?;
                *slot.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_owned());
                Ok(())
            }
            None => Err(fail(format!(
                "{host} asks for an unknown authentication: {challenge}"
            ))),
        }
    }

    /// `req` with what `host` accepted for `scope`; the token sent, if any.
    fn authorize(
        &self,
        host: &str,
        scope: &str,
        req: reqwest::RequestBuilder,
    ) -> (reqwest::RequestBuilder, Option<String>) {
        if let Some(t) = self.token_for(host, scope) {
            return (req.header(AUTHORIZATION, format!("Bearer {t}")), Some(t));
        }
        let basic = self
            .basic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned();
        match basic {
            Some((u, p)) => (req.basic_auth(u, Some(p)), None),
            None => (req, None),
        }
    }

    /// One request with retries: transient failures and 408/429/5xx are retried with
    /// backoff (or `Retry-After`), a 401 re-authenticates once. Any other answer,
    /// including 4xx, is returned for the caller to read.
    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
        scope: &str,
    ) -> Result<Response, HttpError> {
        let url = format!("{}{path}", self.base(host));
        let mut reauthenticated = false;
        let mut attempt = 0;
        loop {
            self.wait_for(host).await;
            let mut req = self
                .client
                .request(method.clone(), &url)
                .headers(headers.clone());
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let (req, sent) = self.authorize(host, scope, req);
            let outcome = req.send().await;
            let (delay, why) = match outcome {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !reauthenticated => {
                    reauthenticated = true;
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    self.authenticate(host, &challenge, scope, sent.as_deref())
                        .await?;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    return Err(HttpError {
                        message: format!("{method} {url}: not authorized (401)"),
                        retryable: false,
                    });
                }
                Ok(resp) if retryable_status(resp.status()) => {
                    let wait = retry_after(resp.headers(), SystemTime::now())
                        .map(|d| d.min(self.policy.retry_after_cap));
                    (
                        wait.unwrap_or_else(|| self.backoff(attempt)),
                        format!("{}", resp.status()),
                    )
                }
                Ok(resp) => return Ok(resp),
                Err(e) if retryable_error(&e) => {
                    (self.backoff(attempt), super::transport::describe(&e))
                }
                Err(e) => {
                    return Err(HttpError {
                        message: format!("{method} {url}: {}", super::transport::describe(&e)),
                        retryable: false,
                    });
                }
            };
            attempt += 1;
            if attempt >= self.policy.attempts {
                return Err(HttpError {
                    message: format!("{method} {url}: {why}, {attempt} tries"),
                    retryable: true,
                });
            }
            self.slow_down(host, delay);
            self.note(&format!(
                "retrying {method} {url} in {:.1}s ({why}; try {} of {})",
                delay.as_secs_f64(),
                attempt + 1,
                self.policy.attempts
            ));
        }
    }

    /// A request whose body is a stream (uploads): authenticated, not retried here: a
    /// stream cannot be replayed, so the caller restarts the whole transfer.
    pub async fn send_stream(
        &self,
        method: Method,
        url: &str,
        host: &str,
        headers: HeaderMap,
        body: reqwest::Body,
        scope: &str,
    ) -> Result<Response, HttpError> {
        self.wait_for(host).await;
        let (req, _) = self.authorize(
            host,
            scope,
            self.client
                .request(method.clone(), url)
                .headers(headers)
                .body(body),
        );
        req.send().await.map_err(|e| HttpError {
            message: format!("{method} {url}: {}", super::transport::describe(&e)),
            retryable: retryable_error(&e),
        })
    }
}

/// Username and password for `host` from the docker config (`auths`, `credHelpers`,
/// `credsStore`), if any. Blocking: a credential helper is a process.
fn lookup(host: &str) -> Configured {
    let server = match host {
        "registry-1.docker.io" | "index.docker.io" | "docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    match docker_credential::get_credential(server) {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => Some((u, p)),
        _ => None,
    }
}

pub fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn statuses_are_classified() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404] {
            assert!(!retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let http = Http::new(
            &[],
            Duration::from_secs(1),
            Policy::default(),
            Box::new(|_| {}),
        )
        .unwrap();
        let policy = Policy::default();
        // Full jitter: random in [0, min(8 s, 0.2 s · 2ⁿ)], spread over that range.
        let ceilings = [
            (0, 200),
            (1, 400),
            (2, 800),
            (3, 1600),
            (5, 6400),
            (6, 8000),
            (39, 8000),
        ];
        for (n, ms) in ceilings {
            let ceiling = Duration::from_millis(ms);
            let draws: Vec<Duration> = (0..200).map(|_| http.backoff(n)).collect();
            assert!(
                draws.iter().all(|d| *d <= ceiling),
                "try {n}: over {ceiling:?}"
            );
            let (low, high) = (
                draws.iter().filter(|d| **d < ceiling / 4).count(),
                draws.iter().filter(|d| **d > ceiling * 3 / 4).count(),
            );
            // With 200 uniform draws, each quarter holds about 50; fewer than 10 in one has a
            // probability of 7e-15.
            assert!(
                low >= 10 && high >= 10,
                "try {n}: not jittered ({low} low, {high} high)"
            );
        }
        // It grows: the ceiling doubles until the cap.
        let mean = |n: u32| (0..400).map(|_| http.backoff(n).as_secs_f64()).sum::<f64>() / 400.0;
        assert!(
            mean(0) < 0.15 && mean(3) > 0.5 && mean(3) < 1.1,
            "{} {}",
            mean(0),
            mean(3)
        );
        assert!(
            mean(10) > 3.0 && mean(10) <= policy.cap.as_secs_f64(),
            "capped at 8 s"
        );
    }
}
