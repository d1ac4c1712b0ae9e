//! CustomResourceDefinitions' pure logic, which the API server's custom resource handling
//! calls: a version's schema compiled once into a structural form ([`schema::Structural`]),
//! then applied to each custom resource: pruning unknown fields (`prune`), defaulting
//! (`default`), validation in kube-apiserver's words (`validate`, with the
//! `x-kubernetes-validations` CEL rules of [`cel`]); the CustomResourceDefinition object's own
//! defaulting and validation ([`validation`]); and printer columns for tables ([`columns`]).
//! Those parts read no store and know no HTTP; [`served`] follows the CRDs from the store into
//! the resources the API server serves, and [`controller`] runs the naming, establishing and
//! finalizer controllers over a loopback client.

pub(crate) mod cel;
pub(crate) mod columns;
pub(crate) mod controller;
mod defaulting;
mod formats;
mod prune;
pub(crate) mod schema;
pub(crate) mod served;
pub(crate) mod validate;
pub(crate) mod validation;
