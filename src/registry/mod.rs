//! The registry client for what is not a build: digests, manifests, blob copies, and
//! the index a merge publishes. Built on `oci-client` (the OCI distribution protocol),
//! with credentials from the docker `config.json` (`auths`, `credHelpers`, `credsStore`).

use std::collections::BTreeMap;

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

pub type Result<T> = std::result::Result<T, RegistryError>;

fn err(context: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError(format!("{context}: {e}"))
}

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
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: &'a [Descriptor],
}

/// The bytes of an OCI index of `children`, in the order given (deterministic).
pub fn index_bytes(children: &[Descriptor]) -> Vec<u8> {
    let index = Index {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: children,
    };
    serde_json::to_vec(&index).unwrap_or_default()
}

pub struct Registry {
    client: Client,
}

impl Registry {
    /// `insecure`: registries (host[:port]) spoken to over plain HTTP.
    pub fn new(insecure: &[String]) -> Registry {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
            ..ClientConfig::default()
        };
        Registry {
            client: Client::new(config),
        }
    }

    fn reference(s: &str) -> Result<Reference> {
        s.parse::<Reference>()
            .map_err(|e| err(&format!("invalid reference `{s}`"), e))
    }

    /// Credentials for the reference's registry from the docker config; anonymous if none.
    fn auth(reference: &Reference) -> RegistryAuth {
        let server = reference.resolve_registry();
        let server = if server == "index.docker.io" || server == "registry-1.docker.io" {
            "https://index.docker.io/v1/"
        } else {
            server
        };
        match docker_credential::get_credential(server) {
            Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                RegistryAuth::Basic(u, p)
            }
            Ok(docker_credential::DockerCredential::IdentityToken(t)) => RegistryAuth::Bearer(t),
            Err(_) => RegistryAuth::Anonymous,
        }
    }

    async fn authorize(&self, reference: &Reference, op: RegistryOperation) -> Result<()> {
        self.client
            .auth(reference, &Self::auth(reference), op)
            .await
            .map(|_| ())
            .map_err(|e| {
                err(
                    &format!("authenticating to {}", reference.resolve_registry()),
                    e,
                )
            })
    }

    /// The manifest at `reference` (tag or digest), exactly as stored.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest> {
        let r = Self::reference(reference)?;
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&r, &Self::auth(&r), ACCEPT)
            .await
            .map_err(|e| err(&format!("reading manifest {reference}"), e))?;
        let digest = digest_of(&bytes);
        if let Some(want) = r.digest()
            && want != digest
        {
            return Err(RegistryError(format!(
                "manifest {reference} has digest {digest}, not the one asked for"
            )));
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The digest `reference` points at, or `None` when it does not exist.
    pub async fn digest(&self, reference: &str) -> Result<Option<String>> {
        let r = Self::reference(reference)?;
        match self.client.fetch_manifest_digest(&r, &Self::auth(&r)).await {
            Ok(d) => Ok(Some(d)),
            Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
                Ok(None)
            }
            Err(e) => {
                let text = e.to_string();
                let lower = text.to_lowercase();
                if lower.contains("404")
                    || lower.contains("manifest unknown")
                    || lower.contains("manifest_unknown")
                    || lower.contains("name unknown")
                    || lower.contains("name_unknown")
                    || lower.contains("not found")
                {
                    Ok(None)
                } else {
                    Err(err(&format!("looking up {reference}"), text))
                }
            }
        }
    }

    /// PUT manifest bytes at `repository:reference` (a tag or the bytes' own digest).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let sep = if reference.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        let r = Self::reference(&format!("{repository}{sep}{reference}"))?;
        self.authorize(&r, RegistryOperation::Push).await?;
        let content_type = media_type
            .parse()
            .map_err(|e| err("invalid media type", e))?;
        self.client
            .push_manifest_raw(&r, Bytes::copy_from_slice(bytes), content_type)
            .await
            .map_err(|e| {
                err(
                    &format!("pushing manifest to {repository}{sep}{reference}"),
                    e,
                )
            })?;
        Ok(digest_of(bytes))
    }

    /// Make blob `digest` of `from` (a repository) available in `to`: nothing if it is
    /// there, a cross-repository mount on the same registry, else download and upload.
    pub async fn copy_blob(&self, from: &str, to: &str, digest: &str) -> Result<()> {
        let dst = Self::reference(&format!("{to}@{digest}"))?;
        self.authorize(&dst, RegistryOperation::Push).await?;
        if self.client.blob_exists(&dst, digest).await.unwrap_or(false) {
            return Ok(());
        }
        let src = Self::reference(&format!("{from}@{digest}"))?;
        if src.resolve_registry() == dst.resolve_registry() {
            let _ = self.client.mount_blob(&dst, &src, digest).await;
            if self.client.blob_exists(&dst, digest).await.unwrap_or(false) {
                return Ok(());
            }
        }
        self.authorize(&src, RegistryOperation::Pull).await?;
        let mut data: Vec<u8> = Vec::new();
        self.client
            .pull_blob(&src, digest, &mut data)
            .await
            .map_err(|e| err(&format!("downloading blob {digest} from {from}"), e))?;
        if digest_of(&data) != digest {
            return Err(RegistryError(format!(
                "blob {digest} from {from} does not match its digest"
            )));
        }
        self.client
            .push_blob(&dst, data, digest)
            .await
            .map_err(|e| err(&format!("uploading blob {digest} to {to}"), e))?;
        Ok(())
    }

    /// Copy the blobs of one image manifest (config and layers), then the manifest itself by digest.
    pub async fn copy_image(&self, from: &str, to: &str, manifest: &Manifest) -> Result<()> {
        let json = manifest.json()?;
        let mut blobs: Vec<String> = Vec::new();
        if let Some(d) = json.pointer("/config/digest").and_then(|d| d.as_str()) {
            blobs.push(d.to_owned());
        }
        for layer in json
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(d) = layer.get("digest").and_then(|d| d.as_str()) {
                blobs.push(d.to_owned());
            }
        }
        for b in &blobs {
            self.copy_blob(from, to, b).await?;
        }
        self.put_manifest(to, &manifest.digest, &manifest.bytes, &manifest.media_type)
            .await?;
        Ok(())
    }

    /// The descriptor of the image manifest at `repository@digest`, for an index entry.
    pub async fn descriptor(
        &self,
        repository: &str,
        digest: &str,
        platform: &str,
    ) -> Result<Descriptor> {
        let m = self.manifest(&format!("{repository}@{digest}")).await?;
        if m.is_index() {
            return Err(RegistryError(format!(
                "{repository}@{digest} is an index, not an image of one platform"
            )));
        }
        Ok(Descriptor {
            media_type: m.media_type,
            digest: m.digest,
            size: m.bytes.len() as u64,
            platform: Some(PlatformSpec::parse(platform)),
        })
    }

    /// Image layer digests of `reference` (an image manifest).
    pub async fn layers(&self, reference: &str) -> Result<Vec<String>> {
        let m = self.manifest(reference).await?;
        Ok(m.json()?
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("digest").and_then(|d| d.as_str()).map(str::to_owned))
            .collect())
    }

    /// Platform → child digest of the index at `reference`.
    pub async fn index_children(&self, reference: &str) -> Result<BTreeMap<String, String>> {
        let m = self.manifest(reference).await?;
        if !m.is_index() {
            return Err(RegistryError(format!("{reference} is not an index")));
        }
        let json = m.json()?;
        let children: Vec<Descriptor> =
            serde_json::from_value(json.get("manifests").cloned().unwrap_or_default())
                .map_err(|e| err("reading index entries", e))?;
        Ok(children
            .into_iter()
            .filter_map(|d| d.platform.map(|p| (p.display(), d.digest)))
            .collect())
    }
}
