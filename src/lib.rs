//! inferguard: an Envoy external-authorization sidecar that ties every request to a generative
//! model to a person, limits it to what their role allows, and says why when it refuses.
//!
//! One Check flows one way: [`protocol`] → [`identity`] → [`inference`] → [`policy`], driven
//! by [`authorizer`], with the [`store`] underneath. [`app`] wires it all together.

pub mod admin;
pub mod app;
pub mod audit;
pub mod authorizer;
pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod identity;
pub mod inference;
pub mod policy;
pub mod protocol;
pub mod scim;
pub mod store;
pub mod telemetry;
pub mod tls;
