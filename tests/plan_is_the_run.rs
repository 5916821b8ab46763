//! The plan is the contract: for every invocation of a table — selectors, globs, platform
//! subsets, `--changed-since`, `push #false`, every profile of every shipped manifest — the
//! nodes `mab plan` lists are, in order, the nodes `mab build --dry-run --report` walks (the
//! engine's walk without the work), and `plan --format shell` is byte for byte what
//! `build --dry-run` prints.

use std::collections::BTreeSet;
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
    let (mut checked, mut skipped, mut oracles) = (0, 0, 0);
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
                // Selectors of the root manifest may match nothing in an example: only that
                // failure is skipped; any other is the test's.
                let probe = mab_in(&root(), &[&global[..], &["plan"], args].concat());
                if probe.code == 2 && probe.stderr.contains("matches nothing") {
                    skipped += 1;
                    continue;
                }
                if probe.code != 0 {
                    failures.push(format!("{global:?} plan {args:?}: {}", probe.stderr));
                    continue;
                }
                // A profile only promoted into builds nothing: `build` refuses, naming the
                // promotion (tested on its own); there is no run to compare.
                let build = mab_in(&root(), &[&global[..], &["build", "--dry-run"]].concat());
                if build.code == 2 && build.stderr.contains("mab promote --from") {
                    skipped += 1;
                    continue;
                }
                match same(&root(), &global, args) {
                    Ok(_) => checked += 1,
                    Err(e) => failures.push(e),
                }
                // What the selection should be, worked out here from the whole plan, not by
                // mab's selection code: the nodes a selector names and all they need.
                if args.iter().all(|a| !a.starts_with("--")) {
                    let whole = plan_json(&global, &[]);
                    let want = expected(&whole, args);
                    let got: BTreeSet<String> =
                        ids(&plan_json(&global, args)).into_iter().collect();
                    if got != want {
                        failures.push(format!(
                            "{global:?} {args:?}: plan selects {got:?}\nthe whole plan's closure is {want:?}"
                        ));
                    }
                    oracles += 1;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        checked >= 50 && oracles >= 20,
        "only {checked} invocations compared ({skipped} skipped), {oracles} against the closure"
    );
}

fn plan_json(global: &[&str], args: &[&str]) -> serde_json::Value {
    let r = mab_in(
        &root(),
        &[global, &["plan", "--format", "json"], args].concat(),
    );
    assert_eq!(r.code, 0, "{global:?} {args:?}: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// `*` matches any run of characters, anything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len())
                    .any(|i| text.is_char_boundary(i) && glob(tail, &text[i..]))
        }
    }
}

/// The ids the selectors name in the whole plan, and every node they need, transitively.
fn expected(whole: &serde_json::Value, selectors: &[&str]) -> BTreeSet<String> {
    let nodes = whole["nodes"].as_array().unwrap();
    if selectors.is_empty() {
        return ids(whole).into_iter().collect();
    }
    // `kind:IMAGE:TAG@PLATFORM` → (IMAGE, IMAGE:TAG); a mirror → (`mirror:NAME`, its id).
    let names = |id: &str| -> (String, String) {
        let (kind, rest) = id.split_once(':').unwrap();
        let key = rest.split('@').next().unwrap();
        if kind == "mirror" {
            let name = key.split(':').next().unwrap();
            (format!("mirror:{name}"), id.to_owned())
        } else {
            (key.split(':').next().unwrap().to_owned(), key.to_owned())
        }
    };
    let mut want: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .filter(|id| {
            let (name, key) = names(id);
            selectors.iter().any(|s| glob(s, &name) || glob(s, &key))
        })
        .collect();
    while let Some(id) = todo.pop() {
        if !want.insert(id.clone()) {
            continue;
        }
        let n = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for need in n["needs"].as_array().unwrap() {
            todo.push(need.as_str().unwrap().to_owned());
        }
    }
    want
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
