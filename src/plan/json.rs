//! The JSON form of a plan node (`schemas/plan.schema.json`), commands included.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::argv::{Arg, Command};
use super::node::{Kind, Node};
use crate::manifest::model::Cache;

/// The JSON shape of a node (`schemas/plan.schema.json`); field order is the JSON order.
#[derive(Serialize)]
struct NodeJson<'a> {
    id: &'a str,
    kind: Kind,
    image: &'a Option<String>,
    version: &'a Option<String>,
    variant: &'a Option<String>,
    platform: &'a Option<String>,
    platforms: &'a [String],
    level: usize,
    needs: &'a [String],
    #[serde(rename = "ref")]
    reference: &'a str,
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    source: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    builder: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dockerfile: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: &'a Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    args: &'a BTreeMap<String, Arg>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: &'a Option<Cache>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attest: &'a Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: &'a Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_hash: Option<&'a str>,
    commands: Vec<Command>,
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NodeJson {
            id: &self.id,
            kind: self.kind,
            image: &self.image,
            version: &self.version,
            variant: &self.variant,
            platform: &self.platform,
            platforms: &self.platforms,
            level: self.level,
            needs: &self.needs,
            reference: &self.reference,
            tags: &self.tags,
            source: &self.source,
            builder: &self.builder,
            context: &self.context,
            dockerfile: &self.dockerfile,
            target: &self.target,
            args: &self.args,
            labels: &self.labels,
            cache: &self.cache,
            attest: &self.attest,
            test: &self.test,
            decision: self.decision.as_ref().map(|d| d.decision.as_str()),
            reason: self.decision.as_ref().map(|d| d.reason.as_str()),
            input_hash: self.decision.as_ref().and_then(|d| d.input_hash.as_deref()),
            commands: self.commands(),
        }
        .serialize(s)
    }
}
