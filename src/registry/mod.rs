//! The registry client for what is not a build: digests, manifests, blob copies, and
//! the index a merge publishes. Built on `oci-client` (the OCI distribution protocol),
//! with credentials from the docker `config.json` (`auths`, `credHelpers`, `credsStore`).

mod copy;
mod error;
pub mod http;
mod oci;
pub mod transport;
mod verify;

pub use error::*;
pub use oci::*;

use std::collections::BTreeMap;

use bytes::Bytes;
use oci_client::Reference;

pub struct Registry {
    http: http::Http,
    /// At most [`PER_REGISTRY`] operations in flight per registry host, whatever `--jobs` is.
    limits:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>,
}

/// Concurrent operations per registry host.
pub const PER_REGISTRY: usize = 8;

/// A parsed reference: API host, repository, and tag or digest.
struct Ref {
    host: String,
    repository: String,
    reference: String,
}

impl Ref {
    fn parse(s: &str) -> Result<Ref> {
        let r = s
            .parse::<Reference>()
            .map_err(|e| err(&format!("invalid reference `{s}`"), e))?;
        let host = match r.resolve_registry() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io".to_owned(),
            other => other.to_owned(),
        };
        let reference = r
            .digest()
            .map(str::to_owned)
            .or_else(|| r.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".to_owned());
        Ok(Ref {
            host,
            repository: r.repository().to_owned(),
            reference,
        })
    }

    fn pull(&self) -> String {
        format!("repository:{}:pull", self.repository)
    }

    fn push(&self) -> String {
        format!("repository:{}:pull,push", self.repository)
    }
}

/// What mab reads of an image's config: its labels and when it says it was created.
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub labels: std::collections::BTreeMap<String, String>,
    /// RFC 3339, as the builder wrote it.
    pub created: Option<String>,
}

impl Registry {
    /// `insecure`: registries (host[:port]) spoken to over plain HTTP.
    pub fn new(insecure: &[String]) -> std::result::Result<Registry, String> {
        Registry::with_observer(insecure, Box::new(|m| eprintln!("mab: registry: {m}")))
    }

    /// `observer` receives a line for every retry.
    pub fn with_observer(
        insecure: &[String],
        observer: Box<dyn Fn(&str) + Send + Sync>,
    ) -> std::result::Result<Registry, String> {
        // A stalled registry must not hang a run: no connection in 10 s, or no byte for
        // 60 s (`MAB_HTTP_TIMEOUT` seconds) while reading, fails the request.
        let read_timeout = std::time::Duration::from_secs(
            std::env::var("MAB_HTTP_TIMEOUT")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(60),
        );
        Ok(Registry {
            http: http::Http::new(insecure, read_timeout, http::Policy::default(), observer)?,
            limits: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
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

    fn http_err(e: http::HttpError) -> RegistryError {
        RegistryError::Transport {
            message: e.message,
            retryable: e.retryable,
        }
    }

    /// GET or HEAD of a manifest, accepting every manifest type.
    async fn manifest_request(
        &self,
        method: reqwest::Method,
        r: &Ref,
    ) -> Result<reqwest::Response> {
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference);
        self.http
            .send(
                method,
                &r.host,
                &path,
                http::header("accept", &ACCEPT.join(", ")),
                None,
                &r.pull(),
            )
            .await
            .map_err(Self::http_err)
    }

    /// The manifest at `reference` (tag or digest), exactly as stored.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest> {
        let r = Ref::parse(reference)?;
        let _slot = self.slot(&r.host).await;
        let resp = self.manifest_request(reqwest::Method::GET, &r).await?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| err(&format!("reading manifest {reference}"), e))?;
        if !status.is_success() {
            return Err(status_error(
                &format!("reading manifest {reference}"),
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        let digest = digest_of(&bytes);
        if r.reference.starts_with("sha256:") && r.reference != digest {
            return Err(RegistryError::DigestMismatch(format!(
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
            .or(content_type)
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The digest `reference` points at, or `None` when it does not exist (HEAD only).
    pub async fn digest(&self, reference: &str) -> Result<Option<String>> {
        let r = Ref::parse(reference)?;
        let slot = self.slot(&r.host).await;
        let resp = self.manifest_request(reqwest::Method::HEAD, &r).await?;
        match resp.status() {
            s if s.is_success() => {
                let header = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .filter(|d| is_digest(d))
                    .map(str::to_owned);
                match header {
                    Some(d) => Ok(Some(d)),
                    None => {
                        drop(slot);
                        Ok(Some(self.manifest(reference).await?.digest))
                    }
                }
            }
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error(&format!("looking up {reference}"), s, "")),
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
        let r = Ref::parse(&format!("{repository}{sep}{reference}"))?;
        let _slot = self.slot(&r.host).await;
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference);
        let resp = self
            .http
            .send(
                reqwest::Method::PUT,
                &r.host,
                &path,
                http::header("content-type", media_type),
                Some(Bytes::copy_from_slice(bytes)),
                &r.push(),
            )
            .await
            .map_err(Self::http_err)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(status_error(
                &format!("pushing manifest to {repository}{sep}{reference}"),
                status,
                &body,
            ));
        }
        Ok(digest_of(bytes))
    }

    /// The index at `repository:tag`, or `None` when that tag does not exist or is not an
    /// index.
    pub async fn index_at(&self, repository: &str, tag: &str) -> Result<Option<Manifest>> {
        let reference = format!("{repository}:{tag}");
        if self.digest(&reference).await?.is_none() {
            return Ok(None);
        }
        let index = self.manifest(&reference).await?;
        Ok(index.is_index().then_some(index))
    }

    /// The entries of the index at `repository:tag`, or `None` when that tag does not exist
    /// or is not an index.
    pub async fn index_entries(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Vec<Descriptor>>> {
        match self.index_at(repository, tag).await? {
            Some(index) => index.entries().map(Some),
            None => Ok(None),
        }
    }

    /// The child for `platform` of the index at `repository:tag`, if that tag exists and is an index.
    pub async fn published_child(
        &self,
        repository: &str,
        tag: &str,
        platform: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .published_entry(repository, tag, platform)
            .await?
            .map(|c| c.digest))
    }

    /// The entry of the index at `repository:tag` for the image of `platform`, with its
    /// annotations (mab's `io.mab.built`).
    pub async fn published_entry(
        &self,
        repository: &str,
        tag: &str,
        platform: &str,
    ) -> Result<Option<Descriptor>> {
        Ok(self
            .index_entries(repository, tag)
            .await?
            .unwrap_or_default()
            .into_iter()
            .find(|c| {
                c.attests().is_none() && c.platform.as_ref().is_some_and(|p| p.matches(platform))
            }))
    }

    /// The digest of the image `reference` names for `platform`: the index's child for it, or
    /// the manifest itself when the tag holds one image. `None`: no such tag, or no child for
    /// that platform.
    pub async fn platform_digest(&self, reference: &str, platform: &str) -> Result<Option<String>> {
        let Some(digest) = self.digest(reference).await? else {
            return Ok(None);
        };
        let manifest = self.manifest(reference).await?;
        if !manifest.is_index() {
            return Ok(Some(digest));
        }
        Ok(manifest
            .entries()?
            .into_iter()
            .find(|c| {
                c.attests().is_none() && c.platform.as_ref().is_some_and(|p| p.matches(platform))
            })
            .map(|c| c.digest))
    }

    /// The blob `digest` of `repository`, checked against its digest.
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<Bytes> {
        let r = Ref::parse(&format!("{repository}@{digest}"))?;
        let _slot = self.slot(&r.host).await;
        let resp = self
            .http
            .send(
                reqwest::Method::GET,
                &r.host,
                &format!("/v2/{}/blobs/{digest}", r.repository),
                reqwest::header::HeaderMap::new(),
                None,
                &r.pull(),
            )
            .await
            .map_err(Self::http_err)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| err("reading a blob", e))?;
        if !status.is_success() {
            return Err(status_error(
                &format!("reading blob {digest} of {repository}"),
                status,
                "",
            ));
        }
        if digest_of(&bytes) != digest {
            return Err(RegistryError::DigestMismatch(format!(
                "blob {digest} of {repository} does not match its digest"
            )));
        }
        Ok(bytes)
    }

    /// The labels and creation time of the image at `repository@digest` (its config blob).
    pub async fn config(&self, repository: &str, digest: &str) -> Result<ImageConfig> {
        let manifest = self.manifest(&format!("{repository}@{digest}")).await?;
        let Some(config) = manifest
            .json()?
            .pointer("/config/digest")
            .and_then(|d| d.as_str())
            .map(str::to_owned)
        else {
            return Ok(ImageConfig::default());
        };
        let bytes = self.blob(repository, &config).await?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| err("reading an image config", e))?;
        Ok(ImageConfig {
            labels: json
                .pointer("/config/Labels")
                .and_then(|l| l.as_object())
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect()
                })
                .unwrap_or_default(),
            created: json
                .get("created")
                .and_then(|c| c.as_str())
                .map(str::to_owned),
        })
    }

    /// The index entries that stand for one platform's build at `repository@digest`: its
    /// image manifest and the attestation manifests of that image. A buildx push by digest
    /// stores an index of both (the entries are taken from it, exactly); a plain image
    /// manifest brings along the attestations `published` (the entries at the merge's tag,
    /// when a reused image was built with them) has for it.
    pub async fn platform_entries(
        &self,
        repository: &str,
        digest: &str,
        platform: &str,
        published: &[Descriptor],
    ) -> Result<Vec<Descriptor>> {
        let m = self.manifest(&format!("{repository}@{digest}")).await?;
        if !m.is_index() {
            let image = Descriptor {
                media_type: m.media_type,
                digest: m.digest,
                size: m.bytes.len() as u64,
                platform: Some(PlatformSpec::parse(platform)),
                annotations: BTreeMap::new(),
            };
            let mut out = vec![image];
            out.extend(
                published
                    .iter()
                    .filter(|d| d.attests() == Some(digest))
                    .cloned(),
            );
            return Ok(out);
        }
        let entries = m.entries()?;
        let out = with_attestations(&entries, |d| {
            d.platform.as_ref().is_some_and(|p| p.matches(platform))
        });
        match out.iter().filter(|d| d.attests().is_none()).count() {
            1 => Ok(out),
            0 => Err(RegistryError::Invalid(format!(
                "{repository}@{digest} is an index without an image for {platform}"
            ))),
            _ => Err(RegistryError::Invalid(format!(
                "{repository}@{digest} is an index of several images for {platform}"
            ))),
        }
    }
}
