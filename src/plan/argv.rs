//! Command lines as data: arguments that may hold digest and file placeholders, and the
//! commands made of them. How each node's commands are derived is `command.rs`.

use serde::{Serialize, Serializer};

use super::NodeId;

/// One piece of an argument: literal text, or the digest a node publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Digest(NodeId),
    /// The digest of the image an upstream reference (a Dockerfile base) names for a
    /// platform (`None`: of the whole index), read when the node runs.
    Upstream {
        reference: String,
        platform: Option<String>,
    },
    /// What a file an earlier command of the node wrote holds (buildah's `--iidfile`).
    File(String),
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
                Part::Upstream {
                    reference,
                    platform,
                } => match platform {
                    Some(p) => format!("{{upstream:{reference}@{p}}}"),
                    None => format!("{{upstream:{reference}}}"),
                },
                Part::File(path) => format!("{{file:{path}}}"),
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

/// One command: program and arguments, what it reads on standard input (a test's
/// Dockerfile under buildx, or a file an earlier command wrote), and the file its standard
/// output goes to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<Arg>,
    pub stdin: Option<String>,
    pub stdin_file: Option<String>,
    pub stdout_file: Option<String>,
}

/// JSON: an argv array; a command with input or output is `{"argv": […], "stdin": "…",
/// "stdin_file": "…", "stdout_file": "…"}` with the fields it has.
impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.stdin.is_none() && self.stdin_file.is_none() && self.stdout_file.is_none() {
            return self.argv.serialize(s);
        }
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Command", 4)?;
        st.serialize_field("argv", &self.argv)?;
        if let Some(input) = &self.stdin {
            st.serialize_field("stdin", input)?;
        }
        if let Some(path) = &self.stdin_file {
            st.serialize_field("stdin_file", path)?;
        }
        if let Some(path) = &self.stdout_file {
            st.serialize_field("stdout_file", path)?;
        }
        st.end()
    }
}

impl Command {
    pub fn new(program: &str) -> Command {
        Command {
            argv: vec![Arg::lit(program)],
            stdin: None,
            stdin_file: None,
            stdout_file: None,
        }
    }

    pub fn stdin(mut self, input: String) -> Command {
        self.stdin = Some(input);
        self
    }

    /// Read standard input from `path` (relative to the manifest's directory).
    pub fn stdin_from(mut self, path: impl Into<String>) -> Command {
        self.stdin_file = Some(path.into());
        self
    }

    /// Write standard output to `path` (relative to the manifest's directory).
    pub fn stdout_to(mut self, path: impl Into<String>) -> Command {
        self.stdout_file = Some(path.into());
        self
    }

    pub fn arg(mut self, a: impl Into<Arg>) -> Command {
        self.argv.push(a.into());
        self
    }

    pub fn args<I, A>(mut self, items: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: Into<Arg>,
    {
        self.argv.extend(items.into_iter().map(Into::into));
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
        self.argv
            .iter()
            .map(Arg::display)
            .collect::<Vec<_>>()
            .join(" ")
    }
}
