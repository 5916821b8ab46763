//! Content hashes of build contexts: what a build can see, honouring `.dockerignore`.
//!
//! The walk (walkdir) never follows a link: a symbolic link counts as its target's text,
//! so nothing outside the context is read. Files are hashed in parallel (rayon), each
//! streamed in 1 MiB pieces with BLAKE3. The context hash covers each file's relative
//! path, kind, executable bit and content hash, in path order, so it is the same on every
//! machine and changes exactly when the build could see a change.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use walkdir::WalkDir;

/// Which builder's ignore-file conventions apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// buildx (BuildKit): `<Dockerfile>.dockerignore`, else `.dockerignore`.
    BuildKit,
    /// buildah and podman: `.containerignore`, else `.dockerignore`.
    Containers,
}

impl Rules {
    pub fn of(backend: crate::manifest::model::Backend) -> Rules {
        match backend {
            crate::manifest::model::Backend::Buildx => Rules::BuildKit,
            _ => Rules::Containers,
        }
    }
}

pub use crate::dockerignore::DockerIgnore;

/// The ignore file the builder itself reads for a build of `dockerfile` in `context`, and its
/// text: BuildKit prefers `<Dockerfile>.dockerignore` beside the Dockerfile over the context's
/// `.dockerignore`; buildah and podman prefer `.containerignore` over `.dockerignore`.
pub fn ignore_file(
    context: &Path,
    dockerfile: &Path,
    rules: Rules,
) -> io::Result<Option<(PathBuf, String)>> {
    let first = match rules {
        Rules::BuildKit => {
            let mut own = dockerfile.as_os_str().to_owned();
            own.push(".dockerignore");
            PathBuf::from(own)
        }
        Rules::Containers => context.join(".containerignore"),
    };
    for c in [first, context.join(".dockerignore")] {
        match std::fs::read(&c) {
            Ok(bytes) => return Ok(Some((c, String::from_utf8_lossy(&bytes).into_owned()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", c.display()))),
        }
    }
    Ok(None)
}

impl DockerIgnore {
    /// The rules of the ignore file the builder reads ([`ignore_file`]); a pattern the builder
    /// would refuse is an error naming the file and the line.
    pub fn for_build(context: &Path, dockerfile: &Path, rules: Rules) -> io::Result<DockerIgnore> {
        match ignore_file(context, dockerfile, rules)? {
            Some((path, text)) => DockerIgnore::parse(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            None => Ok(DockerIgnore::default()),
        }
    }
}

/// The hash of a context and what went into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextHash {
    /// `blake3:<hex>`.
    pub digest: String,
    pub files: usize,
    pub bytes: u64,
}

enum Kind {
    File { executable: bool },
    Link(PathBuf),
}

struct Entry {
    rel: String,
    path: PathBuf,
    kind: Kind,
    len: u64,
}

thread_local! {
    /// One read buffer per hashing thread, not one per file.
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
}

/// Hash a file's content, streamed through the thread's buffer.
/// `hash_file_unnamed`, with the file named in its error.
fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    hash_file_unnamed(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn hash_file_unnamed(path: &Path) -> io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut file = File::open(path)?;
    BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok::<(), io::Error>(())
    })?;
    Ok(hasher.finalize())
}

/// Hash what a build of `context` can see, plus `dockerfile` (which may lie elsewhere
/// or be ignored by the context, and is read all the same).
pub fn hash_context(context: &Path, dockerfile: &Path, rules: Rules) -> io::Result<ContextHash> {
    let ignore = DockerIgnore::for_build(context, dockerfile, rules)?;
    let prune = !ignore.has_exceptions();
    let mut entries = Vec::new();
    let walk = WalkDir::new(context)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let Ok(rel) = e.path().strip_prefix(context) else {
                return true;
            };
            let rel = rel.to_string_lossy();
            // A directory left out whole is not walked, unless an exception may re-include part of it.
            rel.is_empty() || !(prune && e.file_type().is_dir() && ignore.excluded(&rel))
        });
    for e in walk {
        let e = e.map_err(io::Error::other)?;
        let rel = e
            .path()
            .strip_prefix(context)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        if rel.is_empty() || e.file_type().is_dir() || ignore.excluded(&rel) {
            continue;
        }
        let meta = e.metadata().map_err(io::Error::other)?;
        let kind = if e.file_type().is_symlink() {
            Kind::Link(std::fs::read_link(e.path()).map_err(|err| {
                io::Error::new(err.kind(), format!("{}: {err}", e.path().display()))
            })?)
        } else if e.file_type().is_file() {
            use std::os::unix::fs::PermissionsExt;
            Kind::File {
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        } else {
            // Sockets, fifos, devices: a build cannot copy them.
            continue;
        };
        entries.push(Entry {
            rel,
            path: e.path().to_path_buf(),
            kind,
            len: meta.len(),
        });
    }
    let hashes: Vec<io::Result<blake3::Hash>> = entries
        .par_iter()
        .map(|e| match &e.kind {
            Kind::File { .. } => hash_file(&e.path),
            Kind::Link(target) => Ok(blake3::hash(target.to_string_lossy().as_bytes())),
        })
        .collect();
    let mut total = blake3::Hasher::new();
    total.update(b"mab context v1\n");
    total.update(hash_file(dockerfile)?.as_bytes());
    let mut bytes = 0;
    for (e, h) in entries.iter().zip(hashes) {
        let h = h?;
        let kind = match &e.kind {
            Kind::File { executable: true } => "x",
            Kind::File { executable: false } => "f",
            Kind::Link(_) => "l",
        };
        total.update(e.rel.as_bytes());
        total.update(b"\0");
        total.update(kind.as_bytes());
        total.update(h.as_bytes());
        bytes += e.len;
    }
    Ok(ContextHash {
        digest: format!("blake3:{}", total.finalize().to_hex()),
        files: entries.len(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The builder's own ignore file decides: a file `app.Dockerfile.dockerignore` leaves in is
    /// seen by BuildKit even when `.dockerignore` leaves it out; buildah reads `.containerignore`.
    #[test]
    fn each_builder_reads_its_own_ignore_file() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        write(ctx, "app.Dockerfile", "FROM scratch\nCOPY . /\n");
        write(ctx, "app.Dockerfile.dockerignore", "*.tmp\n");
        write(ctx, ".dockerignore", "data/\n");
        write(ctx, ".containerignore", "*.md\n");
        write(ctx, "data/x", "1");
        write(ctx, "notes.md", "1");
        let df = ctx.join("app.Dockerfile");
        let kit = hash_context(ctx, &df, Rules::BuildKit).unwrap();
        let containers = hash_context(ctx, &df, Rules::Containers).unwrap();
        // BuildKit sees data/x (its ignore file does not name it); buildah does not see notes.md.
        write(ctx, "data/x", "2");
        assert_ne!(hash_context(ctx, &df, Rules::BuildKit).unwrap(), kit);
        assert_ne!(
            hash_context(ctx, &df, Rules::Containers).unwrap(),
            containers
        );
        let containers = hash_context(ctx, &df, Rules::Containers).unwrap();
        write(ctx, "notes.md", "2");
        assert_eq!(
            hash_context(ctx, &df, Rules::Containers).unwrap(),
            containers
        );
        // Without the per-Dockerfile file, BuildKit falls back to `.dockerignore`.
        std::fs::remove_file(ctx.join("app.Dockerfile.dockerignore")).unwrap();
        let kit = hash_context(ctx, &df, Rules::BuildKit).unwrap();
        write(ctx, "data/x", "3");
        assert_eq!(hash_context(ctx, &df, Rules::BuildKit).unwrap(), kit);
    }

    #[test]
    fn the_hash_changes_exactly_when_the_build_could_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        write(ctx, "Dockerfile", "FROM scratch\nCOPY . /\n");
        write(ctx, ".dockerignore", "ignored/\n*.log\n");
        write(ctx, "src/a.txt", "a");
        write(ctx, "ignored/big.bin", "x");
        write(ctx, "run.log", "1");
        let df = ctx.join("Dockerfile");
        let first = hash_context(ctx, &df, Rules::BuildKit).unwrap();
        assert_eq!(
            first,
            hash_context(ctx, &df, Rules::BuildKit).unwrap(),
            "deterministic"
        );
        assert_eq!(first.files, 3, "Dockerfile, .dockerignore, src/a.txt");
        // Ignored files do not count.
        write(ctx, "ignored/big.bin", "y");
        write(ctx, "run.log", "2");
        assert_eq!(hash_context(ctx, &df, Rules::BuildKit).unwrap(), first);
        // A visible file does.
        write(ctx, "src/a.txt", "b");
        let second = hash_context(ctx, &df, Rules::BuildKit).unwrap();
        assert_ne!(second, first);
        // So does the executable bit, and a rename.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            ctx.join("src/a.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let third = hash_context(ctx, &df, Rules::BuildKit).unwrap();
        assert_ne!(third, second);
        std::fs::rename(ctx.join("src/a.txt"), ctx.join("src/b.txt")).unwrap();
        assert_ne!(hash_context(ctx, &df, Rules::BuildKit).unwrap(), third);
    }

    #[test]
    fn links_are_never_followed_out_of_the_context() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", "s1");
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        write(ctx, "Dockerfile", "FROM scratch\n");
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), ctx.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), ctx.join("dirlink")).unwrap();
        let df = ctx.join("Dockerfile");
        let first = hash_context(ctx, &df, Rules::BuildKit).unwrap();
        // What the links point at changes; the context does not.
        write(outside.path(), "secret.txt", "s2");
        write(outside.path(), "more.txt", "m");
        assert_eq!(hash_context(ctx, &df, Rules::BuildKit).unwrap(), first);
    }
}
