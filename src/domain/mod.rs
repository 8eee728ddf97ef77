//! Protocol-neutral types shared by every stage of one Check: the request as inferguard sees
//! it, the authenticated principal, what the request asks of the model, and the decision.
//!
//! Nothing here knows about Envoy, gRPC or the database.

mod action;
mod decision;
mod permission;
mod principal;
mod request;

pub use action::{Action, ApiKind};
pub use decision::{Allow, Denial, DenyKind};
pub use permission::{ALL_PERMISSIONS, Permission, UnknownPermission};
pub use principal::{AuthMethod, Principal, PrincipalKind, RoleSource};
pub use request::Request;
