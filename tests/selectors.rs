//! Selectors, `--platform`, the upstream closure and the order of the plan.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::support::{git_in, mab, ok, root_copy};

fn plan(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["plan", "--format", "json"];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_str(&ok(&all)).unwrap();
    v["nodes"].as_array().unwrap().clone()
}

fn ids(nodes: &[Value]) -> BTreeSet<String> {
    nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_version_selector_pulls_in_its_mirror_only() {
    let got = ids(&plan(&["runtime:3.15"]));
    let want: BTreeSet<String> = [
        "mirror:alpine:3.15",
        "build:runtime:3.15@linux/amd64",
        "build:runtime:3.15@linux/arm64",
        "test:runtime:3.15@linux/amd64",
        "test:runtime:3.15@linux/arm64",
        "merge:runtime:3.15",
    ]
    .map(String::from)
    .into();
    assert_eq!(got, want);
}

#[test]
fn an_image_selector_pulls_in_the_upstream_closure() {
    let got = ids(&plan(&["odb"]));
    for id in [
        "mirror:alpine:3.15",
        "mirror:golang:1.18-alpine3.15",
        "merge:runtime:3.15",
        "merge:golang-build:1.18",
        "merge:odb:2.5.0-b.23",
        "merge:odb:2.5.0-b.23-slim",
    ] {
        assert!(got.contains(id), "missing {id}: {got:?}");
    }
    assert!(
        !got.iter()
            .any(|i| i.contains("runtime:3.16") || i.contains("builder")),
        "{got:?}"
    );
}

#[test]
fn globs_select_images() {
    let got = ids(&plan(&["golang-*"]));
    assert!(got.contains("merge:golang-build:1.18"));
    assert!(!got.iter().any(|i| i.contains("odb")), "{got:?}");
    let got = ids(&plan(&["builder:2.*", "mirror:alpine:3.15"]));
    assert!(
        got.contains("merge:builder:2.2")
            && got.contains("merge:builder:2.3")
            && got.contains("mirror:alpine:3.15")
    );
    assert!(!got.iter().any(|i| i.contains("runtime")), "{got:?}");
}

#[test]
fn platform_filter_keeps_only_that_platform() {
    let nodes = plan(&["--platform", "linux/arm64"]);
    for n in &nodes {
        if let Some(p) = n["platform"].as_str() {
            assert_eq!(p, "linux/arm64", "{}", n["id"]);
        }
        if n["kind"] == "merge" {
            assert_eq!(n["platforms"], serde_json::json!(["linux/arm64"]));
        }
    }
    let builds = nodes.iter().filter(|n| n["kind"] == "build").count();
    assert_eq!(builds, 7, "one arm64 build per image version");
    let two = plan(&["builder", "--platform", "linux/ppc64le,linux/s390x"]);
    assert_eq!(two.iter().filter(|n| n["kind"] == "build").count(), 4);
}

#[test]
fn order_is_topological_and_levels_are_consistent() {
    let nodes = plan(&[]);
    let level: HashMap<&str, u64> = nodes
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n["level"].as_u64().unwrap()))
        .collect();
    let mut seen = BTreeSet::new();
    for n in &nodes {
        let lvl = n["level"].as_u64().unwrap();
        for need in n["needs"].as_array().unwrap() {
            let need = need.as_str().unwrap();
            assert!(
                seen.contains(need),
                "{} listed before its need {need}",
                n["id"]
            );
            assert!(level[need] < lvl, "{} is not above {need}", n["id"]);
        }
        seen.insert(n["id"].as_str().unwrap());
    }
    // A dependent build receives its base pinned to the merge that published it.
    let gb = nodes
        .iter()
        .find(|n| n["id"] == "build:golang-build:1.18@linux/arm64")
        .unwrap();
    assert_eq!(
        gb["args"]["RUNTIME_IMAGE"],
        "registry.example.com/platform/docker-dev/runtime:3.15@{digest:merge:runtime:3.15}"
    );
    assert!(
        gb["needs"]
            .as_array()
            .unwrap()
            .contains(&"merge:runtime:3.15".into())
    );
    // Tags move only in merges.
    for n in &nodes {
        if n["kind"] == "build" || n["kind"] == "test" {
            assert_eq!(n["tags"], serde_json::json!([]), "{}", n["id"]);
        }
    }
}

#[test]
fn selector_errors_are_usage_errors() {
    let r = mab(&["plan", "runtim"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("selector `runtim` matches nothing"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `runtime`?"), "{}", r.stderr);
    let r = mab(&["plan", "runtime:3.17"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("did you mean `runtime:3.15`?")
            || r.stderr.contains("did you mean `runtime:3.16`?"),
        "{}",
        r.stderr
    );
    let r = mab(&["plan", "--platform", "linux/amd65"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown platform `linux/amd65`")
            && r.stderr.contains("did you mean `linux/amd64`?"),
        "{}",
        r.stderr
    );
    let r = mab(&["plan", "runtime", "--platform", "linux/s390x"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("platform `linux/s390x` matches nothing")
            && r.stderr
                .contains("the selection builds linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );
    // Without a selector too (it was `0 nodes`, exit 0), and in a list of platforms.
    for args in [
        &["plan", "--platform", "linux/riscv64"][..],
        &["plan", "--platform", "linux/amd64,linux/riscv64"],
        &["build", "--dry-run", "--platform", "linux/riscv64"],
    ] {
        let r = mab(args);
        assert_eq!(r.code, 2, "{args:?}");
        assert!(
            r.stderr
                .contains("platform `linux/riscv64` matches nothing"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // A selection of mirrors only builds nothing on any platform: that is said too.
    let r = mab(&["plan", "mirror:alpine", "--platform", "linux/s390x"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("builds nothing for linux/s390x"),
        "{}",
        r.stderr
    );
}

#[test]
fn changed_since_a_git_ref() {
    let dir = root_copy();
    std::fs::write(dir.path().join("images/builder/.dockerignore"), "notes/\n").unwrap();
    let git = |args: &[&str]| git_in(dir.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "images"]);
    let keys = |args: &[&str]| -> (BTreeSet<String>, serde_json::Value) {
        let mut all = vec!["plan", "--format", "json"];
        all.extend_from_slice(args);
        let r = crate::support::mab_in(dir.path(), &all);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let merges = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "merge")
            .map(|n| {
                n["id"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("merge:")
                    .to_owned()
            })
            .collect();
        (merges, plan)
    };
    // Nothing changed.
    let (none, _) = keys(&["--changed-since", "HEAD"]);
    assert!(none.is_empty(), "{none:?}");
    // A committed change to the golang-build context: it, and odb built on it.
    std::fs::write(
        dir.path().join("images/golang-build/toolchain-info"),
        "#!/bin/sh\necho changed\n",
    )
    .unwrap();
    git(&["commit", "-qam", "toolchain"]);
    let (got, plan) = keys(&["--changed-since", "HEAD~1"]);
    for key in ["golang-build:1.18", "odb:2.5.0-b.23", "odb:2.5.0-b.23-slim"] {
        assert!(got.contains(key), "{key} missing: {got:?}");
    }
    assert!(
        !got.contains("builder:2.2") && !got.contains("runtime:3.16"),
        "{got:?}"
    );
    assert_eq!(
        plan["changes"]["golang-build:1.18"],
        "`images/golang-build/toolchain-info` changed"
    );
    assert_eq!(
        plan["changes"]["odb:2.5.0-b.23"],
        "its base `golang-build:1.18` changes"
    );
    // Uncommitted and untracked files count; .dockerignored ones do not.
    std::fs::create_dir_all(dir.path().join("images/builder/notes")).unwrap();
    std::fs::write(dir.path().join("images/builder/notes/todo"), "x").unwrap();
    let (got, _) = keys(&["--changed-since", "HEAD"]);
    assert!(got.is_empty(), "{got:?}");
    std::fs::write(dir.path().join("images/builder/extra.sh"), "x").unwrap();
    let (got, _) = keys(&["--changed-since", "HEAD"]);
    let want: BTreeSet<String> = ["builder:2.2", "builder:2.3"].map(String::from).into();
    assert_eq!(got, want);
    // The PR comment says why.
    let r = crate::support::mab_in(
        dir.path(),
        &["plan", "--changed-since", "HEAD~1", "--format", "markdown"],
    );
    assert!(
        r.stdout
            .contains("| `odb:2.5.0-b.23` | its base `golang-build:1.18` changes |"),
        "{}",
        r.stdout
    );
    // A bad ref is a usage error.
    let r = crate::support::mab_in(dir.path(), &["plan", "--changed-since", "no-such-ref"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `--platform` with some of an image version's platforms left out: no merge of it in any
/// format — the shell script would otherwise replace the four-platform `builder:2.2` with a
/// two-platform index — and `build --dry-run` shows exactly the plan's commands.
#[test]
fn a_platform_subset_never_plans_a_half_release() {
    let nodes = plan(&["--platform", "linux/amd64,linux/arm64"]);
    let merges: BTreeSet<String> = ids(&nodes)
        .into_iter()
        .filter(|i| i.starts_with("merge:"))
        .collect();
    // runtime, golang-build and odb have exactly these two platforms: merged. builder has four.
    assert!(merges.contains("merge:runtime:3.15"), "{merges:?}");
    assert!(!merges.iter().any(|m| m.contains("builder")), "{merges:?}");
    for format in ["text", "shell", "markdown", "mermaid", "dot"] {
        let out = ok(&[
            "plan",
            "--platform",
            "linux/amd64,linux/arm64",
            "--format",
            format,
        ]);
        assert!(!out.contains("merge:builder"), "{format}: {out}");
        assert!(!out.contains("builder:2.2 ("), "{format}: {out}");
    }
    let shell = ok(&[
        "plan",
        "--platform",
        "linux/amd64,linux/arm64",
        "--format",
        "shell",
    ]);
    assert!(
        !shell
            .lines()
            .any(|l| l.starts_with("crane") && l.contains("/builder:")),
        "{shell}"
    );
    let dry = ok(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--dry-run",
    ]);
    assert_eq!(
        dry, shell,
        "build --dry-run differs from plan --format shell"
    );
    // A dependent of a partial base builds on the base's image of its own platform.
    let odb = plan(&["odb", "--platform", "linux/arm64"]);
    let golang = odb
        .iter()
        .find(|n| n["id"] == "build:golang-build:1.18@linux/arm64")
        .unwrap();
    assert_eq!(
        golang["args"]["RUNTIME_IMAGE"],
        "registry.example.com/platform/docker-dev/runtime:3.15@{digest:build:runtime:3.15@linux/arm64}"
    );
}

/// Names git quotes (spaces, non-ASCII) were missed; a ref starting with `-` reached git as an
/// option (`--output=FILE` wrote that file); outside a repository git's usage was printed.
#[test]
fn changed_since_sees_every_name_and_takes_no_option_for_a_ref() {
    let dir = root_copy();
    let changed = |args: &[&str]| -> crate::support::Run {
        let mut all = vec!["plan", "--format", "json", "--changed-since"];
        all.extend_from_slice(args);
        crate::support::mab_in(dir.path(), &all)
    };
    // Not a repository yet: one clear line.
    let r = changed(&["HEAD"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("needs a git repository"), "{}", r.stderr);
    let git = |args: &[&str]| git_in(dir.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "images"]);
    // A committed file with a space and non-ASCII in its name, in runtime's context.
    std::fs::write(dir.path().join("images/runtime/é x.txt"), "1").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "accent"]);
    let r = changed(&["HEAD~1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        plan["changes"]["runtime:3.15"]
            .as_str()
            .unwrap()
            .contains("é x.txt"),
        "{plan}"
    );
    // Untracked, too.
    std::fs::write(dir.path().join("images/builder/ü y.sh"), "1").unwrap();
    let plan: serde_json::Value = serde_json::from_str(&changed(&["HEAD"]).stdout).unwrap();
    assert!(
        plan["changes"]["builder:2.2"]
            .as_str()
            .unwrap()
            .contains("ü y.sh"),
        "{plan}"
    );
    // A ref that looks like an option is refused, and writes nothing.
    let r = crate::support::mab_in(dir.path(), &["plan", "--changed-since=--output=pwned.txt"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not a git ref"), "{}", r.stderr);
    assert!(!dir.path().join("pwned.txt").exists());
    let r = changed(&["no-such-ref"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("names no commit"), "{}", r.stderr);
}

/// An edit of `images.kdl` rebuilds the image versions whose *resolved* settings changed and
/// their dependents — not every version of the manifest — and the plan builds on what is
/// published for the rest: unchanged bases and mirrors are `external`, not builds.
#[test]
fn an_edit_of_the_manifest_rebuilds_only_what_it_changes() {
    let dir = root_copy();
    let git = |args: &[&str]| git_in(dir.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "images"]);
    let manifest = dir.path().join("images.kdl");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let plan = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["plan", "--format", "json", "--changed-since", "HEAD"];
        args.extend_from_slice(extra);
        let r = crate::support::mab_in(dir.path(), &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    };
    let built = |p: &serde_json::Value| -> BTreeSet<String> {
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "build")
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // A comment and a reordering of settings: nothing.
    std::fs::write(
        &manifest,
        format!("// a comment\n{original}").replace(
            "    arg \"RUNTIME_VERSION\" \"${version}\"\n    version \"3.15\"",
            "    version \"3.15\"\n    arg \"RUNTIME_VERSION\" \"${version}\"",
        ),
    )
    .unwrap();
    let p = plan(&[]);
    assert!(p["nodes"].as_array().unwrap().is_empty(), "{p}");

    // One version's arg: that version and what is built on it, on the published rest.
    std::fs::write(
        &manifest,
        original.replace("\"GO_VERSION\" \"1.18.10\"", "\"GO_VERSION\" \"1.18.11\""),
    )
    .unwrap();
    let p = plan(&[]);
    let want: BTreeSet<String> = [
        "build:golang-build:1.18@linux/amd64",
        "build:golang-build:1.18@linux/arm64",
        "build:odb:2.5.0-b.23@linux/amd64",
        "build:odb:2.5.0-b.23@linux/arm64",
        "build:odb:2.5.0-b.23-slim@linux/amd64",
        "build:odb:2.5.0-b.23-slim@linux/arm64",
    ]
    .map(String::from)
    .into();
    assert_eq!(built(&p), want);
    assert_eq!(
        p["changes"]["golang-build:1.18"],
        "its settings in `images.kdl` changed"
    );
    assert!(
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["kind"] != "mirror"),
        "{p}"
    );
    let external: Vec<&str> = p["external"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        external,
        ["merge:runtime:3.15", "mirror:golang:1.18-alpine3.15"]
    );
    assert_eq!(
        p["external"][0]["ref"],
        "registry.example.com/platform/docker-dev/runtime:3.15"
    );
    // The PR comment and the shell form say so too.
    let r = crate::support::mab_in(
        dir.path(),
        &["plan", "--changed-since", "HEAD", "--format", "markdown"],
    );
    assert!(
        r.stdout.contains(
            "| `merge:runtime:3.15` | `registry.example.com/platform/docker-dev/runtime:3.15` |"
        ),
        "{}",
        r.stdout
    );
    let r = crate::support::mab_in(
        dir.path(),
        &["plan", "--changed-since", "HEAD", "--format", "shell"],
    );
    assert!(
        r.stdout.contains("crane digest registry.example.com/platform/docker-dev/runtime:3.15 > .mab/digests/merge_runtime_3.15"),
        "{}",
        r.stdout
    );

    // Another profile's registry only: nothing of the default profile changes.
    std::fs::write(
        &manifest,
        original.replace("docker-prod\"", "docker-prod2\""),
    )
    .unwrap();
    assert!(plan(&[]).get("changes").is_none());
    // ... but the prod plan rebuilds everything, since every reference moved.
    let p = plan(&["--profile", "prod"]);
    assert_eq!(built(&p).len(), 18, "{p}");

    // A new image: it alone.
    std::fs::write(
        &manifest,
        format!("{original}\nimage \"extra\" {{ version \"1\"; }}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("images/extra")).unwrap();
    std::fs::write(dir.path().join("images/extra/Dockerfile"), "FROM scratch\n").unwrap();
    let p = plan(&[]);
    assert_eq!(p["changes"]["extra:1"], "new in `images.kdl`");
    assert_eq!(p["changes"].as_object().unwrap().len(), 1, "{p}");
}

/// `push #false` publishes nothing: a `--changed-since` run builds on the *local* images of
/// unchanged bases (what its build args name), and never asks the registry for them — which
/// failed every such run with "not published" (or, with no registry, DNS errors).
#[test]
fn changed_since_without_push_builds_on_local_bases() {
    let dir = crate::support::nopush_repo();
    std::fs::write(dir.path().join("images/golang-build/toolchain-info"), "x\n").unwrap();
    let r = crate::support::mab_in(
        dir.path(),
        &[
            "--profile",
            "nopush",
            "plan",
            "--format",
            "json",
            "--changed-since",
            "HEAD",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let local: Vec<(&str, &str)> = plan["external"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "local")
        .map(|e| (e["id"].as_str().unwrap(), e["ref"].as_str().unwrap()))
        .collect();
    assert_eq!(
        local,
        [
            (
                "build:runtime:3.15@linux/amd64",
                "localhost/mab/runtime:3.15-amd64"
            ),
            (
                "build:runtime:3.15@linux/arm64",
                "localhost/mab/runtime:3.15-arm64"
            ),
        ]
    );
    let r = crate::support::mab_in(
        dir.path(),
        &[
            "--profile",
            "nopush",
            "plan",
            "--format",
            "shell",
            "--changed-since",
            "HEAD",
        ],
    );
    assert!(
        !r.stdout.contains("crane digest --platform"),
        "{}",
        r.stdout
    );
}

/// `linux/arm64/v8` is `linux/arm64`: the same plan from `--platform`, the same node ids and
/// refs from a manifest that writes it either way.
#[test]
fn arm64_v8_is_one_platform_with_arm64() {
    let plain = mab(&["plan", "--platform", "linux/arm64", "--format", "json"]);
    let v8 = mab(&["plan", "--platform", "linux/arm64/v8", "--format", "json"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(v8.stdout, plain.stdout);
    let dir = tempfile::tempdir().unwrap();
    let manifest = |platform: &str| {
        format!(
            "profile \"dev\" {{ registry \"r.example/team\"; }}\ndefaults {{ platforms \"linux/amd64\" \"{platform}\"; }}\nimage \"app\" {{ version \"1\"; }}\n"
        )
    };
    std::fs::create_dir_all(dir.path().join("images/app")).unwrap();
    std::fs::write(dir.path().join("images/app/Dockerfile"), "FROM scratch\n").unwrap();
    let plan = |platform: &str| {
        std::fs::write(dir.path().join("images.kdl"), manifest(platform)).unwrap();
        let r = crate::support::mab_in(dir.path(), &["plan", "--format", "shell"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let written_v8 = plan("linux/arm64/v8");
    assert_eq!(written_v8, plan("linux/arm64"));
    assert!(
        written_v8.contains("# build:app:1@linux/arm64\n"),
        "{written_v8}"
    );
    assert!(!written_v8.contains("arm64/v8"), "{written_v8}");
}

/// `--platform` is judged on what the selectors pick, not on what `--changed-since` leaves:
/// a change that touches no image of that platform is nothing to do, not a typo.
#[test]
fn a_platform_no_change_touches_is_nothing_to_do() {
    let dir = crate::support::nopush_repo();
    // Only golang-build (amd64 and arm64) changes; s390x is built by `builder` alone.
    std::fs::write(
        dir.path().join("images/golang-build/toolchain-info"),
        "#!/bin/sh\necho changed\n",
    )
    .unwrap();
    let r = crate::support::mab_in(
        dir.path(),
        &[
            "--profile",
            "nopush",
            "plan",
            "--changed-since",
            "HEAD",
            "--platform",
            "linux/s390x",
            "--format",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["kind"] != "build"),
        "{}",
        r.stdout
    );
    // The same platform misspelt is still an error.
    let r = crate::support::mab_in(
        dir.path(),
        &[
            "--profile",
            "nopush",
            "plan",
            "--changed-since",
            "HEAD",
            "--platform",
            "linux/riscv64",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("platform `linux/riscv64` matches nothing"),
        "{}",
        r.stderr
    );
}
