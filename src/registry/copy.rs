//! Copies between repositories: blobs (mounted when the registry can, else streamed and
//! verified) and whole images.

use super::verify::CheckedStream;
use super::*;

/// A transfer error another try would not mend.
fn fatal(message: String) -> http::HttpError {
    http::HttpError {
        message,
        retryable: false,
    }
}

impl Registry {
    async fn blob_exists(&self, r: &Ref, digest: &str) -> Result<bool> {
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self
            .http
            .send(
                reqwest::Method::HEAD,
                &r.host,
                &path,
                reqwest::header::HeaderMap::new(),
                None,
                &r.push(),
            )
            .await
            .map_err(Self::http_err)?;
        Ok(resp.status().is_success())
    }

    /// Cross-repository mount on one registry; `true` when the blob is now in `to`.
    async fn mount(&self, to: &Ref, from: &Ref, digest: &str) -> Result<bool> {
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={}",
            to.repository, from.repository
        );
        let resp = self
            .http
            .send(
                reqwest::Method::POST,
                &to.host,
                &path,
                reqwest::header::HeaderMap::new(),
                None,
                &format!("{} {}", to.push(), from.pull()),
            )
            .await
            .map_err(Self::http_err)?;
        Ok(resp.status() == reqwest::StatusCode::CREATED)
    }

    /// Make blob `digest` of `from` (a repository) available in `to`: nothing if it is
    /// there, a cross-repository mount on the same registry, else a streamed download and
    /// upload, verified against `digest` and `size` as it passes: a mismatch aborts the
    /// upload before it is committed. A transfer broken by the network is restarted from
    /// the start (a new upload session), within the retry policy.
    pub async fn copy_blob(
        &self,
        from: &str,
        to: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<()> {
        let dst = Ref::parse(&format!("{to}@{digest}"))?;
        let src = Ref::parse(&format!("{from}@{digest}"))?;
        // One slot on the target for the whole copy (the source side is read within it).
        let _slot = self.slot(&dst.host).await;
        if self.blob_exists(&dst, digest).await? {
            return Ok(());
        }
        if src.host == dst.host && self.mount(&dst, &src, digest).await? {
            return Ok(());
        }
        let attempts = self.http.policy().attempts;
        let mut attempt = 0;
        loop {
            match self.transfer(&src, &dst, digest, size).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable && attempt + 1 < attempts => {
                    let delay = self.http.backoff(attempt);
                    attempt += 1;
                    self.http.slow_down(&dst.host, delay);
                    self.http.note(&format!(
                        "restarting the copy of {digest} to {to} in {:.1}s ({}; try {} of {attempts})",
                        delay.as_secs_f64(),
                        e.message,
                        attempt + 1
                    ));
                }
                Err(e) => {
                    return Err(RegistryError::Transport {
                        message: format!(
                            "copying blob {digest} from {from} to {to}: {}",
                            e.message
                        ),
                        retryable: e.retryable,
                    });
                }
            }
        }
    }

    /// Open an upload session at `dst`: the URL to PUT the blob `digest` to.
    async fn start_upload(
        &self,
        dst: &Ref,
        digest: &str,
    ) -> std::result::Result<reqwest::Url, http::HttpError> {
        let start = self
            .http
            .send(
                reqwest::Method::POST,
                &dst.host,
                &format!("/v2/{}/blobs/uploads/", dst.repository),
                reqwest::header::HeaderMap::new(),
                None,
                &dst.push(),
            )
            .await?;
        let status = start.status();
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(http::HttpError {
                message: format!("starting an upload: {status}"),
                retryable: http::retryable_status(status),
            });
        }
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| fatal("the registry gave no upload location".into()))?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            reqwest::Url::parse(location)
        } else {
            reqwest::Url::parse(&format!("{}{location}", self.http.base(&dst.host)))
        }
        .map_err(|e| fatal(format!("bad upload location {location}: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest);
        Ok(url)
    }

    /// One try of a blob copy: GET from `src`, streamed into a new upload session at `dst`.
    async fn transfer(
        &self,
        src: &Ref,
        dst: &Ref,
        digest: &str,
        size: Option<u64>,
    ) -> std::result::Result<(), http::HttpError> {
        use futures_util::StreamExt;
        let download = self
            .http
            .send(
                reqwest::Method::GET,
                &src.host,
                &format!("/v2/{}/blobs/{digest}", src.repository),
                reqwest::header::HeaderMap::new(),
                None,
                &src.pull(),
            )
            .await?;
        let status = download.status();
        if !status.is_success() {
            return Err(http::HttpError {
                message: format!("download: {status}"),
                retryable: http::retryable_status(status),
            });
        }
        let length = size.or(download.content_length());
        let url = self.start_upload(dst, digest).await?;
        let chunks = download
            .bytes_stream()
            .map(|c| c.map_err(|e| std::io::Error::other(e.to_string())));
        let checked = CheckedStream::new(chunks, digest.to_owned(), size);
        let mut headers = http::header("content-type", "application/octet-stream");
        if let Some(n) = length
            && let Ok(v) = reqwest::header::HeaderValue::from_str(&n.to_string())
        {
            headers.insert(reqwest::header::CONTENT_LENGTH, v);
        }
        let resp = self
            .http
            .send_stream(
                reqwest::Method::PUT,
                url.as_str(),
                &dst.host,
                headers,
                reqwest::Body::wrap_stream(checked),
                &dst.push(),
            )
            .await;
        let resp = match resp {
            Ok(r) => r,
            // The verifier's own error: the content is wrong, another try would not help.
            Err(e)
                if e.message.contains("not what was asked for")
                    || e.message.contains("longer than") =>
            {
                return Err(fatal(e.message));
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        if status != reqwest::StatusCode::CREATED {
            let body = resp.text().await.unwrap_or_default();
            return Err(http::HttpError {
                message: format!(
                    "upload: {status} {}",
                    body.chars().take(200).collect::<String>()
                ),
                retryable: http::retryable_status(status),
            });
        }
        Ok(())
    }

    /// Upload `bytes` as a blob of `repository` (nothing when it is there); its digest.
    pub async fn put_blob(&self, repository: &str, bytes: &[u8]) -> Result<String> {
        let digest = digest_of(bytes);
        let dst = Ref::parse(&format!("{repository}@{digest}"))?;
        let _slot = self.slot(&dst.host).await;
        if self.blob_exists(&dst, &digest).await? {
            return Ok(digest);
        }
        let url = self
            .start_upload(&dst, &digest)
            .await
            .map_err(Self::http_err)?;
        let body = Bytes::copy_from_slice(bytes);
        let resp = self
            .http
            .send_stream(
                reqwest::Method::PUT,
                url.as_str(),
                &dst.host,
                http::header("content-type", "application/octet-stream"),
                reqwest::Body::from(body),
                &dst.push(),
            )
            .await
            .map_err(Self::http_err)?;
        if resp.status() != reqwest::StatusCode::CREATED {
            return Err(status_error(
                &format!("uploading a blob to {repository}"),
                resp.status(),
                "",
            ));
        }
        Ok(digest)
    }

    /// Copy the manifest at `from@digest` and everything it references into `to`: an index's
    /// children (images and attestation manifests) before the index, each by digest, byte
    /// for byte. No tag is written. The manifest copied.
    pub async fn copy_by_digest(&self, from: &str, to: &str, digest: &str) -> Result<Manifest> {
        let m = self.manifest(&format!("{from}@{digest}")).await?;
        if !m.is_index() {
            self.copy_image(from, to, &m).await?;
            return Ok(m);
        }
        for e in m.entries()? {
            let child = self.manifest(&format!("{from}@{}", e.digest)).await?;
            if child.is_index() {
                return Err(RegistryError::Invalid(format!(
                    "{from}@{digest} holds an index ({}) in an index",
                    e.digest
                )));
            }
            self.copy_image(from, to, &child).await?;
        }
        self.put_manifest(to, &m.digest, &m.bytes, &m.media_type)
            .await?;
        Ok(m)
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
                return Err(RegistryError::Invalid(format!(
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
}
