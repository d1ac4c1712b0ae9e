//! CustomResourceDefinitions' pure logic, which the API server's custom resource handling
//! calls: a version's schema compiled once into a structural form ([`schema::Structural`]),
//! then applied to each custom resource: pruning unknown fields (`prune`), defaulting
//! (`default`), validation in kube-apiserver's words (`validate`, with the
//! `x-kubernetes-validations` CEL rules of [`cel`]); the CustomResourceDefinition object's own
//! defaulting and validation ([`validation`]); and printer columns for tables ([`columns`]).
//! Nothing here reads the store or knows HTTP.

// The REST side that serves custom resources is being built against this API; until it
// lands, parts of it are used only by this module's tests.
#![allow(dead_code)]

pub(crate) mod cel;
pub(crate) mod columns;
mod defaulting;
mod formats;
mod prune;
pub(crate) mod schema;
pub(crate) mod validate;
pub(crate) mod validation;
