//! The plan is the contract: for every invocation of a table — selectors, globs, platform
//! subsets, `--changed-since`, `push #false`, every profile of every shipped manifest — the
//! nodes `mab plan` lists are, in order, the nodes `mab build --dry-run --report` walks (the
//! engine's walk without the work), and `plan --format shell` is byte for byte what
//! `build --dry-run` prints.

use std::path::Path;

use crate::support::{mab_in, manifests, root};

fn ids(plan: &serde_json::Value) -> Vec<String> {
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Compare `plan` and `build --dry-run` for `args` (manifest and profile options first).
fn same(dir: &Path, global: &[&str], args: &[&str]) -> Result<usize, String> {
    let run = |cmd: &[&str]| {
        let all: Vec<&str> = global.iter().chain(cmd).chain(args).copied().collect();
        let r = mab_in(dir, &all);
        if r.code != 0 {
            return Err(format!("mab {all:?} exited {}:\n{}", r.code, r.stderr));
        }
        Ok(r.stdout)
    };
    let plan: serde_json::Value =
        serde_json::from_str(&run(&["plan", "--format", "json"])?).unwrap();
    let shell = run(&["plan", "--format", "shell"])?;
    let report_file = tempfile::NamedTempFile::new().unwrap();
    let report_path = report_file.path().to_str().unwrap().to_owned();
    let dry = run(&["build", "--dry-run", "--report", &report_path])?;
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let walked: Vec<String> = ids(&report);
    let what = format!("{global:?} {args:?}");
    if ids(&plan) != walked {
        return Err(format!(
            "{what}: plan lists {:?}\nbuild walks {walked:?}",
            ids(&plan)
        ));
    }
    if let Some(n) = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["status"] != "planned")
    {
        return Err(format!("{what}: the dry walk did not reach {n}"));
    }
    if shell != dry {
        return Err(format!(
            "{what}: `plan --format shell` and `build --dry-run` differ"
        ));
    }
    Ok(walked.len())
}

const INVOCATIONS: &[&[&str]] = &[
    &[],
    &["runtime"],
    &["runtime:3.15"],
    &["golang-*"],
    &["odb", "builder:2.3"],
    &["mirror:alpine"],
    &["--platform", "linux/amd64"],
    &["--platform", "linux/amd64,linux/arm64"],
    &["--platform", "linux/s390x"],
    &["odb", "--platform", "linux/arm64"],
];

#[test]
fn plan_and_build_agree_on_every_manifest_profile_and_selection() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (_, manifest) in manifests() {
        let text = std::fs::read_to_string(root().join(manifest)).unwrap();
        let profiles: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("profile \""))
            .filter_map(|l| l.split('"').next())
            .map(str::to_owned)
            .collect();
        for profile in &profiles {
            for args in INVOCATIONS {
                let global = ["-f", manifest, "--profile", profile];
                // Selectors of the root manifest may match nothing in an example: skip those.
                let probe = mab_in(&root(), &[&global[..], &["plan"], args].concat());
                if probe.code != 0 {
                    continue;
                }
                match same(&root(), &global, args) {
                    Ok(_) => checked += 1,
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 50, "only {checked} invocations compared");
}

#[test]
fn plan_and_build_agree_without_push_and_with_changed_since() {
    let dir = crate::support::nopush_repo();
    std::fs::write(
        dir.path().join("images/golang-build/toolchain-info"),
        "#!/bin/sh\necho changed\n",
    )
    .unwrap();
    let mut failures = Vec::new();
    for global in [&["--profile", "nopush"][..], &["--profile", "dev"][..]] {
        for args in [
            &[][..],
            &["--platform", "linux/arm64"][..],
            &["--changed-since", "HEAD"][..],
            &["--changed-since", "HEAD", "--platform", "linux/amd64"][..],
            &["odb", "--changed-since", "HEAD"][..],
        ] {
            if let Err(e) = same(dir.path(), global, args) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
