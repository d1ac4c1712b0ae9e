//! Sample operators: Kubernetes extended the way anyone extends it, with a
//! CustomResourceDefinition and a controller that is an ordinary API client. The one here is
//! the website operator (`orrery operator website`): a `Website` (`samples.orrery.dev/v1`,
//! [`website`]) becomes a ConfigMap holding its page, a Deployment of the built-in
//! `orrery/hello` serving it and a Service ([`desired`]), kept so by kube-runtime's
//! `Controller` ([`reconcile`]), which writes the Website's status and Events.
//!
//! Why it lives here, as a subcommand of the `orrery` binary, and not in the controller
//! manager: a real operator is not part of the control plane. It is a program that talks to
//! the API server like kubectl does, with whatever credentials it is given, and it cannot
//! tell Orrery from any other cluster. So this module imports nothing of the API server or
//! the controller manager, and uses only the `kube` crate, as any Rust operator would: it
//! runs from the host against any cluster (`--kubeconfig`, or the usual `KUBECONFIG` and
//! `~/.kube/config`), and in a pod from the built-in image, which holds this binary at
//! `/orrery` (`manifests/website-operator.yaml`: a ServiceAccount, a ClusterRole with exactly
//! what it needs, and a Deployment running `/orrery operator website` with the in-cluster
//! configuration). Being in the one binary is what lets it run offline in the built-in image;
//! being outside the control plane is what makes it a sample of the real thing: its requests
//! are the `website-operator` hops in the dashboard, authorized like any other client's.

pub mod desired;
pub mod reconcile;
pub mod website;

use std::path::Path;

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The kubeconfig given could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What was wrong with it.
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor an in-cluster configuration was found.
    #[error("no cluster to talk to: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot make a client: {0}")]
    Client(#[source] kube::Error),
    /// The API server does not serve Websites.
    #[error(
        "the API server does not serve websites.samples.orrery.dev: apply its definition first \
         (kubectl apply -f manifests/website-crd.yaml, or orrery operator website crd | kubectl apply -f -)"
    )]
    NotInstalled,
    /// Listing Websites failed otherwise.
    #[error("listing websites: {0}")]
    List(#[source] kube::Error),
}

/// A client as any operator makes one: from `kubeconfig` when given, else inferred as kube
/// (and client-go) infer it: `KUBECONFIG` or `~/.kube/config`, then the in-cluster
/// configuration a pod's service account gives. Its requests carry the operator's name as
/// their user agent ([`named`]).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, OperatorError> {
    // kube's rustls needs a process-wide crypto provider; Orrery builds rustls on ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let wrap = |source| OperatorError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(wrap)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(wrap)?
        }
        None => kube::Config::infer().await?,
    };
    kube::Client::try_from(named(config)).map_err(OperatorError::Client)
}

/// `config` with the operator's name (`website-operator`) as the `User-Agent` of every request,
/// as a client-go program names itself (`rest.Config.UserAgent`): kube sends none of its own,
/// and the API server names a request's client after its user agent (the dashboard's
/// `website-operator` hops, upstream's audit log and metrics).
pub fn named(mut config: kube::Config) -> kube::Config {
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(reconcile::MANAGER),
    ));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_requests_carry_its_name_as_user_agent() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("someone-else"),
        ));
        let agents: Vec<_> = named(config)
            .headers
            .iter()
            .filter(|(name, _)| name == http::header::USER_AGENT)
            .map(|(_, value)| value.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(agents, ["website-operator"]);
    }
}
