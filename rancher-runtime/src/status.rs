//! Writing the status subresource with a named field manager.

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

/// Errors from status writes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API rejected the status patch.
    #[error("failed to patch the status of {kind} {name}")]
    PatchStatusFailed {
        /// The kind of the object.
        kind: String,
        /// The object's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Result of a status write.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Merge-patches `status` into the `/status` subresource of `name`, as
/// `field_manager`. Only the fields present in `status` change; `null` removes one.
pub async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    field_manager: &str,
    status: impl Serialize + std::fmt::Debug,
) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let params = PatchParams {
        field_manager: Some(field_manager.to_owned()),
        ..PatchParams::default()
    };
    let body = serde_json::json!({ "status": status });
    api.patch_status(name, &params, &Patch::Merge(&body))
        .await
        .map_err(|source| Error::PatchStatusFailed {
            kind: K::kind(&K::DynamicType::default()).into_owned(),
            name: name.to_owned(),
            source,
        })
}
