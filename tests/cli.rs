//! Command-line behaviour: exit codes, profiles, check, completions.

use crate::support::{mab, mab_in, root};

#[test]
fn unknown_profile_suggests() {
    let r = mab(&["--profile", "prdo", "plan"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown profile `prdo`"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `prod`?"), "{}", r.stderr);
}

#[test]
fn missing_manifest_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = mab_in(dir.path(), &["plan"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot read `images.kdl`"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    assert_eq!(mab(&["plan", "--format", "yaml"]).code, 2);
    assert_eq!(mab(&["frobnicate"]).code, 2);
    let help = mab(&["--help"]);
    assert_eq!(help.code, 0);
    // Every command, each with its line of help; and the global options.
    for (command, says) in SUBCOMMANDS {
        let line = help
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{command} ")))
            .unwrap_or_else(|| panic!("`{command}` is not in --help:\n{}", help.stdout));
        assert!(line.contains(says), "{line}");
    }
    for option in [
        "--file <FILE>",
        "--profile <NAME>",
        "--var <NAME=VALUE>",
        "--on-runner",
    ] {
        assert!(help.stdout.contains(option), "{option}");
    }
    // A command's own help names its options.
    let plan = mab(&["plan", "--help"]);
    for option in [
        "--format <FORMAT>",
        "--platform",
        "--changed-since",
        "--check-registry",
    ] {
        assert!(plan.stdout.contains(option), "{option}:\n{}", plan.stdout);
    }
}

const SUBCOMMANDS: [(&str, &str); 13] = [
    ("plan", "Print what would run"),
    ("build", "Run the plan"),
    ("mirror", "Only the mirror nodes"),
    ("seed", "fill the registry cache"),
    ("merge", "Publish indexes and tags"),
    ("promote", "Copy the exact indexes"),
    ("verify", "carries a valid signature"),
    ("ci", "Write a CI pipeline"),
    ("check", "Validate the manifest"),
    ("info", "Show the resolved profile"),
    ("list", "List images"),
    ("completions", "shell completion script"),
    ("hash-context", "content hash of a build context"),
];

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = mab(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        // Every command and the options a user completes most.
        for (command, _) in SUBCOMMANDS {
            assert!(r.stdout.contains(command), "{shell}: no `{command}`");
        }
        // (fish writes `-l changed-since`, the others `--changed-since`.)
        for option in ["changed-since", "check-registry", "profile", "keep-going"] {
            assert!(r.stdout.contains(option), "{shell}: no `{option}`");
        }
    }
    // And bash's completes for real: `mab pl<TAB>` is `plan`, `mab plan --form<TAB>` is
    // `--format`, and its values are the plan formats.
    let script = mab(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mab.bash"), &script).unwrap();
    let complete = |words: &str| {
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source mab.bash; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
                 _mab mab \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(complete("mab pl").trim(), "plan");
    assert!(complete("mab plan --form").lines().any(|l| l == "--format"));
    let formats = complete("mab plan --format ''");
    for f in ["text", "json", "shell", "markdown", "github-matrix"] {
        assert!(formats.lines().any(|l| l == f), "{f}: {formats}");
    }
}

#[test]
fn check_passes_on_shipped_manifests() {
    for (_, file) in crate::support::manifests() {
        let r = mab(&["-f", file, "check", "--manifest-only"]);
        assert_eq!(r.code, 0, "{file}: {}", r.stderr);
        assert!(
            r.stdout.contains("no problems found"),
            "{file}: {}{}",
            r.stdout,
            r.stderr
        );
    }
}

fn project(manifest: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("images.kdl"), manifest).unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const TWO_IMAGES: &str = r#"profile "dev" { registry "r.example/team"; }
defaults { platforms "linux/amd64"; }
image "base" { version "1"; }
image "app" { version "1"; }
"#;

#[test]
fn check_reports_missing_context_and_dockerfile() {
    let dir = project(
        TWO_IMAGES,
        &[
            ("images/base/Dockerfile", "FROM scratch\n"),
            ("images/app/README", ""),
        ],
    );
    let r = mab_in(dir.path(), &["check", "--manifest-only"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Dockerfile `images/app/Dockerfile` does not exist"),
        "{}",
        r.stderr
    );
    let dir = project(TWO_IMAGES, &[("images/base/Dockerfile", "FROM scratch\n")]);
    let r = mab_in(dir.path(), &["check", "--manifest-only"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("build context `images/app` does not exist"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("[images.kdl:4:1]"), "{}", r.stderr);
}

#[test]
fn check_warns_about_an_undeclared_manifest_base() {
    let dir = project(
        TWO_IMAGES,
        &[
            ("images/base/Dockerfile", "FROM scratch\n"),
            (
                "images/app/Dockerfile",
                "ARG BASE=r.example/team/base:1\nFROM ${BASE}\nRUN true\n",
            ),
        ],
    );
    let r = mab_in(dir.path(), &["check", "--manifest-only"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "`FROM ${BASE}` names manifest image `base`, but `app` declares no `from` for it"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("[images/app/Dockerfile:2:6]"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("from \"base:VERSION\" arg=\"BASE\""),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("1 warning"), "{}", r.stdout);

    // Declared: no warning.
    let declared = TWO_IMAGES.replace(
        "image \"app\" {",
        "image \"app\" { from \"base:1\" arg=\"BASE\";",
    );
    let dir = project(
        &declared,
        &[
            ("images/base/Dockerfile", "FROM scratch\n"),
            (
                "images/app/Dockerfile",
                "ARG BASE=r.example/team/base:1\nFROM ${BASE}\n",
            ),
        ],
    );
    let r = mab_in(dir.path(), &["check", "--manifest-only"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("no problems found"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn check_warns_when_the_dockerfile_lacks_the_from_arg() {
    let declared = TWO_IMAGES.replace(
        "image \"app\" {",
        "image \"app\" { from \"base:1\" arg=\"BASE_IMAGE\";",
    );
    let dir = project(
        &declared,
        &[
            ("images/base/Dockerfile", "FROM scratch\n"),
            ("images/app/Dockerfile", "FROM scratch\n"),
        ],
    );
    let r = mab_in(dir.path(), &["check", "--manifest-only"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("declares no `ARG BASE_IMAGE`"),
        "{}",
        r.stderr
    );
}

/// A stand-in `docker` on PATH: records its arguments and writes the `--metadata-file`
/// the way `FAKE_METADATA` says. It proves how commands are assembled and that a bad
/// digest fails the node; real builds are proven by the end-to-end suite.
fn fake_docker(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    crate::support::script(
        &bin.join("docker"),
        r#"#!/bin/sh
echo "$@" >> "$FAKE_LOG"
meta=""
prev=""
for a in "$@"; do
  [ "$prev" = "--metadata-file" ] && meta="$a"
  prev="$a"
done
[ -n "$meta" ] || exit 0
case "$FAKE_METADATA" in
  none) ;;
  empty) : > "$meta" ;;
  nodigest) echo '{"buildx.build.ref": "x"}' > "$meta" ;;
  malformed) echo '{"containerimage.digest": "sha256:nothex"}' > "$meta" ;;
esac
exit 0
"#,
    );
    bin
}

/// A stand-in registry on loopback that holds nothing (every request: 404), so a run passes its
/// registry preflight; building is proven against the real registry in the e2e suite.
fn empty_registry() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    addr
}

#[test]
fn buildx_commands_and_fail_closed_digests() {
    let registry = empty_registry();
    let dir = project(
        &r#"profile "ci" { registry "REGISTRY/team"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
builder "arm" { platforms "linux/arm64"; }
image "app" { version "1"; }"#
            .replace("REGISTRY", &registry),
        &[("images/app/Dockerfile", "FROM scratch\n")],
    );
    let bin = fake_docker(dir.path());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (mode, message) in [
        ("none", "no metadata file"),
        ("empty", "malformed metadata file"),
        ("nodigest", "no image digest in metadata file"),
        ("malformed", "no image digest in metadata file"),
    ] {
        let log = dir.path().join(format!("{mode}.log"));
        let out = assert_cmd::Command::cargo_bin("mab")
            .unwrap()
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("FAKE_LOG", &log)
            .env("FAKE_METADATA", mode)
            .env("NO_COLOR", "1")
            .args(["build", "--keep-going", "--report", "r.json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{mode}: {stdout}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
        for n in report["nodes"].as_array().unwrap() {
            match n["id"].as_str().unwrap() {
                id if id.starts_with("build:") => {
                    assert_eq!(n["status"], "failed", "{mode}: {n}");
                    assert!(
                        n["reason"].as_str().unwrap().contains(message),
                        "{mode}: {n}"
                    );
                }
                _ => assert_eq!(n["status"], "skipped", "{mode}: nothing is merged: {n}"),
            }
        }
        let calls = std::fs::read_to_string(&log).unwrap();
        let arm = calls.lines().find(|l| l.contains("linux/arm64")).unwrap();
        assert!(
            arm.starts_with(
                "buildx build --builder arm --platform linux/arm64 --progress plain --file images/app/Dockerfile"
            ),
            "{arm}"
        );
        assert!(
            arm.contains(&format!(
                "--cache-from type=registry,ref={registry}/team/cache/app:1-arm64"
            )),
            "{arm}"
        );
        assert!(arm.contains(&format!("--output type=image,name={registry}/team/app,push-by-digest=true,name-canonical=true,push=true")), "{arm}");
        assert!(
            arm.ends_with("--metadata-file .mab/metadata/build_app_1_linux_arm64.json images/app"),
            "{arm}"
        );
    }
}

const SLEEPY: &str = r#"profile "t" { registry "r.example/team"; }
defaults { platforms "linux/amd64" "linux/arm64"; arg "MAB_SLEEP_MS" "50"; }
image "base" { version "1"; }
image "broken" { arg "MAB_FAIL" "1"; version "1"; }
image "after" { from "broken:1" arg="B"; version "1"; }
image "other" { from "base:1" arg="B"; version "1"; }
"#;

fn sleepy(args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String, serde_json::Value) {
    let dir = project(SLEEPY, &[]);
    let mut cmd = assert_cmd::Command::cargo_bin("mab").unwrap();
    cmd.current_dir(dir.path())
        .env("MAB_TEST_BACKEND", "sleep")
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("build")
        .args(args)
        .args(["--report", "r.json"])
        .output()
        .unwrap();
    let report =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    )
}

fn status<'a>(report: &'a serde_json::Value, id: &str) -> &'a str {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap()["status"]
        .as_str()
        .unwrap()
}

#[test]
fn a_failure_skips_dependents_and_stops_or_keeps_going() {
    let (code, out, _, r) = sleepy(&["--jobs", "1", "--keep-going"], &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "build:broken:1@linux/amd64"), "failed");
    assert_eq!(status(&r, "merge:broken:1"), "skipped");
    assert_eq!(status(&r, "build:after:1@linux/arm64"), "skipped");
    assert_eq!(
        status(&r, "merge:other:1"),
        "ok",
        "independent work finishes with --keep-going"
    );
    assert!(out.contains("failed: build:broken:1@linux/"), "{out}");
    // Without --keep-going nothing new starts after the failure.
    let (code, _, _, r) = sleepy(&["--jobs", "1"], &[]);
    assert_eq!(code, 1);
    let not_run = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "not-run")
        .count();
    assert!(not_run > 0, "{r}");
}

#[test]
fn github_actions_output_is_grouped() {
    let (_, _, err, _) = sleepy(&["--keep-going"], &[("GITHUB_ACTIONS", "true")]);
    assert!(
        err.contains("::group::build:base:1@linux/amd64 ok in"),
        "{err}"
    );
    assert!(err.contains("::endgroup::"), "{err}");
    assert!(
        err.contains("::error title=build%3Abroken%3A1@linux/amd64::MAB_FAIL is set"),
        "{err}"
    );
}

#[test]
fn a_stalled_registry_cannot_hang_a_run() {
    // A registry that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let dir = project(
        &format!(
            "profile \"p\" {{ registry \"{addr}/team\" insecure=#true; }}\ndefaults {{ platforms \"linux/amd64\"; }}\n\
             mirror \"alpine\" from=\"{addr}/library/alpine\" insecure=#true {{ tags \"3.15\"; }}\n"
        ),
        &[],
    );
    let started = std::time::Instant::now();
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .env("MAB_HTTP_TIMEOUT", "2")
        .env("NO_COLOR", "1")
        .args(["mirror"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed: mirror:alpine:3.15"));
}

/// Split-build metadata of the wrong project, or written over, publishes nothing: the
/// registry named in the manifest does not even exist (port 9), so anything but a refusal
/// would fail differently.
#[test]
fn a_merge_of_metadata_that_is_not_exactly_this_manifests_publishes_nothing() {
    let dir = project(
        r#"profile "ci" { registry "127.0.0.1:9/team" insecure=#true; }
defaults { platforms "linux/amd64"; }
image "x" { version "1"; }
"#,
        &[],
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    let meta = |id: &str| {
        serde_json::json!({
            "id": id, "image": "x", "key": "x:1", "platform": "linux/amd64",
            "repository": "127.0.0.1:9/team/x", "digest": digest,
        })
        .to_string()
    };
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let merge = || crate::support::mab_in(dir.path(), &["merge", "--metadata-dir", "dist"]);
    // A build this manifest does not have.
    std::fs::write(
        dist.join("build_x_1_linux_amd64.json"),
        meta("build:x:1@linux/amd64"),
    )
    .unwrap();
    std::fs::write(
        dist.join("build_y_1_linux_amd64.json"),
        meta("build:y:1@linux/amd64"),
    )
    .unwrap();
    let out = merge();
    let err = out.stderr.clone();
    assert_eq!(Some(out.code), Some(1), "{err}");
    assert!(
        err.contains(
            "holds metadata of `build:y:1@linux/amd64`, which this manifest does not build"
        ),
        "{err}"
    );
    assert!(out.stdout.clone().contains("nothing was published"));
    // A file under another build's name: renamed, or written over by a colliding one.
    std::fs::remove_file(dist.join("build_y_1_linux_amd64.json")).unwrap();
    std::fs::write(
        dist.join("build_x_1_linux_amd64.json"),
        meta("build:x:1@linux/arm64"),
    )
    .unwrap();
    let out = merge();
    let err = out.stderr.clone();
    assert_eq!(Some(out.code), Some(2), "{err}");
    assert!(
        err.contains("holds the metadata of `build:x:1@linux/arm64`"),
        "{err}"
    );
}

/// `check` never prints a file from outside the project: a context reached through a symbolic
/// link is refused (located), before any Dockerfile is read; `outside=#true` opts in.
#[test]
fn files_outside_the_project_are_never_read_or_sent() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("Dockerfile"),
        "{\"auths\": {\"r.example\": {\"auth\": \"c2VjcmV0OnNlY3JldA==\"}}}\n",
    )
    .unwrap();
    let manifest = r#"profile "dev" { registry "r.example/team"; }
image "a" {
    context "images/a"
    platforms "linux/amd64"
    version "1"
}
"#;
    let dir = project(manifest, &[]);
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("images/a")).unwrap();
    for args in [
        &["check", "--manifest-only"][..],
        &["build", "--dry-run"][..],
    ] {
        let out = crate::support::mab_in(dir.path(), args);
        let err = out.stderr.clone();
        assert_eq!(Some(out.code), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("the context `images/a` leads outside the manifest's directory"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("c2VjcmV0"),
            "{args:?}: the secret was printed: {err}"
        );
    }
    // `plan` reads no Dockerfile through the link either: the upstream bases it pins come
    // from Dockerfiles inside the project only.
    std::fs::write(
        outside.path().join("Dockerfile"),
        "FROM leak.example/private/thing:1\n",
    )
    .unwrap();
    let out = crate::support::mab_in(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains("leak.example"),
        "a Dockerfile outside the project was read: {}",
        out.stdout
    );
    // Opted in: allowed (and the unreadable Dockerfile is a warning, not an error).
    std::fs::write(
        dir.path().join("images.kdl"),
        manifest.replace("context \"images/a\"", "context \"images/a\" outside=#true"),
    )
    .unwrap();
    let out = crate::support::mab_in(dir.path(), &["check", "--manifest-only"]);
    let err = out.stderr.clone();
    assert_eq!(Some(out.code), Some(0), "{err}");
    assert!(!err.contains("c2VjcmV0"), "the secret was printed: {err}");
}

/// BuildKit's current syntax (heredocs, `ARG A B`, a byte-order mark) is never a `check`
/// error: at most a warning with the line, and nothing of the file beyond it.
#[test]
fn check_never_fails_on_a_dockerfile_buildkit_accepts() {
    let dir = project(
        r#"profile "dev" { registry "r.example/team"; }
image "a" { platforms "linux/amd64"; version "1"; }
"#,
        &[(
            "images/a/Dockerfile",
            "\u{feff}FROM alpine\nRUN <<EOF\necho hi\nEOF\nARG A B\nCOPY <<EOT /x\nsecret-line\nEOT\n",
        )],
    );
    let out = crate::support::mab_in(dir.path(), &["check", "--manifest-only"]);
    let err = out.stderr.clone();
    assert_eq!(Some(out.code), Some(0), "{err}");
    assert!(!err.contains("secret-line"), "{err}");
}

/// The corpus in `tests/dockerfiles/` uses BuildKit's current syntax: `check` reads every file
/// (exit 0), sees the `FROM`s outside heredoc bodies, and none inside them.
#[test]
fn check_reads_the_current_dockerfile_syntax() {
    let corpus = crate::support::root().join("tests/dockerfiles");
    let mut names: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in names {
        let text = std::fs::read_to_string(corpus.join(&name)).unwrap();
        let dir = project(
            r#"profile "dev" { registry "r.example/team"; }
defaults { platforms "linux/amd64"; }
image "base" { version "1"; }
image "runtime" { version "1"; }
image "app" { dockerfile "app.Dockerfile"; version "1"; }
"#,
            &[
                ("images/base/Dockerfile", "FROM scratch\n"),
                ("images/runtime/Dockerfile", "FROM scratch\n"),
                ("images/app/app.Dockerfile", &text),
            ],
        );
        let out = crate::support::mab_in(dir.path(), &["check", "--manifest-only"]);
        let err = out.stderr.clone();
        assert_eq!(Some(out.code), Some(0), "{name}: {err}");
        assert!(!err.contains("cannot read"), "{name}: {err}");
        assert!(
            !err.contains("`runtime`"),
            "{name}: a heredoc body was read: {err}"
        );
        let names_base = !name.starts_with("platform");
        assert_eq!(
            err.contains("names manifest image `base`"),
            names_base,
            "{name}: {err}"
        );
    }
}

/// buildah and podman builds that push name no local tag another run could move: the push
/// takes the image by the ID its build wrote.
#[test]
fn pushing_builds_share_no_local_name_with_other_runs() {
    for backend in ["buildah", "podman"] {
        let dir = project(
            &format!(
                "profile \"p\" {{ registry \"r.example/team\"; backend \"{backend}\"; }}\nimage \"a\" {{ platforms \"linux/amd64\"; version \"1\"; }}\n"
            ),
            &[("images/a/Dockerfile", "FROM scratch\n")],
        );
        let out = assert_cmd::Command::cargo_bin("mab")
            .unwrap()
            .current_dir(dir.path())
            .args(["plan", "--format", "shell"])
            .output()
            .unwrap();
        let shell = String::from_utf8_lossy(&out.stdout);
        assert!(!shell.contains("localhost/mab"), "{backend}: {shell}");
        assert!(
            shell.contains("--iidfile .mab/iid/build_a_1_linux_amd64")
                && shell.contains("push --quiet --digestfile .mab/digests/build_a_1_linux_amd64 \"$(cat .mab/iid/build_a_1_linux_amd64)\""),
            "{backend}: {shell}"
        );
    }
}

/// 2,000 nested blocks overflowed the parser's stack (SIGABRT): now a located error, exit 2.
#[test]
fn deeply_nested_blocks_are_an_error_not_a_crash() {
    let text = format!(
        "profile \"p\" {{ registry \"r.example/x\"; }}\nimage \"a\" {}{}\n",
        "{ x ".repeat(2000),
        "}".repeat(2000)
    );
    let dir = project(&text, &[]);
    let out = crate::support::mab_in(dir.path(), &["plan"]);
    let err = out.stderr.clone();
    assert_eq!(Some(out.code), Some(2), "{err}");
    assert!(err.contains("blocks nested more than 64 deep"), "{err}");
    assert!(err.contains("images.kdl:2:"), "{err}");
}

/// `plan --check-registry` against a registry that is down fails as the run would (exit 1),
/// naming each node it could not decide and what to check, and prints no plan with holes.
#[test]
fn check_registry_against_a_registry_that_is_down_fails_per_node() {
    let dir = project(
        r#"profile "ci" { registry "127.0.0.1:9/team" insecure=#true; }
image "app" { platforms "linux/amd64" "linux/arm64"; version "1"; }"#,
        &[("images/app/Dockerfile", "FROM scratch\n")],
    );
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .env("MAB_HTTP_TIMEOUT", "2")
        .env("NO_COLOR", "1")
        .args(["plan", "--check-registry", "--format", "json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "a plan was printed");
    for id in ["build:app:1@linux/amd64", "build:app:1@linux/arm64"] {
        assert!(err.contains(&format!("`{id}`")), "{id}: {err}");
    }
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("is it up"), "{err}");
    // The merge waited on builds that could not be decided: skipped, not another error.
    assert!(!err.contains("`merge:app:1`"), "{err}");
}

/// A registry that cannot be reached is found by one request before any build starts, and
/// that is a failed run (exit 1), not a usage error.
#[test]
fn an_unreachable_registry_fails_before_any_build() {
    let dir = project(
        r#"profile "ci" { registry "127.0.0.1:9/team"; }
image "app" { platforms "linux/amd64"; version "1"; }"#,
        &[("images/app/Dockerfile", "FROM scratch\n")],
    );
    let bin = fake_docker(dir.path());
    let log = dir.path().join("calls.log");
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("FAKE_LOG", &log)
        .env("MAB_HTTP_TIMEOUT", "2")
        .args(["build"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the registry of profile `ci`"),
        "{err}"
    );
    assert!(err.contains("connection refused"), "{err}");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!calls.contains("buildx build"), "a build ran: {calls}");
}

/// `MAB_PROFILE=` (empty) is no profile; an unwritable `--report` is refused before any work.
#[test]
fn an_empty_profile_variable_and_an_unwritable_report() {
    let dir = project(TWO_IMAGES, &[]);
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .env("MAB_PROFILE", "")
        .args(["plan"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("MAB_TEST_BACKEND", "sleep")
        .args(["build", "--report", "/nonexistent/dir/r.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot write report /nonexistent/dir/r.json"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("NODE"),
        "a run started"
    );
}

/// `windows/amd64` and `linux/amd64` had the same cache tag (`:1-amd64`): one build's cache
/// was the other's.
#[test]
fn platforms_of_other_systems_get_refs_of_their_own() {
    let dir = project(
        r#"profile "p" { registry "r.example/team"; }
image "a" { platforms "linux/amd64" "windows/amd64"; version "1"; }"#,
        &[],
    );
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .args(["plan", "--format", "json"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let caches: std::collections::BTreeSet<String> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["cache"]["ref"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        caches,
        [
            "r.example/team/cache/a:1-amd64".to_owned(),
            "r.example/team/cache/a:1-windows-amd64".to_owned()
        ]
        .into()
    );
}

/// The sleep backend exists only in test builds: without the `test-backend` feature a binary
/// ignores `MAB_TEST_BACKEND` (a release binary never fakes a build).
#[test]
fn the_sleep_backend_is_a_test_feature_only() {
    let feature = cfg!(feature = "test-backend");
    let dir = project(
        r#"profile "p" { registry "127.0.0.1:9/x"; }
image "a" { platforms "linux/amd64"; version "1"; }"#,
        &[("images/a/Dockerfile", "FROM scratch\n")],
    );
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .env("MAB_TEST_BACKEND", "sleep")
        .env("MAB_HTTP_TIMEOUT", "1")
        .env("PATH", "/nonexistent")
        .args(["build"])
        .output()
        .unwrap();
    // With the feature the run "succeeds" without a registry or builder; without it, the
    // unreachable registry fails it.
    assert_eq!(out.status.code(), Some(if feature { 0 } else { 1 }));
}

/// `build --dry-run --node …` prints the nodes' commands without asking any registry (the
/// manifest's registry does not exist).
#[test]
fn a_dry_run_of_chosen_nodes_touches_no_registry() {
    let dir = project(
        r#"profile "ci" { registry "127.0.0.1:9/team"; }
defaults { platforms "linux/amd64"; }
image "base" { version "1"; }
image "app" { from "base:1" arg="BASE"; version "1"; }"#,
        &[],
    );
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(dir.path())
        .env("MAB_HTTP_TIMEOUT", "1")
        .args(["build", "--dry-run", "--node", "build:app:1@linux/amd64"])
        .output()
        .unwrap();
    let shell = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shell.contains("# build:app:1@linux/amd64"), "{shell}");
    assert!(!shell.contains("# build:base:1"), "{shell}");
}

/// `hash-context` names the file it could not read.
#[test]
fn hash_context_names_the_file_it_cannot_read() {
    let dir = project("", &[("ctx/a.txt", "a")]);
    let out = crate::support::mab_in(
        dir.path(),
        &[
            "hash-context",
            "ctx",
            "--dockerfile",
            "ctx/missing.Dockerfile",
        ],
    );
    let err = out.stderr.clone();
    assert_eq!(Some(out.code), Some(2), "{err}");
    assert!(err.contains("ctx/missing.Dockerfile"), "{err}");
}

/// Two runs at once in one checkout would share `.mab/` (digest, ID and metadata files,
/// layouts): the second waits for the first, says so, and both finish.
#[test]
fn two_runs_in_one_checkout_take_turns() {
    let dir = project(
        r#"profile "t" { registry "r.example/team"; }
defaults { platforms "linux/amd64" "linux/arm64"; arg "MAB_SLEEP_MS" "400"; }
image "base" { version "1"; }
"#,
        &[],
    );
    let trace = dir.path().join("trace");
    let run = |report: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mab"))
            .current_dir(dir.path())
            .env("MAB_TEST_BACKEND", "sleep")
            .env("MAB_SLEEP_TRACE", &trace)
            .env("NO_COLOR", "1")
            .env_remove("GITHUB_ACTIONS")
            .args(["build", "--report", report])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = run("a.json");
    // The first is building (its first build started) before the second starts.
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&trace).is_ok_and(|t| t.contains("start"))
        && started.elapsed().as_secs() < 20
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = run("b.json");
    let (first_pid, second_pid) = (first.id().to_string(), second.id().to_string());
    let second = second.wait_with_output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success() && second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("waiting for another run in this directory to finish"),
        "{err}"
    );
    // The order of events: every build of the first run ended before any of the second
    // started (its two builds may overlap each other, never the other run's).
    let trace = std::fs::read_to_string(&trace).unwrap();
    let runs: Vec<&str> = trace
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(runs.len(), 8, "{trace}");
    assert!(
        runs[..4].iter().all(|p| *p == first_pid) && runs[4..].iter().all(|p| *p == second_pid),
        "the runs interleaved:\n{trace}"
    );
}

/// The shell form of a `--node` job is the job: what it needs from outside is read from the
/// registry (`crane digest` of the tag that holds it) or, for builds of other jobs, named as
/// coming from their split-build metadata — no dry run touches a registry.
#[test]
fn a_node_job_shows_where_its_needs_come_from() {
    let dir = project(SLEEPY, &[]);
    let shell = |node: &str| {
        let r = crate::support::mab_in(
            dir.path(),
            &["build", "--dry-run", "--node", node, "--metadata-dir", "m"],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let job = shell("build:other:1@linux/amd64");
    assert!(
        job.contains("crane digest r.example/team/base:1 > .mab/digests/merge_base_1"),
        "{job}"
    );
    let merge = shell("merge:other:1");
    for arch in ["amd64", "arm64"] {
        assert!(
            merge.contains(&format!(
                "# build:other:1@linux/{arch}: its digest is the one the split-build metadata (--metadata-dir) of its job names"
            )),
            "{merge}"
        );
    }
    assert!(!merge.contains("crane digest --platform"), "{merge}");
}

const RELEASE: &str = r#"profile "dev" default=#true { registry "r.example/dev"; sign key="env:MAB_TEST_NO_SUCH_KEY"; }
profile "prod" { registry "r.example/prod"; promoted-from "dev"; tag "latest"; }
defaults { platforms "linux/amd64"; }
image "app" { version "1"; version "2"; }
"#;

/// A profile only promoted into plans a promotion, refuses to build, and a signing key that
/// is not there stops a build before anything runs.
#[test]
fn a_promoted_profile_plans_a_promotion_and_builds_nothing() {
    let dir = project(RELEASE, &[("images/app/Dockerfile", "FROM scratch\n")]);
    let run = |args: &[&str]| crate::support::mab_in(dir.path(), args);
    let r = run(&["--profile", "prod", "plan"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("promotion from profile `dev` to `prod`: 2 image versions"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("app:2  r.example/dev/app:2 -> r.example/prod/app tags :2 :latest"),
        "{}",
        r.stdout
    );
    let r = run(&["--profile", "prod", "plan", "app:1", "--format", "markdown"]);
    assert!(
        r.stdout
            .contains("| `app:1` | `r.example/dev/app:1` | `r.example/prod/app` | :1 |"),
        "{}",
        r.stdout
    );
    let r = run(&["--profile", "prod", "plan", "--format", "dot"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let r = run(&["--profile", "prod", "build"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`mab promote --from dev --to prod`"),
        "{}",
        r.stderr
    );
    let r = run(&["build"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("environment variable MAB_TEST_NO_SUCH_KEY is not set"),
        "{}",
        r.stderr
    );
    let wrong = RELEASE.replace("promoted-from \"dev\"", "promoted-from \"prd\"");
    std::fs::write(dir.path().join("images.kdl"), wrong).unwrap();
    let r = run(&["--profile", "prod", "plan"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`promoted-from` names `prd`"),
        "{}",
        r.stderr
    );
}

/// A profile that signs says so in every form of its plan — where the key comes from, never
/// the key — and its JSON still matches the schema.
#[test]
fn a_signing_profile_shows_its_signing_in_the_plan() {
    let dir = project(RELEASE, &[("images/app/Dockerfile", "FROM scratch\n")]);
    let run = |format: &str| {
        let r = crate::support::mab_in(dir.path(), &["plan", "--format", format]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let text = run("text");
    assert!(
        text.contains(
            "r.example/dev/app tags :1 (linux/amd64), signed with env:MAB_TEST_NO_SUCH_KEY before any tag"
        ),
        "{text}"
    );
    let json = run("json");
    crate::schema::assert_valid(&crate::schema::validator(), &json, "a signing plan");
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    for n in plan["nodes"].as_array().unwrap() {
        let sign = n.get("sign").and_then(|s| s.as_str());
        match n["kind"].as_str() {
            Some("merge") => assert_eq!(sign, Some("env:MAB_TEST_NO_SUCH_KEY"), "{n}"),
            _ => assert_eq!(sign, None, "{n}"),
        }
    }
    let markdown = run("markdown");
    assert!(
        markdown.contains(
            "signed with `env:MAB_TEST_NO_SUCH_KEY` (cosign's format) before any tag moves"
        ),
        "{markdown}"
    );
    let shell = run("shell");
    assert_eq!(
        shell
            .matches("# mab signs the index and each platform image with env:MAB_TEST_NO_SUCH_KEY")
            .count(),
        2,
        "{shell}"
    );
    // The profile that does not sign says nothing of it.
    let r = crate::support::mab_in(
        dir.path(),
        &["--profile", "prod", "plan", "--format", "json"],
    );
    assert!(!r.stdout.contains("\"sign\": \"env:"), "{}", r.stdout);
}

/// A promotion reads the source at its first tag that is not dated, whatever the order of the
/// `tag`s: a dated tag names the day of the promotion, not of the build.
#[test]
fn a_promotion_reads_the_source_at_its_undated_tag() {
    let manifest = RELEASE.replace(
        "image \"app\" { version \"1\"; version \"2\"; }",
        "image \"app\" { tag \"${version}-${date}\" \"${version}\"; version \"1\"; }",
    );
    let dir = project(&manifest, &[("images/app/Dockerfile", "FROM scratch\n")]);
    let r = crate::support::mab_env(
        dir.path(),
        &["--profile", "prod", "plan"],
        &[("MAB_NOW", "2026-11-30T10:00:00Z")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "app:1  r.example/dev/app:1 -> r.example/prod/app tags :1-20261130 :1 :latest"
        ),
        "{}",
        r.stdout
    );
}

/// `SOURCE_DATE_EPOCH` from the environment reaches every build (buildx as a build arg,
/// buildah as `--timestamp`); one that is not a number of seconds, or `MAB_NOW` that is not a
/// time, is a usage error before anything is read.
#[test]
fn the_build_clock_comes_from_the_environment_or_is_refused() {
    let dir = crate::support::root_copy();
    let with = |env: &[(&str, &str)], args: &[&str]| crate::support::mab_env(dir.path(), args, env);
    let r = with(
        &[("SOURCE_DATE_EPOCH", "1700000000")],
        &["plan", "--format", "shell"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("--build-arg SOURCE_DATE_EPOCH=1700000000"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("rewrite-timestamp=true"), "{}", r.stdout);
    let r = with(
        &[("SOURCE_DATE_EPOCH", "1700000000")],
        &["--profile", "local-buildah", "plan", "--format", "shell"],
    );
    assert!(r.stdout.contains("--timestamp 1700000000"), "{}", r.stdout);
    // Not a git checkout and no variable: no epoch at all.
    let r = with(&[], &["plan", "--format", "shell"]);
    assert!(!r.stdout.contains("SOURCE_DATE_EPOCH"), "{}", r.stdout);
    for (var, value) in [
        ("SOURCE_DATE_EPOCH", "yesterday"),
        ("SOURCE_DATE_EPOCH", "-1"),
        ("MAB_NOW", "2026-13-01"),
    ] {
        let r = with(&[(var, value)], &["plan"]);
        assert_eq!(r.code, 2, "{var}={value}: {}", r.stderr);
        assert!(r.stderr.contains(var), "{}", r.stderr);
    }
}

/// One manifest drives both: on this machine a platform goes to its `builder` (named, created
/// from its endpoint); as a CI runner (`--on-runner`) it builds on the runner's own builder —
/// no `--builder`, no endpoint — while the matrix still sends it to the builder's `runs-on`.
#[test]
fn a_ci_runner_builds_on_its_own_builder() {
    let manifest = "examples/split-native-builds/images.kdl";
    let plan = |extra: &[&str]| {
        let mut args = vec!["-f", manifest];
        args.extend_from_slice(extra);
        args.extend(["plan", "--format", "json"]);
        let r = mab_in(&root(), &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    let builds = |plan: &serde_json::Value| -> Vec<String> {
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "build")
            .map(|n| n["commands"].to_string())
            .collect()
    };
    let here = plan(&[]);
    assert_eq!(here["builders"].as_array().unwrap().len(), 2, "{here}");
    assert!(builds(&here).iter().all(|c| c.contains("\"--builder\"")));
    let runner = plan(&["--on-runner"]);
    assert!(runner.get("builders").is_none(), "{runner}");
    let commands = builds(&runner);
    assert!(!commands.is_empty());
    for c in &commands {
        assert!(!c.contains("--builder"), "{c}");
        assert!(!c.contains("builder.internal"), "{c}");
    }
    let r = mab_in(
        &root(),
        &[
            "-f",
            manifest,
            "--on-runner",
            "plan",
            "--format",
            "github-matrix",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let matrix: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let runs_on: std::collections::BTreeSet<&str> = matrix["levels"][0]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["runs-on"].as_str().unwrap())
        .collect();
    assert_eq!(
        runs_on,
        ["ubuntu-24.04", "ubuntu-24.04-arm"].into_iter().collect()
    );
}

/// `mab ci` refuses what it cannot write into a pipeline, and a profile that publishes nothing.
#[test]
fn ci_pipelines_refuse_bad_values_and_profiles_that_push_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("images.kdl"),
        "profile \"laptop\" { registry \"r.example/x\"; backend \"buildah\"; push #false; }\nimage \"a\" { version \"1\"; platforms \"linux/amd64\"; }\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("images/a")).unwrap();
    std::fs::write(dir.path().join("images/a/Dockerfile"), "FROM scratch\n").unwrap();
    for args in [
        &["ci", "gitlab"][..],
        &["ci", "github", "--action", "acme/mab@v1"],
    ] {
        let r = mab_in(dir.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("pushes nothing"), "{}", r.stderr);
    }
    let r = mab_in(
        &root(),
        &["ci", "gitlab", "--image", "img:1\n  script: [evil]"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid --image"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}

/// `mab ARGS` in the repository root with standard output sent to `stdout`.
fn mab_to(args: &[&str], stdout: std::process::Stdio) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_mab"))
        .current_dir(root())
        .env_remove("MAB_PROFILE")
        .env("NO_COLOR", "1")
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_write_error_fails_the_command_and_a_closed_pipe_does_not() {
    let cases: [&[&str]; 5] = [
        &["plan", "--format", "shell"],
        &["plan", "--format", "json"],
        &["plan"],
        &["ci", "github", "--action", "example/mab@v1"],
        &["ci", "gitlab", "--image", "example.com/mab:1"],
    ];
    for args in cases {
        // A full disk: the script or workflow is cut short, so the command fails, naming why.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = mab_to(args, full.into()).wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write the output: No space left on device"),
            "{args:?}: {stderr}"
        );
        // A reader that went away (`mab plan | head`) is no error: quiet, and exit 0.
        let mut child = mab_to(args, std::process::Stdio::piped());
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "", "{args:?}");
    }
}

/// `.dockerignore` is read with BuildKit's rules: `{a,b}.txt` is literal text there (a glob
/// library would take it as an alternation and leave `a.txt` out of the input hash while the
/// build sees it); a pattern BuildKit refuses is an error at its line.
#[test]
fn dockerignore_is_read_as_buildkit_reads_it() {
    let dir = project(
        TWO_IMAGES,
        &[
            ("images/base/Dockerfile", "FROM scratch\nCOPY . /\n"),
            ("images/base/.dockerignore", "{a,b}.txt\n*.log\n"),
            ("images/base/a.txt", "one"),
            ("images/base/x.log", "one"),
            ("images/app/Dockerfile", "FROM scratch\n"),
        ],
    );
    let hash = |dir: &std::path::Path| {
        let r = mab_in(dir, &["hash-context", "images/base"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let before = hash(dir.path());
    std::fs::write(dir.path().join("images/base/x.log"), "two").unwrap();
    assert_eq!(hash(dir.path()), before, "x.log is left out");
    std::fs::write(dir.path().join("images/base/a.txt"), "two").unwrap();
    assert_ne!(hash(dir.path()), before, "a.txt is sent, so it is an input");
    // A pattern BuildKit refuses: check points at it; the hash (plan, build) names it.
    std::fs::write(
        dir.path().join("images/base/.dockerignore"),
        "*.log\n  [abc\n",
    )
    .unwrap();
    let r = mab_in(dir.path(), &["check", "--manifest-only"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`[abc` is not a pattern BuildKit accepts")
            && r.stderr.contains("images/base/.dockerignore:2:3")
            && r.stderr.contains("a `[` without its `]`"),
        "{}",
        r.stderr
    );
    let r = mab_in(dir.path(), &["hash-context", "images/base"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("images/base/.dockerignore: line 2"),
        "{}",
        r.stderr
    );
}

/// A `docker` whose builds ignore SIGTERM (as a stuck build step can) and run until killed,
/// each writing its pid to `$FAKE_PIDS` as it starts.
fn stubborn_docker(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("stubborn");
    crate::support::script(
        &bin.join("docker"),
        "#!/bin/sh\ncase \"$*\" in\n  *'buildx build'*)\n    trap '' TERM\n    echo $$ >> \"$FAKE_PIDS\"\n    echo building\n    while :; do sleep 0.05; done ;;\n  *) exit 0 ;;\nesac\n",
    );
    bin
}

/// Whether process `pid` still runs (a zombie waiting for its parent's reaping does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Ctrl-C and SIGTERM stop a run: the children get SIGTERM, then SIGKILL when `--grace`
/// runs out; a second Ctrl-C kills at once. Exit 130 each time, nothing left running.
#[test]
fn signals_stop_the_children_and_escalate_to_kill() {
    let registry = empty_registry();
    let dir = project(
        &r#"profile "ci" { registry "REGISTRY/team"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
image "app" { version "1"; }"#
            .replace("REGISTRY", &registry),
        &[("images/app/Dockerfile", "FROM scratch\n")],
    );
    let path = format!(
        "{}:{}",
        stubborn_docker(dir.path()).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (case, signals, grace) in [
        ("ctrl-c, grace runs out", &[libc::SIGINT][..], "1"),
        ("sigterm, grace runs out", &[libc::SIGTERM][..], "1"),
        ("ctrl-c twice", &[libc::SIGINT, libc::SIGINT][..], "600"),
    ] {
        let pids = dir
            .path()
            .join(format!("{}.pids", case.replace([' ', ','], "-")));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mab"))
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("FAKE_PIDS", &pids)
            .env("NO_COLOR", "1")
            .env_remove("GITHUB_ACTIONS")
            .args(["build", "--grace", grace])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Both builds running.
        let started = std::time::Instant::now();
        let builds = || -> Vec<i32> {
            std::fs::read_to_string(&pids)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        };
        while builds().len() < 2 && started.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let running = builds();
        assert_eq!(running.len(), 2, "{case}: the builds did not start");
        let mab = child.id() as i32;
        // SAFETY: signalling the child process this test started.
        unsafe { libc::kill(mab, signals[0]) };
        // SIGTERM is ignored by the builds: they outlive the first signal for a while.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            running.iter().all(|p| alive(*p)),
            "{case}: a build died of SIGTERM"
        );
        for s in &signals[1..] {
            // SAFETY: as above.
            unsafe { libc::kill(mab, *s) };
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{case}: {err}");
        assert!(
            err.contains("interrupted: stopping every running command"),
            "{case}: {err}"
        );
        if signals.len() > 1 {
            assert!(
                err.contains("killing every running command"),
                "{case}: {err}"
            );
            // Killed at once: nowhere near the 600 s grace.
            assert!(started.elapsed().as_secs() < 60, "{case}");
        }
        // Nothing left running: the builds were killed (SIGKILL), not waited for forever.
        let reaped = std::time::Instant::now();
        while running.iter().any(|p| alive(*p)) && reaped.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            running.iter().all(|p| !alive(*p)),
            "{case}: a build outlived mab"
        );
    }
}

/// `--nodes-file`: one id a line (comments and blank lines skipped), or the `github-matrix`
/// JSON a CI job is given; it runs exactly what the same `--node`s run.
#[test]
fn a_nodes_file_runs_exactly_the_nodes_it_lists() {
    let dir = project(SLEEPY, &[]);
    let walk = |args: &[&str]| -> Vec<String> {
        let r = crate::support::mab_in(
            dir.path(),
            &[
                &[
                    "build",
                    "--dry-run",
                    "--metadata-dir",
                    "m",
                    "--report",
                    "r.json",
                ][..],
                args,
            ]
            .concat(),
        );
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
        let mut ids: Vec<String> = report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    std::fs::write(
        dir.path().join("nodes.txt"),
        "# level 0\nbuild:base:1@linux/amd64\n\n  build:broken:1@linux/arm64  \n",
    )
    .unwrap();
    let listed = walk(&["--nodes-file", "nodes.txt"]);
    assert_eq!(
        listed,
        walk(&[
            "--node",
            "build:base:1@linux/amd64",
            "--node",
            "build:broken:1@linux/arm64"
        ])
    );
    assert_eq!(
        listed,
        ["build:base:1@linux/amd64", "build:broken:1@linux/arm64"]
    );
    // The matrix of the whole plan: every build it names (level 0 and 1), with its test.
    let matrix = crate::support::mab_in(dir.path(), &["plan", "--format", "github-matrix"]);
    assert_eq!(matrix.code, 0, "{}", matrix.stderr);
    std::fs::write(dir.path().join("matrix.json"), &matrix.stdout).unwrap();
    let from_matrix = walk(&["--nodes-file", "matrix.json"]);
    let builds: Vec<&String> = from_matrix
        .iter()
        .filter(|i| i.starts_with("build:"))
        .collect();
    assert_eq!(builds.len(), 8, "{from_matrix:?}");
    assert!(
        from_matrix
            .iter()
            .all(|i| i.starts_with("build:") || i.starts_with("test:")),
        "{from_matrix:?}"
    );
    // A file that is not there: an error naming it.
    let r = crate::support::mab_in(dir.path(), &["build", "--nodes-file", "missing.txt"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot read missing.txt"), "{}", r.stderr);
}

/// What users hit (issue 22): counts read as English; a format error names the option's
/// value, not an internal name; a pipeline for a profile that only receives promotions is
/// refused, naming the promotion.
#[test]
fn small_things_users_hit() {
    let dir = project(
        "profile \"t\" { registry \"r.example/team\"; }\ndefaults { platforms \"linux/amd64\"; }\nimage \"one\" { version \"1\"; }\n",
        &[("images/one/Dockerfile", "FROM scratch\n")],
    );
    let r = mab_in(dir.path(), &["plan", "--format", "text"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("2 nodes (0 mirror, 1 build, 0 test, 1 merge) in 2 levels"),
        "{}",
        r.stdout
    );
    let r = mab_in(
        dir.path(),
        &[
            "plan",
            "one",
            "--platform",
            "linux/amd64",
            "--format",
            "markdown",
        ],
    );
    assert!(r.stdout.contains("**2 nodes** in 2 levels"), "{}", r.stdout);
    let one = project(
        "profile \"t\" { registry \"r.example/team\"; push #false; }\ndefaults { platforms \"linux/amd64\"; }\nimage \"one\" { version \"1\"; }\n",
        &[("images/one/Dockerfile", "FROM scratch\n")],
    );
    for format in ["text", "markdown", "shell"] {
        let r = mab_in(one.path(), &["plan", "--format", format]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains("1 node ") || r.stdout.contains("**1 node**"),
            "{format}: {}",
            r.stdout
        );
        assert!(
            !r.stdout.contains("1 nodes") && !r.stdout.contains("1 levels"),
            "{format}: {}",
            r.stdout
        );
    }
    let release = project(RELEASE, &[("images/app/Dockerfile", "FROM scratch\n")]);
    let r = mab_in(
        release.path(),
        &["--profile", "prod", "plan", "--format", "github-matrix"],
    );
    assert_eq!(r.code, 2);
    // (miette wraps long messages: `\n  │ ` joins the lines.)
    let unwrapped = |t: &str| t.replace("\n  │ ", "");
    assert!(
        unwrapped(&r.stderr).contains("has no `--format github-matrix`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("GithubMatrix"), "{}", r.stderr);
    for ci in [
        &[
            "--profile",
            "prod",
            "ci",
            "github",
            "--action",
            "example/mab@v1",
        ][..],
        &["--profile", "prod", "ci", "gitlab"],
    ] {
        let r = mab_in(release.path(), ci);
        assert_eq!(r.code, 2, "{ci:?}: {}", r.stdout);
        let err = unwrapped(&r.stderr)
            .replace("\n  help: ", " ")
            .replace("\n        ", " ");
        assert!(
            err.contains("profile `prod` is promoted from `dev`")
                && err.contains("mab promote --from dev --to prod"),
            "{ci:?}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{ci:?}: a pipeline was written");
    }
}
