//! The test environment itself: a part that cannot start stops `scripts/test-env` (and so
//! `scripts/test`) with an error naming it, never a warning the suite runs past.

use super::*;

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_builder_that_cannot_start_stops_the_test_environment_naming_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    registry();
    // The scripts as they are, beside a `../shared` whose BuildKit cannot start.
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("repo/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for s in ["local-env", "test-env"] {
        std::fs::copy(root().join("scripts").join(s), scripts.join(s)).unwrap();
    }
    let shared = dir.path().join("shared");
    copy_dir(&root().join("../shared/tools"), &shared.join("tools"));
    crate::support::script(
        &shared.join("buildkit/up"),
        "#!/bin/sh\necho 'buildkit: buildkitd did not start: runc: permission denied' >&2\nexit 1\n",
    );
    let o = Command::new(scripts.join("test-env"))
        .current_dir(dir.path().join("repo"))
        .env_remove("DOCKER_CONFIG")
        .env_remove("BUILDX_BUILDER")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("test-env: error: the BuildKit daemon of ../shared/buildkit did not start"),
        "{err}"
    );
    // Nothing to eval: no export line was printed for a builder that is not there.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("BUILDX_BUILDER"));
}
