//! Command lines of plan nodes, per backend. Digests that are only known when the
//! plan runs appear as [`Part::Digest`] placeholders naming the node that produces them.

use serde::{Serialize, Serializer};

/// One piece of an argument: literal text, or the digest a node publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Digest(String),
}

/// One argument, possibly mixing literal text and digest placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg(pub Vec<Part>);

impl Arg {
    pub fn lit(s: impl Into<String>) -> Arg {
        Arg(vec![Part::Lit(s.into())])
    }

    /// The placeholder form used in JSON and text output: `{digest:NODE}`.
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.clone(),
                Part::Digest(id) => format!("{{digest:{id}}}"),
            })
            .collect()
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::lit(s)
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::lit(s)
    }
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display())
    }
}

/// One command: program and arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Command(pub Vec<Arg>);

impl Command {
    pub fn new(program: &str) -> Command {
        Command(vec![Arg::lit(program)])
    }

    pub fn arg(mut self, a: impl Into<Arg>) -> Command {
        self.0.push(a.into());
        self
    }

    pub fn args<I, A>(mut self, items: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: Into<Arg>,
    {
        self.0.extend(items.into_iter().map(Into::into));
        self
    }

    pub fn opt(self, flag: &str, value: Option<impl Into<Arg>>) -> Command {
        match value {
            Some(v) => self.arg(flag).arg(v),
            None => self,
        }
    }

    pub fn when(self, cond: bool, a: impl Into<Arg>) -> Command {
        if cond { self.arg(a) } else { self }
    }

    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(Arg::display)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where the digest a node publishes can be read once its commands ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestOut {
    /// The node publishes nothing others pin to.
    None,
    /// The last command prints the digest on stdout.
    Stdout,
    /// A command writes it to the node's digest file itself (`--digestfile`).
    File,
    /// `docker buildx build --metadata-file PATH` writes it as `containerimage.digest`.
    BuildxMetadata(String),
}

/// `.mab/digests/<id>` with the id made safe as a file name.
pub fn digest_file(id: &str) -> String {
    format!(".mab/digests/{}", file_stem(id))
}

pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
