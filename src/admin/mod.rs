//! The admin gRPC API (`inferguard.admin.v1.Admin`, proto/inferguard/admin/v1/admin.proto):
//! the CLI's store commands, served on the admin listener to authenticated callers with the
//! admin permissions, and the client the CLI uses with `--server`.

/// Code generated from proto/inferguard/admin/v1/admin.proto.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inferguard.admin.v1");

    /// The encoded file descriptor set of the admin API, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/admin_descriptor.bin"));
}

pub mod auth;
pub mod client;
pub mod convert;
pub mod server;
pub mod service;

#[cfg(test)]
mod tests;
