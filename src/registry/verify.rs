//! Blobs are checked as they stream: digest and size, or the stream ends in an error and
//! the upload is never committed.

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::{RegistryError, Result};

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

    fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.seen += chunk.len() as u64;
        if let Some(size) = self.size
            && self.seen > size
        {
            return Err(RegistryError::DigestMismatch(format!(
                "blob {} is longer than its {size} bytes",
                self.digest
            )));
        }
        self.hasher.update(chunk);
        Ok(())
    }
}

/// The verifier's stream wrapper: after the last chunk, the digest and size must match,
/// else the stream ends in an error and the upload is never committed.
pub(super) struct CheckedStream<S> {
    inner: std::pin::Pin<Box<S>>,
    verifier: Verifier,
    done: bool,
}

impl<S> CheckedStream<S> {
    pub(super) fn new(inner: S, digest: String, size: Option<u64>) -> CheckedStream<S> {
        CheckedStream {
            inner: Box::pin(inner),
            verifier: Verifier::new(&digest, size),
            done: false,
        }
    }
}

type StreamItem = std::result::Result<Bytes, std::io::Error>;

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
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
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
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
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
    use crate::registry::digest_of;

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
}
