//! The JSON form of a plan node (`schemas/plan.schema.json`), commands included.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::NodeId;
use super::argv::{Arg, Command};
use super::node::{Kind, Node, Work};
use crate::manifest::model::Cache;

/// The JSON shape of a node (`schemas/plan.schema.json`); field order is the JSON order.
#[derive(Serialize)]
struct NodeJson<'a> {
    id: &'a NodeId,
    kind: Kind,
    image: Option<&'a str>,
    version: Option<&'a str>,
    variant: Option<&'a str>,
    platform: Option<&'a str>,
    platforms: &'a [String],
    level: usize,
    needs: &'a [NodeId],
    #[serde(rename = "ref")]
    reference: &'a str,
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    builder: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dockerfile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a BTreeMap<String, Arg>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit_annotations: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_date_epoch: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dated_tags: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sign: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'a Cache>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attest: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuild_after: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_hash: Option<&'a str>,
    commands: Vec<Command>,
}

fn non_empty<K, V>(m: &BTreeMap<K, V>) -> Option<&BTreeMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let image = self.image();
        let build = self.as_build();
        NodeJson {
            id: &self.id,
            kind: self.kind(),
            image: image.map(|i| i.name.as_str()),
            version: image.map(|i| i.version.as_str()),
            variant: image.and_then(|i| i.variant.as_deref()),
            platform: self.platform(),
            platforms: self.platforms(),
            level: self.level,
            needs: &self.needs,
            reference: self.reference(),
            tags: self.tags(),
            source: match &self.work {
                Work::Mirror(m) => Some(m.source.as_str()),
                _ => None,
            },
            builder: self.builder(),
            context: build.map(|b| b.context.as_str()),
            dockerfile: build.map(|b| b.dockerfile.as_str()),
            target: build.and_then(|b| b.target.as_deref()),
            args: build.and_then(|b| non_empty(&b.args)),
            labels: build.and_then(|b| non_empty(&b.labels)),
            annotations: match &self.work {
                Work::Build(b) => non_empty(&b.annotations),
                Work::Merge(m) => non_empty(&m.annotations),
                _ => None,
            },
            commit_annotations: match &self.work {
                Work::Merge(m) if !m.commit_annotations.is_empty() => {
                    Some(m.commit_annotations.as_slice())
                }
                _ => None,
            },
            source_date_epoch: build.and_then(|b| b.epoch),
            dated_tags: match &self.work {
                Work::Merge(m) if !m.dated_tags.is_empty() => Some(m.dated_tags.as_slice()),
                _ => None,
            },
            sign: match &self.work {
                Work::Merge(m) => m.sign.as_deref(),
                _ => None,
            },
            cache: build.and_then(|b| b.cache.as_ref()),
            attest: build.and_then(|b| b.attest.as_deref()),
            rebuild_after: build.and_then(|b| b.rebuild_after.as_ref().map(|r| r.1.as_str())),
            test: match &self.work {
                Work::Test(t) => Some(t.test.as_slice()),
                _ => None,
            },
            decision: self.decision.as_ref().map(|d| d.decision.as_str()),
            reason: self.decision.as_ref().map(|d| d.reason.as_str()),
            input_hash: self.decision.as_ref().and_then(|d| d.input_hash.as_deref()),
            commands: self.commands(),
        }
        .serialize(s)
    }
}
