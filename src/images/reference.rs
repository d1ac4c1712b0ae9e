//! Image references, normalised the way Docker and containerd do (`busybox` →
//! `docker.io/library/busybox:latest`), and which of them name a built-in image.

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
    let invalid = |message: &str| ImageError::InvalidReference {
        reference: reference.to_owned(),
        message: message.to_owned(),
    };
    let Parsed {
        registry,
        repository,
        tag,
        digest,
    } = parse(reference.trim()).map_err(invalid)?;
    Ok(match digest {
        Some(digest) => Normalized {
            whole: format!("{registry}/{repository}@{digest}"),
            reference: Reference::with_digest(registry, repository, digest),
        },
        None => {
            let tag = tag.unwrap_or_else(|| "latest".to_owned());
            Normalized {
                whole: format!("{registry}/{repository}:{tag}"),
                reference: Reference::with_tag(registry, repository, tag),
            }
        }
    })
}

/// A reference split into its parts, the registry and repository normalised.
struct Parsed {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Splits and checks `name[:tag][@digest]` against the grammar of distribution's `reference`
/// package, as `oci-spec`'s `Reference::from_str` does, with its messages. Hand-written
/// because that parser's regular expression, with its Unicode classes, keeps megabytes of
/// matcher caches for every thread that has parsed a reference (8 MiB in a busy cluster).
fn parse(s: &str) -> Result<Parsed, &'static str> {
    const INVALID: &str = "invalid reference format";
    if s.is_empty() {
        return Err("repository name must have at least one component");
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':').ok_or(INVALID)?;
        if !is_algorithm(algorithm) || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(INVALID);
        }
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err("unsupported digest algorithm"),
        };
        if hex.len() != want {
            return Err("invalid checksum digest length");
        }
    }
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last..].rfind(':') {
        Some(i) => (&rest[..last + i], Some(&rest[last + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let ok = tag.len() <= 128
            && tag.bytes().next().is_some_and(word)
            && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
        if !ok {
            return Err(INVALID);
        }
    }
    let components: Vec<&str> = name.split('/').collect();
    let paths_ok = components[1..].iter().all(|c| is_path_component(c));
    let first = components[0];
    if !paths_ok || !(is_path_component(first) || components.len() > 1 && is_domain(first)) {
        return Err(INVALID);
    }
    // Docker's normalisation: a first component that looks like a host is the registry.
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => {
            (left.to_owned(), right.to_owned())
        }
        _ => ("docker.io".to_owned(), name.to_owned()),
    };
    if registry == "index.docker.io" {
        registry = "docker.io".to_owned();
    }
    if registry == "docker.io" && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    if repository.len() > 255 {
        return Err("repository name must not be more than 255 characters");
    }
    Ok(Parsed {
        registry,
        repository,
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(&b) {
            let ok = matches!(separator.as_str(), "" | "." | "_" | "__")
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

/// Host labels (letters, digits, inner `-`) joined by `.`, with an optional `:port`.
fn is_domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (d, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A digest algorithm: `[A-Za-z][A-Za-z0-9]*` parts joined by `-`, `_`, `+` or `.`.
fn is_algorithm(a: &str) -> bool {
    a.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    })
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
            (
                "a--b/c__d/e.f_g:V1.0-rc_1",
                "docker.io/a--b/c__d/e.f_g:V1.0-rc_1".to_owned(),
            ),
            (
                "My-Registry.io:443/x",
                "My-Registry.io:443/x:latest".to_owned(),
            ),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000".to_owned(),
            ),
            ("my_host/x", "docker.io/my_host/x:latest".to_owned()),
        ];
        for (input, want) in cases {
            assert_eq!(
                normalize(input).unwrap().whole,
                want,
                "normalising {input:?}"
            );
        }
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a b",
            "a//b",
            "a/",
            "/a",
            "a--",
            "a._b",
            "a___b",
            "-a",
            "busybox:-1",
            "busybox:é",
            "Host.io:x/a",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
        ] {
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
