//! The invalid-manifest corpus: each file under `tests/invalid/` says, in its leading
//! comments, the errors `mab plan` must report (`// error: MESSAGE`) and where
//! (`// at: LINE:COL`, the labelled span). Every one must exit 2, report each error in
//! order of position, and never panic.

use crate::support::{mab, root};

struct Expected {
    message: String,
    at: String,
}

fn expectations(text: &str) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut message = None;
    for line in text.lines().take_while(|l| l.starts_with("//")) {
        if let Some(m) = line.strip_prefix("// error: ") {
            message = Some(m.to_owned());
        } else if let Some(at) = line.strip_prefix("// at: ") {
            out.push(Expected {
                message: message.take().expect("`// error:` before `// at:`"),
                at: at.to_owned(),
            });
        }
    }
    out
}

#[test]
fn every_invalid_manifest_is_reported_where_it_is_wrong() {
    let dir = root().join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "the corpus holds {} manifests",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let expected = expectations(&text);
        assert!(!expected.is_empty(), "{rel} states no expected error");
        let r = mab(&["-f", &rel, "plan"]);
        let mut problems = Vec::new();
        if r.code != 2 {
            problems.push(format!("exit code {} (want 2)", r.code));
        }
        if r.stderr.contains("panicked") {
            problems.push("panicked".to_owned());
        }
        let mut cursor = 0;
        for e in &expected {
            let header = format!("× {}", e.message);
            let location = format!("[{rel}:{}]", e.at);
            match r.stderr[cursor..].find(&header) {
                None => problems.push(format!("no error `{}` (after byte {cursor})", e.message)),
                Some(i) => {
                    let start = cursor + i;
                    // The location line follows the message line.
                    let block: String = r.stderr[start..]
                        .lines()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join("\n");
                    if !block.contains(&location) {
                        problems.push(format!(
                            "`{}` not located at {location}:\n{block}",
                            e.message
                        ));
                    }
                    cursor = start + header.len();
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{rel}:\n  {}\n--- stderr ---\n{}",
                problems.join("\n  "),
                r.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn errors_carry_help() {
    let r = mab(&["-f", "tests/invalid/unknown_image_setting.kdl", "plan"]);
    assert!(
        r.stderr.contains("help: did you mean `platforms`?"),
        "{}",
        r.stderr
    );
    let r = mab(&["-f", "tests/invalid/malformed_platform.kdl", "plan"]);
    assert!(
        r.stderr.contains("known platforms: linux/amd64,"),
        "{}",
        r.stderr
    );
    let r = mab(&["-f", "tests/invalid/duplicate_tag.kdl", "plan"]);
    assert!(
        r.stderr.contains("by `a:2`") && r.stderr.contains("and by `a:1`"),
        "{}",
        r.stderr
    );
    let r = mab(&["-f", "tests/invalid/cycle_three_images.kdl", "plan"]);
    assert!(
        r.stderr
            .contains("images in the cycle: `a:1`, `b:1`, `c:1`"),
        "{}",
        r.stderr
    );
}

#[test]
fn all_errors_of_a_file_in_one_run() {
    let r = mab(&["-f", "tests/invalid/multiple_errors.kdl", "plan"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.trim_end().ends_with("3 errors"), "{}", r.stderr);
}
