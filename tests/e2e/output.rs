//! What real builds print and what real clients read: output that is not UTF-8, the shell
//! plan run by a user's own tools, signatures checked by cosign.

use super::*;

/// Run `mab ARGS` in `env`, killing it (and failing) after `secs`.
fn mab_within(env: &Env, args: &[&str], secs: u64) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = env
        .command(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mab {args:?} did not finish in {secs} s; its output so far:\n{}\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&out_path).unwrap(),
        String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    )
}

const ONE_IMAGE: &str = r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64"; }
image "noisy" { version "1"; }
"#;

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build() {
    a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build() {
    a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build_on(true);
}

fn a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("latin1"), buildx) else {
        return;
    };
    env.write("images.kdl", ONE_IMAGE);
    // `caf\351` is "café" in Latin-1, then ~110 KiB of output (BuildKit clips a step's log past 200 KiB/s): far more than a pipe holds.
    // (The namespace in the step keeps a layer cache from answering it without running.)
    env.write(
        "images/noisy/Dockerfile",
        &format!(
            "FROM {}/library/alpine:3.15\n\
             RUN echo {} && printf 'caf\\351\\n' && i=0 && while [ $i -lt 1200 ]; do \
             echo \"line $i ..........................................................................\"; \
             i=$((i+1)); done && echo all-output-written\n",
            env.registry, env.ns
        ),
    );
    let (code, out, err) = mab_within(&env, &["build"], 300);
    assert_eq!(code, 0, "{out}\n{err}");
    let log = std::fs::read(env.path().join(".mab/logs/build_noisy_1_linux_amd64.log")).unwrap();
    let log = String::from_utf8(log).expect("the log is UTF-8, the odd byte replaced");
    assert!(
        log.contains("caf\u{fffd}"),
        "the Latin-1 line was lost:\n{}",
        log.chars().take(3000).collect::<String>()
    );
    // Far more than a pipe holds came after the odd byte, to the step's last line.
    let after = &log[log.find("caf\u{fffd}").unwrap()..];
    let lines = after
        .lines()
        .filter(|l| l.contains("line ") && l.ends_with("...."))
        .count();
    assert_eq!(
        lines, 1200,
        "lines of output after the odd byte:\n{after:.3000}"
    );
    assert!(after.contains("line 1199 ...") && after.contains("all-output-written"));
    assert!(raw(&env.repo("noisy:1")).is_some(), "nothing was published");
}

const SHELL_PLAN: &str = r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
mirror "alpine" from="${upstream}/library/alpine" { tags "3.15"; }
image "base" {
    from "mirror:alpine:3.15" arg="BASE"
    version "1"
    tag "1" "latest"
    variant "slim" { arg "FLAVOUR" "slim"; }
    annotation "org.opencontainers.image.description" "a \"quoted\", comma'd one — ünïcode"
    test "test -f /arch"
}
image "app" {
    from "base:1-slim" arg="BASE"
    version "2"
    tag "2" "2.0" "stable" "2-${date}"
    test "cat /arch /app /flavour"
}
"#;

/// Every tag the shell-plan manifest publishes (its `MAB_NOW`: 2026-11-25), by repository:
/// a version, its variant (the suffix on inherited tags), alias tags and a dated tag.
const SHELL_PLAN_TAGS: [(&str, &[&str]); 3] = [
    ("base", &["1", "latest"]),
    ("base", &["1-slim", "latest-slim"]),
    ("app", &["2", "2.0", "stable", "2-20261125"]),
];

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn the_shell_plan_runs_and_publishes_what_mab_publishes() {
    the_shell_plan_runs_and_publishes_what_mab_publishes_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_the_shell_plan_runs_and_publishes_what_mab_publishes() {
    the_shell_plan_runs_and_publishes_what_mab_publishes_on(true);
}

/// `sh plan.sh` with the user's tools (crane, jq, buildah or buildx) publishes every tag of
/// the plan; then `mab merge` of the very digests the script built finds every index up to
/// date: the script's index is byte for byte the one mab would have put there.
fn the_shell_plan_runs_and_publishes_what_mab_publishes_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("shellplan"), buildx) else {
        return;
    };
    env.write("images.kdl", SHELL_PLAN);
    env.write(
        "images/base/Dockerfile",
        &format!(
            "{BASED}ARG FLAVOUR=full\nRUN uname -m > /arch && echo $FLAVOUR > /flavour && echo {}\n",
            env.ns
        ),
    );
    env.write(
        "images/app/Dockerfile",
        &format!("{BASED}RUN echo app > /app && echo {}\n", env.ns),
    );
    // One day for the plan and for mab's merge, so the dated tag is the same.
    let mab = |args: &[&str]| {
        let o = env
            .command(args)
            .env("MAB_NOW", "2026-11-25T10:00:00Z")
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert_eq!(o.status.code(), Some(0), "{args:?}: {out}\n{err}");
        out
    };
    let script = mab(&["plan", "--format", "shell"]);
    // Each tag is written once, by one command, and nothing else moves a tag.
    for (image, tags) in SHELL_PLAN_TAGS {
        for t in tags {
            let target = format!("--tag {}:{t} ", env.repo(image));
            assert_eq!(script.matches(&target).count(), 1, "{target}\n{script}");
        }
    }
    for moved in ["crane --insecure tag ", "index append", "mutate"] {
        assert!(!script.contains(moved), "{moved}:\n{script}");
    }
    env.write("plan.sh", &script);
    let run = Command::new("sh")
        .arg("plan.sh")
        .current_dir(env.path())
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "sh plan.sh:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // What the script published: every tag, each version's tags on one index whose digest is
    // its content, the platforms of the plan, the annotation as written.
    for (image, tags) in SHELL_PLAN_TAGS {
        let first = registry_digest(&format!("{}:{}", env.repo(image), tags[0]));
        for t in tags {
            assert_eq!(registry_digest(&format!("{}:{t}", env.repo(image))), first);
        }
        let index = raw(&format!("{}:{}", env.repo(image), tags[0])).unwrap();
        assert_eq!(
            platforms(&index),
            ["linux/amd64", "linux/arm64"].map(String::from).into()
        );
        let attestations = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["annotations"]["vnd.docker.reference.type"].is_null())
            .count();
        assert_eq!(attestations, if buildx { 2 } else { 0 }, "{index}");
    }
    let base = raw(&env.repo("base:1")).unwrap();
    assert_eq!(
        base["annotations"]["org.opencontainers.image.description"],
        "a \"quoted\", comma'd one — ünïcode"
    );
    // The dependent was built on the variant the script published.
    let app_on = run_in(&env.repo("app:2"), "linux/arm64", "cat /arch /app /flavour");
    assert_eq!(app_on, "aarch64\napp\nslim\n");
    // mab, given the digests the script built, would publish exactly these indexes.
    let plan: Value = serde_json::from_str(&mab(&["plan", "--format", "json"])).unwrap();
    let dist = env.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    for n in plan["nodes"].as_array().unwrap() {
        if n["kind"] != "build" {
            continue;
        }
        let id = n["id"].as_str().unwrap();
        let stem = id.replace([':', '@', '/'], "_");
        let digest = std::fs::read_to_string(env.path().join(".mab/digests").join(&stem)).unwrap();
        let metadata = serde_json::json!({
            "id": id,
            "image": n["image"],
            "key": id.trim_start_matches("build:").split('@').next().unwrap(),
            "platform": n["platform"],
            "repository": n["ref"],
            "digest": digest.trim(),
        });
        std::fs::write(dist.join(format!("{stem}.json")), metadata.to_string()).unwrap();
    }
    let out = mab(&["merge", "--metadata-dir", "dist", "--report", "m.json"]);
    let r = report(&env.path().join("m.json"));
    for merge in ["merge:base:1", "merge:base:1-slim", "merge:app:2"] {
        assert_eq!(node(&r, merge)["status"], "current", "{merge}: {out}");
    }
}
