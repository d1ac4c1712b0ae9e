//! Image references, normalised the way Docker and containerd do (`busybox` →
//! `docker.io/library/busybox:latest`), and which of them name a built-in image.

use std::str::FromStr;

use oci_client::Reference;

use super::ImageError;

/// A normalised reference: `registry/repository` plus a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Normalized {
    /// The whole normalised reference.
    pub(crate) whole: String,
    /// What `oci-client` pulls with.
    pub(crate) reference: Reference,
}

/// Normalises `reference` like Docker: Docker Hub's registry and `library/` filled in, `latest`
/// when neither a tag nor a digest is given; a digest reference keeps only its digest.
pub(crate) fn normalize(reference: &str) -> Result<Normalized, ImageError> {
    let trimmed = reference.trim();
    let parsed = Reference::from_str(trimmed).map_err(|error| ImageError::InvalidReference {
        reference: reference.to_owned(),
        message: error.to_string(),
    })?;
    let whole = match parsed.digest() {
        Some(digest) => format!("{}/{}@{digest}", parsed.registry(), parsed.repository()),
        None => format!(
            "{}/{}:{}",
            parsed.registry(),
            parsed.repository(),
            parsed.tag().unwrap_or("latest")
        ),
    };
    let reference = match parsed.digest() {
        Some(digest) => Reference::with_digest(
            parsed.registry().to_owned(),
            parsed.repository().to_owned(),
            digest.to_owned(),
        ),
        None => Reference::with_tag(
            parsed.registry().to_owned(),
            parsed.repository().to_owned(),
            parsed.tag().unwrap_or("latest").to_owned(),
        ),
    };
    Ok(Normalized { whole, reference })
}

/// The built-in images, generated from the `orrery` binary and never pulled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Builtin {
    /// `orrery/hello:<any tag>`: the `hello` HTTP server on port 8080.
    Hello,
    /// `orrery/pause:<any tag>`: the pod sandbox's pause process.
    Pause,
}

impl Builtin {
    /// Every built-in image.
    pub(crate) const ALL: [Builtin; 2] = [Builtin::Hello, Builtin::Pause];

    /// Its repository on Docker Hub's registry name.
    pub(crate) fn repository(self) -> &'static str {
        match self {
            Builtin::Hello => "orrery/hello",
            Builtin::Pause => "orrery/pause",
        }
    }

    /// Its entrypoint: the `orrery` binary's subcommand of the same name.
    pub(crate) fn entrypoint(self) -> [&'static str; 2] {
        match self {
            Builtin::Hello => ["/orrery", "hello"],
            Builtin::Pause => ["/orrery", "pause"],
        }
    }

    /// Which built-in image `reference` (normalised) names, if any: `docker.io/orrery/hello`
    /// or `docker.io/orrery/pause` with any tag (digests name content, not a built-in).
    pub(crate) fn of(reference: &Normalized) -> Option<Builtin> {
        let parsed = &reference.reference;
        if parsed.registry() != "docker.io" || parsed.digest().is_some() {
            return None;
        }
        Builtin::ALL
            .into_iter()
            .find(|builtin| builtin.repository() == parsed.repository())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases = [
            ("busybox", "docker.io/library/busybox:latest".to_owned()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_owned()),
            (
                "library/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1".to_owned(),
            ),
            ("orrery/hello:v1", "docker.io/orrery/hello:v1".to_owned()),
            (
                "127.0.0.1:5000/busybox:1",
                "127.0.0.1:5000/busybox:1".to_owned(),
            ),
            ("localhost:5000/a/b", "localhost:5000/a/b:latest".to_owned()),
            (
                "quay.io/coreos/etcd:v3",
                "quay.io/coreos/etcd:v3".to_owned(),
            ),
            (
                &format!("busybox@{digest}"),
                format!("docker.io/library/busybox@{digest}"),
            ),
            (
                &format!("127.0.0.1:5000/busybox:1@{digest}"),
                format!("127.0.0.1:5000/busybox@{digest}"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                normalize(input).unwrap().whole,
                want,
                "normalising {input:?}"
            );
        }
        for bad in ["", "Busybox", "busybox:", "a b"] {
            assert!(normalize(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn builtins_are_recognised_by_repository() {
        let cases = [
            ("orrery/hello", Some(Builtin::Hello)),
            ("orrery/hello:anything", Some(Builtin::Hello)),
            ("docker.io/orrery/hello:v2", Some(Builtin::Hello)),
            ("orrery/pause:3.10", Some(Builtin::Pause)),
            ("127.0.0.1:5000/orrery/hello:v1", None),
            ("busybox", None),
        ];
        for (input, want) in cases {
            assert_eq!(Builtin::of(&normalize(input).unwrap()), want, "{input:?}");
        }
    }
}
