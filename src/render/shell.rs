//! A POSIX shell script of the exact commands, in plan order.

use std::borrow::Cow;
use std::fmt::Write;

use crate::plan::command::{Arg, Command, DigestOut, Part, digest_file};
use crate::plan::{ExternalSource, Plan};

fn quote(s: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:@,=+-%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    // `try_quote` only fails on NUL bytes, which a manifest string cannot hold.
    shlex::try_quote(s).unwrap_or(Cow::Borrowed("''"))
}

fn arg(a: &Arg) -> String {
    let word: String =
        a.0.iter()
            .map(|p| match p {
                Part::Lit(s) if s.is_empty() => String::new(),
                Part::Lit(s) => quote(s).into_owned(),
                Part::Digest(id) => format!("\"$(cat {})\"", quote(&digest_file(id))),
                Part::File(path) => format!("\"$(cat {})\"", quote(path)),
                Part::Upstream {
                    reference,
                    platform,
                } => match platform {
                    Some(p) => format!(
                        "\"$(crane digest --platform {} {})\"",
                        quote(p),
                        quote(reference)
                    ),
                    None => format!("\"$(crane digest {})\"", quote(reference)),
                },
            })
            .collect();
    // An empty argument is still an argument: dropping it would shift every later one.
    if word.is_empty() {
        "''".to_owned()
    } else {
        word
    }
}

fn command(c: &Command) -> String {
    let mut line = c.argv.iter().map(arg).collect::<Vec<_>>().join(" ");
    if let Some(path) = &c.stdin_file {
        line = format!("{line} < {}", quote(path));
    }
    if let Some(path) = &c.stdout_file {
        line = format!("{line} > {}", quote(path));
    }
    match &c.stdin {
        Some(input) => format!("printf '%s' {} | {line}", quote(input)),
        None => line,
    }
}

/// The script, as one string.
pub fn render(plan: &Plan) -> String {
    let mut out = Vec::new();
    let _ = write(plan, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Write the script to `w`: the nodes' sections are rendered in parallel batches and written
/// in plan order, never joined into one more copy.
pub fn write(plan: &Plan, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(
        out,
        "# mab plan --format shell: profile `{}`, backend {}, registry {}",
        plan.profile, plan.backend, plan.registry
    );
    let _ = writeln!(
        out,
        "# {} ({}). Run from the directory that holds the manifest;",
        super::count(plan.nodes.len(), "node"),
        super::counts(plan)
    );
    let _ = writeln!(
        out,
        "# each node's digest lands in .mab/digests/ for the nodes that pin it."
    );
    let _ = writeln!(out, "set -eu");
    let _ = writeln!(
        out,
        "mkdir -p .mab/digests .mab/metadata .mab/oci .mab/iid .mab/cid .mab/merge"
    );
    if !plan.external.is_empty() {
        let _ = writeln!(
            out,
            "\n# What this plan builds on and does not build: as published."
        );
    }
    for e in &plan.external {
        let noted = match e.source {
            ExternalSource::Registry => continue,
            ExternalSource::Metadata => {
                "its digest is the one the split-build metadata (--metadata-dir) of its job names"
                    .to_owned()
            }
            ExternalSource::Local => format!(
                "the local image {}, as an earlier run built it",
                e.reference
            ),
        };
        let _ = writeln!(out, "# {}: {noted}", e.id);
    }
    for e in plan
        .external
        .iter()
        .filter(|e| e.source == ExternalSource::Registry)
    {
        // Every need outside the plan lives in the registry the nodes publish to.
        let insecure = plan.nodes.iter().any(|n| n.publish.insecure);
        let crane = if insecure {
            "crane --insecure"
        } else {
            "crane"
        };
        let platform = e
            .platform
            .as_ref()
            .map(|p| format!(" --platform {}", quote(p)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{crane} digest{platform} {} > {}",
            quote(&e.reference),
            quote(&crate::plan::command::digest_file(&e.id))
        );
    }
    for b in &plan.builders {
        let check = format!(
            "docker buildx inspect {} --bootstrap > /dev/null",
            quote(&b.name)
        );
        match &b.create {
            Some(create) => {
                let _ = writeln!(out, "{check} 2>&1 || {{ {}; {check}; }}", command(create));
            }
            None => {
                let _ = writeln!(out, "{check}");
            }
        }
    }
    // Nodes render independently (commands derived once per node), in parallel batches:
    // a 10,000-build plan costs what its JSON costs.
    use rayon::prelude::*;
    w.write_all(out.as_bytes())?;
    const BATCH: usize = 64;
    // A few batches per core at a time, written before the next are rendered: the script
    // is never all in memory at once.
    let window = BATCH * 4 * rayon::current_num_threads().max(1);
    for (w0, group) in plan.nodes.chunks(window).enumerate() {
        let sections: Vec<String> = group
            .par_chunks(BATCH)
            .enumerate()
            .map(|(c, chunk)| {
                let mut out = String::new();
                for (i, n) in chunk.iter().enumerate() {
                    let at = w0 * window + c * BATCH + i;
                    if at == 0 || plan.nodes[at - 1].level != n.level {
                        let _ = writeln!(out, "\n# ---- level {}", n.level);
                    }
                    node(&mut out, n);
                }
                out
            })
            .collect();
        for s in sections {
            w.write_all(s.as_bytes())?;
        }
    }
    Ok(())
}

/// The commands of one node.
fn node(out: &mut String, n: &crate::plan::Node) {
    let _ = writeln!(out, "\n# {}", n.id);
    if let crate::plan::Work::Merge(crate::plan::MergeWork {
        sign: Some(key), ..
    }) = &n.work
    {
        let _ = writeln!(
            out,
            "# mab signs the index and each platform image with {key} (cosign's format) before\n\
             # any tag points at it; these commands sign nothing"
        );
    }
    let steps = crate::plan::command::for_node(n);
    let last = steps.commands.len().saturating_sub(1);
    let cleanup: Vec<String> = steps.cleanup.iter().map(command).collect();
    for (i, c) in steps.commands.iter().enumerate() {
        let mut line = command(c);
        if i == last && steps.digest == DigestOut::Stdout {
            line = format!("{line} > {}", quote(&digest_file(&n.id)));
        }
        if cleanup.is_empty() {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{line} || {{ {}; exit 1; }}", cleanup.join("; "));
        }
    }
    for c in &cleanup {
        let _ = writeln!(out, "{c}");
    }
    if let DigestOut::BuildxMetadata(path) = &steps.digest {
        let _ = writeln!(
            out,
            "jq -er '.\"containerimage.digest\"' {} > {}",
            quote(path),
            quote(&digest_file(&n.id))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_argument_stays_an_argument() {
        let c = Command::new("docker")
            .arg("--target")
            .arg("")
            .arg("--file")
            .arg("a b");
        assert_eq!(command(&c), "docker --target '' --file 'a b'");
    }
}
