//! A Fooocus body's fields, from JSON or from a v1 form.

use std::collections::BTreeSet;

use crate::inference::json::{Map, Value};

use crate::domain::Request;
use crate::inference::InferenceError;
use crate::inference::http::{MediaType, media_type, urlencoded_pairs};
use crate::inference::json::{Obj, parse_object};
use crate::inference::multipart;

use super::NO_IMAGE;

/// A body's fields: JSON values, or a form's text fields as strings plus its file names.
pub(super) struct Input<'r> {
    pub(super) map: Map<'r>,
    pub(super) files: BTreeSet<String>,
    pub(super) form: bool,
}

impl Input<'_> {
    pub(super) fn obj(&self) -> Obj<'_> {
        Obj::root(&self.map)
    }

    /// True when an image is given in `key`, as a file or as a non-empty image string.
    pub(super) fn image(&self, key: &str) -> bool {
        self.files.contains(key) || matches!(self.map.get(key), Some(Value::String(s)) if given(s))
    }
}

/// A JSON body. FastAPI parses a missing Content-Type as JSON, and refuses `text/plain`,
/// forms and anything else on a JSON route.
pub(super) fn json_input(req: &Request) -> Result<Input<'_>, InferenceError> {
    match media_type(req)? {
        MediaType::Missing | MediaType::Json => Ok(Input {
            map: parse_object(&req.body)?,
            files: BTreeSet::new(),
            form: false,
        }),
        _ => Err(InferenceError::Malformed(
            "this Fooocus endpoint takes a JSON body (Content-Type: application/json)".into(),
        )),
    }
}

/// A v1 form body. Starlette reads multipart and url-encoded forms and treats any other
/// body as an empty form (every field at its default). For each name the last part wins,
/// and an empty text value counts as absent (FastAPI then applies the default).
pub(super) fn form_input(req: &Request) -> Result<Input<'static>, InferenceError> {
    let parts = match media_type(req)? {
        MediaType::Multipart(Some(boundary)) => multipart::parse(&req.body, &boundary)?,
        MediaType::Multipart(None) => {
            return Err(InferenceError::Malformed(
                "the multipart Content-Type has no boundary".into(),
            ));
        }
        MediaType::UrlEncoded => urlencoded_pairs(&req.body)?
            .into_iter()
            .map(|(k, v)| (k, multipart::Part::Text(v)))
            .collect(),
        _ => Vec::new(),
    };
    let mut map = Map::new();
    let mut files = BTreeSet::new();
    for (name, part) in parts {
        map.remove(&name);
        files.remove(&name);
        match part {
            multipart::Part::Text(text) => {
                map.insert(name, Value::String(text.into()));
            }
            multipart::Part::File { .. } => {
                files.insert(name);
            }
        }
    }
    map.retain(|_, v| !matches!(v, Value::String(s) if s.is_empty()));
    Ok(Input {
        map,
        files,
        form: true,
    })
}

pub(super) fn given(image: &str) -> bool {
    !NO_IMAGE.contains(&image)
}
