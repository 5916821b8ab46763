//! `mab ci gitlab`: a GitLab CI child pipeline for one run of the plan, written by a parent
//! job (`examples/gitlab-ci/.gitlab-ci.yml`) and run with `trigger: include: artifact`.
//!
//! Per build level a stage of `parallel:matrix` jobs — one entry per image version × platform,
//! `tags` from the runner its `builder` names (`runs-on`) — then a stage with the level's
//! merges, which take the split-build metadata from the build jobs' artifacts (`needs`);
//! the next level's builds need that merge. Merges share a `resource_group`, so two pipelines
//! never publish at once. Every job runs `mab --on-runner`: the runner is the builder.

use std::collections::BTreeMap;

use yaml_serde::{Mapping, Value};

use super::github::{map, s, seq};
use crate::plan::{Kind, Plan};

/// The most jobs one `parallel:matrix` may make.
pub const MATRIX_LIMIT: usize = 200;

/// What the child pipeline is made from.
pub struct Child<'a> {
    pub header: String,
    /// `mab -f MANIFEST [--var …]`, shell-quoted.
    pub mab: &'a str,
    pub profile: &'a str,
    pub registry_host: &'a str,
    /// The default image of every job: one with mab and the backend.
    pub image: Option<&'a str>,
    /// A command every job runs first (installing mab, say).
    pub install: Option<&'a str>,
}

/// One `parallel:matrix` job's entries: (runner tag, node ids).
type Entries = Vec<(Option<String>, Vec<String>)>;

/// The build jobs of one level: parts of at most [`MATRIX_LIMIT`] jobs, untagged builds and
/// builds for tagged runners apart (`tags` is one per job).
fn build_jobs(builds: &[(Option<&str>, String)]) -> Vec<(bool, Entries)> {
    let mut jobs = Vec::new();
    for tagged in [false, true] {
        let mine: Vec<&(Option<&str>, String)> = builds
            .iter()
            .filter(|(runner, _)| runner.is_some() == tagged)
            .collect();
        for part in mine.chunks(MATRIX_LIMIT) {
            let mut by_runner: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
            for (runner, node) in part {
                by_runner
                    .entry(runner.map(str::to_owned))
                    .or_default()
                    .push(node.clone());
            }
            jobs.push((tagged, by_runner.into_iter().collect()));
        }
    }
    jobs
}

/// The shell lines that log in to the registry, when the pipeline has the credentials: GitLab's
/// own for its registry, else the `REGISTRY_USERNAME` / `REGISTRY_PASSWORD` CI/CD variables.
/// mab reads the Docker `config.json`; buildah and podman read it through `REGISTRY_AUTH_FILE`.
fn login(host: &str) -> String {
    let (user, password) = if host == "registry.gitlab.com" {
        ("CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD")
    } else {
        ("REGISTRY_USERNAME", "REGISTRY_PASSWORD")
    };
    let host = shlex::try_quote(host).map_or_else(|_| "''".to_owned(), |q| q.into_owned());
    format!(
        "if [ -n \"${{{password}:-}}\" ]; then\n  \
         mkdir -p \"$HOME/.docker\"\n  \
         printf '{{\"auths\":{{\"%s\":{{\"auth\":\"%s\"}}}}}}\\n' {host} \"$(printf '%s:%s' \"${user}\" \"${password}\" | base64 | tr -d '\\n')\" > \"$HOME/.docker/config.json\"\n  \
         export REGISTRY_AUTH_FILE=\"$HOME/.docker/config.json\"\n\
         fi"
    )
}

/// The child pipeline of `plan`, as YAML (the header comment first).
pub fn render(plan: &Plan, c: &Child) -> String {
    let levels = crate::render::matrix::build_levels(plan);
    let depth = levels.values().max().map_or(0, |m| m + 1);
    let mut per_level: Vec<Vec<(Option<&str>, String)>> = vec![Vec::new(); depth];
    for n in plan.nodes.iter().filter(|n| n.kind() == Kind::Build) {
        per_level[levels[&n.id]].push((n.runs_on(), n.id.to_string()));
    }
    let mut stages = Vec::new();
    let mut jobs = Mapping::new();
    let mab = c.mab;
    for (level, builds) in per_level.iter().enumerate() {
        stages.push(s(&format!("level-{level}")));
        stages.push(s(&format!("merge-{level}")));
        let mut names = Vec::new();
        let mut parts = [0, 0];
        for (tagged, entries) in build_jobs(builds) {
            let part = &mut parts[usize::from(tagged)];
            let name = format!(
                "build-{level}{}{}",
                if tagged { "-tagged" } else { "" },
                match *part {
                    0 => String::new(),
                    k => format!("-part-{k}"),
                }
            );
            *part += 1;
            let matrix: Vec<Value> = entries
                .into_iter()
                .map(|(runner, nodes)| {
                    let mut m = Mapping::new();
                    m.insert(s("NODE"), seq(nodes.iter().map(|n| s(n)).collect()));
                    if let Some(r) = runner {
                        m.insert(s("RUNNER"), seq(vec![s(&r)]));
                    }
                    Value::Mapping(m)
                })
                .collect();
            let mut job = Mapping::new();
            job.insert(s("stage"), s(&format!("level-{level}")));
            let needs = match level {
                0 => Vec::new(),
                _ => vec![map([
                    ("job", s(&format!("merge-{}", level - 1))),
                    ("artifacts", Value::Bool(false)),
                ])],
            };
            job.insert(s("needs"), seq(needs));
            job.insert(s("parallel"), map([("matrix", Value::Sequence(matrix))]));
            if tagged {
                job.insert(s("tags"), seq(vec![s("$RUNNER")]));
            }
            job.insert(
                s("script"),
                seq(vec![s(&format!(
                    "{mab} --on-runner build --node \"$NODE\" --metadata-dir dist"
                ))]),
            );
            job.insert(
                s("artifacts"),
                map([("paths", seq(vec![s("dist/")])), ("expire_in", s("1 day"))]),
            );
            jobs.insert(s(&name), Value::Mapping(job));
            names.push(name);
        }
        let needs = names
            .iter()
            .map(|n| map([("job", s(n)), ("artifacts", Value::Bool(true))]))
            .collect();
        jobs.insert(
            s(&format!("merge-{level}")),
            map([
                ("stage", s(&format!("merge-{level}"))),
                ("needs", seq(needs)),
                // One pipeline publishes at a time.
                ("resource_group", s(&format!("mab-{}", c.profile))),
                (
                    "script",
                    seq(vec![s(&format!("{mab} merge --metadata-dir dist"))]),
                ),
            ]),
        );
    }
    if depth == 0 {
        // A child pipeline needs a job: the plan has nothing to build.
        stages.push(s("level-0"));
        jobs.insert(
            s("nothing-to-build"),
            map([
                ("stage", s("level-0")),
                (
                    "script",
                    seq(vec![s("echo 'mab: the plan has nothing to build'")]),
                ),
            ]),
        );
    }
    let mut default = Mapping::new();
    if let Some(image) = c.image {
        default.insert(s("image"), s(image));
    }
    let mut before = Vec::new();
    if let Some(install) = c.install {
        before.push(s(install));
    }
    before.push(s(&login(c.registry_host)));
    default.insert(s("before_script"), seq(before));
    let mut top = Mapping::new();
    top.insert(s("stages"), seq(stages));
    top.insert(
        s("variables"),
        map([("MAB_PROFILE", s(c.profile)), ("NO_COLOR", s("1"))]),
    );
    top.insert(s("default"), Value::Mapping(default));
    for (k, v) in jobs {
        top.insert(k, v);
    }
    let body = yaml_serde::to_string(&Value::Mapping(top)).unwrap_or_default();
    format!("{}{body}", c.header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_jobs_keep_to_the_limit_and_tagged_runners_apart() {
        let mut builds: Vec<(Option<&str>, String)> = (0..450)
            .map(|i| (None, format!("build:a{i}:1@linux/amd64")))
            .collect();
        builds.extend((0..3).map(|i| (Some("arm"), format!("build:a{i}:1@linux/arm64"))));
        builds.push((Some("s390x"), "build:z:1@linux/s390x".to_owned()));
        let jobs = build_jobs(&builds);
        let sizes: Vec<(bool, usize)> = jobs
            .iter()
            .map(|(t, e)| (*t, e.iter().map(|(_, n)| n.len()).sum()))
            .collect();
        assert_eq!(sizes, [(false, 200), (false, 200), (false, 50), (true, 4)]);
        let runners: Vec<Option<String>> = jobs[3].1.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(runners, [Some("arm".to_owned()), Some("s390x".to_owned())]);
    }

    #[test]
    fn login_quotes_the_host() {
        let l = login("reg.example.com:5000");
        assert!(l.contains("REGISTRY_PASSWORD"), "{l}");
        assert!(login("registry.gitlab.com").contains("CI_REGISTRY_PASSWORD"));
        assert!(login("a'b").contains(r#""a'b""#), "{}", login("a'b"));
    }
}
