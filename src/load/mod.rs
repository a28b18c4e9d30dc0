//! The tables of a config folder: the tenant table (TSV) and the migration
//! state (TOML), parsed and checked against a validated
//! [`Config`](crate::config::Config) into the structures routing reads.
//!
//! Above both `config` (the validated settings, file:line problems) and
//! `routing` (the tables it decides on): a loader names both, neither of
//! them names a loader. Also here: the check of a folder whose
//! `predictor.toml` is refused ([`salvage`]), so that one look lists the
//! problems of every file.

pub mod migration;
pub mod salvage;
pub mod tenants;
