//! Command-line behaviour: exit codes, profiles, check, completions.

use crate::support::{mab, mab_in};

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
    assert!(help.stdout.contains("plan"));
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = mab(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains("mab"), "{shell}");
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
