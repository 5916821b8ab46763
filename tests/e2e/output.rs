//! What real builds print and what real clients read: output that is not UTF-8, the shell
//! plan run by a user's own tools, signatures checked by cosign.

use super::*;

/// Run `mab ARGS` in `env`, killing it (and failing) after `secs`.
fn mab_within(env: &Env, args: &[&str], secs: u64) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = env
        .command(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mab {args:?} did not finish in {secs} s; its output so far:\n{}\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&out_path).unwrap(),
        String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    )
}

const ONE_IMAGE: &str = r#"var "local_registry" "127.0.0.1:5000"
var "upstream" "docker.io"
profile "local" { registry "${local_registry}/platform" insecure=#true; backend "buildx"; }
profile "local-buildah" { inherits "local"; backend "buildah"; }
defaults { platforms "linux/amd64"; }
image "noisy" { version "1"; }
"#;

#[test]
fn a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build() {
    a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build_on(false);
}

#[test]
fn buildx_a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build() {
    a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build_on(true);
}

fn a_byte_that_is_not_utf8_in_the_build_output_does_not_hang_the_build_on(buildx: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = on(Env::empty("latin1"), buildx) else {
        return;
    };
    env.write("images.kdl", ONE_IMAGE);
    // `caf\351` is "café" in Latin-1, then ~110 KiB of output (BuildKit clips a step's log past 200 KiB/s): far more than a pipe holds.
    // (The namespace in the step keeps a layer cache from answering it without running.)
    env.write(
        "images/noisy/Dockerfile",
        &format!(
            "FROM {}/library/alpine:3.15\n\
             RUN echo {} && printf 'caf\\351\\n' && i=0 && while [ $i -lt 1200 ]; do \
             echo \"line $i ..........................................................................\"; \
             i=$((i+1)); done && echo all-output-written\n",
            env.registry, env.ns
        ),
    );
    let (code, out, err) = mab_within(&env, &["build"], 300);
    assert_eq!(code, 0, "{out}\n{err}");
    let log = std::fs::read(env.path().join(".mab/logs/build_noisy_1_linux_amd64.log")).unwrap();
    let log = String::from_utf8(log).expect("the log is UTF-8, the odd byte replaced");
    assert!(
        log.contains("caf\u{fffd}"),
        "the Latin-1 line was lost:\n{}",
        log.chars().take(3000).collect::<String>()
    );
    // Far more than a pipe holds came after the odd byte, to the step's last line.
    let after = &log[log.find("caf\u{fffd}").unwrap()..];
    let lines = after
        .lines()
        .filter(|l| l.contains("line ") && l.ends_with("...."))
        .count();
    assert_eq!(
        lines, 1200,
        "lines of output after the odd byte:\n{after:.3000}"
    );
    assert!(after.contains("line 1199 ...") && after.contains("all-output-written"));
    assert!(raw(&env.repo("noisy:1")).is_some(), "nothing was published");
}
