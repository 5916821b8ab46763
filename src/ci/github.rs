//! `mab ci github`: a whole GitHub Actions workflow, generated from the plan. A job per build
//! level (a matrix of image version × platform, `runs-on` from the platform's `builder`), the
//! merges of a level as their own job, `needs:` in level order; mab installed in every job by
//! the composite action; split-build metadata passed between jobs as artifacts only.

use yaml_serde::{Mapping, Value};

use super::Generated;

/// The default schedule: weekly, Monday 04:17 UTC (off the hour, as GitHub asks).
pub const SCHEDULE: &str = "17 4 * * 1";

pub(super) fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

pub(super) fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

pub(super) fn seq(items: Vec<Value>) -> Value {
    Value::Sequence(items)
}

/// A step that runs a shell command, with environment variables (never expressions spliced
/// into the script: a value cannot become shell code).
fn run(name: &str, script: &str, env: &[(&str, &str)]) -> Value {
    let mut m = Mapping::new();
    m.insert(s("name"), s(name));
    if !env.is_empty() {
        let mut e = Mapping::new();
        for (k, v) in env {
            e.insert(s(k), s(v));
        }
        m.insert(s("env"), Value::Mapping(e));
    }
    m.insert(s("run"), s(script));
    Value::Mapping(m)
}

/// The steps every job starts with: the checkout (whole history for `--changed-since`), mab,
/// and the registry login; a build job also sets up emulation — a runner builds and tests
/// foreign platforms too, whatever the backend (buildah and podman run a foreign `RUN` through
/// the host's binfmt as BuildKit does) — and, under buildx, the builder.
fn setup(g: &Generated, builds: bool, buildx: bool) -> Vec<Value> {
    let mut steps = vec![
        map([
            ("uses", s("actions/checkout@v4")),
            ("with", map([("fetch-depth", Value::Number(0.into()))])),
        ]),
        map([("name", s("Install mab")), ("uses", s(&g.action))]),
        login(&g.registry_host),
    ];
    if builds {
        steps.push(map([("uses", s("docker/setup-qemu-action@v3"))]));
    }
    if builds && buildx {
        steps.push(map([("uses", s("docker/setup-buildx-action@v3"))]));
    }
    steps
}

/// `docker/login-action` for the profile's registry: GHCR with the workflow's own token,
/// another registry with the `REGISTRY_USERNAME` / `REGISTRY_PASSWORD` secrets.
fn login(host: &str) -> Value {
    let (user, password) = if host == "ghcr.io" {
        ("${{ github.actor }}", "${{ secrets.GITHUB_TOKEN }}")
    } else {
        (
            "${{ secrets.REGISTRY_USERNAME }}",
            "${{ secrets.REGISTRY_PASSWORD }}",
        )
    };
    map([
        ("uses", s("docker/login-action@v3")),
        (
            "with",
            map([
                ("registry", s(host)),
                ("username", s(user)),
                ("password", s(password)),
            ]),
        ),
    ])
}

/// The name of the build job of `part` of `level`.
fn build_job(level: usize, part: usize) -> String {
    if part == 0 {
        format!("build-{level}")
    } else {
        format!("build-{level}-part-{part}")
    }
}

/// The matrix job that builds `part` of `level` (`levels[N].parts[K]` of the plan's matrix):
/// each entry `mab build --node ID --metadata-dir dist`, the metadata uploaded as an artifact.
fn build(g: &Generated, level: usize, part: usize, buildx: bool) -> Value {
    let part_expr = format!("fromJSON(needs.plan.outputs.matrix).levels[{level}].parts[{part}]");
    let prev = (level > 0).then(|| format!("merge-{}", level - 1));
    let mut needs = vec![s("plan")];
    if let Some(p) = &prev {
        needs.push(s(p));
    }
    // Run when the plan has this part and the previous level's merge published it (a failed
    // merge stops every later level).
    let mut condition =
        format!("${{{{ !cancelled() && needs.plan.result == 'success' && {part_expr} != null");
    if let Some(p) = &prev {
        condition.push_str(&format!(" && needs.{p}.result == 'success'"));
    }
    condition.push_str(" }}");
    let mut steps = setup(g, true, buildx);
    steps.push(run(
        "Build, test and push by digest",
        &format!(
            "{} --on-runner build --node \"$NODE\" --metadata-dir dist",
            g.mab
        ),
        &[("NODE", "${{ matrix.node }}")],
    ));
    steps.push(map([
        ("uses", s("actions/upload-artifact@v4")),
        (
            "with",
            map([
                (
                    "name",
                    s(&format!(
                        "mab-metadata-{level}-{part}-${{{{ strategy.job-index }}}}"
                    )),
                ),
                ("path", s("dist")),
                ("if-no-files-found", s("error")),
                ("retention-days", Value::Number(1.into())),
            ]),
        ),
    ]));
    map([
        ("name", s(&format!("level {level}: ${{{{ matrix.node }}}}"))),
        ("needs", seq(needs)),
        ("if", s(&condition)),
        (
            "strategy",
            map([
                ("fail-fast", Value::Bool(false)),
                (
                    "matrix",
                    map([("include", s(&format!("${{{{ {part_expr} }}}}")))]),
                ),
            ]),
        ),
        ("runs-on", s("${{ matrix.runs-on }}")),
        ("steps", seq(steps)),
    ])
}

/// The workflow for `g`, as YAML (the header comment first).
pub fn render(g: &Generated) -> String {
    let buildx = g.backend == crate::manifest::model::Backend::Buildx;
    let mab = &g.mab;
    let mut jobs = Mapping::new();
    let mut plan_steps = setup(g, false, false);
    plan_steps.push(run(
        "Check the manifest, and that this workflow is current",
        &format!("{mab} check --manifest-only"),
        &[],
    ));
    plan_steps.push(run(
        "Mirror upstream images",
        &format!("{mab} mirror{}", if g.locked { " --locked" } else { "" }),
        &[],
    ));
    plan_steps.push(map([
        ("id", s("plan")),
        ("name", s("Plan")),
        (
            "env",
            map([
                ("EVENT", s("${{ github.event_name }}")),
                ("BASE_REF", s("${{ github.base_ref }}")),
            ]),
        ),
        (
            "run",
            s(&format!(
                "set -euo pipefail\n\
                 # A pull request builds what it changes (and what is built on it); other runs, everything.\n\
                 since=()\n\
                 if [ \"$EVENT\" = pull_request ]; then since=(--changed-since \"origin/$BASE_REF\"); fi\n\
                 {mab} --on-runner plan \"${{since[@]}}\"\n\
                 echo \"matrix=$({mab} plan --format github-matrix \"${{since[@]}}\" | jq -c .)\" >> \"$GITHUB_OUTPUT\"\n"
            )),
        ),
    ]));
    jobs.insert(
        s("plan"),
        map([
            ("runs-on", s("ubuntu-latest")),
            (
                "outputs",
                map([("matrix", s("${{ steps.plan.outputs.matrix }}"))]),
            ),
            ("steps", seq(plan_steps)),
        ]),
    );
    for (level, &parts) in g.parts.iter().enumerate() {
        let mut builds = Vec::new();
        for part in 0..parts {
            let name = build_job(level, part);
            jobs.insert(s(&name), build(g, level, part, buildx));
            builds.push(s(&name));
        }
        let mut steps = setup(g, false, false);
        steps.push(map([
            ("uses", s("actions/download-artifact@v4")),
            (
                "with",
                map([
                    ("pattern", s(&format!("mab-metadata-{level}-*"))),
                    ("path", s("dist")),
                    ("merge-multiple", Value::Bool(true)),
                ]),
            ),
        ]));
        // The signing key, from the repository's secrets, reaches this step only.
        let merge = format!("{mab} merge --metadata-dir dist");
        steps.push(match &g.signing_secret {
            Some(name) => run(
                "Sign, then publish the indexes and tags of this level",
                &merge,
                &[(name, &format!("${{{{ secrets.{name} }}}}"))],
            ),
            None => run("Publish the indexes and tags of this level", &merge, &[]),
        });
        // Every part that ran succeeded, and the first ran (a plan with fewer builds than the
        // workflow was written for skips the last parts).
        let condition = format!(
            "${{{{ !cancelled() && needs.{}.result == 'success' && !contains(needs.*.result, 'failure') }}}}",
            build_job(level, 0)
        );
        jobs.insert(
            s(&format!("merge-{level}")),
            map([
                ("name", s(&format!("level {level}: merge"))),
                ("needs", seq(builds)),
                ("if", s(&condition)),
                ("runs-on", s("ubuntu-latest")),
                ("steps", seq(steps)),
            ]),
        );
    }
    let mut permissions = Mapping::new();
    permissions.insert(s("contents"), s("read"));
    if g.registry_host == "ghcr.io" {
        permissions.insert(s("packages"), s("write"));
    }
    let workflow = map([
        ("name", s(&g.name)),
        (
            "on",
            map([
                ("push", map([("branches", seq(vec![s(&g.branch)]))])),
                ("pull_request", Value::Mapping(Mapping::new())),
                ("schedule", seq(vec![map([("cron", s(&g.schedule))])])),
                ("workflow_dispatch", Value::Mapping(Mapping::new())),
            ]),
        ),
        // Two runs on one branch never race: a later one waits (a pull request's is replaced).
        (
            "concurrency",
            map([
                ("group", s(&format!("{}-${{{{ github.ref }}}}", g.name))),
                (
                    "cancel-in-progress",
                    s("${{ github.event_name == 'pull_request' }}"),
                ),
            ]),
        ),
        ("permissions", Value::Mapping(permissions)),
        ("env", map([("MAB_PROFILE", s(&g.profile))])),
        ("jobs", Value::Mapping(jobs)),
    ]);
    let body = yaml_serde::to_string(&workflow).unwrap_or_default();
    format!("{}{body}", g.header())
}
