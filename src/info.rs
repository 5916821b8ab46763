//! `mab info` (the resolved profile) and `mab list` (images × versions × variants × platforms).

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::json;

use crate::manifest::Model;

pub fn info_text(model: &Model) -> String {
    let p = &model.profile;
    let mut out = String::new();
    let _ = writeln!(out, "profile    {}", p.name);
    if !p.inherits.is_empty() {
        let _ = writeln!(out, "inherits   {}", p.inherits.join(" → "));
    }
    let _ = writeln!(out, "profiles   {}", model.profiles.join(", "));
    let _ = writeln!(
        out,
        "registry   {}{}",
        p.registry,
        if p.insecure {
            " (insecure: plain HTTP / unverified TLS)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "backend    {}", p.backend);
    let _ = writeln!(out, "push       {}", if p.push { "yes" } else { "no" });
    let _ = writeln!(
        out,
        "extra tags {}",
        if p.extra_tags.is_empty() {
            "none".to_owned()
        } else {
            p.extra_tags.join(", ")
        }
    );
    let platforms: BTreeSet<&str> = model
        .versions
        .iter()
        .flat_map(|v| v.platform_names())
        .collect();
    let _ = writeln!(
        out,
        "platforms  {}",
        platforms.into_iter().collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        out,
        "mirrors    {} into {}/thirdparty/",
        model.mirrors.len(),
        p.registry
    );
    let _ = writeln!(
        out,
        "images     {} ({} image versions)",
        model.images.len(),
        model.versions.len()
    );
    let caches = cache_repos(model);
    let _ = writeln!(
        out,
        "cache      {}",
        if caches.is_empty() {
            "disabled".to_owned()
        } else {
            caches.join(", ")
        }
    );
    if model.builders.is_empty() {
        let _ = writeln!(out, "builders   none (every platform builds here)");
    } else {
        for b in &model.builders {
            let platforms: Vec<&str> = b.platforms.iter().map(|p| p.as_str()).collect();
            let _ = writeln!(
                out,
                "builder    {}: {}{}",
                b.name,
                platforms.join(", "),
                b.endpoint
                    .as_ref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !model.vars.is_empty() {
        for (k, v) in &model.vars {
            let _ = writeln!(out, "var        {k} = {v}");
        }
    }
    out
}

/// Distinct cache repositories (without the per-platform tag), sorted.
fn cache_repos(model: &Model) -> Vec<String> {
    let set: BTreeSet<String> = model
        .versions
        .iter()
        .flat_map(|v| &v.platforms)
        .filter_map(|p| p.cache.as_ref())
        .map(|c| {
            c.reference
                .rsplit_once(':')
                .map_or(c.reference.clone(), |(r, _)| r.to_owned())
        })
        .collect();
    set.into_iter().collect()
}

pub fn info_json(model: &Model) -> String {
    let p = &model.profile;
    let builders: Vec<_> = model
        .builders
        .iter()
        .map(|b| json!({"name": b.name, "platforms": b.platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>(), "endpoint": b.endpoint}))
        .collect();
    let v = json!({
        "profile": p.name,
        "inherits": p.inherits,
        "profiles": model.profiles,
        "registry": p.registry,
        "insecure": p.insecure,
        "backend": p.backend,
        "push": p.push,
        "extra_tags": p.extra_tags,
        "platforms": model.versions.iter().flat_map(|v| v.platform_names()).collect::<BTreeSet<_>>(),
        "cache": cache_repos(model),
        "builders": builders,
        "vars": model.vars,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

pub fn list_text(model: &Model, picked: &BTreeSet<usize>) -> String {
    let rows: Vec<[String; 5]> = picked
        .iter()
        .map(|&i| {
            let v = &model.versions[i];
            [
                v.image.clone(),
                v.version.clone(),
                v.variant.clone().unwrap_or_else(|| "-".to_owned()),
                v.platform_names().collect::<Vec<_>>().join(","),
                v.tags.join(","),
            ]
        })
        .collect();
    let header = ["IMAGE", "VERSION", "VARIANT", "PLATFORMS", "TAGS"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 5]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                let _ = write!(l, "{:w$}  ", c, w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&mut out, header);
    for r in &rows {
        line(&mut out, [&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    out
}

pub fn list_json(model: &Model, picked: &BTreeSet<usize>) -> String {
    let items: Vec<_> = picked
        .iter()
        .map(|&i| {
            let v = &model.versions[i];
            json!({
                "image": v.image, "version": v.version, "variant": v.variant, "key": v.key,
                "platforms": v.platform_names().collect::<Vec<_>>(), "tags": v.tags,
                "context": v.context, "dockerfile": v.dockerfile,
            })
        })
        .collect();
    format!(
        "{}\n",
        serde_json::to_string_pretty(&items).unwrap_or_default()
    )
}
