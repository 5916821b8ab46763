//! buildx builders: the one each `builder` block names, created from its `endpoint` (or
//! checked and reused when it exists), and what `docker buildx inspect` says they offer.
//!
//! Each block is its own buildx builder, and every build names it (`--builder NAME`, shown
//! by `mab plan`): buildx requires all nodes of one builder to share a driver, so the user's
//! local builder (docker, docker-container) and remote BuildKit daemons cannot be nodes of one
//! builder in general, and the routing of a platform is visible in the plan instead of being
//! buildx's choice among nodes.

use std::process::Command as Process;

use crate::manifest::model::Builder;

/// One node of a builder, as `docker buildx inspect --bootstrap` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub endpoint: String,
    pub status: String,
    pub platforms: Vec<String>,
}

/// A builder, as `docker buildx inspect --bootstrap` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    pub name: String,
    pub driver: String,
    pub nodes: Vec<Node>,
}

impl Inspection {
    /// Every platform some running node offers.
    pub fn platforms(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|n| n.status == "running")
            .flat_map(|n| n.platforms.iter().map(String::as_str))
    }
}

/// Read the text of `docker buildx inspect`.
pub fn parse_inspect(text: &str) -> Inspection {
    let mut out = Inspection::default();
    let mut in_nodes = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Nodes" => in_nodes = true,
            "Name" if !in_nodes => out.name = value.to_owned(),
            "Driver" if !in_nodes => out.driver = value.to_owned(),
            "Name" => out.nodes.push(Node {
                name: value.to_owned(),
                ..Node::default()
            }),
            "Endpoint" | "Status" | "Platforms" => {
                let Some(node) = out.nodes.last_mut() else {
                    continue;
                };
                match key {
                    "Endpoint" => node.endpoint = value.to_owned(),
                    "Status" => node.status = value.to_owned(),
                    _ => {
                        node.platforms = value
                            .split(',')
                            .map(|p| p.trim().trim_end_matches('*').to_owned())
                            .filter(|p| !p.is_empty())
                            .collect()
                    }
                }
            }
            _ => {}
        }
    }
    out
}

pub use crate::manifest::model::endpoint_driver as driver;
pub use crate::plan::command::create_command;

/// Why a buildx builder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BuildxError {
    #[error("cannot run `{command}`: {why}")]
    Run {
        command: String,
        why: std::io::Error,
    },
    /// The command ran and failed: what it said.
    #[error("{0}")]
    Said(String),
    #[error(
        "buildx builder `{name}` is not usable: {why}\n  create it (`docker buildx create --name {name} …`), or give the `builder` block an `endpoint`"
    )]
    NotUsable { name: String, why: Box<BuildxError> },
    #[error("builder `{name}`: unsupported endpoint `{endpoint}`")]
    Unsupported { name: String, endpoint: String },
    #[error("cannot create buildx builder `{name}`: {why}")]
    Create { name: String, why: Box<BuildxError> },
    #[error("buildx builder `{name}` ({endpoint}) does not answer: {why}")]
    NoAnswer {
        name: String,
        endpoint: String,
        why: Box<BuildxError>,
    },
    #[error(
        "buildx builder `{name}` exists with endpoint {have}, but the manifest says {endpoint}\n  remove it (`docker buildx rm {name}`) or rename the `builder` block"
    )]
    Elsewhere {
        name: String,
        have: String,
        endpoint: String,
    },
    #[error("buildx builder `{name}` ({endpoint}) is {status}")]
    NotRunning {
        name: String,
        endpoint: String,
        status: String,
    },
}

fn run(argv: &[String]) -> Result<String, BuildxError> {
    let out = Process::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|why| BuildxError::Run {
            command: argv[..2.min(argv.len())].join(" "),
            why,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(BuildxError::Said(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// `docker buildx inspect [NAME] --bootstrap`: the builder, started if it was not.
pub fn inspect(name: Option<&str>) -> Result<Inspection, BuildxError> {
    let mut argv: Vec<String> = ["docker", "buildx", "inspect"].map(String::from).into();
    argv.extend(name.map(str::to_owned));
    argv.push("--bootstrap".to_owned());
    run(&argv).map(|text| parse_inspect(&text))
}

/// Make the builder of `b` exist: reuse it when it exists with the endpoint the block names,
/// create it when it does not (a concurrent run creating it too is fine), refuse when a builder
/// of that name points elsewhere. Blocks without an endpoint name a builder the user made.
pub fn ensure(b: &Builder) -> Result<Inspection, BuildxError> {
    let existing = inspect(Some(&b.name));
    let Some(endpoint) = b.endpoint.as_deref() else {
        return existing.map_err(|why| BuildxError::NotUsable {
            name: b.name.clone(),
            why: Box::new(why),
        });
    };
    let matches = |i: &Inspection| i.nodes.iter().any(|n| n.endpoint == endpoint);
    let found = match existing {
        Ok(i) => i,
        Err(_) => {
            let create = create_command(b).ok_or_else(|| BuildxError::Unsupported {
                name: b.name.clone(),
                endpoint: endpoint.to_owned(),
            })?;
            let argv: Vec<String> = create.argv.iter().map(|a| a.display()).collect();
            if let Err(e) = run(&argv) {
                // Another run may have created it meanwhile; what counts is what exists now.
                if inspect(Some(&b.name)).is_err() {
                    return Err(BuildxError::Create {
                        name: b.name.clone(),
                        why: Box::new(e),
                    });
                }
            }
            inspect(Some(&b.name)).map_err(|why| BuildxError::NoAnswer {
                name: b.name.clone(),
                endpoint: endpoint.to_owned(),
                why: Box::new(why),
            })?
        }
    };
    if !matches(&found) {
        let have: Vec<&str> = found.nodes.iter().map(|n| n.endpoint.as_str()).collect();
        return Err(BuildxError::Elsewhere {
            name: b.name.clone(),
            have: have.join(", "),
            endpoint: endpoint.to_owned(),
        });
    }
    if let Some(n) = found.nodes.iter().find(|n| n.status != "running") {
        return Err(BuildxError::NotRunning {
            name: b.name.clone(),
            endpoint: endpoint.to_owned(),
            status: n.status.clone(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSPECT: &str = "Name:          mab-buildkit
Driver:        remote
Last Activity: 2026-11-25 01:07:00 +0000 UTC

Nodes:
Name:             mab-buildkit0
Endpoint:         unix:///tmp/mab-buildkit/buildkitd.sock
Status:           running
BuildKit version: v0.26.3
Platforms:        linux/arm64*, linux/amd64, linux/arm/v7
Labels:
 org.mobyproject.buildkit.worker.executor:         oci
GC Policy rule#0:
 All:            false
";

    #[test]
    fn inspect_output_is_read() {
        let i = parse_inspect(INSPECT);
        assert_eq!(i.name, "mab-buildkit");
        assert_eq!(i.driver, "remote");
        assert_eq!(
            i.nodes,
            [Node {
                name: "mab-buildkit0".into(),
                endpoint: "unix:///tmp/mab-buildkit/buildkitd.sock".into(),
                status: "running".into(),
                platforms: vec![
                    "linux/arm64".into(),
                    "linux/amd64".into(),
                    "linux/arm/v7".into()
                ],
            }]
        );
        assert_eq!(
            i.platforms().collect::<Vec<_>>(),
            ["linux/arm64", "linux/amd64", "linux/arm/v7"]
        );
    }

    #[test]
    fn endpoints_choose_the_driver() {
        assert_eq!(driver("tcp://10.0.0.5:1234"), Some("remote"));
        assert_eq!(
            driver("unix:///run/buildkit/buildkitd.sock"),
            Some("remote")
        );
        assert_eq!(driver("ssh://builder@arm64-vm"), Some("docker-container"));
        assert_eq!(driver("http://x"), None);
        let b = Builder {
            name: "arm".into(),
            platforms: vec![crate::manifest::platform::Platform::parse("linux/arm64").unwrap()],
            endpoint: Some("tcp://10.0.0.5:1234".into()),
            runs_on: None,
        };
        assert_eq!(
            create_command(&b).unwrap().display(),
            "docker buildx create --name arm --driver remote --platform linux/arm64 tcp://10.0.0.5:1234"
        );
    }
}
