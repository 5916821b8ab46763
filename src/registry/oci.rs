//! OCI content as data: media types, digests, manifests, index entries (descriptors) with
//! their platforms and attestations, and the bytes of an index mab writes.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Result, err};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `d` is a well-formed sha256 digest.
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A manifest as stored: exact bytes, media type, digest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: String,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.bytes).map_err(|e| err("manifest is not JSON", e))
    }

    /// The entries of an index.
    pub fn entries(&self) -> Result<Vec<Descriptor>> {
        serde_json::from_value(self.json()?.get("manifests").cloned().unwrap_or_default())
            .map_err(|e| err(&format!("reading index {}", self.digest), e))
    }

    /// The manifest's own annotations (none when it has no such field or they are not strings).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.json()
            .ok()
            .and_then(|j| serde_json::from_value(j.get("annotations")?.clone()).ok())
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformSpec {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl PlatformSpec {
    pub fn parse(platform: &str) -> PlatformSpec {
        let mut parts = platform.split('/');
        let os = parts.next().unwrap_or_default().to_owned();
        let architecture = parts.next().unwrap_or_default().to_owned();
        PlatformSpec {
            architecture,
            os,
            variant: parts.next().map(str::to_owned),
        }
    }

    /// Whether this index entry is `platform` (`os/arch[/variant]`): `linux/arm64` is also
    /// written `linux/arm64/v8` (Docker Hub's indexes do), so a missing variant and `v8` are
    /// the same for arm64.
    pub fn matches(&self, platform: &str) -> bool {
        let want = PlatformSpec::parse(platform);
        let norm = |s: &PlatformSpec| -> Option<String> {
            match s.variant.as_deref() {
                Some("v8") if s.architecture == "arm64" => None,
                v => v.map(str::to_owned),
            }
        };
        self.os == want.os && self.architecture == want.architecture && norm(self) == norm(&want)
    }

    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// One entry of an index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The annotation BuildKit puts on an attestation manifest's index entry, naming the image it
/// describes; `vnd.docker.reference.type` says what it is (`attestation-manifest`).
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

impl Descriptor {
    /// The image this entry attests to, when it is an attestation manifest.
    pub fn attests(&self) -> Option<&str> {
        (self.annotations.get(REFERENCE_TYPE).map(String::as_str) == Some("attestation-manifest"))
            .then(|| self.annotations.get(REFERENCE_DIGEST).map(String::as_str))
            .flatten()
    }
}

/// Keep the entries of `index` for `keep` (by platform) and the attestation manifests of the
/// images kept, in index order: what a filtered copy or a merge carries along.
pub fn with_attestations(
    index: &[Descriptor],
    keep: impl Fn(&Descriptor) -> bool,
) -> Vec<Descriptor> {
    let images: Vec<&Descriptor> = index
        .iter()
        .filter(|d| d.attests().is_none() && keep(d))
        .collect();
    index
        .iter()
        .filter(|d| match d.attests() {
            Some(of) => images.iter().any(|i| i.digest == of),
            None => images.iter().any(|i| i.digest == d.digest),
        })
        .cloned()
        .collect()
}

/// Order index entries as BuildKit does: every image first, then the attestation manifests.
pub fn images_first(entries: Vec<Descriptor>) -> Vec<Descriptor> {
    let (mut images, attestations): (Vec<_>, Vec<_>) =
        entries.into_iter().partition(|d| d.attests().is_none());
    images.extend(attestations);
    images
}

/// An image index mab writes: its type, its entries in order and its own annotations.
#[derive(Clone, Debug, Serialize)]
pub struct NewIndex {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl NewIndex {
    pub fn new(media_type: impl Into<String>, manifests: Vec<Descriptor>) -> NewIndex {
        NewIndex {
            schema_version: 2,
            media_type: media_type.into(),
            manifests,
            annotations: BTreeMap::new(),
        }
    }

    /// An index of `manifests` with `annotations`: an OCI index when there are any (a Docker
    /// manifest list has no annotations), else the type [`index_type_for`] chooses.
    pub fn annotated(
        manifests: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    ) -> NewIndex {
        let media_type = if annotations.is_empty() {
            index_type_for(&manifests)
        } else {
            OCI_INDEX
        };
        NewIndex {
            annotations,
            ..NewIndex::new(media_type, manifests)
        }
    }

    /// The bytes, in the order given (deterministic).
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn digest(&self) -> String {
        digest_of(&self.bytes())
    }
}

/// The index type for `children`: a Docker manifest list when every child is a Docker
/// manifest (what Docker-format tools expect), else an OCI index.
pub fn index_type_for(children: &[Descriptor]) -> &'static str {
    if !children.is_empty() && children.iter().all(|c| c.media_type == DOCKER_MANIFEST) {
        DOCKER_LIST
    } else {
        OCI_INDEX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_for_shape() {
        assert!(is_digest(&digest_of(b"")));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("md5:d41d8cd98f00b204e9800998ecf8427e"));
    }

    fn entry(digest: &str, platform: &str, attests: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(PlatformSpec::parse(platform)),
            annotations: attests
                .map(|of| {
                    [
                        (REFERENCE_DIGEST.to_owned(), of.to_owned()),
                        (REFERENCE_TYPE.to_owned(), "attestation-manifest".to_owned()),
                    ]
                    .into()
                })
                .unwrap_or_default(),
        }
    }

    #[test]
    fn arm64_is_arm64_with_or_without_v8() {
        let v8 = PlatformSpec::parse("linux/arm64/v8");
        assert!(v8.matches("linux/arm64"));
        assert!(PlatformSpec::parse("linux/arm64").matches("linux/arm64/v8"));
        assert!(!PlatformSpec::parse("linux/arm/v7").matches("linux/arm"));
        assert!(!PlatformSpec::parse("linux/arm/v6").matches("linux/arm/v7"));
        assert!(!PlatformSpec::parse("windows/amd64").matches("linux/amd64"));
    }

    #[test]
    fn attestations_follow_the_images_they_describe() {
        let index = [
            entry("a", "linux/amd64", None),
            entry("b", "linux/arm64", None),
            entry("c", "unknown/unknown", Some("a")),
            entry("d", "unknown/unknown", Some("b")),
        ];
        let kept = with_attestations(&index, |d| {
            d.platform.as_ref().unwrap().display() == "linux/arm64"
        });
        let digests: Vec<&str> = kept.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, ["b", "d"]);
        assert_eq!(index[3].attests(), Some("b"));
        assert_eq!(index[0].attests(), None);
        let merged = images_first(vec![
            index[0].clone(),
            index[2].clone(),
            index[1].clone(),
            index[3].clone(),
        ]);
        let digests: Vec<&str> = merged.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, ["a", "b", "c", "d"]);
        // The annotations survive a round trip through an index exactly.
        let bytes = NewIndex::new(OCI_INDEX, merged).bytes();
        let back: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            back["manifests"][3]["annotations"][REFERENCE_DIGEST],
            serde_json::json!("b")
        );
        assert!(back["manifests"][0].get("annotations").is_none());
    }

    #[test]
    fn an_index_is_deterministic_bytes() {
        let child = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest_of(b"x"),
            size: 1,
            platform: Some(PlatformSpec::parse("linux/arm/v7")),
            annotations: BTreeMap::new(),
        };
        let docker = Descriptor {
            media_type: DOCKER_MANIFEST.into(),
            ..child.clone()
        };
        let bytes = NewIndex::new(OCI_INDEX, vec![child.clone()]).bytes();
        assert_eq!(
            bytes,
            NewIndex::annotated(vec![child], BTreeMap::new()).bytes()
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"#), "{text}");
        assert!(
            text.contains(r#""platform":{"architecture":"arm","os":"linux","variant":"v7"}"#),
            "{text}"
        );
        assert!(!text.contains("annotations"), "{text}");
        // Docker images make a Docker manifest list, unless the index has annotations.
        let plain = NewIndex::annotated(vec![docker.clone()], BTreeMap::new());
        assert_eq!(plain.media_type, DOCKER_LIST);
        let annotated = NewIndex::annotated(
            vec![docker],
            BTreeMap::from([(String::from("k"), String::from("a \"b\"\n"))]),
        );
        assert_eq!(annotated.media_type, OCI_INDEX);
        let text = String::from_utf8(annotated.bytes()).unwrap();
        assert!(
            text.ends_with(r#"],"annotations":{"k":"a \"b\"\n"}}"#),
            "{text}"
        );
    }
}
