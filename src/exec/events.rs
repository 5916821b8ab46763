//! What the engine tells the world, as typed events: a node started, a line of its output,
//! a note of the run (a registry retry, a signal), a node finished with its outcome. The
//! live view, plain lines and GitHub groups ([`super::report::Reporter`]) are one consumer;
//! a test's [`Recorder`] is another. Nothing in the engine prints.

use std::sync::Mutex;

use super::report::NodeResult;
use crate::plan::NodeId;

#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    Started {
        id: &'a NodeId,
    },
    Output {
        id: &'a NodeId,
        line: &'a str,
    },
    /// Of the run, not of one node.
    Note(&'a str),
    Finished(&'a NodeResult),
}

/// A consumer of events; called from any of the engine's tasks.
pub trait Sink: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Events as owned values, in the order they came: for tests.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Recorded>>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    Started(NodeId),
    Output(NodeId, String),
    Note(String),
    Finished(NodeId, super::report::Status),
}

impl Recorder {
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Sink for Recorder {
    fn event(&self, event: Event<'_>) {
        let e = match event {
            Event::Started { id } => Recorded::Started(id.clone()),
            Event::Output { id, line } => Recorded::Output(id.clone(), line.to_owned()),
            Event::Note(text) => Recorded::Note(text.to_owned()),
            Event::Finished(r) => Recorded::Finished(r.id.clone(), r.status),
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }
}
