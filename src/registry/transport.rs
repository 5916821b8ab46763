//! Which registries are spoken to over plain HTTP, by the conventions the tools around mab
//! follow, and what a failed connection was, in words.
//!
//! - The manifest's `insecure=#true` (the profile's registry, a mirror's upstream).
//! - Loopback registries (`127.0.0.0/8`, `localhost`, `::1`): Docker and BuildKit reach them
//!   over plain HTTP without configuration.
//! - `registries.conf` of containers-common, which buildah, podman and skopeo read:
//!   `[[registry]] location = "host:port" insecure = true` (v2), or
//!   `[registries.insecure] registries = ["host:port"]` (v1), in
//!   `$CONTAINERS_REGISTRIES_CONF`, else `/etc/containers/registries.conf` and
//!   `/etc/containers/registries.conf.d/*.conf` (in name order), and the user's
//!   `$XDG_CONFIG_HOME/containers/registries.conf` (or `~/.config/…`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Whether `host` (`name[:port]`, `[v6]:port`) is a loopback address or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            // `::1` without brackets has several colons: all of it is the address.
            Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
            _ => host,
        },
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Deserialize, Default)]
struct Conf {
    #[serde(default)]
    registry: Vec<Entry>,
    #[serde(default)]
    registries: Option<V1>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    location: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize)]
struct V1 {
    insecure: Option<V1List>,
}

#[derive(Deserialize)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

/// The hosts a `registries.conf` text marks insecure.
pub fn insecure_in(text: &str) -> Result<Vec<String>, String> {
    let conf: Conf = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out: Vec<String> = conf
        .registry
        .into_iter()
        .filter(|e| e.insecure)
        .map(|e| {
            if e.location.is_empty() {
                e.prefix
            } else {
                e.location
            }
        })
        .filter_map(|l| l.split('/').next().map(str::to_owned))
        .filter(|h| !h.is_empty())
        .collect();
    if let Some(list) = conf.registries.and_then(|r| r.insecure) {
        out.extend(list.registries);
    }
    Ok(out)
}

fn conf_files() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
        return vec![PathBuf::from(p)];
    }
    let mut files = vec![PathBuf::from("/etc/containers/registries.conf")];
    if let Ok(dir) = std::fs::read_dir("/etc/containers/registries.conf.d") {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(u) = user {
        files.push(u.join("containers/registries.conf"));
    }
    files
}

/// Every host the machine's `registries.conf` files mark insecure. A file that cannot be read
/// as TOML is skipped with a note (buildah would refuse it, and say so itself).
pub fn insecure_from_registries_conf(note: &dyn Fn(&str)) -> Vec<String> {
    let mut out = Vec::new();
    for f in conf_files() {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        match insecure_in(&text) {
            Ok(hosts) => out.extend(hosts),
            Err(e) => note(&format!("ignoring {}: {e}", f.display())),
        }
    }
    out
}

/// What a failed request was, from the causes reqwest chains: the words a user can act on.
pub fn describe(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let all = causes.join(": ").to_lowercase();
    let what = if e.is_timeout() || all.contains("timed out") {
        "timed out"
    } else if all.contains("connection refused") {
        "connection refused (is the registry running, and on that port?)"
    } else if all.contains("dns error") || all.contains("failed to lookup address") {
        "the host name does not resolve (DNS)"
    } else if all.contains("certificate")
        || all.contains("tls")
        || all.contains("handshake")
        || all.contains("corrupt message")
    {
        "TLS handshake failed (a plain-HTTP registry needs `insecure=#true`, or an `insecure = true` entry in registries.conf)"
    } else if all.contains("connection reset") {
        "connection reset by the registry"
    } else if all.contains("unexpected eof") || all.contains("connection closed") {
        "the connection closed early"
    } else {
        return match causes.last() {
            Some(root) => format!("{e} ({root})"),
            None => e.to_string(),
        };
    };
    match causes.last() {
        Some(root) if !what.contains(root.as_str()) => format!("{what} — {root}"),
        _ => what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "registry.example.com",
            "localhost.example.com:5000",
            "[::2]:1",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn registries_conf_insecure_entries_are_read() {
        let v2 = r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "registry.internal:5000"
insecure = true
[[registry]]
location = "secure.example.com/team"
[[registry]]
prefix = "mirror.internal/x"
insecure = true
"#;
        assert_eq!(
            insecure_in(v2).unwrap(),
            ["registry.internal:5000", "mirror.internal"]
        );
        let v1 = "[registries.insecure]\nregistries = ['old.internal:5000']\n";
        assert_eq!(insecure_in(v1).unwrap(), ["old.internal:5000"]);
        assert!(insecure_in("[[registry]\n").is_err());
    }
}
