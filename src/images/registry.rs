//! Pulls from OCI and Docker registries with `oci-client`: anonymous access (Docker Hub's token
//! flow included), plain HTTP for registries on localhost/127.0.0.1 as Docker allows, the
//! linux/<arch> manifest from an index, and every blob checked against its digest. Failures
//! keep the registry's words (`manifest unknown: manifest unknown`), which become the pod's
//! `ErrImagePull` message.

use std::io::Write;

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::reference::Normalized;
use super::{
    DOCKER_LIST, DOCKER_MANIFEST, ImageError, ImageStore, Index, Manifest, OCI_INDEX, OCI_MANIFEST,
    io_error, is_index, pick_platform,
};

/// Whether the registry `host[:port]` is this machine, spoken to over plain HTTP.
pub(crate) fn is_local(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

fn client(registry: &str) -> Client {
    // oci-client is built without a TLS provider of its own: rustls uses the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_local(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        ..Default::default()
    })
}

/// The registry's words for a failed request.
fn words(registry: &str, error: OciDistributionError) -> ImageError {
    let message = match error {
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|e| {
                // The distribution spec's code, as Docker prints it: MANIFEST_UNKNOWN →
                // `manifest unknown`.
                let code = serde_json::to_value(&e.code)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s.to_lowercase().replace('_', " ")))
                    .unwrap_or_default();
                if e.message.is_empty() {
                    code
                } else {
                    format!("{code}: {}", e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        OciDistributionError::ServerError { code, message, url } => {
            format!("unexpected status {code} from {url}: {}", message.trim())
        }
        OciDistributionError::UnauthorizedError { url } => {
            format!(
                "pull access denied, the repository does not exist or needs authorization: {url}"
            )
        }
        OciDistributionError::RequestError(error) => {
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            format!("cannot reach registry {registry}: {chain}")
        }
        other => other.to_string(),
    };
    ImageError::Pull(message)
}

/// Fetches the manifest of `reference` for this platform with its config and layer blobs into
/// `store`; returns the manifest's bytes.
pub(crate) async fn fetch(
    store: &ImageStore,
    reference: &Normalized,
) -> Result<Vec<u8>, ImageError> {
    let image = &reference.reference;
    let registry = image.registry().to_owned();
    let client = client(&registry);
    let auth = RegistryAuth::Anonymous;
    let accepted = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];
    let (mut bytes, _) = client
        .pull_manifest_raw(image, &auth, &accepted)
        .await
        .map_err(|e| words(&registry, e))?;
    if is_index(&bytes) {
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|error| ImageError::Invalid(format!("image index: {error}")))?;
        let chosen = pick_platform(&index)?;
        let by_digest = Reference::with_digest(
            image.registry().to_owned(),
            image.repository().to_owned(),
            chosen.digest.clone(),
        );
        (bytes, _) = client
            .pull_manifest_raw(&by_digest, &auth, &accepted)
            .await
            .map_err(|e| words(&registry, e))?;
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|error| ImageError::Invalid(format!("image manifest: {error}")))?;
    let descriptor = |d: &super::Descriptor| OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size as i64,
        ..Default::default()
    };

    if !store.has_blob(&manifest.config.digest)? {
        let mut config = Vec::new();
        client
            .pull_blob(image, &descriptor(&manifest.config), &mut config)
            .await
            .map_err(|e| words(&registry, e))?;
        store.put_blob_bytes(&config, Some(&manifest.config.digest))?;
    }
    for layer in &manifest.layers {
        if layer.media_type.contains("zstd") {
            return Err(ImageError::Pull(format!(
                "unsupported layer media type {} (gzip and plain tar layers are)",
                layer.media_type
            )));
        }
        if store.has_blob(&layer.digest)? {
            continue;
        }
        let mut stream = client
            .pull_blob_stream(image, &descriptor(layer))
            .await
            .map_err(|e| words(&registry, e))?;
        let tmp = store.tmp_path();
        let written = async {
            let mut file = std::fs::File::create(&tmp).map_err(io_error(&tmp))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|error| {
                    ImageError::Pull(format!(
                        "reading layer {} from {registry}: {error}",
                        layer.digest
                    ))
                })?;
                file.write_all(&chunk).map_err(io_error(&tmp))?;
            }
            Ok::<_, ImageError>(())
        }
        .await;
        if let Err(error) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(error);
        }
        store.put_blob_file(&tmp, Some(&layer.digest))?;
    }
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_gets_plain_http() {
        for (registry, local) in [
            ("127.0.0.1:5000", true),
            ("localhost", true),
            ("localhost:443", true),
            ("[::1]:5000", true),
            ("docker.io", false),
            ("127.0.0.2:5000", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_local(registry), local, "{registry}");
        }
    }
}
