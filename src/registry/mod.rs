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
pub fn index_bytes(media_type: &str, children: &[Descriptor]) -> Vec<u8> {
    let index = Index {
        schema_version: 2,
        media_type,
        manifests: children,
    };
    serde_json::to_vec(&index).unwrap_or_default()
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

pub struct Registry {
    client: Client,
    /// When each (repository, operation) was last authorized: one probe per minute, not
    /// one per request (tokens outlive that; the OCI client caches them).
    authorized: std::sync::Mutex<std::collections::HashMap<(String, bool), std::time::Instant>>,
    /// At most [`PER_REGISTRY`] operations in flight per registry host, whatever `--jobs` is.
    limits:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>,
}

/// Concurrent operations per registry host.
pub const PER_REGISTRY: usize = 8;

impl Registry {
    /// `insecure`: registries (host[:port]) spoken to over plain HTTP.
    pub fn new(insecure: &[String]) -> Registry {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
            // A stalled registry must not hang a run: no connection in 10 s, or no byte
            // for 60 s while reading, fails the request.
            // `MAB_HTTP_TIMEOUT` (seconds) changes the read timeout.
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(
                std::env::var("MAB_HTTP_TIMEOUT")
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(60),
            )),
            user_agent: concat!("mab/", env!("CARGO_PKG_VERSION")),
            // One PUT with a streamed body per blob, instead of POST + PATCHes + PUT.
            use_monolithic_push: true,
            ..ClientConfig::default()
        };
        Registry {
            client: Client::new(config),
            authorized: std::sync::Mutex::new(std::collections::HashMap::new()),
            limits: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A slot for one operation against `host`; released when dropped.
    async fn slot(&self, host: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_owned())
            .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(PER_REGISTRY)))
            .clone();
        semaphore.acquire_owned().await.ok()
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
        let key = (
            format!(
                "{}/{}",
                reference.resolve_registry(),
                reference.repository()
            ),
            matches!(op, RegistryOperation::Push),
        );
        let fresh = |t: &std::time::Instant| t.elapsed() < std::time::Duration::from_secs(60);
        if self
            .authorized
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(fresh)
        {
            return Ok(());
        }
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
        let _slot = self.slot(r.resolve_registry()).await;
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
        let _slot = self.slot(r.resolve_registry()).await;
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
        let _slot = self.slot(r.resolve_registry()).await;
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
    /// there, a cross-repository mount on the same registry, else a streamed download and
    /// upload, verified against `digest` and `size` as it passes: a mismatch aborts the
    /// upload before it is committed.
    pub async fn copy_blob(
        &self,
        from: &str,
        to: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<()> {
        use futures_util::StreamExt;
        let dst = Self::reference(&format!("{to}@{digest}"))?;
        // One slot on the target for the whole copy (the source side is read within it).
        let _slot = self.slot(dst.resolve_registry()).await;
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
        let download = self
            .client
            .pull_blob_stream(&src, digest)
            .await
            .map_err(|e| err(&format!("downloading blob {digest} from {from}"), e))?;
        let chunks = download.stream.map(|chunk| {
            chunk.map_err(|e| {
                oci_client::errors::OciDistributionError::GenericError(Some(e.to_string()))
            })
        });
        let checked = CheckedStream::new(chunks, digest.to_owned(), size);
        self.client
            .push_blob_stream(&dst, checked, digest, size)
            .await
            .map_err(|e| err(&format!("copying blob {digest} from {from} to {to}"), e))?;
        Ok(())
    }

    /// Copy the blobs of one image manifest (config and layers), then the manifest itself by digest.
    pub async fn copy_image(&self, from: &str, to: &str, manifest: &Manifest) -> Result<()> {
        let json = manifest.json()?;
        let blobs = json.get("config").into_iter().chain(
            json.get("layers")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten(),
        );
        for blob in blobs {
            let Some(digest) = blob.get("digest").and_then(|d| d.as_str()) else {
                return Err(RegistryError(format!(
                    "a blob of {} has no digest",
                    manifest.digest
                )));
            };
            let size = blob.get("size").and_then(|s| s.as_u64());
            self.copy_blob(from, to, digest, size).await?;
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

/// Hashes a blob as it streams and checks its digest and size.
struct Verifier {
    hasher: Sha256,
    digest: String,
    size: Option<u64>,
    seen: u64,
}

impl Verifier {
    fn new(digest: &str, size: Option<u64>) -> Verifier {
        Verifier {
            hasher: Sha256::new(),
            digest: digest.to_owned(),
            size,
            seen: 0,
        }
    }

    fn update(&mut self, chunk: &[u8]) -> std::result::Result<(), String> {
        self.seen += chunk.len() as u64;
        if let Some(size) = self.size
            && self.seen > size
        {
            return Err(format!(
                "blob {} is longer than its {size} bytes",
                self.digest
            ));
        }
        self.hasher.update(chunk);
        Ok(())
    }
}

/// The verifier's stream wrapper: after the last chunk, the digest and size must match,
/// else the stream ends in an error and the upload is never committed.
struct CheckedStream<S> {
    inner: std::pin::Pin<Box<S>>,
    verifier: Verifier,
    done: bool,
}

impl<S> CheckedStream<S> {
    fn new(inner: S, digest: String, size: Option<u64>) -> CheckedStream<S> {
        CheckedStream {
            inner: Box::pin(inner),
            verifier: Verifier::new(&digest, size),
            done: false,
        }
    }
}

type StreamItem = std::result::Result<Bytes, oci_client::errors::OciDistributionError>;

impl<S: futures_util::Stream<Item = StreamItem>> futures_util::Stream for CheckedStream<S> {
    type Item = StreamItem;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Err(e) = self.verifier.update(&chunk) {
                    self.done = true;
                    return Poll::Ready(Some(Err(
                        oci_client::errors::OciDistributionError::GenericError(Some(e)),
                    )));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.done = true;
                let v = &self.verifier;
                let got = format!("sha256:{}", hex::encode(v.hasher.clone().finalize()));
                let short = v.size.is_some_and(|s| v.seen != s);
                if got != v.digest || short {
                    let e = format!(
                        "blob {} arrived as {got} ({} bytes): not what was asked for",
                        v.digest, v.seen
                    );
                    return Poll::Ready(Some(Err(
                        oci_client::errors::OciDistributionError::GenericError(Some(e)),
                    )));
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn stream_of(chunks: &[&'static [u8]]) -> impl futures_util::Stream<Item = StreamItem> {
        let items: Vec<StreamItem> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures_util::stream::iter(items)
    }

    async fn drain(
        digest: &str,
        size: Option<u64>,
        chunks: &[&'static [u8]],
    ) -> std::result::Result<Vec<u8>, String> {
        let mut s = CheckedStream::new(stream_of(chunks), digest.to_owned(), size);
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            out.extend_from_slice(&item.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_blob_passes_only_with_its_digest_and_size() {
        let digest = digest_of(b"hello world");
        assert_eq!(
            drain(&digest, Some(11), &[b"hello ", b"world"])
                .await
                .unwrap(),
            b"hello world"
        );
        // One flipped byte.
        let e = drain(&digest, Some(11), &[b"hello ", b"worle"])
            .await
            .unwrap_err();
        assert!(e.contains("not what was asked for"), "{e}");
        // A short body.
        let e = drain(&digest, Some(11), &[b"hello "]).await.unwrap_err();
        assert!(e.contains("6 bytes"), "{e}");
        // A long one stops as soon as it is too long.
        let e = drain(&digest, Some(11), &[b"hello world", b"!!"])
            .await
            .unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn digests_are_checked_for_shape() {
        assert!(is_digest(&digest_of(b"")));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("md5:d41d8cd98f00b204e9800998ecf8427e"));
    }

    #[test]
    fn an_index_is_deterministic_bytes() {
        let child = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest_of(b"x"),
            size: 1,
            platform: Some(PlatformSpec::parse("linux/arm/v7")),
        };
        let bytes = index_bytes(OCI_INDEX, std::slice::from_ref(&child));
        assert_eq!(bytes, index_bytes(OCI_INDEX, &[child]));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"#), "{text}");
        assert!(
            text.contains(r#""platform":{"architecture":"arm","os":"linux","variant":"v7"}"#),
            "{text}"
        );
    }
}
