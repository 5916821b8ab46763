//! Signatures in cosign's format, so `cosign verify --key` (or `openssl dgst -sha256
//! -verify`) checks what mab publishes: a simple-signing payload naming the digest, signed
//! with ECDSA P-256 over its SHA-256, stored as the one layer of an OCI manifest at tag
//! `sha256-<hex>.sig` in the image's repository, the DER signature in base64 in the
//! layer's `dev.cosignproject.cosign/signature` annotation.
//!
//! The cryptography is RustCrypto's `p256`; mab only assembles the documents.

use std::path::Path;

use base64::Engine;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};

use crate::manifest::model::SignKey;
use crate::registry::{Descriptor, Manifest, Registry, RegistryError};

pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What is wrong with a key or a signature.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the signing key: environment variable {0} is not set")]
    NoVariable(String),
    #[error("the signing key: cannot read {path}: {why}")]
    Read { path: String, why: std::io::Error },
    #[error(
        "the signing key ({0}) is not an ECDSA P-256 private key in PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)"
    )]
    Key(String),
    #[error("{0} is not an ECDSA P-256 public key in PEM (`PUBLIC KEY`)")]
    PublicKey(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The tag cosign stores the signatures of `digest` at: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The simple-signing payload for the manifest `digest` of `repository`.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": { "docker-reference": repository },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap_or_default()
}

/// A private key, read once per run; nothing of it is ever printed.
pub struct Signer {
    key: SigningKey,
}

/// Never prints the key: only that there is one.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<private key>)")
    }
}

impl Signer {
    /// Read the key `key` names (a file is relative to `dir`, the manifest's directory).
    pub fn load(key: &SignKey, dir: &Path) -> Result<Signer, SignError> {
        let (pem, source) = match key {
            SignKey::Env(var) => (
                std::env::var(var).map_err(|_| SignError::NoVariable(var.clone()))?,
                format!("${var}"),
            ),
            SignKey::File(path) => {
                let full = dir.join(path);
                (
                    std::fs::read_to_string(&full).map_err(|why| SignError::Read {
                        path: path.clone(),
                        why,
                    })?,
                    path.clone(),
                )
            }
        };
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .ok()
            .or_else(|| {
                p256::SecretKey::from_sec1_pem(pem.trim())
                    .ok()
                    .map(SigningKey::from)
            })
            .ok_or(SignError::Key(source))?;
        Ok(Signer { key })
    }

    /// The DER signature of `payload` (ECDSA P-256 over its SHA-256), in base64.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: DerSignature = self.key.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(signature.as_bytes())
    }

    pub fn public(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// The public key in PEM, as `cosign.pub` holds it.
    pub fn public_pem(&self) -> String {
        self.public()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap_or_default()
    }
}

/// A public key from PEM (`PUBLIC KEY`), for `mab verify --key`.
pub fn public_key(pem: &str, source: &str) -> Result<VerifyingKey, SignError> {
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|_| SignError::PublicKey(source.to_owned()))
}

/// Whether `signature` (base64 DER) is `key`'s signature of `payload`.
pub fn verify(key: &VerifyingKey, payload: &[u8], signature: &str) -> bool {
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    DerSignature::from_bytes(&der).is_ok_and(|s| key.verify(payload, &s).is_ok())
}

/// The layer descriptor of a signature: the payload's blob, the signature in its annotation.
fn signature_layer(payload: &[u8], signature: &str) -> serde_json::Value {
    serde_json::json!({
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "size": payload.len(),
        "digest": crate::registry::digest_of(payload),
        "annotations": { SIGNATURE_ANNOTATION: signature }
    })
}

/// The signature manifest of `layers` (each a signature's payload, as cosign stores them):
/// its config and the manifest itself, as bytes.
fn signature_manifest(layers: &[serde_json::Value]) -> (Vec<u8>, Vec<u8>) {
    let diff_ids: Vec<&serde_json::Value> = layers.iter().map(|l| &l["digest"]).collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|_| serde_json::json!({ "created": "0001-01-01T00:00:00Z" }))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": diff_ids }
    }))
    .unwrap_or_default();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "size": config.len(),
            "digest": crate::registry::digest_of(&config)
        },
        "layers": layers
    }))
    .unwrap_or_default();
    (config, manifest)
}

/// Sign manifest `digest` of `repository`, unless a signature by this key is there already
/// (a reused image is not signed again). Signatures by other keys stay: the new one is
/// appended to the signature manifest as a layer of its own, as `cosign sign` does. Returns
/// whether it wrote.
pub async fn sign(
    registry: &Registry,
    signer: &Signer,
    repository: &str,
    digest: &str,
) -> Result<bool, SignError> {
    let mut layers = signature_layers(registry, repository, digest).await?;
    if signed_among(registry, &signer.public(), repository, digest, &layers).await? {
        return Ok(false);
    }
    let payload = payload(repository, digest);
    let signature = signer.sign(&payload);
    layers.push(signature_layer(&payload, &signature));
    let (config, manifest) = signature_manifest(&layers);
    registry.put_blob(repository, &payload).await?;
    registry.put_blob(repository, &config).await?;
    registry
        .put_manifest(repository, &signature_tag(digest), &manifest, OCI_MANIFEST)
        .await?;
    Ok(true)
}

/// The layers of the signature manifest of `digest` in `repository` (none when there is none).
async fn signature_layers(
    registry: &Registry,
    repository: &str,
    digest: &str,
) -> Result<Vec<serde_json::Value>, SignError> {
    let tag = format!("{repository}:{}", signature_tag(digest));
    let manifest = match registry.manifest(&tag).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(manifest.json()?["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Whether one of the signature manifest `layers` of `digest` in `repository` is `key`'s: its
/// payload read back (verified against its digest), naming `digest`, and the signature over
/// it. Payloads are read one at a time, up to the first that verifies.
async fn signed_among(
    registry: &Registry,
    key: &VerifyingKey,
    repository: &str,
    digest: &str,
    layers: &[serde_json::Value],
) -> Result<bool, SignError> {
    for layer in layers {
        let (Some(blob), Some(signature)) = (
            layer["digest"].as_str(),
            layer["annotations"][SIGNATURE_ANNOTATION].as_str(),
        ) else {
            continue;
        };
        let payload = registry.blob(repository, blob).await?;
        let names = serde_json::from_slice::<serde_json::Value>(&payload)
            .is_ok_and(|p| p["critical"]["image"]["docker-manifest-digest"] == digest);
        if names && verify(key, &payload, signature) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `repository` holds a signature of `digest` by `key`, checked: the payload read
/// back (verified against its digest), naming `digest`, and the signature over it.
pub async fn signed_by(
    registry: &Registry,
    key: &VerifyingKey,
    repository: &str,
    digest: &str,
) -> Result<bool, SignError> {
    let layers = signature_layers(registry, repository, digest).await?;
    signed_among(registry, key, repository, digest, &layers).await
}

/// Sign what an index holds, then the index: each platform image of `entries` (attestation
/// manifests are not signed; side by side), then `index`, which must be in `repository` by
/// digest already. The index last, so a signed index means every image in it is signed. What
/// this key signed already is not signed again. Returns whether the index's signature was
/// written.
pub async fn sign_index(
    registry: &Registry,
    signer: &Signer,
    repository: &str,
    index: &str,
    entries: &[Descriptor],
) -> Result<bool, SignError> {
    futures_util::future::try_join_all(
        (entries.iter())
            .filter(|e| e.attests().is_none())
            .map(|e| sign(registry, signer, repository, &e.digest)),
    )
    .await?;
    sign(registry, signer, repository, index).await
}

/// Carry the signatures of `index` (and of its children) from `from` to `to`: each
/// `sha256-<hex>.sig` manifest copied by digest, then tagged.
pub async fn carry(
    registry: &Registry,
    from: &str,
    to: &str,
    index: &Manifest,
) -> Result<(), RegistryError> {
    let mut digests = vec![index.digest.clone()];
    if index.is_index() {
        digests.extend(index.entries()?.into_iter().map(|e| e.digest));
    }
    carry_digests(registry, from, to, &digests).await?;
    Ok(())
}

/// Carry the signatures of `digests` from `from` to `to`, those that exist; a signature the
/// target already holds is not copied again. Returns how many were copied.
pub async fn carry_digests(
    registry: &Registry,
    from: &str,
    to: &str,
    digests: &[String],
) -> Result<usize, RegistryError> {
    let mut copied = 0;
    for digest in digests {
        let tag = signature_tag(digest);
        let Some(sig) = registry.digest(&format!("{from}:{tag}")).await? else {
            continue;
        };
        if registry.digest(&format!("{to}:{tag}")).await?.as_deref() == Some(sig.as_str()) {
            continue;
        }
        let m = registry.copy_by_digest(from, to, &sig).await?;
        registry
            .put_manifest(to, &tag, &m.bytes, &m.media_type)
            .await?;
        copied += 1;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_flipped_byte_does_not() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let signer = Signer { key };
        let p = payload("r.example/team/app", "sha256:abcd");
        let s = signer.sign(&p);
        assert!(verify(&signer.public(), &p, &s));
        let mut flipped = p.clone();
        flipped[10] ^= 1;
        assert!(!verify(&signer.public(), &flipped, &s));
        assert!(
            signer
                .public_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_eq!(signature_tag("sha256:abcd"), "sha256-abcd.sig");
        let text = String::from_utf8(p).unwrap();
        assert!(
            text.contains(r#""docker-manifest-digest":"sha256:abcd""#),
            "{text}"
        );
    }
}
