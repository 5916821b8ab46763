//! End to end, against the real environment of `scripts/test-env`: a registry on
//! loopback, buildah with vfs storage, qemu-user-static emulation, and a four-platform
//! busybox "upstream". Every test is `#[ignore]`d for a plain `cargo test` (shown as
//! ignored); `scripts/test` runs them with `--include-ignored`, and without the environment
//! they fail, naming what is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::root;

/// Builds share buildah's local storage: one end-to-end test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The registry of `scripts/test-env`. Every test here is `#[ignore]`d for a plain `cargo
/// test` (listed as ignored, never passed without running); run (scripts/test,
/// `--include-ignored`) without the environment, it fails naming what is missing.
fn registry() -> Option<String> {
    match std::env::var("MAB_E2E_REGISTRY") {
        Ok(r) if !r.is_empty() => Some(r),
        _ => panic!(
            "MAB_E2E_REGISTRY is not set: run the tests with scripts/test, or eval \"$(scripts/test-env)\" first"
        ),
    }
}

/// Whether `docker buildx` has a working builder (test-env starts one); a test that needs it
/// fails without it.
fn buildx_ready() -> bool {
    let o = Command::new("docker")
        .args(["buildx", "inspect", "--bootstrap"])
        .output();
    match o {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!(
            "no working `docker buildx` builder (scripts/test-env starts one): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("`docker buildx` cannot run: {e}"),
    }
}

/// The test environment's own buildah and podman store (scripts/test-env), which a test may
/// empty; never the default store a developer's images live in.
fn test_storage() -> String {
    match std::env::var("CONTAINERS_STORAGE_CONF") {
        Ok(c) if c.contains("mab-test-env") => c,
        other => panic!(
            "CONTAINERS_STORAGE_CONF is {other:?}, not the test environment's own store: \
             run the tests with scripts/test (a test empties the store it builds in)"
        ),
    }
}

/// Forget the whole local cache of the test environment's own buildx builder (a BuildKit
/// daemon scripts/test-env started), never a developer's: what a build then takes from a
/// cache comes from the registry.
fn prune_test_builder() {
    let config = std::env::var("DOCKER_CONFIG").unwrap_or_default();
    let builder = match std::env::var("BUILDX_BUILDER") {
        Ok(b) if config.contains("mab-test-env") => b,
        other => panic!(
            "the builder ({other:?}, DOCKER_CONFIG {config:?}) is not the test environment's \
             own: run the tests with scripts/test (a test prunes the builder's cache)"
        ),
    };
    let prune = Command::new("docker")
        .args(["buildx", "prune", "--all", "--force", "--builder", &builder])
        .output()
        .unwrap();
    assert!(
        prune.status.success(),
        "{}",
        String::from_utf8_lossy(&prune.stderr)
    );
}

/// `env` as it is, or on the buildx backend.
fn on(env: Option<Env>, buildx: bool) -> Option<Env> {
    if buildx { env?.buildx() } else { env }
}

struct Env {
    registry: String,
    /// `local` (buildx) or `local-buildah`, in the root manifest and the test manifests.
    profile: &'static str,
    /// Repository namespace of this test, so tests never see each other's tags.
    ns: String,
    dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

impl Env {
    /// A copy of the repository's root manifest and its images.
    fn root(name: &str) -> Option<Env> {
        let env = Env::empty(name)?;
        std::fs::copy(root().join("images.kdl"), env.dir.path().join("images.kdl")).unwrap();
        copy_dir(&root().join("images"), &env.dir.path().join("images"));
        Some(env)
    }

    fn empty(name: &str) -> Option<Env> {
        let registry = registry()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Some(Env {
            registry,
            profile: "local-buildah",
            ns: format!("e2e-{name}-{}", nanos % 1_000_000_000),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The same test on the buildx backend, with the BuildKit builder of `scripts/test-env`.
    fn buildx(mut self) -> Option<Env> {
        if !buildx_ready() {
            return None;
        }
        self.profile = "local";
        Some(self)
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `images/IMAGE`: a Dockerfile that copies one file onto alpine (no `RUN`, so no
    /// emulation).
    fn copy_image(&self, image: &str) {
        self.write(
            &format!("images/{image}/Dockerfile"),
            &format!(
                "FROM {}/library/alpine:3.15\nCOPY hello /hello\n",
                self.registry
            ),
        );
        self.write(&format!("images/{image}/hello"), "hello\n");
    }

    /// The registry root of the `local` profile in this test.
    fn repo(&self, image: &str) -> String {
        format!("{}/{}/platform/{image}", self.registry, self.ns)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mab"));
        c.current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("STORAGE_DRIVER", "vfs")
            .env("BUILDAH_ISOLATION", "chroot")
            .env_remove("MAB_PROFILE")
            .env_remove("GITHUB_ACTIONS")
            .args(["--profile", self.profile])
            .arg("--var")
            .arg(format!("upstream={}", self.registry))
            .arg("--var")
            .arg(format!("local_registry={}/{}", self.registry, self.ns))
            .args(args);
        c
    }

    fn mab(&self, args: &[&str]) -> (i32, String, String) {
        let o: Output = self.command(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

/// `skopeo inspect --raw`: what the registry holds, read by an independent tool.
fn raw(reference: &str) -> Option<Value> {
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// The platforms of an index's images (attestation manifests are not images).
fn platforms(index: &Value) -> BTreeSet<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["vnd.docker.reference.type"].is_null())
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

fn child(index: &Value, arch: &str) -> String {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The image manifest a build pushed: its digest, or (buildx, which pushes the image and its
/// attestation manifest as one index) the image child of that index.
fn image_of(repository: &str, digest: &str, arch: &str) -> String {
    let pushed = raw(&format!("{repository}@{digest}")).unwrap();
    if pushed["manifests"].is_array() {
        child(&pushed, arch)
    } else {
        digest.to_owned()
    }
}

fn layers(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Run a command in a working container of `reference` for `platform`.
fn run_in(reference: &str, platform: &str, cmd: &str) -> String {
    let name = format!("mab-e2e-{}", std::process::id());
    let from = Command::new("buildah")
        .env("STORAGE_DRIVER", "vfs")
        .args([
            "from",
            "--name",
            &name,
            "--platform",
            platform,
            "--tls-verify=false",
        ])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        from.status.success(),
        "buildah from: {}",
        String::from_utf8_lossy(&from.stderr)
    );
    let out = Command::new("buildah")
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .args(["run", &name, "--", "sh", "-c", cmd])
        .output()
        .unwrap();
    let _ = Command::new("buildah")
        .env("STORAGE_DRIVER", "vfs")
        .args(["rm", &name])
        .output();
    assert!(
        out.status.success(),
        "buildah run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn node<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in report"))
}

/// Every tag the root manifest publishes, with the platforms of its index.
fn root_tags() -> [(&'static str, BTreeSet<String>); 7] {
    let two: BTreeSet<String> = ["linux/amd64", "linux/arm64"].map(String::from).into();
    let four: BTreeSet<String> = ["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"]
        .map(String::from)
        .into();
    [
        ("runtime:3.15", two.clone()),
        ("runtime:3.16", two.clone()),
        ("golang-build:1.18", two.clone()),
        ("odb:2.5.0-b.23", two.clone()),
        ("odb:2.5.0-b.23-slim", two),
        ("builder:2.2", four.clone()),
        ("builder:2.3", four),
    ]
}

/// The arm64 and s390x images of the root manifest really ran their `RUN` steps as those
/// machines (under emulation here).
fn ran_as_their_machines(env: &Env) {
    let release = run_in(
        &format!("{}:3.15", env.repo("runtime")),
        "linux/arm64",
        "cat /etc/platform/runtime-release",
    );
    assert_eq!(release.trim(), "runtime 3.15 aarch64");
    let builder = run_in(
        &format!("{}:2.3", env.repo("builder")),
        "linux/s390x",
        "cat /etc/builder/release",
    );
    assert_eq!(builder.trim(), "release-2.3 s390x");
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn the_root_manifest_builds_for_real() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::root("root") else { return };
    let (code, out, err) = env.mab(&["build", "--report", "report.json"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for (reference, want) in root_tags() {
        let index =
            raw(&env.repo(reference)).unwrap_or_else(|| panic!("{reference} was not published"));
        assert_eq!(
            index["mediaType"], "application/vnd.oci.image.index.v1+json",
            "{reference}"
        );
        assert_eq!(platforms(&index), want, "{reference}");
    }
    ran_as_their_machines(&env);
    // A dependent is built on the published parent: its layers start with the parent's, per platform.
    let base = raw(&env.repo("runtime:3.15")).unwrap();
    let dependent = raw(&env.repo("golang-build:1.18")).unwrap();
    for arch in ["amd64", "arm64"] {
        let b = raw(&format!("{}@{}", env.repo("runtime"), child(&base, arch))).unwrap();
        let d = raw(&format!(
            "{}@{}",
            env.repo("golang-build"),
            child(&dependent, arch)
        ))
        .unwrap();
        let (bl, dl) = (layers(&b), layers(&d));
        assert!(
            dl.len() > bl.len() && dl[..bl.len()] == bl[..],
            "{arch}: {dl:?} does not start with {bl:?}"
        );
    }
    // The report names every node, with digests for builds and merges.
    let r = report(&env.path().join("report.json"));
    assert_eq!(r["result"], "success");
    assert!(
        node(&r, "merge:runtime:3.15")["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(out.contains("merge:odb:2.5.0-b.23-slim"), "{out}");
    assert!(
        env.path()
            .join(".mab/logs/build_runtime_3.15_linux_arm64.log")
            .is_file()
    );
}

const FAILING: &str = r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
mirror "alpine" from="${upstream}/library/alpine" { tags "3.15"; }
image "good" { from "mirror:alpine:3.15" arg="BASE"; version "1"; }
image "bad" { from "mirror:alpine:3.15" arg="BASE"; version "1"; }
image "after-bad" { from "bad:1" arg="BASE"; version "1"; }
"#;

const BASED: &str = "ARG BASE\nFROM ${BASE}\n";

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_failed_platform_moves_no_tag_and_keep_going_finishes_the_rest() {
    a_failed_platform_moves_no_tag_and_keep_going_finishes_the_rest_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_a_failed_platform_moves_no_tag_and_keep_going_finishes_the_rest() {
    a_failed_platform_moves_no_tag_and_keep_going_finishes_the_rest_on(true);
}

fn a_failed_platform_moves_no_tag_and_keep_going_finishes_the_rest_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("fail"), buildx) else {
        return;
    };
    env.write("images.kdl", FAILING);
    env.write(
        "images/good/Dockerfile",
        &format!("{BASED}RUN uname -m > /arch\n"),
    );
    env.write("images/after-bad/Dockerfile", &format!("{BASED}RUN true\n"));
    // First a release where `bad` builds everywhere.
    env.write(
        "images/bad/Dockerfile",
        &format!("{BASED}RUN echo v1 > /version\n"),
    );
    let (code, out, err) = env.mab(&["build", "bad"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let published = raw(&env.repo("bad:1")).unwrap();
    // Now arm64 fails: the tag must keep pointing at the first release.
    env.write(
        "images/bad/Dockerfile",
        &format!("{BASED}RUN echo v2 > /version && test \"$(uname -m)\" != aarch64\n"),
    );
    let (code, out, err) = env.mab(&["build", "--keep-going", "--report", "r.json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        raw(&env.repo("bad:1")).unwrap(),
        published,
        "the tag of the failed version moved"
    );
    assert!(
        raw(&env.repo("good:1")).is_some(),
        "an independent image was not published with --keep-going"
    );
    assert!(raw(&env.repo("after-bad:1")).is_none());
    assert!(out.contains("failed: build:bad:1@linux/arm64"), "{out}");
    let r = report(&env.path().join("r.json"));
    assert_eq!(node(&r, "build:bad:1@linux/arm64")["status"], "failed");
    assert_eq!(node(&r, "merge:bad:1")["status"], "skipped");
    assert_eq!(
        node(&r, "build:after-bad:1@linux/amd64")["status"],
        "skipped"
    );
    assert_eq!(node(&r, "merge:good:1")["status"], "ok");
    assert_eq!(r["exit_code"], 1);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn interrupt_stops_every_child_and_publishes_nothing() {
    interrupt_stops_every_child_and_publishes_nothing_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_interrupt_stops_every_child_and_publishes_nothing() {
    interrupt_stops_every_child_and_publishes_nothing_on(true);
}

fn interrupt_stops_every_child_and_publishes_nothing_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("sigint"), buildx) else {
        return;
    };
    env.write("images.kdl", FAILING);
    let marker = format!("mab-e2e-sleep-{}", std::process::id());
    // A duration of this test's own, so that no other `sleep` on the host is taken for ours.
    let sleep = format!("sleep {}", 200_000 + std::process::id() % 100_000);
    env.write(
        "images/good/Dockerfile",
        &format!("{BASED}RUN echo {marker} && {sleep}\n"),
    );
    let mut child = env
        .command(&["build", "good", "--grace", "5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = env.path().join(".mab/logs/build_good_1_linux_amd64.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&marker)
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the build never reached its sleep"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The sleep is seen running (so that not seeing it later means something).
    let running = || {
        let o = Command::new("pgrep")
            .args(["-f", &format!("^{sleep}$")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    while running().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the build's `{sleep}` is not seen running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "mab did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130));
    // Nothing of the build is left running: not the client, not the builder's job (BuildKit
    // cancels a solve whose client went away; its container's processes are visible here).
    let waited = Instant::now();
    let left = loop {
        let left = running();
        if left.is_empty() || waited.elapsed() > Duration::from_secs(15) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(left.is_empty(), "processes left behind: {left}");
    assert!(
        raw(&env.repo("good:1")).is_none(),
        "an index was pushed after the signal"
    );
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_rebuild_reuses_the_registry_cache() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::root("cache") else {
        return;
    };
    let (code, out, err) = env.mab(&["build", "builder:2.3"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Forget every local image and layer of the test's own store (never a developer's):
    // what is reused now comes from the registry cache.
    let rmi = Command::new("buildah")
        .env("STORAGE_DRIVER", "vfs")
        .env("CONTAINERS_STORAGE_CONF", test_storage())
        .args(["rmi", "--all", "--force"])
        .output()
        .unwrap();
    assert!(
        rmi.status.success(),
        "{}",
        String::from_utf8_lossy(&rmi.stderr)
    );
    // `--no-reuse`: build although the published images have the same inputs.
    let (code, out, err) = env.mab(&["build", "builder:2.3", "--no-reuse", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    for arch in ["amd64", "arm64", "ppc64le", "s390x"] {
        let cache = &node(&r, &format!("build:builder:2.3@linux/{arch}"))["cache"];
        assert!(
            cache["remote"].as_u64().unwrap() > 0,
            "{arch}: nothing came from the registry cache: {cache}"
        );
        assert_eq!(cache["hits"], cache["steps"], "{arch}: {cache}");
    }
    assert!(
        out.contains("from the registry"),
        "the summary shows the cache: {out}"
    );
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_platform_subset_pushes_digests_but_moves_no_tag() {
    a_platform_subset_pushes_digests_but_moves_no_tag_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_a_platform_subset_pushes_digests_but_moves_no_tag() {
    a_platform_subset_pushes_digests_but_moves_no_tag_on(true);
}

fn a_platform_subset_pushes_digests_but_moves_no_tag_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::root("subset"), buildx) else {
        return;
    };
    let (code, out, err) = env.mab(&[
        "build",
        "builder:2.2",
        "--platform",
        "linux/arm64",
        "--report",
        "r.json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        raw(&env.repo("builder:2.2")).is_none(),
        "a one-platform run published a four-platform tag"
    );
    let r = report(&env.path().join("r.json"));
    let digest = node(&r, "build:builder:2.2@linux/arm64")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(raw(&format!("{}@{digest}", env.repo("builder"))).is_some());
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn split_builds_merge_into_the_index_a_single_run_publishes() {
    split_builds_merge_into_the_index_a_single_run_publishes_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_split_builds_merge_into_the_index_a_single_run_publishes() {
    split_builds_merge_into_the_index_a_single_run_publishes_on(true);
}

fn split_builds_merge_into_the_index_a_single_run_publishes_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::root("split"), buildx) else {
        return;
    };
    let dist: PathBuf = env.path().join("dist");
    for (platform, dir) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let (code, out, err) = env.mab(&[
            "build",
            "golang-build",
            "--platform",
            platform,
            "--metadata-dir",
            dir,
        ]);
        assert_eq!(code, 0, "{platform}:\n{out}\n{err}");
        assert!(
            raw(&env.repo("golang-build:1.18")).is_none(),
            "a split build published a tag"
        );
        copy_dir(&env.path().join(dir), &dist);
    }
    // Only one platform's files: the merge refuses and publishes nothing.
    let (code, out, err) = env.mab(&["merge", "--metadata-dir", "amd64"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("linux/arm64"), "{err}");
    assert!(raw(&env.repo("runtime:3.15")).is_none());
    // Both: one index per image version, of exactly the digests the builds pushed.
    let (code, out, err) = env.mab(&["merge", "--metadata-dir", "dist", "--report", "m.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for key in ["runtime:3.15", "golang-build:1.18"] {
        let index = raw(&env.repo(key)).unwrap_or_else(|| panic!("{key} not merged"));
        assert_eq!(platforms(&index).len(), 2);
        let image = key.split(':').next().unwrap();
        for arch in ["amd64", "arm64"] {
            let file = dist.join(format!("build_{}_linux_{arch}.json", key.replace(':', "_")));
            let meta: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            assert_eq!(
                child(&index, arch),
                image_of(&env.repo(image), meta["digest"].as_str().unwrap(), arch),
                "{key} {arch}"
            );
            assert_eq!(meta["repository"], env.repo(image));
        }
    }
    // The index bytes are those the single-run merge writes for the same digests.
    let r = report(&env.path().join("m.json"));
    let digest = node(&r, "merge:golang-build:1.18")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}:1.18", env.repo("golang-build")))
        .output()
        .unwrap();
    assert_eq!(mab::registry::digest_of(&o.stdout), digest);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn check_sees_the_machine() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::root("check") else {
        return;
    };
    let (code, out, err) = env.mab(&["check"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Without buildah on PATH the machine check names it.
    let o = env
        .command(&["check"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`buildah` is not installed"));
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn mirror_copies_exactly_and_then_does_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::root("mirror") else {
        return;
    };
    let (code, out, err) = env.mab(&["mirror", "--report", "m1.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Without a platform filter the copy is byte-identical: the same digest as upstream.
    let upstream = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/library/alpine:3.15", env.registry))
        .output()
        .unwrap();
    let copied = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}:3.15", env.repo("thirdparty/alpine")))
        .output()
        .unwrap();
    assert!(copied.status.success());
    assert_eq!(
        mab::registry::digest_of(&upstream.stdout),
        mab::registry::digest_of(&copied.stdout)
    );
    // With `platforms`, a new index of exactly those.
    let golang = raw(&format!(
        "{}:1.18-alpine3.15",
        env.repo("thirdparty/golang")
    ))
    .unwrap();
    let want: BTreeSet<String> = ["linux/amd64", "linux/arm64"].map(String::from).into();
    assert_eq!(platforms(&golang), want);
    // Up to date: nothing copied the second time.
    let (code, out, err) = env.mab(&["mirror", "--report", "m2.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("m2.json"));
    for n in r["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "current", "{n}");
    }
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn seed_fills_the_cache_and_publishes_nothing() {
    seed_fills_the_cache_and_publishes_nothing_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_seed_fills_the_cache_and_publishes_nothing() {
    seed_fills_the_cache_and_publishes_nothing_on(true);
}

fn seed_fills_the_cache_and_publishes_nothing_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::root("seed"), buildx) else {
        return;
    };
    // Seeding needs the mirrored bases; without them it says so.
    let (code, _, err) = env.mab(&["seed", "--platform", "linux/arm64", "builder:2.2"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run `mab mirror` first"), "{err}");
    let (code, out, err) = env.mab(&["mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = env.mab(&["seed", "--platform", "linux/arm64", "builder:2.2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Nothing published: no image repository of the manifest has a tag, not one.
    for image in ["runtime", "golang-build", "odb", "builder"] {
        let tags = list_tags(&env.repo(image));
        assert!(tags.is_empty(), "seeding published {image}: {tags:?}");
    }
    // The cache of that platform, and of no other: under buildx the per-platform ref itself
    // (`<version>-<arch>`); buildah writes its layers by content, tagged by their hashes.
    let tags = list_tags(&env.repo("cache/builder"));
    if buildx {
        assert_eq!(tags, ["2.2-arm64"], "{tags:?}");
    } else {
        assert!(!tags.is_empty(), "no cache was written");
        assert!(!tags.iter().any(|t| t.contains("amd64")), "{tags:?}");
    }
    // The seeded cache is what a build of that platform takes: every step from it.
    if buildx {
        prune_test_builder();
        let (code, out, err) = env.mab(&[
            "build",
            "builder:2.2",
            "--platform",
            "linux/arm64",
            "--report",
            "r.json",
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
        let r = report(&env.path().join("r.json"));
        let cache = &node(&r, "build:builder:2.2@linux/arm64")["cache"];
        assert!(
            cache["hits"].as_u64() > Some(0) && cache["hits"] == cache["steps"],
            "{cache}"
        );
    }
}

/// The tags of `repository` (none when it does not exist), by skopeo.
fn list_tags(repository: &str) -> Vec<String> {
    let o = Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{repository}"))
        .output()
        .unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("NAME_UNKNOWN") || err.contains("name unknown") || err.contains("404"),
            "{repository}: {err}"
        );
        return Vec::new();
    }
    let tags: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut tags: Vec<String> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn podman_builds_and_publishes_for_real() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("podman") else {
        return;
    };
    // With a smoke test, run by `podman run` (scripts/test-env configures runc where crun
    // cannot run on the machine's cgroups).
    env.write(
        "images.kdl",
        &FAILING.replace("backend \"buildah\"", "backend \"podman\"").replace(
            "image \"good\" { from \"mirror:alpine:3.15\" arg=\"BASE\"; version \"1\"; }",
            "image \"good\" { from \"mirror:alpine:3.15\" arg=\"BASE\"; version \"1\"; test \"test \\\"$(cat /arch)\\\" = \\\"$(uname -m)\\\"\"; }",
        ),
    );
    env.write(
        "images/good/Dockerfile",
        &format!("{BASED}RUN uname -m > /arch\n"),
    );
    let (code, out, err) = env.mab(&["build", "good", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    for arch in ["amd64", "arm64"] {
        assert_eq!(
            node(&r, &format!("test:good:1@linux/{arch}"))["status"],
            "ok"
        );
    }
    let index = raw(&env.repo("good:1")).expect("podman build published good:1");
    let want: BTreeSet<String> = ["linux/amd64", "linux/arm64"].map(String::from).into();
    assert_eq!(platforms(&index), want);
    let log =
        std::fs::read_to_string(env.path().join(".mab/logs/build_good_1_linux_arm64.log")).unwrap();
    assert!(
        log.contains("\n$ podman build --platform linux/arm64"),
        "{log}"
    );
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn basic_auth_from_the_docker_config_and_no_secret_in_output() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("auth") else {
        return;
    };
    let password = "s3cret-never-printed";
    let reg = OwnRegistry::start(Some(("mabuser", password)));
    env.write(
        "images.kdl",
        &format!(
            "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\nprofile \"local-buildah\" {{ registry \"{}/team\" insecure=#true; backend \"buildah\"; }}\n\
             defaults {{ platforms \"linux/amd64\"; }}\nmirror \"alpine\" from=\"${{upstream}}/library/alpine\" insecure=#true {{ tags \"3.15\"; }}\n",
            reg.addr
        ),
    );
    // No credentials: a clear failure, nothing copied.
    let o = env
        .command(&["mirror"])
        .env("DOCKER_CONFIG", env.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("wants credentials and the docker config has none"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Credentials in a docker config.json (`auths`): the copy goes through.
    let config = env.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    let auth = base64_encode(format!("mabuser:{password}").as_bytes());
    std::fs::write(
        config.join("config.json"),
        format!(
            "{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}",
            reg.addr
        ),
    )
    .unwrap();
    let o = env
        .command(&["mirror", "--report", "r.json"])
        .env("DOCKER_CONFIG", &config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    let report = std::fs::read_to_string(env.path().join("r.json")).unwrap();
    let log = std::fs::read_to_string(env.path().join(".mab/logs/mirror_alpine_3.15.log")).unwrap();
    for text in [&*stdout, &*stderr, &report, &log] {
        assert!(
            !text.contains(password) && !text.contains(&auth),
            "a credential leaked: {text}"
        );
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn the_lock_file_pins_upstream_and_names_a_moved_tag() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("lock") else {
        return;
    };
    // An upstream of this test's own, so moving its tag disturbs no other test.
    let upstream = format!("{}/{}-up", env.registry, env.ns);
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{}/library/alpine:3.15", env.registry))
        .arg(format!("docker://{upstream}/library/alpine:3.15"))
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    env.write("images.kdl", FAILING);
    env.write("images/good/Dockerfile", &format!("{BASED}RUN true\n"));
    let var = format!("upstream={upstream}");
    let mab = |args: &[&str]| {
        let mut all = vec!["--var", var.as_str()];
        all.extend_from_slice(args);
        env.mab(&all)
    };
    let (code, out, err) = mab(&["mirror", "--update-lock"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(env.path().join("images.lock")).unwrap()).unwrap();
    let upstream_raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{upstream}/library/alpine:3.15"))
        .output()
        .unwrap();
    assert_eq!(
        lock["mirrors"]["alpine:3.15"]["digest"],
        mab::registry::digest_of(&upstream_raw.stdout)
    );
    assert_eq!(
        lock["mirrors"]["alpine:3.15"]["source"],
        format!("{upstream}/library/alpine:3.15")
    );
    let (code, out, err) = mab(&["build", "--locked", "good"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Upstream moves: a new index of new images.
    let moved = move_index(
        &env.registry,
        &format!("{}-up/library/alpine", env.ns),
        "3.15",
    );

    let (code, out, err) = mab(&["build", "--locked", "good", "--report", "r.json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!("upstream {upstream}/library/alpine:3.15 moved")),
        "{out}"
    );
    assert!(out.contains(&moved), "the new digest is named: {out}");
    assert_eq!(
        node(&report(&env.path().join("r.json")), "merge:good:1")["status"],
        "skipped"
    );
    // The bump is one reviewed change of the lock file.
    let (code, out, err) = mab(&["mirror", "--update-lock"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(env.path().join("images.lock")).unwrap()).unwrap();
    assert_eq!(lock["mirrors"]["alpine:3.15"]["digest"], moved);
    let (code, out, err) = mab(&["build", "--locked", "good"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // A base the lock does not have (a new `FROM` in the Dockerfile): `--locked` fails that
    // build, naming the base, before building anything from a tag nobody reviewed.
    let base = format!("{}/library/alpine:3.16", env.registry);
    env.write(
        "images/good/Dockerfile",
        &format!(
            "ARG BASE\nFROM {base} AS extra\nRUN true\nFROM ${{BASE}}\nCOPY --from=extra /etc/os-release /x\n"
        ),
    );
    let (code, out, err) = mab(&["build", "--locked", "good", "--report", "r.json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    let reason = node(&r, "build:good:1@linux/amd64")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains(&base)
            && reason.contains("is not in the lock file")
            && reason.contains("--update-lock"),
        "{reason}"
    );
    assert_eq!(node(&r, "merge:good:1")["status"], "skipped");
    let (code, out, err) = mab(&["mirror", "--update-lock"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        std::fs::read_to_string(env.path().join("images.lock"))
            .unwrap()
            .contains(&base)
    );
    let (code, out, err) = mab(&["build", "--locked", "good"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

mod environment;
mod output;
mod registry;
mod runners;

mod faults {
    //! The registry client against a fault-injecting proxy in front of the real registry.
    use super::*;
    use crate::fault_proxy::{self, Fault};

    const MIRROR: &str = r#"var "upstream" "x"
var "local_registry" "x"
profile "local-buildah" { registry "${local_registry}/platform" insecure=#true; backend "buildah"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
mirror "alpine" from="${upstream}/library/alpine" insecure=#true { tags "3.15"; }
"#;

    struct Setup {
        env: Env,
        /// In front of the upstream (reads).
        src: fault_proxy::Proxy,
        /// In front of the target (writes).
        dst: fault_proxy::Proxy,
    }

    fn setup(name: &str) -> Option<Setup> {
        let env = Env::empty(name)?;
        env.write("images.kdl", MIRROR);
        let src = fault_proxy::http(&env.registry);
        let dst = fault_proxy::http(&env.registry);
        Some(Setup { env, src, dst })
    }

    impl Setup {
        fn mirror(&self, extra_env: &[(&str, &str)]) -> (i32, String, String, Duration) {
            let up = format!("upstream={}", self.src.addr);
            let local = format!("local_registry={}/{}", self.dst.addr, self.env.ns);
            let mut cmd = self.env.command(&["--var", &up, "--var", &local, "mirror"]);
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            let started = Instant::now();
            let o = cmd.output().unwrap();
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
                started.elapsed(),
            )
        }

        /// What the target holds at the mirrored tag, read past the proxies.
        fn target(&self) -> Option<Value> {
            raw(&format!(
                "{}/{}/platform/thirdparty/alpine:3.15",
                self.env.registry, self.env.ns
            ))
        }

        fn upstream_digest(&self) -> String {
            let o = Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!(
                    "docker://{}/library/alpine:3.15",
                    self.env.registry
                ))
                .output()
                .unwrap();
            mab::registry::digest_of(&o.stdout)
        }

        fn target_digest(&self) -> Option<String> {
            let o = Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!(
                    "docker://{}/{}/platform/thirdparty/alpine:3.15",
                    self.env.registry, self.env.ns
                ))
                .output()
                .unwrap();
            o.status
                .success()
                .then(|| mab::registry::digest_of(&o.stdout))
        }
    }

    fn status(code: u16, headers: &[(&str, &str)]) -> Fault {
        Fault::Status(
            code,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            String::new(),
        )
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn transient_errors_are_retried_and_retry_after_is_honoured() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = setup("retry") else { return };
        s.src.rule("HEAD", "/manifests/3.15", 2, status(503, &[]));
        s.src
            .rule("GET", "/blobs/", 1, status(429, &[("Retry-After", "1")]));
        s.src.rule("GET", "/blobs/", 1, status(500, &[]));
        s.dst.rule("POST", "/blobs/uploads/", 1, status(502, &[]));
        s.dst.rule("PUT", "/manifests/sha256:", 1, status(504, &[]));
        s.dst.rule("HEAD", "/manifests/3.15", 1, status(408, &[]));
        let (code, out, err, took) = s.mirror(&[]);
        assert_eq!(code, 0, "{out}\n{err}");
        // The 429's wait is the one its Retry-After asks, exactly (a backoff is random, and at
        // most 0.2 s on a first retry), and the run took at least that long.
        let waits = announced_waits(&err);
        assert!(
            waits
                .iter()
                .any(|(why, secs)| why.starts_with("429") && *secs == 1.0),
            "Retry-After: 1 was not what the 429's retry waited: {waits:?}\n{err}"
        );
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert_eq!(s.target_digest(), Some(s.upstream_digest()));
    }

    /// Each retry a run announced: why (`429 Too Many Requests`) and the seconds it waits
    /// (`mab: registry: retrying GET … in 1.0s (429 Too Many Requests; try 2 of 6)`).
    fn announced_waits(err: &str) -> Vec<(String, f64)> {
        err.lines()
            .filter(|l| l.contains("retrying "))
            .filter_map(|l| {
                let (_, rest) = l.split_once(" in ")?;
                let (secs, rest) = rest.split_once("s (")?;
                let (why, _) = rest.split_once(';')?;
                Some((why.to_owned(), secs.parse().ok()?))
            })
            .collect()
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn retry_after_as_an_http_date() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = setup("retrydate") else { return };
        let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
        s.src.rule(
            "HEAD",
            "/manifests/3.15",
            1,
            status(429, &[("Retry-After", &at)]),
        );
        let (code, out, err, took) = s.mirror(&[]);
        assert_eq!(code, 0, "{out}\n{err}");
        // The date is two seconds ahead at whole-second precision, read a moment later: a wait
        // of 0.5 to 2 s (seen: 0.9 s), where a first retry's backoff would be at most 0.2 s.
        let waits = announced_waits(&err);
        assert!(
            matches!(waits.as_slice(), [(why, secs)] if why.starts_with("429") && (0.5..=2.0).contains(secs)),
            "the HTTP-date was not what the retry waited: {waits:?}\n{err}"
        );
        assert!(took >= Duration::from_millis(900), "{took:?}");
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn client_errors_are_not_retried() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = setup("noretry") else { return };
        for (code, method, path) in [
            (403, "POST", "/blobs/uploads/"),
            (404, "GET", "/manifests/sha256:"),
            (400, "PUT", "/manifests/"),
        ] {
            s.src.clear();
            s.dst.clear();
            let proxy = if method == "GET" { &s.src } else { &s.dst };
            proxy.rule(method, path, 100, status(code, &[]));
            let (exit, out, err, _) = s.mirror(&[]);
            assert_eq!(exit, 1, "{code}: {out}\n{err}");
            let tries = proxy
                .log()
                .iter()
                .filter(|l| l.starts_with(method) && l.contains(path))
                .count();
            assert_eq!(tries, 1, "{code} was retried: {:?}", proxy.log());
            assert!(s.target().is_none(), "{code}: something was tagged");
        }
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn a_flipped_byte_fails_the_node_and_tags_nothing() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = setup("flip") else { return };
        s.src.rule("GET", "/blobs/", 1, Fault::FlipByte);
        let (code, out, err, _) = s.mirror(&[]);
        assert_eq!(code, 1, "{out}\n{err}");
        assert!(
            out.contains("not what was asked for") || out.contains("DIGEST_INVALID"),
            "the mismatch is named: {out}"
        );
        assert!(s.target().is_none(), "a corrupted copy was tagged");
        // The next run converges.
        let (code, out, err, _) = s.mirror(&[]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(s.target_digest(), Some(s.upstream_digest()));
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn short_bodies_resets_and_stalls_are_retried() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = setup("short") else { return };
        s.src.rule("GET", "/blobs/", 1, Fault::Truncate);
        s.src.rule("GET", "/blobs/", 1, Fault::Reset);
        s.src
            .rule("GET", "/blobs/", 1, Fault::Stall(Duration::from_secs(4)));
        s.dst.rule("PUT", "/manifests/3.15", 1, Fault::Reset);
        let (code, out, err, _) = s.mirror(&[("MAB_HTTP_TIMEOUT", "1")]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(err.contains("restarting the copy"), "{err}");
        assert_eq!(s.target_digest(), Some(s.upstream_digest()));
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn manifest_blob_unknown_on_the_index_put_tags_nothing_and_a_rerun_converges() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = setup("blobunknown") else {
            return;
        };
        s.dst.rule(
            "PUT",
            "/manifests/3.15",
            1,
            Fault::Status(
                400,
                vec![("Content-Type".into(), "application/json".into())],
                r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#.into(),
            ),
        );
        let (code, out, err, _) = s.mirror(&[]);
        assert_eq!(code, 1, "{out}\n{err}");
        assert!(out.contains("MANIFEST_BLOB_UNKNOWN"), "{out}");
        assert!(s.target().is_none());
        let (code, out, err, _) = s.mirror(&[]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(s.target_digest(), Some(s.upstream_digest()));
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn pushes_go_blobs_then_children_then_tag_and_a_second_run_puts_nothing() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = setup("order") else { return };
        let (code, out, err, _) = s.mirror(&[]);
        assert_eq!(code, 0, "{out}\n{err}");
        let log = s.dst.log();
        // The blob each upload wrote (`…/blobs/uploads/ID?…digest=sha256:…`), by log position.
        let uploaded = |l: &str| -> Option<String> {
            let rest = l.strip_prefix("PUT ")?;
            if !rest.contains("/blobs/uploads/") {
                return None;
            }
            let query = rest.split_once('?')?.1;
            let d = query
                .split('&')
                .find_map(|p| p.strip_prefix("digest="))?
                .replace("%3A", ":");
            Some(d)
        };
        let child_put = |l: &str| -> Option<String> {
            let rest = l.strip_prefix("PUT ")?;
            let (_, d) = rest.split_once("/manifests/")?;
            d.starts_with("sha256:").then(|| d.to_owned())
        };
        let tag_put = |l: &str| l.starts_with("PUT ") && l.ends_with("/manifests/3.15");
        let children: Vec<(usize, String)> = (log.iter().enumerate())
            .filter_map(|(i, l)| child_put(l).map(|d| (i, d)))
            .collect();
        let upstream = raw(&format!("{}/library/alpine:3.15", s.env.registry)).unwrap();
        assert_eq!(
            children.len(),
            upstream["manifests"].as_array().unwrap().len(),
            "{log:#?}"
        );
        // Each child after every blob it references (its config and each layer).
        for (at, child) in &children {
            let m = raw(&format!("{}/library/alpine@{child}", s.env.registry)).unwrap();
            let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
            blobs.extend(layers(&m));
            for b in blobs {
                let put = log
                    .iter()
                    .position(|l| uploaded(l).as_deref() == Some(b.as_str()));
                assert!(
                    put.is_some_and(|p| p < *at),
                    "{child} was put before its blob {b}: {log:#?}"
                );
            }
        }
        // The tag once, after every child, and the last write of all.
        let tags: Vec<usize> = (log.iter().enumerate())
            .filter(|(_, l)| tag_put(l))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(tags.len(), 1, "{log:#?}");
        assert!(children.iter().all(|(i, _)| *i < tags[0]), "{log:#?}");
        let writes: Vec<&String> = log
            .iter()
            .filter(|l| l.starts_with("PUT ") || l.starts_with("POST ") || l.starts_with("PATCH "))
            .collect();
        assert!(
            tag_put(writes.last().unwrap()),
            "the tag is not the last write: {log:#?}"
        );
        s.dst.clear();
        s.src.clear();
        let (code, out, err, _) = s.mirror(&[]);
        assert_eq!(code, 0, "{out}\n{err}");
        let writes: Vec<String> = s
            .dst
            .log()
            .into_iter()
            .filter(|l| !l.starts_with("HEAD ") && !l.starts_with("GET "))
            .collect();
        assert!(writes.is_empty(), "an up-to-date run wrote: {writes:?}");
        let reads: Vec<String> = s
            .src
            .log()
            .into_iter()
            .filter(|l| !l.starts_with("HEAD "))
            .collect();
        assert!(
            reads.is_empty(),
            "an up-to-date run made more than HEAD requests upstream: {reads:?}"
        );
    }

    #[test]
    #[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
    fn a_connection_reset_mid_download_is_retried() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let Some(env) = Env::empty("tcpreset") else {
            return;
        };
        env.write("images.kdl", MIRROR);
        // TCP mode: the first connection carrying more than 50 KiB from upstream is reset.
        let src = fault_proxy::tcp_reset_after(&env.registry, 50 * 1024);
        let up = format!("upstream={}", src.addr);
        let (code, out, err) = env.mab(&["--var", &up, "mirror"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            err.contains("restarting the copy") || err.contains("retrying"),
            "{err}"
        );
        let target = raw(&format!("{}:3.15", env.repo("thirdparty/alpine"))).unwrap();
        assert_eq!(platforms(&target).len(), 4);
    }
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn bearer_tokens_are_fetched_with_the_configured_credentials() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("bearer") else {
        return;
    };
    let proxy = crate::fault_proxy::http(&env.registry);
    let credentials = base64_encode(b"robot:t0ken-secret");
    proxy.require_bearer(&credentials, "the-bearer-token");
    env.write(
        "images.kdl",
        &format!(
            "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\nprofile \"local-buildah\" {{ registry \"{}/{}\" insecure=#true; }}\n\
             defaults {{ platforms \"linux/amd64\"; }}\nmirror \"alpine\" from=\"${{upstream}}/library/alpine\" insecure=#true {{ tags \"3.15\"; }}\n",
            proxy.addr, env.ns
        ),
    );
    let config = env.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        format!(
            "{{\"auths\": {{\"{}\": {{\"auth\": \"{credentials}\"}}}}}}",
            proxy.addr
        ),
    )
    .unwrap();
    let o = env
        .command(&["mirror"])
        .env("DOCKER_CONFIG", &config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        proxy.log().iter().any(|l| l.starts_with("GET /token")),
        "no token was fetched: {:?}",
        proxy.log()
    );
    for text in [&*stdout, &*stderr] {
        assert!(
            !text.contains("t0ken-secret")
                && !text.contains("the-bearer-token")
                && !text.contains(&credentials),
            "{text}"
        );
    }
    assert!(
        raw(&format!(
            "{}/{}/thirdparty/alpine:3.15",
            env.registry, env.ns
        ))
        .is_some()
    );
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_connection_reset_mid_upload_restarts_the_upload() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("uploadreset") else {
        return;
    };
    env.write("images.kdl", faults_manifest());
    // The source is read directly; the target is behind a TCP proxy that resets the first
    // connection sending it more than 200 KiB (inside the ~1 MiB busybox layer upload).
    let dst = crate::fault_proxy::tcp_reset_upload_after(&env.registry, 200 * 1024);
    let local = format!("local_registry={}/{}", dst.addr, env.ns);
    let (code, out, err) = env.mab(&["--var", &local, "mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("restarting the copy") || err.contains("retrying"),
        "{err}"
    );
    let target = raw(&format!(
        "{}/{}/platform/thirdparty/alpine:3.15",
        env.registry, env.ns
    ))
    .unwrap();
    assert_eq!(platforms(&target).len(), 4);
}

fn faults_manifest() -> &'static str {
    r#"var "upstream" "x"
var "local_registry" "x"
profile "local-buildah" { registry "${local_registry}/platform" insecure=#true; backend "buildah"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
mirror "alpine" from="${upstream}/library/alpine" insecure=#true { tags "3.15"; }
"#
}

/// A registry of a test's own, on a fixed port and data directory, restartable.
struct OwnRegistry {
    child: Option<std::process::Child>,
    config: PathBuf,
    addr: String,
    _dir: tempfile::TempDir,
}

impl OwnRegistry {
    /// A registry on a free port; with `basic`, it wants those credentials (htpasswd).
    fn start(basic: Option<(&str, &str)>) -> OwnRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let root = dir.path().display();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {addr}\n"
        );
        if let Some((user, password)) = basic {
            let htpasswd = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils)");
            std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: mab-test\n    path: {root}/htpasswd\n"
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let mut r = OwnRegistry {
            child: None,
            config,
            addr,
            _dir: dir,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn the_registry_killed_mid_run_then_a_rerun_converges() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("killed") else {
        return;
    };
    env.write("images.kdl", faults_manifest());
    let mut target = OwnRegistry::start(None);
    // Slow the target's uploads down so the kill lands mid-run.
    let proxy = crate::fault_proxy::http(&target.addr);
    proxy.rule(
        "PUT",
        "/blobs/uploads/",
        100,
        crate::fault_proxy::Fault::Stall(Duration::from_millis(400)),
    );
    let local = format!("local_registry={}/{}", proxy.addr, env.ns);
    let mut run = env
        .command(&["--var", &local, "mirror"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !proxy
        .log()
        .iter()
        .any(|l| l.starts_with("PUT ") && l.contains("/blobs/uploads/"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no upload started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    target.kill();
    let first = run.wait().unwrap();
    assert_eq!(
        first.code(),
        Some(1),
        "the first run cannot finish without its registry"
    );
    target.up();
    proxy.clear();
    let (code, out, err) = env.mab(&["--var", &local, "mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let copied = raw(&format!(
        "{}/{}/platform/thirdparty/alpine:3.15",
        target.addr, env.ns
    ))
    .expect("converged");
    let upstream = raw(&format!("{}/library/alpine:3.15", env.registry)).unwrap();
    assert_eq!(copied, upstream);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn docker_media_types_and_single_platform_images_mirror_byte_for_byte() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("mediatypes") else {
        return;
    };
    let upstream = format!("{}/{}-up", env.registry, env.ns);
    // A Docker manifest list (v2s2 children), and a single-platform Docker image.
    for (args, tag) in [
        (vec!["--all", "--format", "v2s2"], "list"),
        (
            vec!["--override-arch", "arm64", "--format", "v2s2"],
            "single",
        ),
    ] {
        let o = Command::new("skopeo")
            .arg("copy")
            .args(&args)
            .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(format!("docker://{}/library/alpine:3.15", env.registry))
            .arg(format!("docker://{upstream}/library/alpine:{tag}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    env.write(
        "images.kdl",
        r#"var "upstream" "x"
var "local_registry" "x"
profile "local-buildah" { registry "${local_registry}/platform" insecure=#true; }
defaults { platforms "linux/amd64"; }
mirror "alpine" from="${upstream}/library/alpine" insecure=#true { tags "list" "single"; }
mirror "filtered" from="${upstream}/library/alpine" insecure=#true { tags "list"; platforms "linux/arm64" "linux/s390x"; }
"#,
    );
    let up = format!("upstream={upstream}");
    let (code, out, err) = env.mab(&["--var", &up, "mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let digest = |reference: String| {
        let o = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{reference}");
        (
            mab::registry::digest_of(&o.stdout),
            serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        )
    };
    for tag in ["list", "single"] {
        let (want, source) = digest(format!("{upstream}/library/alpine:{tag}"));
        let (got, _) = digest(format!("{}:{tag}", env.repo("thirdparty/alpine")));
        assert_eq!(got, want, "{tag} is not byte-identical");
        let expected = if tag == "list" {
            registry_docker_list()
        } else {
            "application/vnd.docker.distribution.manifest.v2+json"
        };
        assert_eq!(source["mediaType"], expected);
    }
    // A platform filter on a Docker list keeps the Docker type, with exactly those children.
    let (_, filtered) = digest(format!("{}:list", env.repo("thirdparty/filtered")));
    assert_eq!(filtered["mediaType"], registry_docker_list());
    let want: BTreeSet<String> = ["linux/arm64", "linux/s390x"].map(String::from).into();
    assert_eq!(platforms(&filtered), want);
}

fn registry_docker_list() -> &'static str {
    mab::registry::DOCKER_LIST
}

fn statuses(report: &Value, prefix: &str) -> BTreeSet<(String, String)> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["id"].as_str().unwrap().starts_with(prefix))
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The build nodes that were built (not reused) in a report, as `image:tag` keys.
fn rebuilt(report: &Value) -> BTreeSet<String> {
    statuses(report, "build:")
        .into_iter()
        .filter(|(_, s)| s == "ok")
        .map(|(id, _)| {
            id.trim_start_matches("build:")
                .split('@')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn rebuilds_cost_what_changed() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::root("reuse") else {
        return;
    };
    // An upstream of this test's own, so it can move.
    let upstream = format!("{}/{}-up", env.registry, env.ns);
    for tag in ["alpine:3.15", "alpine:3.16", "golang:1.18-alpine3.15"] {
        copy_all(
            &format!("{}/library/{tag}", env.registry),
            &format!("{upstream}/library/{tag}"),
        );
    }
    env.write("images/builder/.dockerignore", "notes/\n");
    env.write("images/builder/notes/todo.txt", "one\n");
    let var = format!("upstream={upstream}");
    let build = |name: &str| {
        let report = format!("{name}.json");
        let started = Instant::now();
        let (code, out, err) = env.mab(&["--var", &var, "build", "--report", &report]);
        assert_eq!(code, 0, "{name}:\n{out}\n{err}");
        (report_at(&env, &report), started.elapsed())
    };
    // The plan, asked of the registry, says what each build then does (`agree`).
    let decisions =
        |env: &Env, extra: &[&str]| check_decisions(env, &["--var", var.as_str()], extra);
    let planned = decisions(&env, &[]);
    let (first, cold) = build("first");
    agree(&planned, &first);
    assert_eq!(rebuilt(&first).len(), 7, "{first}");

    // Nothing changed: every build reused, every merge and mirror already current.
    let planned = decisions(&env, &[]);
    let (second, warm) = build("second");
    agree(&planned, &second);
    assert!(rebuilt(&second).is_empty(), "{second}");
    for (id, status) in statuses(&second, "") {
        let want = if id.starts_with("merge:") || id.starts_with("mirror:") {
            "current"
        } else {
            "reused"
        };
        assert_eq!(status, want, "{id}");
    }
    assert!(
        warm.as_secs_f64() < cold.as_secs_f64() * 0.10,
        "no-op rebuild took {warm:?} after {cold:?}"
    );

    for (id, (decision, _)) in decisions(&env, &[]) {
        let want = if id.starts_with("build:") || id.starts_with("test:") {
            "reuse"
        } else {
            "up-to-date"
        };
        assert_eq!(decision, want, "{id}");
    }

    // A file of one context: that image (both versions share it) and its dependents.
    env.write("images/runtime/extra.conf", "tuned\n");
    let planned = decisions(&env, &[]);
    assert_eq!(
        planned["build:runtime:3.16@linux/arm64"],
        ("build".into(), "changed: files of the context".into())
    );
    assert_eq!(planned["build:odb:2.5.0-b.23@linux/amd64"].0, "build");
    assert_eq!(planned["build:builder:2.3@linux/s390x"].0, "reuse");
    let (third, _) = build("third");
    agree(&planned, &third);
    let want: BTreeSet<String> = [
        "runtime:3.15",
        "runtime:3.16",
        "golang-build:1.18",
        "odb:2.5.0-b.23",
        "odb:2.5.0-b.23-slim",
    ]
    .map(String::from)
    .into();
    assert_eq!(rebuilt(&third), want);

    // A file the context's .dockerignore leaves out: nothing.
    env.write("images/builder/notes/todo.txt", "two\n");
    let planned = decisions(&env, &[]);
    let (fourth, _) = build("fourth");
    agree(&planned, &fourth);
    assert!(rebuilt(&fourth).is_empty(), "{fourth}");

    // Upstream alpine:3.16 moves: exactly what is built on it.
    move_index(
        &env.registry,
        &format!("{}-up/library/alpine", env.ns),
        "3.16",
    );
    // `--refresh` sees the move before anything runs, and what it rebuilds.
    let refreshed = decisions(&env, &["--refresh"]);
    let decision = |id: &str| refreshed[id].clone();
    assert_eq!(decision("mirror:alpine:3.16").0, "mirror");
    assert_eq!(
        decision("build:runtime:3.16@linux/amd64"),
        ("build".into(), "changed: build arg `BASE_IMAGE`".into())
    );
    assert_eq!(decision("build:runtime:3.15@linux/amd64").0, "reuse");
    let (fifth, _) = build("fifth");
    agree(&refreshed, &fifth);
    let want: BTreeSet<String> = ["runtime:3.16", "builder:2.2", "builder:2.3"]
        .map(String::from)
        .into();
    assert_eq!(rebuilt(&fifth), want);
}

/// `plan --check-registry`'s decision for every node is what the following build did:
/// `reuse` → reused, `up-to-date` → current, `build` / `mirror` / `publish` → ok.
fn agree(planned: &BTreeMap<String, (String, String)>, report: &Value) {
    let done: BTreeMap<String, String> = statuses(report, "").into_iter().collect();
    assert_eq!(
        planned.keys().collect::<Vec<_>>(),
        done.keys().collect::<Vec<_>>(),
        "the plan and the run have other nodes"
    );
    for (id, (decision, reason)) in planned {
        let want = match decision.as_str() {
            "reuse" => "reused",
            "up-to-date" => "current",
            "build" | "mirror" | "publish" => "ok",
            other => panic!("unknown decision {other}"),
        };
        assert_eq!(done[id], want, "{id}: planned {decision} ({reason})");
    }
}

fn report_at(env: &Env, name: &str) -> Value {
    report(&env.path().join(name))
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_matrix_run_level_by_level_publishes_what_one_run_would() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::root("matrix") else {
        return;
    };
    let (code, out, err) = env.mab(&["mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, matrix, err) = env.mab(&["plan", "golang-build", "--format", "github-matrix"]);
    assert_eq!(code, 0, "{err}");
    let matrix: Value = serde_json::from_str(&matrix).unwrap();
    for level in matrix["levels"].as_array().unwrap() {
        let dist = format!("dist-{}", level["level"]);
        // Each job of the level, as a matrix runner would run it.
        for job in level["include"].as_array().unwrap() {
            let id = job["node"].as_str().unwrap();
            let (code, out, err) = env.mab(&["build", "--node", id, "--metadata-dir", &dist]);
            assert_eq!(code, 0, "{id}:\n{out}\n{err}");
        }
        let (code, out, err) = env.mab(&["merge", "--metadata-dir", &dist]);
        assert_eq!(code, 0, "merge of level {}:\n{out}\n{err}", level["level"]);
    }
    for key in ["runtime:3.15", "golang-build:1.18"] {
        let index = raw(&env.repo(key)).unwrap_or_else(|| panic!("{key} not published"));
        assert_eq!(platforms(&index).len(), 2, "{key}");
    }
    // A dependent built on a runner read its base from the registry: its layers start with it.
    let base = raw(&env.repo("runtime:3.15")).unwrap();
    let dep = raw(&env.repo("golang-build:1.18")).unwrap();
    let b = raw(&format!(
        "{}@{}",
        env.repo("runtime"),
        child(&base, "arm64")
    ))
    .unwrap();
    let d = raw(&format!(
        "{}@{}",
        env.repo("golang-build"),
        child(&dep, "arm64")
    ))
    .unwrap();
    assert_eq!(layers(&d)[..layers(&b).len()], layers(&b)[..]);
    // A node whose base is not published yet is refused.
    let Some(fresh) = Env::root("matrix-early") else {
        return;
    };
    let (code, _, err) = fresh.mab(&["build", "--node", "build:golang-build:1.18@linux/amd64"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not published"), "{err}");
}

/// `plan --check-registry` with global flags `globals` and plan flags `extra`: each node's
/// decision and reason.
fn check_decisions(
    env: &Env,
    globals: &[&str],
    extra: &[&str],
) -> BTreeMap<String, (String, String)> {
    let mut all = globals.to_vec();
    all.extend(["plan", "--check-registry", "--format", "json"]);
    all.extend_from_slice(extra);
    let (code, out, err) = env.mab(&all);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                (
                    n["decision"].as_str().unwrap().to_owned(),
                    n["reason"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// `skopeo copy --all` between two references of the test registry.
fn copy_all(from: &str, to: &str) {
    let o = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{from}"))
        .arg(format!("docker://{to}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Move `repository:tag` (an index) upstream: every platform's image to a new digest; returns
/// the new index's digest.
fn move_index(registry: &str, repository: &str, tag: &str) -> String {
    let raw = |reference: &str| {
        let o = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{registry}/{repository}{reference}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let mut index = raw(&format!(":{tag}"));
    // Each platform's image gets a new digest (the same layers, one annotation more), as an
    // upstream rebuild would give it: the index alone moving is no change of any image.
    for entry in index["manifests"].as_array_mut().unwrap() {
        let digest = entry["digest"].as_str().unwrap().to_owned();
        let mut image = raw(&format!("@{digest}"));
        let media_type = entry["mediaType"].as_str().unwrap().to_owned();
        image["annotations"]["io.mab.test.moved-from"] = Value::from(digest);
        let body = serde_json::to_vec(&image).unwrap();
        let moved = mab::registry::digest_of(&body);
        put_manifest(registry, repository, &moved, &media_type, &body);
        entry["digest"] = Value::from(moved);
        entry["size"] = Value::from(body.len());
    }
    put_index(registry, repository, tag, &index)
}

/// PUT `index` (an OCI index) at `repository:tag`; returns its digest.
fn put_index(registry: &str, repository: &str, tag: &str, index: &Value) -> String {
    let body = serde_json::to_vec(index).unwrap();
    put_manifest(
        registry,
        repository,
        tag,
        "application/vnd.oci.image.index.v1+json",
        &body,
    );
    mab::registry::digest_of(&body)
}

/// PUT manifest `body` of `media_type` at `repository:reference`.
fn put_manifest(registry: &str, repository: &str, reference: &str, media_type: &str, body: &[u8]) {
    let put = Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {media_type}"))
        .args(["--data-binary", "@-"])
        .arg(format!(
            "http://{registry}/v2/{repository}/manifests/{reference}"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        put.stdin.as_ref().unwrap().write_all(body).unwrap();
    }
    let put = put.wait_with_output().unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
}

/// `docker buildx imagetools inspect REF --format '{{json .Provenance}}'`: what a buildx user
/// sees of an image's provenance, per platform.
fn provenance(reference: &str) -> Value {
    let o = Command::new("docker")
        .args(["buildx", "imagetools", "inspect", reference])
        .args(["--format", "{{json .Provenance}}"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "imagetools inspect {reference}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_builds_tests_and_attests_the_root_manifest_for_real() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::root("bx-root"), true) else {
        return;
    };
    let (code, out, err) = env.mab(&["build", "--report", "report.json"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let tags = root_tags();
    for (reference, want) in &tags {
        let index =
            raw(&env.repo(reference)).unwrap_or_else(|| panic!("{reference} was not published"));
        assert_eq!(&platforms(&index), want, "{reference}");
        // Every image keeps its attestation manifest, annotated as BuildKit writes it.
        let entries = index["manifests"].as_array().unwrap();
        for image in entries.iter().filter(|m| m["annotations"].is_null()) {
            assert!(
                entries
                    .iter()
                    .any(
                        |a| a["annotations"]["vnd.docker.reference.digest"] == image["digest"]
                            && a["annotations"]["vnd.docker.reference.type"]
                                == "attestation-manifest"
                    ),
                "{reference}: no attestation for {image}"
            );
        }
        // … and buildx itself shows provenance for every platform of the merged image.
        let p = provenance(&env.repo(reference));
        let shown: BTreeSet<String> = p.as_object().unwrap().keys().cloned().collect();
        assert_eq!(&shown, want, "{reference}: provenance {p}");
        for (platform, slsa) in p.as_object().unwrap() {
            assert_eq!(
                slsa["SLSA"]["buildType"], "https://mobyproject.org/buildkit@v1",
                "{reference} {platform}"
            );
        }
    }
    ran_as_their_machines(&env);
    // Tests ran on the builder, for their platform: `uname -m` of the s390x test says so.
    let test_log = std::fs::read_to_string(
        env.path()
            .join(".mab/logs/test_builder_2.3_linux_s390x.log"),
    )
    .unwrap();
    assert!(
        test_log.lines().any(|l| l.ends_with(" s390x")),
        "{test_log}"
    );
    // A dependent is pinned to the exact index its base's merge pushed.
    let r = report(&env.path().join("report.json"));
    let base = node(&r, "merge:runtime:3.15")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag_digest = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}:3.15", env.repo("runtime")))
        .output()
        .unwrap();
    assert_eq!(mab::registry::digest_of(&tag_digest.stdout), base);
    let dependent_log = std::fs::read_to_string(
        env.path()
            .join(".mab/logs/build_golang-build_1.18_linux_arm64.log"),
    )
    .unwrap();
    assert!(
        dependent_log.contains(&format!(
            "RUNTIME_IMAGE={}:3.15@{base}",
            env.repo("runtime")
        )),
        "{dependent_log}"
    );
    // Push by digest, read from the metadata file; the summary counts BuildKit's steps.
    let meta: Value = serde_json::from_slice(
        &std::fs::read(
            env.path()
                .join(".mab/metadata/build_runtime_3.15_linux_arm64.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        meta["containerimage.digest"],
        node(&r, "build:runtime:3.15@linux/arm64")["digest"]
    );
    for n in r["nodes"].as_array().unwrap() {
        if n["id"].as_str().unwrap().starts_with("build:") {
            assert!(n["cache"]["steps"].as_u64().unwrap() > 0, "{n}");
        }
    }
    assert!(out.contains("steps"), "the summary shows cache use: {out}");

    // Nothing changed: every build reused by input hash, every merge up to date, the
    // attestations still there: the tags did not move.
    let before: Vec<Value> = tags
        .iter()
        .map(|(t, _)| raw(&env.repo(t)).unwrap())
        .collect();
    let (code, out, err) = env.mab(&["build", "--report", "again.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("again.json"));
    for n in r["nodes"].as_array().unwrap() {
        let want = match n["id"].as_str().unwrap().split(':').next().unwrap() {
            "build" | "test" => "reused",
            _ => "current",
        };
        assert_eq!(n["status"], want, "{n}");
    }
    let after: Vec<Value> = tags
        .iter()
        .map(|(t, _)| raw(&env.repo(t)).unwrap())
        .collect();
    assert_eq!(before, after);

    // (Had the merges of reused images dropped their attestations, the index would differ
    // from the published one, and the merges would have written it: `ok`, not `current`.)
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_rebuild_after_a_pruned_builder_takes_every_step_from_the_registry_cache() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::root("bx-cache"), true) else {
        return;
    };
    let (code, out, err) = env.mab(&["build", "builder:2.3"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Forget the whole local cache of the test's own builder (never a developer's): hits now
    // can only come from the registry.
    prune_test_builder();
    let (code, out, err) = env.mab(&["build", "builder:2.3", "--no-reuse", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    for arch in ["amd64", "arm64", "ppc64le", "s390x"] {
        let cache = &node(&r, &format!("build:builder:2.3@linux/{arch}"))["cache"];
        assert!(cache["steps"].as_u64().unwrap() > 0, "{arch}: {cache}");
        assert_eq!(cache["hits"], cache["steps"], "{arch}: {cache}");
    }
}

/// A second BuildKit daemon offering only linux/arm64: a stand-in for a native arm64 node.
struct ArmDaemon {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl ArmDaemon {
    fn start() -> Option<ArmDaemon> {
        let bin = root().join("../shared/buildkit/bin/buildkitd");
        assert!(
            bin.is_file(),
            "{} is missing: the second BuildKit daemon cannot start",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("buildkitd.sock");
        std::fs::write(
            dir.path().join("buildkitd.toml"),
            format!(
                "root = \"{}\"\n[grpc]\n  address = [\"unix://{}\"]\n[worker.oci]\n  enabled = true\n  binary = \"runc\"\n  platforms = [\"linux/arm64\"]\n[worker.containerd]\n  enabled = false\n",
                dir.path().join("root").display(),
                sock.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("buildkitd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(dir.path().join("buildkitd.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !sock.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the arm64 buildkitd did not start: {}",
                std::fs::read_to_string(dir.path().join("buildkitd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(ArmDaemon { child, dir })
    }

    fn endpoint(&self) -> String {
        format!(
            "unix://{}",
            self.dir.path().join("buildkitd.sock").display()
        )
    }
}

impl Drop for ArmDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The buildx builder `name` is removed when the test ends, however it ends.
struct BuilderGuard(String);

impl Drop for BuilderGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["buildx", "rm", "--force", &self.0])
            .output();
    }
}

fn build_ref(env: &Env, node: &str) -> String {
    let meta: Value = serde_json::from_slice(
        &std::fs::read(env.path().join(format!(
            ".mab/metadata/{}.json",
            mab::plan::command::file_stem(node)
        )))
        .unwrap(),
    )
    .unwrap();
    meta["buildx.build.ref"].as_str().unwrap().to_owned()
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_routes_a_platform_to_its_builder_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::root("bx-nodes"), true) else {
        return;
    };
    let Some(arm) = ArmDaemon::start() else {
        return;
    };
    let name = format!("mab-e2e-arm64-{}", std::process::id());
    let _guard = BuilderGuard(name.clone());
    let kdl = std::fs::read_to_string(env.path().join("images.kdl")).unwrap();
    let routed = format!(
        "{kdl}\nbuilder \"{name}\" {{\n    platforms \"linux/arm64\"\n    endpoint \"{}\"\n}}\n",
        arm.endpoint()
    );
    env.write("images.kdl", &routed);
    // The plan says where each platform builds, and how the builder is made.
    let (code, plan, err) = env.mab(&["plan", "runtime:3.15", "--format", "shell"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        plan.contains(&format!(
            "docker buildx create --name {name} --driver remote --platform linux/arm64 {}",
            arm.endpoint()
        )),
        "{plan}"
    );
    // `check` creates the builder, finds it running and offering arm64; the current builder
    // offers the rest.
    let (code, out, err) = env.mab(&["check"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = env.mab(&["build", "runtime:3.15", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // arm64 built and tested on the arm64 node, amd64 on the current builder.
    assert!(
        build_ref(&env, "build:runtime:3.15@linux/arm64").starts_with(&format!("{name}/")),
        "{}",
        build_ref(&env, "build:runtime:3.15@linux/arm64")
    );
    let current = std::env::var("BUILDX_BUILDER").unwrap_or_default();
    let amd = build_ref(&env, "build:runtime:3.15@linux/amd64");
    assert!(
        !amd.starts_with(&format!("{name}/"))
            && (current.is_empty() || amd.starts_with(&format!("{current}/"))),
        "{amd}"
    );
    let test_log = std::fs::read_to_string(
        env.path()
            .join(".mab/logs/test_runtime_3.15_linux_arm64.log"),
    )
    .unwrap();
    assert!(
        test_log.contains(&format!("building with \"{name}\" instance")),
        "{test_log}"
    );
    let index = raw(&env.repo("runtime:3.15")).unwrap();
    let two: BTreeSet<String> = ["linux/amd64", "linux/arm64"].map(String::from).into();
    assert_eq!(platforms(&index), two);
    // A builder that does not offer a platform routed to it: `check` says so, and how to fix.
    // (The arm64 daemon's worker is arm64; it emulates what the host's binfmt runs, but not
    // linux/arm/v7, which only an arm64 or amd64 *native* worker lists here.)
    let arm7 = routed
        .replace(
            "    platforms \"linux/arm64\"\n    endpoint",
            "    platforms \"linux/arm64\" \"linux/arm/v7\"\n    endpoint",
        )
        .replace(
            "image \"runtime\" {\n",
            "image \"runtime\" {\n    platforms \"linux/amd64\" \"linux/arm64\" \"linux/arm/v7\"\n",
        );
    env.write("images.kdl", &arm7);
    let (code, out, err) = env.mab(&["check"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(&format!("buildx builder `{name}` offers no linux/arm/v7")),
        "{err}"
    );
    // A builder of that name pointing elsewhere is refused, not silently used.
    env.write(
        "images.kdl",
        &routed.replace(&arm.endpoint(), "unix:///nonexistent/buildkitd.sock"),
    );
    let (code, out, err) = env.mab(&["build", "runtime:3.15"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("exists with endpoint"), "{err}");
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_with_attestations_off_pushes_plain_manifests() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("bx-noattest"), true) else {
        return;
    };
    env.write(
        "images.kdl",
        &FAILING.replace(
            "image \"good\" { from \"mirror:alpine:3.15\" arg=\"BASE\"; version \"1\"; }",
            "image \"good\" { from \"mirror:alpine:3.15\" arg=\"BASE\"; version \"1\"; attest #false; }",
        ),
    );
    env.write(
        "images/good/Dockerfile",
        &format!("{BASED}RUN uname -m > /arch\n"),
    );
    let (code, plan, err) = env.mab(&["plan", "good", "--format", "shell"]);
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains("--provenance=false"), "{plan}");
    assert!(!plan.contains("--attest"), "{plan}");
    let (code, out, err) = env.mab(&["build", "good", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    for arch in ["amd64", "arm64"] {
        let digest = node(&r, &format!("build:good:1@linux/{arch}"))["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        // An image manifest (BuildKit writes Docker media types when nothing asks for OCI),
        // not an index of the image and an attestation.
        let pushed = raw(&format!("{}@{digest}", env.repo("good"))).unwrap();
        assert!(
            pushed["layers"].is_array() && pushed["manifests"].is_null(),
            "{arch}: {pushed}"
        );
    }
    let index = raw(&env.repo("good:1")).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
}

/// mab reaches registries the way the tools it runs do: a loopback registry over plain HTTP
/// with no `insecure` marker (as Docker and BuildKit do), a name made insecure only in a
/// `registries.conf` (as buildah, podman and skopeo do); and a failure names its cause.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn registry_transport_follows_loopback_and_registries_conf() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("transport") else {
        return;
    };
    let port = env.registry.rsplit(':').next().unwrap().to_owned();
    // No `insecure` anywhere: the profile's registry and the upstream are loopback.
    env.write(
        "images.kdl",
        &format!(
            "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\n\
             profile \"local-buildah\" {{ registry \"{}/{}\"; }}\n\
             mirror \"loop\" from=\"127.0.0.1:{port}/library/alpine\" {{ tags \"3.15\"; }}\n\
             mirror \"named\" from=\"mab-registry.test:{port}/library/alpine\" {{ tags \"3.16\"; }}\n",
            env.registry, env.ns
        ),
    );
    let (code, out, err) = env.mab(&["mirror", "loop"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // `mab-registry.test` is 127.0.0.1 by /etc/hosts (scripts/test-env), but not loopback by
    // its name: HTTPS, which a plain-HTTP registry cannot answer — and the cause is named.
    let conf = env.path().join("registries.conf");
    std::fs::write(&conf, "unqualified-search-registries = []\n").unwrap();
    let o = env
        .command(&["mirror", "named"])
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .env("MAB_HTTP_TIMEOUT", "5")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(!text.contains("error sending request"), "{text}");
    // Marked insecure in registries.conf: reached over plain HTTP.
    std::fs::write(
        &conf,
        format!("[[registry]]\nlocation = \"mab-registry.test:{port}\"\ninsecure = true\n"),
    )
    .unwrap();
    let o = env
        .command(&["mirror", "named"])
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        raw(&format!(
            "{}/{}/thirdparty/named:3.16",
            env.registry, env.ns
        ))
        .is_some()
    );
    // A registry that is not there: said so.
    env.write(
        "images.kdl",
        "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\nprofile \"local-buildah\" { registry \"127.0.0.1:9/x\"; }\nmirror \"gone\" from=\"127.0.0.1:9/library/alpine\" { tags \"1\"; }\n",
    );
    let o = env
        .command(&["mirror"])
        .env("MAB_HTTP_TIMEOUT", "2")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("connection refused"), "{text}");
}

/// Two projects on one host build an image of the same name at the same time (two branches on
/// one self-hosted runner), one of them slower: each publishes its own content. A shared local
/// tag between build and push would let the later push take the other run's image.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn two_runs_on_one_host_never_cross() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let envs: Vec<Env> = ["cross-a", "cross-b"]
        .into_iter()
        .filter_map(Env::empty)
        .collect();
    if envs.len() < 2 {
        return;
    }
    for (env, (team, delay)) in envs.iter().zip([("team-a", 0), ("team-b", 3)]) {
        env.write(
            "images.kdl",
            &FAILING.replace(
                "\"${local_registry}/platform\"",
                &format!("\"${{local_registry}}/{team}\""),
            ),
        );
        env.write(
            "images/good/Dockerfile",
            &format!("{BASED}RUN sleep {delay} && echo {team} > /team\n"),
        );
    }
    let children: Vec<std::process::Child> = envs
        .iter()
        .map(|e| {
            e.command(&[
                "build",
                "good",
                "--platform",
                "linux/amd64",
                "--report",
                "r.json",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for (env, team) in envs.iter().zip(["team-a", "team-b"]) {
        let digest = node(
            &report(&env.path().join("r.json")),
            "build:good:1@linux/amd64",
        )["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let repo = format!("{}/{}/{team}/good", env.registry, env.ns);
        let content = run_in(&format!("{repo}@{digest}"), "linux/amd64", "cat /team");
        assert_eq!(content.trim(), team, "{repo} holds another run's image");
        // What the run kept on the host on the way to the registry is gone.
        for sub in [".mab/oci", ".mab/iid", ".mab/cid"] {
            let left: Vec<_> = std::fs::read_dir(env.path().join(sub))
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{sub} still holds {left:?}");
        }
    }
}

/// Docker Hub writes arm64 as `linux/arm64/v8`: a mirror of `platforms "linux/arm64"` found
/// no such child and failed ("has no linux/arm64"); the merge's and reuse's lookups alike.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn an_arm64_v8_entry_is_linux_arm64() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("v8") else {
        return;
    };
    let raw_upstream = raw(&format!("{}/library/alpine:3.15", env.registry)).unwrap();
    let mut index = raw_upstream.clone();
    for m in index["manifests"].as_array_mut().unwrap() {
        if m["platform"]["architecture"] == "arm64" {
            m["platform"]["variant"] = Value::from("v8");
        }
    }
    let tag = env.ns.clone();
    put_index(&env.registry, "library/alpine", &tag, &index);
    env.write(
        "images.kdl",
        &format!(
            "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\n\
             profile \"local-buildah\" {{ registry \"{}/{}\"; }}\n\
             mirror \"alpine\" from=\"{}/library/alpine\" {{ tags \"{tag}\"; platforms \"linux/arm64\"; }}\n",
            env.registry, env.ns, env.registry
        ),
    );
    let (code, out, err) = env.mab(&["mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let mirrored = raw(&format!(
        "{}/{}/thirdparty/alpine:{tag}",
        env.registry, env.ns
    ))
    .unwrap();
    let entries = mirrored["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{mirrored}");
    assert_eq!(entries[0]["platform"]["variant"], "v8");
}

const SECRETS: &str = r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64"; }
mirror "alpine" from="${upstream}/library/alpine" { tags "3.15"; }
image "app" {
    from "mirror:alpine:3.15" arg="BASE"
    secret "tok" env="MAB_E2E_TOKEN"
    secret "npmrc" file="secrets/npm rc ü"
    version "1"
}
"#;

/// A secret's value reaches the build through `--secret` (the build sees exactly it: its
/// length and checksum are recorded in the image) and nothing else: not the plan in any
/// format, the run's output, its logs, its report, nor any blob the registry holds for the
/// image. It is in no hash either: a changed value reuses the image, as BuildKit does.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn secrets_reach_the_build_and_nothing_published() {
    secrets_reach_the_build_and_nothing_published_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_secrets_reach_the_build_and_nothing_published() {
    secrets_reach_the_build_and_nothing_published_on(true);
}

fn secrets_reach_the_build_and_nothing_published_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("secret"), buildx) else {
        return;
    };
    let token = "tok-7Qx, \"quoted\" 'single'\nsecond line ü";
    let npmrc = "//registry.npmjs.org/:_authToken=npm-9fZ2k";
    env.write("images.kdl", SECRETS);
    env.write("secrets/npm rc ü", npmrc);
    env.write(
        "images/app/Dockerfile",
        &format!(
            "{BASED}RUN --mount=type=secret,id=tok --mount=type=secret,id=npmrc \
             wc -c < /run/secrets/tok > /tok-len && sha256sum < /run/secrets/npmrc > /npmrc-sum\n"
        ),
    );
    let mut seen = Vec::new();
    for format in ["text", "json", "shell", "markdown"] {
        let o = env
            .command(&["plan", "--format", format])
            .env("MAB_E2E_TOKEN", token)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        seen.push(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    assert!(
        seen[2].contains("id=tok,")
            && seen[2].contains("MAB_E2E_TOKEN")
            && seen[2].contains("id=npmrc,src=secrets/npm rc ü"),
        "the plan shows where each secret comes from:\n{}",
        seen[2]
    );

    // Missing: refused before anything runs, by `check` and `build` alike.
    let o = env
        .command(&["build"])
        .env_remove("MAB_E2E_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("secret `tok` of `app:1` is not available: the environment variable MAB_E2E_TOKEN is not set"),
        "{err}"
    );
    assert!(!env.path().join(".mab/logs").exists(), "nothing ran");

    let o = env
        .command(&["build", "--report", "r.json"])
        .env("MAB_E2E_TOKEN", token)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let report = report(&env.path().join("r.json"));
    let digest = node(&report, "build:app:1@linux/amd64")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = format!("{}@{digest}", env.repo("app"));
    let inside = run_in(&image, "linux/amd64", "cat /tok-len /npmrc-sum");
    // What `sha256sum < FILE` prints.
    let want_sum = format!("{}  -\n", &mab::registry::digest_of(npmrc.as_bytes())[7..]);
    assert_eq!(
        inside,
        format!("{}\n{want_sum}", token.len()),
        "the build saw exactly the secrets"
    );

    seen.extend([out, err, report.to_string()]);
    for e in std::fs::read_dir(env.path().join(".mab/logs")).unwrap() {
        seen.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    // Every blob of the published image, decompressed where it is a layer.
    let blobs = tempfile::tempdir().unwrap();
    let o = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", blobs.path().display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for e in std::fs::read_dir(blobs.path()).unwrap() {
        let path = e.unwrap().path();
        let plain = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
        let bytes = if plain.status.success() {
            plain.stdout
        } else {
            std::fs::read(&path).unwrap()
        };
        seen.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for text in &seen {
        for secret in [token, "tok-7Qx", npmrc, "npm-9fZ2k"] {
            assert!(!text.contains(secret), "`{secret}` leaked into:\n{text}");
        }
    }

    // Not an input: another value reuses the image.
    let o = env
        .command(&["build", "--report", "r2.json"])
        .env("MAB_E2E_TOKEN", "another value")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        node(&report_at(&env, "r2.json"), "build:app:1@linux/amd64")["status"],
        "reused"
    );
}

const SPLIT_TESTED: &str = r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
mirror "alpine" from="${upstream}/library/alpine" { tags "3.15"; }
image "app" { from "mirror:alpine:3.15" arg="BASE"; test "test -e /ok"; version "1"; }
"#;

/// Split builds: a platform whose test fails leaves no metadata, so nothing can merge the
/// untested image (its metadata used to be written when the build finished, before the
/// test); `build --node test:…` and `build --node merge:…` run on the metadata of the jobs
/// that built, and refuse without it.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_split_build_merges_only_tested_images_and_runs_single_tests_and_merges() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("split-tested") else {
        return;
    };
    env.write("images.kdl", SPLIT_TESTED);
    env.write(
        "images/app/Dockerfile",
        &format!("{BASED}RUN if [ \"$(uname -m)\" = x86_64 ]; then touch /ok; fi\n"),
    );
    let (code, out, err) = env.mab(&["mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let job = |id: &str| env.mab(&["build", "--node", id, "--metadata-dir", "m"]);
    let (code, out, err) = job("build:app:1@linux/amd64");
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = job("build:app:1@linux/arm64");
    assert_eq!(code, 1, "the arm64 test fails:\n{out}\n{err}");
    assert!(env.path().join("m/build_app_1_linux_amd64.json").exists());
    assert!(
        !env.path().join("m/build_app_1_linux_arm64.json").exists(),
        "an untested image has no metadata"
    );
    let (code, out, err) = job("merge:app:1");
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("needs `build:app:1@linux/arm64`, which m has no metadata for"),
        "{err}"
    );
    let (code, out, err) = env.mab(&["merge", "--metadata-dir", "m"]);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(raw(&env.repo("app:1")).is_none(), "nothing was published");
    let (code, _, err) = env.mab(&["build", "--node", "merge:app:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pass `--metadata-dir DIR`"), "{err}");

    // Fixed: both platforms pass; a test runs alone on the digest its job built; the merge
    // publishes exactly the digests the metadata names.
    env.write("images/app/Dockerfile", &format!("{BASED}RUN touch /ok\n"));
    for id in ["build:app:1@linux/amd64", "build:app:1@linux/arm64"] {
        let (code, out, err) = job(id);
        assert_eq!(code, 0, "{id}:\n{out}\n{err}");
    }
    let (code, out, err) = job("test:app:1@linux/arm64");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("test:app:1@linux/arm64"), "{out}");
    let (code, out, err) = job("merge:app:1");
    assert_eq!(code, 0, "{out}\n{err}");
    let index = raw(&env.repo("app:1")).expect("merged");
    for arch in ["amd64", "arm64"] {
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(env.path().join(format!("m/build_app_1_linux_{arch}.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(child(&index, arch), m["digest"].as_str().unwrap(), "{arch}");
    }
}

/// `--changed-since` builds what changed on what is published: an unchanged base is read from
/// its tag (not rebuilt, not listed as a build), and an unpublished one is refused up front.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn changed_since_builds_on_the_published_bases() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("changed") else {
        return;
    };
    env.write(
        "images.kdl",
        &FAILING.replace(
            "image \"bad\" { from \"mirror:alpine:3.15\" arg=\"BASE\"; version \"1\"; }\nimage \"after-bad\" { from \"bad:1\" arg=\"BASE\"; version \"1\"; }\n",
            "image \"dep\" { from \"good:1\" arg=\"BASE\"; version \"1\"; }\n",
        ),
    );
    env.write(
        "images/good/Dockerfile",
        &format!("{BASED}RUN echo good > /good\n"),
    );
    env.write(
        "images/dep/Dockerfile",
        &format!("{BASED}RUN echo one > /dep\n"),
    );
    let git = |args: &[&str]| crate::support::git_in(env.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "images"]);
    env.write(
        "images/dep/Dockerfile",
        &format!("{BASED}RUN echo two > /dep\n"),
    );
    let only = ["--platform", "linux/amd64"];
    let (code, out, err) = env.mab(&[&["build", "--changed-since", "HEAD"][..], &only].concat());
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("`build:good:1@linux/amd64` is not published"),
        "{err}"
    );
    assert!(!env.path().join(".mab/logs").exists(), "nothing ran");

    let (code, out, err) = env.mab(&["build"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let good = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}", env.repo("good:1")))
        .output()
        .unwrap();
    let good_digest = mab::registry::digest_of(&good.stdout);
    env.write(
        "images/dep/Dockerfile",
        &format!("{BASED}RUN echo three > /dep\n"),
    );
    let (code, out, err) = env.mab(&["build", "--changed-since", "HEAD", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let report = report_at(&env, "r.json");
    let ids: BTreeSet<String> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = [
        "build:dep:1@linux/amd64",
        "build:dep:1@linux/arm64",
        "merge:dep:1",
    ]
    .map(String::from)
    .into();
    assert_eq!(ids, want, "only the changed image");
    let log =
        std::fs::read_to_string(env.path().join(".mab/logs/build_dep_1_linux_amd64.log")).unwrap();
    assert!(
        log.contains(&format!("BASE={}@{good_digest}", env.repo("good:1"))),
        "built on the published good:1 ({good_digest}):\n{log}"
    );
    let dep = raw(&env.repo("dep:1")).unwrap();
    let inside = run_in(
        &format!("{}@{}", env.repo("dep"), child(&dep, "amd64")),
        "linux/amd64",
        "cat /good /dep",
    );
    assert_eq!(inside, "good\nthree\n");
}

/// Every base is an input: a Dockerfile's `FROM` that the manifest does not declare is pinned
/// to its digest per platform (`--build-context`), part of the input hash, and named when it
/// moves. Moving it rebuilds exactly the images built on it (and their dependents).
fn undeclared_bases_are_inputs_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("bases"), buildx) else {
        return;
    };
    let up = format!("{}/{}-up", env.registry, env.ns);
    let copy = |from: &str, to: &str| {
        copy_all(
            &format!("{}/library/{from}", env.registry),
            &format!("{up}/{to}"),
        )
    };
    copy("alpine:3.15", "base:1");
    copy("alpine:3.15", "other:1");
    env.write(
        "images.kdl",
        r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
image "app" { version "1"; }
image "tool" { from "app:1" arg="BASE"; version "1"; }
image "other" { version "1"; }
"#,
    );
    env.write(
        "images/app/Dockerfile",
        &format!("ARG REL=1\nFROM {up}/base:${{REL}}\nRUN date > /built\n"),
    );
    env.write(
        "images/tool/Dockerfile",
        "ARG BASE\nFROM ${BASE}\nRUN true\n",
    );
    env.write(
        "images/other/Dockerfile",
        &format!("FROM {up}/other:1\nRUN true\n"),
    );
    // The plan pins the base: what the build will run says so.
    let (code, out, err) = env.mab(&["plan", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let pin =
        format!("{up}/base:1=docker-image://{up}/base:1@{{upstream:{up}/base:1@linux/arm64}}");
    assert!(out.contains(&pin), "no pin `{pin}` in:\n{out}");
    let (code, out, err) = env.mab(&["build"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The builds' decisions, as `plan --check-registry` reports them.
    let decisions = || {
        let mut all = check_decisions(&env, &[], &[]);
        all.retain(|id, _| id.starts_with("build:"));
        all
    };
    let before = decisions();
    assert!(
        before.values().all(|(d, _)| d == "reuse"),
        "nothing moved: {before:?}"
    );
    // The lock records every base for every platform (there is no mirror to run), and is
    // committed: a later refresh is a reviewed diff that `--changed-since` reads.
    let (code, out, err) = env.mab(&["mirror", "--update-lock"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lock = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(env.path().join("images.lock")).unwrap())
            .unwrap()
    };
    let locked = lock();
    for (base, p) in [
        ("base", "linux/amd64"),
        ("base", "linux/arm64"),
        ("other", "linux/arm64"),
    ] {
        let d = &locked["bases"][format!("{up}/{base}:1")][p];
        assert!(
            d.as_str().is_some_and(|d| d.starts_with("sha256:")),
            "{locked}"
        );
    }
    env.write(".gitignore", ".mab/\n*.json\n");
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(env.path())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "lock"]);
    // Upstream moves the base of `app` (not `other`'s): a fixed image of every platform,
    // published there by a manifest of its own.
    env.write(
        "up/images.kdl",
        r#"var "up" "x"
var "upstream" "x"
var "local_registry" "x"
profile "local" { registry "${up}" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
image "base" { version "1"; }
"#,
    );
    env.write(
        "up/images/base/Dockerfile",
        &format!(
            "FROM {}/library/alpine:3.15\nRUN echo fixed > /fix\n",
            env.registry
        ),
    );
    let upvar = format!("up={up}");
    let o = env
        .command(&["--var", &upvar, "build"])
        .current_dir(env.path().join("up"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // `--locked` builds what the lock pins, whatever the tag holds now: nothing moved.
    let (code, out, err) = env.mab(&["build", "--locked", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    for n in r["nodes"].as_array().unwrap() {
        if n["id"].as_str().unwrap().starts_with("build:") {
            assert_eq!(n["status"], "reused", "{n}");
        }
    }
    // Refreshing the lock records the move; `--changed-since` then names the base, and
    // takes in exactly the images built on it.
    let (code, out, err) = env.mab(&["mirror", "--update-lock"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let relocked = lock();
    let key = format!("{up}/base:1");
    assert_ne!(relocked["bases"][&key], locked["bases"][&key]);
    assert_eq!(
        relocked["bases"][format!("{up}/other:1")],
        locked["bases"][format!("{up}/other:1")]
    );
    let (code, out, err) = env.mab(&["plan", "--changed-since", "HEAD", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut built: Vec<String> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "build")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    built.sort();
    assert_eq!(
        built,
        [
            "build:app:1@linux/amd64",
            "build:app:1@linux/arm64",
            "build:tool:1@linux/amd64",
            "build:tool:1@linux/arm64"
        ],
        "{out}"
    );
    assert!(
        out.contains(&format!("its base `{key}` moved in `images.lock`")),
        "{out}"
    );
    let moved = decisions();
    for p in ["linux/amd64", "linux/arm64"] {
        let (d, why) = &moved[&format!("build:app:1@{p}")];
        assert_eq!(d, "build", "{why}");
        assert!(
            why.contains(&format!("`{up}/base:1` moved: sha256:")),
            "the moved base is not named: {why}"
        );
        assert_eq!(moved[&format!("build:other:1@{p}")].0, "reuse");
    }
    let (code, out, err) = env.mab(&["build", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    for p in ["linux/amd64", "linux/arm64"] {
        assert_eq!(node(&r, &format!("build:app:1@{p}"))["status"], "ok");
        assert_eq!(node(&r, &format!("build:tool:1@{p}"))["status"], "ok");
        assert_eq!(node(&r, &format!("build:other:1@{p}"))["status"], "reused");
    }
    // And then it is settled: every build is reused.
    let after = decisions();
    assert!(after.values().all(|(d, _)| d == "reuse"), "{after:?}");
    // A base that is not there, and one without the platform built: each named, with the
    // Dockerfile that says `FROM`, and the check fails as the run would.
    env.write(
        "images/app/Dockerfile",
        &format!("ARG REL=2\nFROM {up}/base:${{REL}}\nRUN date > /built\n"),
    );
    env.write("images/other/Dockerfile", &format!("FROM {up}/base:1\n"));
    let manifest = std::fs::read_to_string(env.path().join("images.kdl")).unwrap();
    env.write(
        "images.kdl",
        &manifest.replace(
            "image \"other\" { version \"1\"; }",
            "image \"other\" { version \"1\"; platforms \"linux/s390x\"; }",
        ),
    );
    let (code, out, err) = env.mab(&["plan", "--check-registry"]);
    assert_eq!(code, 1, "{out}\n{err}");
    // (miette wraps lines, and marks the continuations with `│`.)
    let err = (err.split_whitespace())
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ");
    for p in ["linux/amd64", "linux/arm64"] {
        assert!(
            err.contains(&format!("`build:app:1@{p}`: base {up}/base:2 (a `FROM` of images/app/Dockerfile) does not exist")),
            "{err}"
        );
    }
    assert!(
        err.contains(&format!("`build:other:1@linux/s390x`: base {up}/base:1 (a `FROM` of images/other/Dockerfile) has no linux/s390x image")),
        "{err}"
    );
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn undeclared_bases_are_inputs() {
    undeclared_bases_are_inputs_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_undeclared_bases_are_inputs() {
    undeclared_bases_are_inputs_on(true);
}

fn rebuild_after_rebuilds_old_images_without_the_cache_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("age"), buildx) else {
        return;
    };
    env.write(
        "images.kdl",
        r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64"; rebuild-after "7d"; }
image "old" { version "1"; }
image "young" { version "1"; }
image "never" { version "1"; rebuild-after #false; }
"#,
    );
    for image in ["old", "young", "never"] {
        env.write(
            &format!("images/{image}/Dockerfile"),
            &format!(
                "FROM {}/library/alpine:3.15\nRUN date +%s%N > /built\n",
                env.registry
            ),
        );
    }
    // `old` and `never` were published ten days ago (the run's clock says so), `young` now.
    let ten_days_ago = mab::clock::format(chrono::Utc::now() - chrono::Duration::days(10));
    let o = env
        .command(&["build", "old", "never"])
        .env("MAB_NOW", &ten_days_ago)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, out, err) = env.mab(&["build", "young"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let built = |image: &str| {
        let index = raw(&format!("{}:1", env.repo(image))).unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .unwrap()
            .clone();
        let digest = entry["digest"].as_str().unwrap().to_owned();
        let manifest = raw(&format!("{}@{digest}", env.repo(image))).unwrap();
        (
            entry["annotations"]["io.mab.built"]
                .as_str()
                .map(str::to_owned),
            layers(&manifest).last().cloned().unwrap(),
        )
    };
    let (old_time, old_layer) = built("old");
    assert_eq!(old_time.as_deref(), Some(ten_days_ago.as_str()));
    let (_, never_layer) = built("never");
    // The check says why, and shows the command the run will run: without the cache.
    let (code, out, err) = env.mab(&["plan", "--check-registry", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let build = |image: &str| {
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == format!("build:{image}:1@linux/amd64"))
            .unwrap()
            .clone()
    };
    let old = build("old");
    assert_eq!(old["decision"], "build", "{old}");
    assert_eq!(
        old["reason"], "published 10 days ago; rebuild-after 7d",
        "{old}"
    );
    assert!(old["commands"].to_string().contains("--no-cache"), "{old}");
    for image in ["young", "never"] {
        let n = build(image);
        assert_eq!(n["decision"], "reuse", "{n}");
        assert!(!n["commands"].to_string().contains("--no-cache"), "{n}");
    }
    let (code, out, err) = env.mab(&["build", "--report", "r.json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report(&env.path().join("r.json"));
    assert_eq!(node(&r, "build:old:1@linux/amd64")["status"], "ok");
    assert_eq!(node(&r, "build:young:1@linux/amd64")["status"], "reused");
    assert_eq!(node(&r, "build:never:1@linux/amd64")["status"], "reused");
    // The `RUN` step ran again: with the layer cache, its layer would have come back.
    let (new_time, new_layer) = built("old");
    assert_ne!(new_layer, old_layer, "the RUN step was not executed again");
    assert_ne!(new_time, old_time);
    assert_eq!(built("never").1, never_layer);
    // Young again: every build is reused.
    let (code, out, err) = env.mab(&["plan", "--check-registry"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(" build "),
        "everything is reused after the rebuild:\n{out}"
    );
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn rebuild_after_rebuilds_old_images_without_the_cache() {
    rebuild_after_rebuilds_old_images_without_the_cache_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_rebuild_after_rebuilds_old_images_without_the_cache() {
    rebuild_after_rebuilds_old_images_without_the_cache_on(true);
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// A new ECDSA P-256 key in `DIR/NAME.pem` (and its public key in `NAME.pub`), by openssl;
/// returns the private key's PEM.
fn genkey(dir: &Path, name: &str) -> String {
    let o = openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = openssl(
        &[
            "pkey",
            "-in",
            &format!("{name}.pem"),
            "-pubout",
            "-out",
            &format!("{name}.pub"),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap()
}

/// Whether the real cosign (a user's verifier) accepts `reference`'s signature by public key
/// `key`: `cosign verify --key KEY --insecure-ignore-tlog=true --allow-insecure-registry`
/// (mab writes no transparency-log entry, so the tlog check is the one left out).
fn cosign_verifies(dir: &Path, key: &str, reference: &str) -> Result<(), String> {
    let o = Command::new("cosign")
        .current_dir(dir)
        .args(["verify", "--key", key, "--insecure-ignore-tlog=true"])
        .arg("--allow-insecure-registry")
        .arg(reference)
        .output()
        .map_err(|e| format!("cosign: {e} (scripts/test-env puts it on the PATH)"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// Whether openssl, an independent verifier, accepts the cosign signature of signature
/// manifest `layer` (base64 DER in its annotation) over `payload`, with public key `key`.
fn openssl_verifies(dir: &Path, key: &str, payload: &[u8], layer: &Value) -> bool {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            layer["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    std::fs::write(dir.join("sig.der"), der).unwrap();
    std::fs::write(dir.join("payload"), payload).unwrap();
    let args = [
        "dgst",
        "-sha256",
        "-verify",
        key,
        "-signature",
        "sig.der",
        "payload",
    ];
    openssl(&args, dir).status.success()
}

/// The blob `digest` of `repository` (`HOST/PATH`), read over plain HTTP by curl.
fn blob(repository: &str, digest: &str) -> Vec<u8> {
    let (host, path) = repository.split_once('/').unwrap();
    let o = Command::new("curl")
        .args(["-sfL", &format!("http://{host}/v2/{path}/blobs/{digest}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {repository}@{digest}");
    o.stdout
}

fn signed_promotion_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("promote"), buildx) else {
        return;
    };
    let dir = env.path();
    let genkey = |name: &str| genkey(dir, name);
    let key = genkey("key");
    genkey("other");
    genkey("release");
    env.write(
        "images.kdl",
        r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/dev" insecure=#true; backend "buildx"; sign key="env:MAB_SIGNING_KEY"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
profile "prod" { registry "${local_registry}/prod" insecure=#true; promoted-from "local"; sign key="keys/release.pem"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
image "app" { tag "${version}" "${version}-${date}"; version "1"; }
image "late" { version "1"; }
"#,
    );
    for image in ["app", "late"] {
        env.write(
            &format!("images/{image}/Dockerfile"),
            &format!(
                "FROM {}/library/alpine:3.15\nRUN date > /built\n",
                env.registry
            ),
        );
    }
    let mab = |args: &[&str]| {
        let mut c = env.command(args);
        if args.first() == Some(&"--profile") {
            // The target profile's own commands: the same flags, another profile.
            c = Command::new(env!("CARGO_BIN_EXE_mab"));
            c.current_dir(env.path())
                .env("NO_COLOR", "1")
                .env_remove("MAB_PROFILE")
                .arg("--var")
                .arg(format!("upstream={}", env.registry))
                .arg("--var")
                .arg(format!("local_registry={}/{}", env.registry, env.ns))
                .args(args);
        }
        let o = c
            .env("MAB_SIGNING_KEY", &key)
            .env("MAB_NOW", "2026-11-25T10:00:00Z")
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = mab(&["build", "app"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let dev = format!("{}/{}/dev/app", env.registry, env.ns);
    let prod = format!("{}/{}/prod/app", env.registry, env.ns);
    // Every published tag verifies; another key does not.
    let (code, out, err) = mab(&["verify", "app"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("verified {dev}:1")), "{out}");
    let (code, out, _) = mab(&["verify", "app", "--key", "other.pub"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    // An independent verifier: the payload and signature read back from the registry, checked
    // by openssl against the public key; a flipped byte of the payload fails.
    let index = raw(&format!("{dev}:1")).unwrap();
    let digest = registry_digest(&format!("{dev}:1"));
    let mut signed = vec![digest.clone()];
    signed.extend(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["annotations"]["vnd.docker.reference.type"].is_null())
            .map(|m| m["digest"].as_str().unwrap().to_owned()),
    );
    assert_eq!(signed.len(), 3, "{index}");
    for d in &signed {
        let sig = raw(&format!("{dev}:{}.sig", d.replacen(':', "-", 1))).expect("a signature tag");
        let layer = &sig["layers"][0];
        assert_eq!(
            layer["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        let payload = blob(&dev, layer["digest"].as_str().unwrap());
        let p: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(p["critical"]["image"]["docker-manifest-digest"], d.as_str());
        let verifies = |payload: &[u8]| openssl_verifies(dir, "key.pub", payload, layer);
        assert!(verifies(&payload), "openssl refused the signature of {d}");
        let mut flipped = payload.clone();
        flipped[20] ^= 1;
        assert!(!verifies(&flipped), "a flipped byte verified");
        // And cosign itself, by digest (the index, then each platform image).
        let reference = format!("{dev}@{d}");
        if let Err(e) = cosign_verifies(dir, "key.pub", &reference) {
            panic!("cosign refused {reference}: {e}");
        }
        assert!(cosign_verifies(dir, "other.pub", &reference).is_err());
    }
    // By tag, as a user checks a release.
    cosign_verifies(dir, "key.pub", &format!("{dev}:1")).unwrap();
    // prod is only promoted into: it refuses to build.
    let (code, _, err) = mab(&["--profile", "prod", "build"]);
    assert_ne!(code, 0);
    assert!(err.contains("mab promote --from local --to prod"), "{err}");
    // The target signs with its own key: without the key, nothing is promoted.
    let (code, out, err) = mab(&["promote", "--from", env.profile, "--to", "prod", "app"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("cannot read keys/release.pem"), "{err}");
    assert!(
        raw(&format!("{prod}:1")).is_none(),
        "promoted without the key"
    );
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::rename(dir.join("release.pem"), dir.join("keys/release.pem")).unwrap();
    // `late` was never built in dev: promoting everything refuses, and writes nothing.
    let (code, out, err) = mab(&["promote", "--from", env.profile, "--to", "prod"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("`late:1` is not published"), "{err}");
    assert!(
        raw(&format!("{prod}:1")).is_none(),
        "app was promoted although late is missing"
    );
    let (code, out, err) = mab(&[
        "promote",
        "--from",
        env.profile,
        "--to",
        "prod",
        "app",
        "--dry-run",
        "--format",
        "markdown",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "| `app:1` | `{dev}:1` | `{prod}` | :1 :1-20261125 | `{digest}` | copy |"
        )),
        "{out}"
    );
    assert!(out.contains("signed with `prod`'s key"), "{out}");
    let (code, out, err) = mab(&["promote", "--from", env.profile, "--to", "prod", "app"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Byte for byte: the same index at every tag, its children (attestations included) there.
    assert_eq!(registry_digest(&format!("{prod}:1")), digest);
    assert_eq!(raw(&format!("{prod}:1")).unwrap(), index);
    for m in index["manifests"].as_array().unwrap() {
        assert!(
            raw(&format!("{prod}@{}", m["digest"].as_str().unwrap())).is_some(),
            "{m}"
        );
    }
    // Both keys verify every tag: dev's signatures came along, prod's own were added to them
    // (one signature manifest, a layer each, as cosign appends), all before the tags.
    let (code, out, err) = mab(&["--profile", "prod", "verify", "app", "--key", "key.pub"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = mab(&["--profile", "prod", "verify", "app"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("verified {prod}:1")), "{out}");
    for d in &signed {
        let sig = raw(&format!("{prod}:{}.sig", d.replacen(':', "-", 1))).unwrap();
        let layers = sig["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "{sig}");
        let config = blob(&prod, sig["config"]["digest"].as_str().unwrap());
        let config: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        // prod's payload names prod's repository; openssl checks it with prod's public key.
        let payload = blob(&prod, layers[1]["digest"].as_str().unwrap());
        let p: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(p["critical"]["identity"]["docker-reference"], prod.as_str());
        assert!(
            openssl_verifies(dir, "release.pub", &payload, &layers[1]),
            "prod's signature of {d}"
        );
        // cosign accepts both keys' signatures of the promoted digest.
        for key in ["release.pub", "key.pub"] {
            let reference = format!("{prod}@{d}");
            if let Err(e) = cosign_verifies(dir, key, &reference) {
                panic!("cosign refused {reference} with {key}: {e}");
            }
        }
    }
    cosign_verifies(dir, "release.pub", &format!("{prod}:1")).unwrap();
    // The second time there is nothing to do.
    let (code, out, err) = mab(&["promote", "--from", env.profile, "--to", "prod", "app"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("1 of 1 image versions already promoted"),
        "{out}"
    );
    assert!(!out.contains("promoted app"), "{out}");
    assert_eq!(
        registry_digest(&format!("{prod}:1-20261125")),
        digest,
        "the dated tag"
    );
    // Dev publishes a new `app` the same day: promoting it would move prod's dated tag, so
    // the promotion refuses and writes nothing.
    env.write("images/app/extra", "new\n");
    env.write(
        "images/app/Dockerfile",
        &format!(
            "FROM {}/library/alpine:3.15\nRUN date > /built\nCOPY extra /extra\n",
            env.registry
        ),
    );
    let (code, out, err) = mab(&["build", "app"]);
    assert_eq!(
        code, 1,
        "dev's own dated tag cannot move either:\n{out}\n{err}"
    );
    let o = env
        .command(&["build", "app"])
        .env("MAB_SIGNING_KEY", &key)
        .env("MAB_NOW", "2026-11-26T10:00:00Z")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(registry_digest(&format!("{dev}:1")), digest);
    let (code, out, err) = mab(&["promote", "--from", env.profile, "--to", "prod", "app"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("1-20261125 already holds"), "{err}");
    assert_eq!(registry_digest(&format!("{prod}:1")), digest, "a tag moved");
}

/// The digest a tag holds, as skopeo reads it.
/// `git -C DIR ARGS…` as a test user, committing at `date` (none: now); its output, trimmed.
fn git_at(dir: &Path, date: &str, args: &[&str]) -> String {
    let mut c = Command::new("git");
    c.args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
        .arg(dir)
        .args(args);
    if !date.is_empty() {
        c.env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn registry_digest(reference: &str) -> String {
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{reference}");
    format!("sha256:{}", sha256_hex(&o.stdout))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn promotion_copies_signed_indexes_byte_for_byte() {
    signed_promotion_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_promotion_copies_signed_indexes_byte_for_byte() {
    signed_promotion_on(true);
}

/// Annotations are on the index, manifest-level ones on each platform's image, and the
/// commit's time is each image's `created`; a new commit reuses every image, dependents too,
/// and writes the same index; a dated tag is written once and never moved. The remote has a
/// token in its address: nothing of it may reach an output or an index.
fn annotations_and_dated_tags_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("annotate"), buildx) else {
        return;
    };
    let description = "Runtime, \"quoted\", ünïcode\nsecond line";
    env.write(
        "images.kdl",
        &format!(
            r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" {{ registry "${{local_registry}}/platform" insecure=#true; backend "buildx"; }}
profile "local-buildah" {{ inherits "local"; backend "buildah"; }}
defaults {{
    platforms "linux/amd64" "linux/arm64"
    annotation "org.opencontainers.image.description" {}
    annotation "org.opencontainers.image.licenses" "MIT" level="manifest"
}}
image "app" {{ tag "${{version}}" "${{version}}-${{date}}"; version "1"; }}
image "tool" {{ from "app:1" arg="BASE"; version "1"; }}
"#,
            serde_json::to_string(description).unwrap()
        ),
    );
    env.copy_image("app");
    env.write(
        "images/tool/Dockerfile",
        "ARG BASE\nFROM ${BASE}\nCOPY hello /hello2\n",
    );
    env.write("images/tool/hello", "tool\n");
    env.write(".gitignore", ".mab/\n*.json\n");
    let commit = |message: &str, date: &str| {
        env.write("NOTES", message);
        git_at(env.path(), date, &["add", "-A"]);
        git_at(env.path(), date, &["commit", "-qm", message]);
        git_at(env.path(), date, &["rev-parse", "HEAD"])
    };
    git_at(env.path(), "", &["init", "-q", "-b", "main"]);
    let remote = "https://ci:secret-token-123@git.example.com/acme/images.git";
    git_at(env.path(), "", &["remote", "add", "origin", remote]);
    let first = commit("first", "2026-11-20T08:00:00Z");
    let build = |now: &str| {
        let o = env
            .command(&["build", "--report", "r.json"])
            .env("MAB_NOW", now)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = build("2026-11-25T10:00:00Z");
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("secret-token"), "{out}");
    let repo = env.repo("app");
    let index = raw(&format!("{repo}:1")).unwrap();
    let a = &index["annotations"];
    assert_eq!(
        a["org.opencontainers.image.description"], description,
        "{index}"
    );
    assert_eq!(a["org.opencontainers.image.version"], "1");
    // The commit's: the remote without its credentials, the revision, the commit's time.
    assert_eq!(
        a["org.opencontainers.image.source"], "https://git.example.com/acme/images",
        "{index}"
    );
    assert_eq!(a["org.opencontainers.image.revision"], first.as_str());
    assert_eq!(
        a["org.opencontainers.image.created"],
        "2026-11-20T08:00:00Z"
    );
    assert!(!index.to_string().contains("secret"), "{index}");
    assert!(
        a.get("org.opencontainers.image.licenses").is_none(),
        "{index}"
    );
    // Each platform's image: the manifest-level annotation, and the commit's time.
    let children: BTreeMap<String, String> = ["amd64", "arm64"]
        .iter()
        .map(|arch| (arch.to_string(), child(&index, arch)))
        .collect();
    for digest in children.values() {
        let manifest = raw(&format!("{repo}@{digest}")).unwrap();
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.licenses"], "MIT",
            "{manifest}"
        );
        let config: Value =
            serde_json::from_slice(&blob(&repo, manifest["config"]["digest"].as_str().unwrap()))
                .unwrap();
        assert_eq!(config["created"], "2026-11-20T08:00:00Z", "{config}");
    }
    let dated = registry_digest(&format!("{repo}:1-20261125"));
    assert_eq!(dated, registry_digest(&format!("{repo}:1")));

    // Another commit, the next day: every platform image is reused, the dependent too, and
    // the index is the same; only the new day's dated tag is written.
    commit("second", "2026-11-26T08:00:00Z");
    let (code, out) = build("2026-11-26T10:00:00Z");
    assert_eq!(code, Some(0), "{out}");
    let r = report(&env.path().join("r.json"));
    for image in ["app", "tool"] {
        for arch in ["amd64", "arm64"] {
            let id = format!("build:{image}:1@linux/{arch}");
            assert_eq!(node(&r, &id)["status"], "reused", "{id}");
        }
    }
    let index = raw(&format!("{repo}:1")).unwrap();
    for (arch, digest) in &children {
        assert_eq!(&child(&index, arch), digest, "{arch} was rebuilt");
    }
    let moving = registry_digest(&format!("{repo}:1"));
    assert_eq!(moving, dated, "the index changed with the commit");
    assert_eq!(
        index["annotations"]["org.opencontainers.image.revision"],
        first.as_str(),
        "the index names the commit that first published its images"
    );
    assert_eq!(registry_digest(&format!("{repo}:1-20261126")), moving);
    assert_eq!(
        registry_digest(&format!("{repo}:1-20261125")),
        dated,
        "a dated tag moved"
    );

    // A new description the same day would move `1-20261126` to a new index: the check and
    // the run refuse, and no tag moves.
    let manifest = std::fs::read_to_string(env.path().join("images.kdl")).unwrap();
    env.write("images.kdl", &manifest.replace("second line", "2nd line"));
    let third = commit("third", "2026-11-26T09:00:00Z");
    let o = env
        .command(&["plan", "--check-registry"])
        .env("MAB_NOW", "2026-11-26T11:00:00Z")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("1-20261126 already holds"), "{err}");
    let (code, out) = build("2026-11-26T11:00:00Z");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("never moved"), "{out}");
    assert_eq!(
        registry_digest(&format!("{repo}:1")),
        moving,
        "the moving tag moved"
    );
    assert_eq!(registry_digest(&format!("{repo}:1-20261126")), moving);

    // The next day it publishes: new indexes naming the new commit, and still no platform
    // image rebuilt — the dependent's input is its base's image, not the index around it.
    let (code, out) = build("2026-11-27T10:00:00Z");
    assert_eq!(code, Some(0), "{out}");
    let r = report(&env.path().join("r.json"));
    for image in ["app", "tool"] {
        for arch in ["amd64", "arm64"] {
            let id = format!("build:{image}:1@linux/{arch}");
            assert_eq!(node(&r, &id)["status"], "reused", "{id}: {out}");
        }
        let index = raw(&format!("{}:1", env.repo(image))).unwrap();
        let a = &index["annotations"];
        assert_eq!(a["org.opencontainers.image.revision"], third.as_str());
        assert_eq!(
            a["org.opencontainers.image.created"],
            "2026-11-26T09:00:00Z"
        );
        assert!(
            a["org.opencontainers.image.description"]
                .as_str()
                .unwrap()
                .ends_with("2nd line"),
            "{index}"
        );
    }
    let index = raw(&format!("{repo}:1")).unwrap();
    for (arch, digest) in &children {
        assert_eq!(&child(&index, arch), digest, "{arch} was rebuilt");
    }
    assert_ne!(registry_digest(&format!("{repo}:1")), moving);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn annotations_and_dated_tags() {
    annotations_and_dated_tags_on(false);
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn buildx_annotations_and_dated_tags() {
    annotations_and_dated_tags_on(true);
}

/// `mab mirror` carries the upstream's cosign signatures: of the index when copied whole, of
/// each platform image copied; before the tag, byte for byte.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn mirrors_carry_upstream_signatures() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("mirror-sig") else {
        return;
    };
    let key = genkey(env.path(), "key");
    // The upstream: an image this test signs, in its own repository.
    env.write(
        "images.kdl",
        r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; }
profile "local-buildah" { inherits "local"; backend "buildah"; sign key="env:MAB_SIGNING_KEY"; }
defaults { platforms "linux/amd64" "linux/arm64"; }
mirror "whole" from="${local_registry}/platform/app" insecure=#true { tags "1"; }
mirror "amd64" from="${local_registry}/platform/app" insecure=#true {
    tags "1"
    platforms "linux/amd64"
}
image "app" { version "1"; }
"#,
    );
    env.copy_image("app");
    let o = env
        .command(&["build", "app"])
        .env("MAB_SIGNING_KEY", &key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let upstream = env.repo("app");
    let index = raw(&format!("{upstream}:1")).unwrap();
    let index_digest = registry_digest(&format!("{upstream}:1"));
    let sig = |repo: &str, digest: &str| {
        let reference = format!("{repo}:sha256-{}.sig", digest.trim_start_matches("sha256:"));
        raw(&reference).map(|_| registry_digest(&reference))
    };
    let (amd64, arm64) = (child(&index, "amd64"), child(&index, "arm64"));
    for d in [&index_digest, &amd64, &arm64] {
        assert!(
            sig(&upstream, d).is_some(),
            "the upstream is not signed: {d}"
        );
    }
    // `mab mirror` needs no key: it copies the signatures that exist.
    let (code, out, err) = env.mab(&["mirror"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let whole = format!("{}/{}/platform/thirdparty/whole", env.registry, env.ns);
    let filtered = format!("{}/{}/platform/thirdparty/amd64", env.registry, env.ns);
    assert_eq!(registry_digest(&format!("{whole}:1")), index_digest);
    for d in [&index_digest, &amd64, &arm64] {
        assert_eq!(sig(&whole, d), sig(&upstream, d), "{d}");
    }
    assert_eq!(sig(&filtered, &amd64), sig(&upstream, &amd64));
    assert!(sig(&filtered, &arm64).is_none(), "arm64 was not mirrored");
    assert!(sig(&filtered, &index_digest).is_none());
}
