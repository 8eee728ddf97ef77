//! Envoy's ext_authz v3 protocol: CheckRequest → [`Request`](crate::domain::Request), decision
//! → CheckResponse. The only module that knows Envoy's types.

mod convert;
mod ext_authz;
mod response;

pub use convert::to_request;
pub use ext_authz::{CheckService, UpstreamCredential};
pub use response::{denial_response, status_for};
