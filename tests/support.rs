//! Running the real binary from the repository root.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every manifest the project ships: the root one and the examples.
pub fn manifests() -> Vec<(&'static str, &'static str)> {
    vec![
        ("root", "images.kdl"),
        ("makefile-buildx", "examples/makefile-buildx/images.kdl"),
        (
            "release-branch-builders",
            "examples/release-branch-builders/images.kdl",
        ),
        (
            "split-native-builds",
            "examples/split-native-builds/images.kdl",
        ),
    ]
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// Run `mab ARGS` in `dir` with a clean environment for the variables mab reads.
pub fn mab_in(dir: &Path, args: &[&str]) -> Run {
    mab_env(dir, args, &[])
}

/// `mab_in` with more environment variables set.
pub fn mab_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::cargo_bin("mab").expect("binary built");
    c.current_dir(dir)
        .env_remove("MAB_PROFILE")
        .env("NO_COLOR", "1")
        .args(args);
    if dir == root() {
        // Snapshots of the shipped manifests: the same on every commit of this repository,
        // clean or not. The commit's part (revision, time) is tested where a test commits.
        c.env("GIT_DIR", "/nonexistent/mab-tests")
            .env("SOURCE_DATE_EPOCH", "1764000000")
            .env("MAB_NOW", "2026-11-25T10:00:00Z");
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("mab runs").into()
}

pub fn mab(args: &[&str]) -> Run {
    mab_in(&root(), args)
}

/// Run and insist on success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let r = mab(args);
    assert_eq!(r.code, 0, "mab {args:?} failed:\n{}", r.stderr);
    r.stdout
}

/// A copy of the root manifest and its images in a temporary directory.
pub fn root_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("images.kdl"), dir.path().join("images.kdl")).unwrap();
    let copy = std::process::Command::new("cp")
        .arg("-r")
        .arg(root().join("images"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copy.success());
    dir
}

/// Run git in `dir` as a throwaway identity; it must succeed.
pub fn git_in(dir: &Path, args: &[&str]) {
    let o = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `root_copy` with a `nopush` profile (`push #false`), committed as a git repository: the
/// ground `--changed-since` tests edit.
pub fn nopush_repo() -> tempfile::TempDir {
    let dir = root_copy();
    let manifest = dir.path().join("images.kdl");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}\nprofile \"nopush\" {{ inherits \"dev\"; push #false; }}\n"),
    )
    .unwrap();
    git_in(dir.path(), &["init", "-q", "-b", "main"]);
    git_in(dir.path(), &["add", "-A"]);
    git_in(dir.path(), &["commit", "-q", "-m", "images"]);
    dir
}

/// Write an executable script at `path` (its directory made as needed): a stand-in for a
/// program the test puts on the PATH or in place of a setup script.
pub fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
