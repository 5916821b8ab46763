//! Where the images come from: the commit the manifest is checked out at. It gives the
//! builds their `SOURCE_DATE_EPOCH`, and every index the standard `org.opencontainers.image.*`
//! annotations (`source`, `revision`, `created`, `version`) the manifest does not set.
//!
//! None of it is an input of a build: a new commit with the same inputs reuses every
//! platform image (a dependent's input is its base's image for the platform, not the index).
//! And the commit's annotations alone never write an index: when the published one holds
//! the same images with the same other annotations, it stays, naming the commit that first
//! published those images (`exec::merge`).

use std::path::Path;
use std::process::Command;

use chrono::DateTime;

use crate::manifest::Model;

/// The reproducible-builds variable: when set, it wins over the commit's time.
pub const EPOCH_VAR: &str = "SOURCE_DATE_EPOCH";

pub const SOURCE: &str = "org.opencontainers.image.source";
pub const REVISION: &str = "org.opencontainers.image.revision";
pub const CREATED: &str = "org.opencontainers.image.created";
pub const VERSION: &str = "org.opencontainers.image.version";

/// The checked-out commit of the manifest's repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub revision: String,
    /// Committer time, seconds since the epoch.
    pub time: i64,
    /// `remote.origin.url` as a public address: no credentials, no query.
    pub source: Option<String>,
    /// No tracked file under the manifest's directory differs from the commit: only then
    /// does the revision name what is built. (Untracked files are not asked about: a CI job's
    /// downloaded artifacts would make every merge job's index differ from the plan's.)
    pub clean: bool,
}

/// `SOURCE_DATE_EPOCH` from the environment: `Ok(None)` when unset or empty; an error when it
/// is not a whole number of seconds, never ignored.
pub fn epoch_from_env() -> Result<Option<i64>, String> {
    match std::env::var(EPOCH_VAR) {
        Ok(text) if !text.is_empty() => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0 && DateTime::from_timestamp(*s, 0).is_some())
            .map(Some)
            .ok_or_else(|| format!("{EPOCH_VAR}={text:?} is not a number of seconds since 1970")),
        _ => Ok(None),
    }
}

/// `git -C DIR ARGS…`: its output, trimmed; `None` when git fails or is missing.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// The commit `dir` is checked out at; `None` outside a repository (or without git, or
/// before the first commit). Its three questions to git run side by side.
pub fn commit(dir: &Path) -> Option<Commit> {
    let (head, remote, status) = std::thread::scope(|s| {
        let remote = s.spawn(|| git(dir, &["config", "--get", "remote.origin.url"]));
        let status = s.spawn(|| {
            git(
                dir,
                &[
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ".",
                    ":(exclude).mab",
                ],
            )
        });
        let head = git(dir, &["log", "-1", "--format=%H %ct"]);
        (
            head,
            remote.join().ok().flatten(),
            status.join().ok().flatten(),
        )
    });
    let head = head?;
    let (revision, time) = head.split_once(' ')?;
    Some(Commit {
        revision: revision.to_owned(),
        time: time.parse().ok()?,
        source: remote.as_deref().and_then(public_url),
        clean: status.is_some_and(|s| s.is_empty()),
    })
}

/// A remote's address as it may be published: `https://host/path`, without user, password,
/// query or `.git`; SSH addresses (`git@host:o/r.git`, `ssh://git@host/o/r`) as their HTTPS
/// form. A local path or `file://` is not published (it would print the machine's paths).
pub fn public_url(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let (host, path) = if let Ok(mut url) = reqwest::Url::parse(remote)
        && url.has_host()
    {
        match url.scheme() {
            "https" | "http" => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.set_query(None);
                url.set_fragment(None);
                let host = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str()?),
                    None => url.host_str()?.to_owned(),
                };
                (host, url.path().to_owned())
            }
            "ssh" | "git" | "git+ssh" | "ssh+git" => {
                (url.host_str()?.to_owned(), url.path().to_owned())
            }
            _ => return None,
        }
    } else {
        // scp-like: `[user@]host:path`, with a domain name (an SSH alias names no public host).
        let (left, path) = remote.split_once(':')?;
        let host = left.rsplit_once('@').map_or(left, |(_, h)| h);
        if !host.contains('.') || host.contains('/') || path.starts_with("//") {
            return None;
        }
        (
            host.to_owned(),
            format!("/{}", path.trim_start_matches('/')),
        )
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '@' | '?' | '#' | '"' | '\\'))
    };
    (ok(&host) && ok(path)).then(|| format!("https://{host}{path}"))
}

/// Give `model` its `SOURCE_DATE_EPOCH` (the environment's, validated when the run starts,
/// else the commit's time) and every version the standard index annotations it does not set
/// itself: `version` from its first tag; `created` (the epoch), `source` and `revision` (of a
/// clean checkout) from the commit, listed in the version's `commit_annotations`.
pub fn fill(model: &mut Model, commit: Option<&Commit>) {
    model.epoch = epoch_from_env().ok().flatten().or(commit.map(|c| c.time));
    let created = model
        .epoch
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map(crate::clock::format);
    annotate(model);
    for v in &mut model.versions {
        let mut standard = vec![(CREATED, created.clone())];
        if let Some(c) = commit {
            standard.push((SOURCE, c.source.clone()));
            standard.push((REVISION, c.clean.then(|| c.revision.clone())));
        }
        for (key, value) in standard {
            if let Some(value) = value
                && !v.index_annotations.contains_key(key)
            {
                v.index_annotations.insert(key.to_owned(), value);
                v.commit_annotations.insert(key.to_owned());
            }
        }
    }
}

/// Give every version the standard `version` index annotation unless it sets it: all a
/// manifest read without its checkout (`--changed-since`'s old revision) is given.
pub fn annotate(model: &mut Model) {
    for v in &mut model.versions {
        let version = v.primary_tag();
        v.index_annotations
            .entry(VERSION.to_owned())
            .or_insert(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_are_published_without_credentials_or_local_paths() {
        let cases = [
            (
                "https://x-access-token:ghs_secret@github.com/acme/images.git",
                Some("https://github.com/acme/images"),
            ),
            (
                "https://github.com/acme/images?token=abc#frag",
                Some("https://github.com/acme/images"),
            ),
            (
                "git@github.com:acme/images.git",
                Some("https://github.com/acme/images"),
            ),
            (
                "ssh://git@gitlab.example:2222/group/sub/images.git",
                Some("https://gitlab.example/group/sub/images"),
            ),
            (
                "http://127.0.0.1:8080/acme/images/",
                Some("https://127.0.0.1:8080/acme/images"),
            ),
            (
                "https://github.com/acme/im\"ages\n",
                Some("https://github.com/acme/im%22ages"),
            ),
            ("/srv/git/images.git", None),
            ("file:///srv/git/images.git", None),
            ("C:/repos/images", None),
            ("github-work:acme/images", None),
            ("../images", None),
        ];
        for (remote, want) in cases {
            assert_eq!(public_url(remote).as_deref(), want, "{remote}");
        }
    }
}
