//! Diagnostics: every manifest error is a located, labelled miette diagnostic.
//!
//! A phase collects all of its errors in a [`Diagnostics`] list instead of
//! stopping at the first; the list is rendered once, sorted by position.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity,
    SourceSpan,
};

/// The text of one file, shared by every diagnostic that points into it.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub text: Arc<String>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: Arc::from(name.into()),
            text: Arc::new(text.into()),
        }
    }
}

/// One diagnostic: a message, a primary labelled span, optional extra labels and help.
#[derive(Debug, Clone)]
pub struct Diag {
    pub severity: Severity,
    pub message: String,
    /// `None` for errors that are not located in a file (command-line errors).
    pub span: Option<SourceSpan>,
    pub label: String,
    pub others: Vec<(SourceSpan, String)>,
    pub help: Option<String>,
    pub source: Option<Source>,
}

impl Diag {
    pub fn error(span: SourceSpan, message: impl Into<String>) -> Self {
        Diag {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            label: "here".to_owned(),
            others: Vec::new(),
            help: None,
            source: None,
        }
    }

    pub fn warning(span: SourceSpan, message: impl Into<String>) -> Self {
        Diag {
            severity: Severity::Warning,
            ..Diag::error(span, message)
        }
    }

    /// An error that is not located in a file, e.g. a bad command-line value.
    /// The same diagnostic as a warning.
    pub fn warn(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn plain(message: impl Into<String>) -> Self {
        Diag {
            span: None,
            ..Diag::error(SourceSpan::from(0..0), message)
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn also(mut self, span: SourceSpan, label: impl Into<String>) -> Self {
        self.others.push((span, label.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn in_source(mut self, source: &Source) -> Self {
        if self.source.is_none() {
            self.source = Some(source.clone());
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn sort_key(&self) -> (Option<Arc<str>>, usize, usize) {
        (
            self.source.as_ref().map(|s| s.name.clone()),
            self.span.map_or(0, |s| s.offset()),
            self.span.map_or(0, |s| s.len()),
        )
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diag {}

/// The miette view of a [`Diag`]; holds the named source it renders against.
struct Rendered<'a> {
    diag: &'a Diag,
    source: Option<CharColumns>,
}

/// A named source whose columns count characters, not bytes (miette counts bytes, so
/// `image "é" { … }` would put every later error two columns too far right).
struct CharColumns(NamedSource<Arc<String>>, Arc<String>);

impl miette::SourceCode for CharColumns {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.0.read_span(span, before, after)?;
        let text = self.1.as_str();
        let at = inner.span().offset().min(text.len());
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let column = text
            .get(line_start..at)
            .map_or(inner.column(), |t| t.chars().count());
        Ok(Box::new(miette::MietteSpanContents::new_named(
            inner.name().unwrap_or_default().to_owned(),
            inner.data(),
            *inner.span(),
            inner.line(),
            column,
            inner.line_count(),
        )))
    }
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.diag.fmt(f)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl Diagnostic for Rendered<'_> {
    fn severity(&self) -> Option<Severity> {
        Some(self.diag.severity)
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.diag.span?;
        self.source.as_ref()?;
        let primary = LabeledSpan::new_primary_with_span(Some(self.diag.label.clone()), span);
        let others = self
            .diag
            .others
            .iter()
            .map(|(s, l)| LabeledSpan::new_with_span(Some(l.clone()), *s));
        Some(Box::new(std::iter::once(primary).chain(others)))
    }
}

/// All diagnostics of a phase, in the order they were found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diag>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, diag: Diag) {
        self.items.push(diag);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diag::is_error)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diag> {
        self.items.iter()
    }

    /// Attach `source` to every diagnostic that has none yet.
    pub fn in_source(mut self, source: &Source) -> Self {
        for d in &mut self.items {
            if d.source.is_none() {
                d.source = Some(source.clone());
            }
        }
        self
    }

    /// Sorted by file and position; duplicates (same span and message) dropped.
    pub fn sorted(mut self) -> Self {
        self.items.sort_by_key(Diag::sort_key);
        self.items.dedup_by(|a, b| {
            a.span == b.span && a.message == b.message && a.severity == b.severity
        });
        self
    }

    /// Render every diagnostic to `out`, then a one-line count of errors and warnings.
    pub fn render(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false)
            .with_word_separator(textwrap::WordSeparator::AsciiSpace);
        for diag in &self.items {
            let rendered = Rendered {
                diag,
                source: diag.source.as_ref().map(|s| {
                    CharColumns(NamedSource::new(&*s.name, s.text.clone()), s.text.clone())
                }),
            };
            let mut text = String::new();
            handler
                .render_report(&mut text, &rendered)
                .map_err(io::Error::other)?;
            writeln!(out, "{}", text.trim_end())?;
        }
        let errors = self.items.iter().filter(|d| d.is_error()).count();
        let warnings = self.items.len() - errors;
        if errors > 0 {
            writeln!(
                out,
                "\n{} {}{}",
                errors,
                if errors == 1 { "error" } else { "errors" },
                match warnings {
                    0 => String::new(),
                    1 => ", 1 warning".to_owned(),
                    n => format!(", {n} warnings"),
                }
            )?;
        }
        Ok(())
    }

    /// Render to stderr, in color when stderr is a terminal and `NO_COLOR` is unset.
    pub fn eprint(&self) {
        let color = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut err = io::stderr().lock();
        // Nothing sensible is left to do when stderr itself is gone.
        let _ = self.render(&mut err, color);
    }
}

impl From<Diag> for Diagnostics {
    fn from(d: Diag) -> Self {
        Diagnostics { items: vec![d] }
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diag;
    type IntoIter = std::vec::IntoIter<Diag>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}
