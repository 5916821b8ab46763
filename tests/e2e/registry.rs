//! The registry as real ones behave, through the fault proxy: tokens scoped to one repository
//! (Docker Hub, GHCR, quay.io), a tag whose PUT fails between two others.

use super::*;

/// The scopes of each token request in the proxy's log, in order.
fn token_requests(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.starts_with("GET /token"))
        .map(|l| {
            let query = l.split_once('?').map_or("", |q| q.1);
            let mut scopes: Vec<String> = query
                .split('&')
                .filter_map(|p| p.strip_prefix("scope="))
                .map(|s| {
                    s.replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%2C", ",")
                })
                .collect();
            scopes.sort();
            scopes.join(" ")
        })
        .collect()
}

#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn tokens_scoped_to_one_repository_serve_concurrent_work_on_three() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("scoped") else {
        return;
    };
    let proxy = crate::fault_proxy::http(&env.registry);
    let credentials = base64_encode(b"robot:t0ken-secret");
    // Each image's platform images, in place before the registry asks for tokens.
    let images = ["x", "y", "z"];
    for image in images {
        copy_all(
            &format!("{}/library/alpine:3.15", env.registry),
            &format!("{}/{}/platform/{image}:src", env.registry, env.ns),
        );
    }
    let upstream = raw(&format!("{}/library/alpine:3.15", env.registry)).unwrap();
    proxy.require_scoped_bearer(&credentials);
    env.write(
        "images.kdl",
        &format!(
            "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\n\
             profile \"local-buildah\" {{ registry \"{proxy}/{ns}/platform\" insecure=#true; backend \"buildah\"; }}\n\
             defaults {{ platforms \"linux/amd64\" \"linux/arm64\"; }}\n\
             mirror \"a\" from=\"{proxy}/library/alpine\" {{ tags \"3.15\"; }}\n\
             mirror \"b\" from=\"{proxy}/library/alpine\" {{ tags \"3.15\"; }}\n\
             mirror \"c\" from=\"{proxy}/library/alpine\" {{ tags \"3.15\"; }}\n\
             image \"x\" {{ version \"1\"; }}\nimage \"y\" {{ version \"1\"; }}\nimage \"z\" {{ version \"1\"; }}\n",
            proxy = proxy.addr,
            ns = env.ns
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
    // Each run with three jobs at once; no credential reaches its output.
    let run = |args: &[&str]| {
        let o = env
            .command(args)
            .env("DOCKER_CONFIG", &config)
            .output()
            .unwrap();
        let out = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(0), "{args:?}: {out}");
        assert!(
            !out.contains("t0ken-secret")
                && !out.contains(&credentials)
                && !out.contains("token-secret-"),
            "{out}"
        );
        out
    };
    let out = run(&["mirror", "--jobs", "3"]);
    assert!(!out.contains("401"), "{out}");
    for m in ["a", "b", "c"] {
        assert_eq!(
            raw(&format!(
                "{}/{}/platform/thirdparty/{m}:3.15",
                env.registry, env.ns
            ))
            .unwrap(),
            upstream
        );
    }
    let mirrors = token_requests(&proxy.log());
    // The three merges at once, from the digests of each image's platform images.
    for image in images {
        let repository = format!("{}/{}/platform/{image}", proxy.addr, env.ns);
        merge_metadata(&env.path().join("dist"), image, &repository, &upstream);
    }
    proxy.clear();
    run(&["merge", "--metadata-dir", "dist", "--jobs", "3"]);
    for image in images {
        let index = raw(&format!("{}/{}/platform/{image}:1", env.registry, env.ns)).unwrap();
        assert_eq!(
            platforms(&index),
            ["linux/amd64", "linux/arm64"].map(String::from).into()
        );
    }
    let merges = token_requests(&proxy.log());
    // Each scope's token is asked for once: one token request answers every request that
    // needs it at the same time, and work on one repository never replaces another's token.
    for requests in [&mirrors, &merges] {
        let mut seen = BTreeSet::new();
        for r in requests.iter() {
            assert!(seen.insert(r), "{r} was requested twice: {requests:#?}");
        }
    }
    // Mirrors: upstream's pull (once for the three), and for each target its pull, its push,
    // and its push with upstream's pull (the cross-repository mount); merges: each image's
    // pull and push. (Seen: 10 and 6.)
    assert!(mirrors.len() <= 1 + 3 * 3, "{mirrors:#?}");
    assert!(merges.len() <= 3 * 2, "{merges:#?}");
}

/// `metadata-dir` files for a merge of `image:1` from the amd64 and arm64 images of `index`
/// (already in `repository`).
fn merge_metadata(dir: &Path, image: &str, repository: &str, index: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    for arch in ["amd64", "arm64"] {
        let metadata = serde_json::json!({
            "id": format!("build:{image}:1@linux/{arch}"),
            "image": image,
            "key": format!("{image}:1"),
            "platform": format!("linux/{arch}"),
            "repository": repository,
            "digest": child(index, arch),
        });
        std::fs::write(
            dir.join(format!("build_{image}_1_linux_{arch}.json")),
            metadata.to_string(),
        )
        .unwrap();
    }
}

/// A merge whose second tag cannot be written says which tags moved and which did not; run
/// again, it writes only the tags that were left, and the first keeps its index.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn a_merge_stopped_between_two_tags_says_which_and_a_rerun_converges() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("tagfault") else {
        return;
    };
    let proxy = crate::fault_proxy::http(&env.registry);
    copy_all(
        &format!("{}/library/alpine:3.15", env.registry),
        &format!("{}/{}/platform/x:src", env.registry, env.ns),
    );
    let upstream = raw(&format!("{}/library/alpine:3.15", env.registry)).unwrap();
    env.write(
        "images.kdl",
        &format!(
            "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\n\
             profile \"local-buildah\" {{ registry \"{}/{}/platform\" insecure=#true; backend \"buildah\"; }}\n\
             defaults {{ platforms \"linux/amd64\" \"linux/arm64\"; }}\n\
             image \"x\" {{ version \"1\"; tag \"1\" \"1.0\" \"latest\"; }}\n",
            proxy.addr, env.ns
        ),
    );
    let repository = format!("{}/{}/platform/x", proxy.addr, env.ns);
    merge_metadata(&env.path().join("dist"), "x", &repository, &upstream);
    proxy.rule(
        "PUT",
        "/manifests/1.0",
        1,
        crate::fault_proxy::Fault::Status(403, Vec::new(), "denied".into()),
    );
    let merge = || env.mab(&["merge", "--metadata-dir", "dist", "--report", "r.json"]);
    let (code, out, err) = merge();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("tags holding the new index: 1; not moved: 1.0, latest"),
        "{out}"
    );
    let direct = |tag: &str| raw(&format!("{}/{}/platform/x:{tag}", env.registry, env.ns));
    let first = registry_digest(&format!("{}/{}/platform/x:1", env.registry, env.ns));
    assert!(direct("1.0").is_none() && direct("latest").is_none());
    // Run again: only the tags left are written.
    proxy.clear();
    let (code, out, err) = merge();
    assert_eq!(code, 0, "{out}\n{err}");
    let puts: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|l| l.starts_with("PUT ") || l.starts_with("POST ") || l.starts_with("DELETE "))
        .collect();
    assert_eq!(
        puts,
        [
            format!("PUT /v2/{}/platform/x/manifests/1.0", env.ns),
            format!("PUT /v2/{}/platform/x/manifests/latest", env.ns),
        ],
        "{out}"
    );
    for tag in ["1", "1.0", "latest"] {
        assert_eq!(
            registry_digest(&format!("{}/{}/platform/x:{tag}", env.registry, env.ns)),
            first,
            "{tag}"
        );
    }
}

/// The limits the README states, measured at the registry: at most 8 requests in flight per
/// registry host whatever `--jobs` is, and one writer per repository at a time.
#[test]
#[ignore = "needs the test environment: scripts/test (registry, buildah, BuildKit, emulation)"]
fn at_most_eight_operations_per_host_and_one_writer_per_repository() {
    use crate::fault_proxy::Fault;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(env) = Env::empty("limits") else {
        return;
    };
    let src = crate::fault_proxy::http(&env.registry);
    let dst = crate::fault_proxy::http(&env.registry);
    // Twelve mirrors into twelve repositories, and one mirror of two tags into one.
    let mut manifest = String::from(
        "var \"upstream\" \"x\"\nvar \"local_registry\" \"x\"\n\
         profile \"local-buildah\" { registry \"${local_registry}/platform\" insecure=#true; backend \"buildah\"; }\n\
         defaults { platforms \"linux/amd64\"; }\n",
    );
    for i in 0..12 {
        manifest.push_str(&format!(
            "mirror \"m{i}\" from=\"${{upstream}}/library/alpine\" {{ tags \"3.15\"; }}\n"
        ));
    }
    manifest.push_str(
        "mirror \"two\" from=\"${upstream}/library/alpine\" { tags \"3.15\" \"3.16\"; }\n",
    );
    env.write("images.kdl", &manifest);
    // Every request to the target is slow, so whatever may overlap does.
    for method in ["HEAD", "GET", "PUT", "POST", "PATCH"] {
        dst.rule(
            method,
            "/v2/",
            10_000,
            Fault::Stall(Duration::from_millis(150)),
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_mab"))
        .current_dir(env.path())
        .env("NO_COLOR", "1")
        .env_remove("MAB_PROFILE")
        .args(["--profile", "local-buildah", "--var"])
        .arg(format!("upstream={}", src.addr))
        .arg("--var")
        .arg(format!("local_registry={}/{}", dst.addr, env.ns))
        .args(["mirror", "--jobs", "16"])
        .output()
        .unwrap();
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    let (most, writers) = (dst.max_in_flight(), dst.max_writers_per_repository());
    // The limit binds (16 jobs, 13 mirrors), and holds.
    assert!(
        (5..=8).contains(&most),
        "{most} requests at once at one host"
    );
    assert_eq!(writers, 1, "two writes to one repository at once");
    let puts = dst
        .log()
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains("/thirdparty/two/manifests/3.1"))
        .count();
    assert_eq!(puts, 2, "both tags of `two` were written");
}
