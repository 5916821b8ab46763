//! Every output format on every shipped manifest, as reviewed snapshots; and determinism.

use crate::support::{mab, manifests, ok};

const FORMATS: &[&str] = &["text", "json", "dot", "mermaid", "shell", "markdown"];

#[test]
fn every_format_on_every_manifest() {
    for (name, file) in manifests() {
        for format in FORMATS {
            let out = ok(&["-f", file, "plan", "--format", format]);
            insta::assert_snapshot!(format!("plan_{name}_{format}"), out);
        }
    }
}

#[test]
fn other_profiles_of_the_root_manifest() {
    for profile in ["prod", "local"] {
        for format in ["text", "shell"] {
            let out = ok(&["--profile", profile, "plan", "--format", format]);
            insta::assert_snapshot!(format!("plan_root_{profile}_{format}"), out);
        }
    }
}

#[test]
fn two_runs_give_the_same_bytes() {
    for (_, file) in manifests() {
        for format in FORMATS {
            let args = ["-f", file, "plan", "--format", format];
            let (a, b) = (mab(&args), mab(&args));
            assert_eq!(a.code, 0, "{}", a.stderr);
            assert_eq!(
                a.stdout, b.stdout,
                "{file} --format {format} differs between runs"
            );
        }
    }
}

#[test]
fn info_and_list() {
    insta::assert_snapshot!("info_root", ok(&["info"]));
    insta::assert_snapshot!(
        "info_root_prod_json",
        ok(&["--profile", "prod", "info", "--format", "json"])
    );
    insta::assert_snapshot!("list_root", ok(&["list"]));
    insta::assert_snapshot!(
        "list_split_json",
        ok(&[
            "-f",
            "examples/split-native-builds/images.kdl",
            "list",
            "--format",
            "json"
        ])
    );
}

#[test]
fn profile_from_the_environment() {
    let r = crate::support::mab_in(&crate::support::root(), &["info"]);
    assert!(r.stdout.starts_with("profile    dev\n"), "{}", r.stdout);
    let out = assert_cmd::Command::cargo_bin("mab")
        .unwrap()
        .current_dir(crate::support::root())
        .env("MAB_PROFILE", "prod")
        .arg("info")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("profile    prod\ninherits   dev\n"),
        "{stdout}"
    );
}

#[test]
fn latest_goes_to_the_newest_version() {
    let plan: serde_json::Value =
        serde_json::from_str(&ok(&["--profile", "prod", "plan", "--format", "json"])).unwrap();
    let tags = |id: &str| -> Vec<String> {
        let node = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap();
        serde_json::from_value(node["tags"].clone()).unwrap()
    };
    assert_eq!(tags("merge:runtime:3.16"), ["3.16", "latest"]);
    assert_eq!(tags("merge:runtime:3.15"), ["3.15"]);
    assert_eq!(
        tags("merge:odb:2.5.0-b.23-slim"),
        ["2.5.0-b.23-slim", "latest-slim"]
    );
}

#[test]
fn semver_aware_latest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("images.kdl"),
        r#"profile "p" { registry "r.example/x"; tag "latest" }
defaults { platforms "linux/amd64" }
image "app" {
    version "1.9"
    version "1.10"
    version "1.10.0-rc.1"
    version "1.2"
}"#,
    )
    .unwrap();
    let r = crate::support::mab_in(dir.path(), &["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let latest: Vec<&str> = r.stdout.lines().filter(|l| l.contains("latest")).collect();
    assert_eq!(latest.len(), 1, "{}", r.stdout);
    assert!(latest[0].starts_with("app    1.10 "), "{}", r.stdout);
}

#[test]
fn kdl_v1_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // KDL v1: `true` without `#`, `r"…"` raw strings.
    std::fs::write(
        dir.path().join("images.kdl"),
        "profile \"dev\" default=true { registry r\"r.example/x\"; }\ndefaults { platforms \"linux/amd64\"; }\nimage \"a\" { version \"1\"; }\n",
    )
    .unwrap();
    let r = crate::support::mab_in(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"id\": \"merge:a:1\""), "{}", r.stdout);
}

#[test]
fn shell_scripts_parse() {
    for (_, file) in manifests() {
        for profile in [None, Some("local")] {
            let mut args = vec!["-f", file];
            if let Some(p) = profile.filter(|_| file == "images.kdl") {
                args.extend(["--profile", p]);
            }
            args.extend(["plan", "--format", "shell"]);
            let script = ok(&args);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("plan.sh");
            std::fs::write(&path, &script).unwrap();
            let check = std::process::Command::new("sh")
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{file}: sh -n: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
}

#[test]
fn push_disabled_builds_locally() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("images.kdl"),
        r#"profile "laptop" { registry "r.example/x"; backend "buildah"; push #false; }
defaults { platforms "linux/amd64" "linux/arm64"; }
image "base" { version "1"; }
image "app" { from "base:1" arg="BASE"; version "2"; }"#,
    )
    .unwrap();
    let r = crate::support::mab_in(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let nodes = plan["nodes"].as_array().unwrap();
    assert!(
        nodes.iter().all(|n| n["kind"] == "build"),
        "no merges without push: {}",
        r.stdout
    );
    let app = nodes
        .iter()
        .find(|n| n["id"] == "build:app:2@linux/arm64")
        .unwrap();
    assert_eq!(
        app["needs"],
        serde_json::json!(["build:base:1@linux/arm64"])
    );
    assert_eq!(app["args"]["BASE"], "localhost/mab/base:1-arm64");
    assert!(!r.stdout.contains("skopeo"), "nothing is pushed");
    // Nothing is written to the registry either: the cache is read, not written.
    assert!(r.stdout.contains("--cache-from"), "{}", r.stdout);
    assert!(!r.stdout.contains("--cache-to"), "{}", r.stdout);
    // And the plan says where the image goes.
    let text = crate::support::mab_in(dir.path(), &["plan"]);
    assert!(
        text.stdout
            .contains("local image localhost/mab/app:2-arm64")
            && !text.stdout.contains("by digest"),
        "{}",
        text.stdout
    );
}

#[test]
fn the_github_matrix_holds_every_build_once_each_level_after_its_bases() {
    for (name, file) in manifests() {
        let matrix: serde_json::Value =
            serde_json::from_str(&ok(&["-f", file, "plan", "--format", "github-matrix"])).unwrap();
        let plan: serde_json::Value =
            serde_json::from_str(&ok(&["-f", file, "plan", "--format", "json"])).unwrap();
        let nodes = plan["nodes"].as_array().unwrap();
        let mut level_of = std::collections::HashMap::new();
        for level in matrix["levels"].as_array().unwrap() {
            for job in level["include"].as_array().unwrap() {
                let id = job["node"].as_str().unwrap().to_owned();
                assert!(
                    level_of
                        .insert(id.clone(), level["level"].as_u64().unwrap())
                        .is_none(),
                    "{name}: {id} twice"
                );
            }
        }
        let builds: Vec<&serde_json::Value> =
            nodes.iter().filter(|n| n["kind"] == "build").collect();
        assert_eq!(
            level_of.len(),
            builds.len(),
            "{name}: every build node once"
        );
        let by_id: std::collections::HashMap<&str, &serde_json::Value> = nodes
            .iter()
            .map(|n| (n["id"].as_str().unwrap(), n))
            .collect();
        for b in builds {
            let lvl = level_of[b["id"].as_str().unwrap()];
            for need in b["needs"].as_array().unwrap() {
                let need = &by_id[need.as_str().unwrap()];
                if need["kind"] != "merge" {
                    continue;
                }
                for base in need["needs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|x| x.as_str().unwrap().starts_with("build:"))
                {
                    assert!(
                        level_of[base.as_str().unwrap()] < lvl,
                        "{name}: {} not after {base}",
                        b["id"]
                    );
                }
            }
        }
    }
    insta::assert_snapshot!(
        "matrix_split-native-builds",
        ok(&[
            "-f",
            "examples/split-native-builds/images.kdl",
            "plan",
            "--format",
            "github-matrix"
        ])
    );
}
