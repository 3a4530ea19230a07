//! Just enough of Kubernetes' protobuf encoding to accept the bodies typed clients send
//! for Namespaces, ConfigMaps and Secrets (what `kubectl create namespace|configmap|secret`
//! posts). Other kinds, and fields the sandbox does not know, are refused with 415 rather
//! than guessed at.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The protobuf media type kube clients send.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The 4-byte prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// A protobuf body the sandbox cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unsupported(pub(crate) String);

type Result<T, E = Unsupported> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Int,
    Bool,
    StrMap,
    BytesMap,
    StrList,
    Msg(&'static [F]),
    /// Read and dropped: server-owned or output-only fields.
    Skip,
}

/// One known field: number, JSON name, kind.
type F = (u64, &'static str, Kind);

const OBJECT_META: &[F] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (4, "selfLink", Kind::Skip),
    (7, "generation", Kind::Int),
    (8, "creationTimestamp", Kind::Skip),
    (9, "deletionTimestamp", Kind::Skip),
    (10, "deletionGracePeriodSeconds", Kind::Skip),
    (11, "labels", Kind::StrMap),
    (12, "annotations", Kind::StrMap),
    (14, "finalizers", Kind::StrList),
    (15, "clusterName", Kind::Skip),
    (17, "managedFields", Kind::Skip),
];
const NAMESPACE_SPEC: &[F] = &[(1, "finalizers", Kind::StrList)];
const NAMESPACE: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(NAMESPACE_SPEC)),
    (3, "status", Kind::Skip),
];
const CONFIG_MAP: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::StrMap),
    (3, "binaryData", Kind::BytesMap),
    (4, "immutable", Kind::Bool),
];
const SECRET: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::BytesMap),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::StrMap),
    (5, "immutable", Kind::Bool),
];
const TYPE_META: &[F] = &[(1, "apiVersion", Kind::Str), (2, "kind", Kind::Str)];
const UNKNOWN: &[F] = &[
    (1, "typeMeta", Kind::Msg(TYPE_META)),
    (2, "raw", Kind::Bytes),
    (3, "contentEncoding", Kind::Str),
    (4, "contentType", Kind::Str),
];

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| Unsupported("truncated protobuf varint".into()))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(Unsupported("protobuf varint too long".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.varint()?)
            .map_err(|_| Unsupported("protobuf length too large".into()))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| Unsupported("truncated protobuf field".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn utf8(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Unsupported("protobuf string is not UTF-8".into()))
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value)> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while !r.done() {
        let key = r.varint()?;
        let data = if key & 7 == 2 {
            r.bytes()?
        } else {
            return Err(Unsupported("unexpected protobuf map entry".into()));
        };
        match key >> 3 {
            1 => k = utf8(data)?,
            2 if bytes_value => v = json!(base64::engine::general_purpose::STANDARD.encode(data)),
            2 => v = json!(utf8(data)?),
            _ => return Err(Unsupported("unexpected protobuf map entry".into())),
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], fields: &[F], what: &str) -> Result<Map<String, Value>> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut out = Map::new();
    while !r.done() {
        let key = r.varint()?;
        let (number, wire) = (key >> 3, key & 7);
        let Some((_, name, kind)) = fields.iter().find(|(n, _, _)| *n == number) else {
            return Err(Unsupported(format!(
                "protobuf field {number} of {what} is not supported by the sandbox; send JSON or YAML (kubectl create -f)"
            )));
        };
        let name = (*name).to_string();
        match (kind, wire) {
            (Kind::Skip, 0) => {
                r.varint()?;
            }
            (Kind::Skip, 2) => {
                r.bytes()?;
            }
            (Kind::Int, 0) => {
                let v = r.varint()?;
                if v != 0 {
                    out.insert(name, json!(v));
                }
            }
            (Kind::Bool, 0) => {
                out.insert(name, json!(r.varint()? != 0));
            }
            (Kind::Str, 2) => {
                // Generated encoders write empty strings; JSON omits them.
                let v = utf8(r.bytes()?)?;
                if !v.is_empty() {
                    out.insert(name, json!(v));
                }
            }
            (Kind::Bytes, 2) => {
                out.insert(
                    name,
                    json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
                );
            }
            (Kind::StrList, 2) => {
                let v = json!(utf8(r.bytes()?)?);
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(v);
                }
            }
            (Kind::StrMap | Kind::BytesMap, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(kind, Kind::BytesMap))?;
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, v);
                }
            }
            (Kind::Msg(inner), 2) => {
                let v = message(r.bytes()?, inner, &name)?;
                if !v.is_empty() {
                    out.insert(name, Value::Object(v));
                }
            }
            _ => {
                return Err(Unsupported(format!(
                    "protobuf field {number} of {what} has an unexpected wire type {wire}"
                )));
            }
        }
    }
    Ok(out)
}

/// Decodes a Kubernetes protobuf body into the JSON object it stands for.
pub(crate) fn decode(body: &[u8]) -> Result<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| Unsupported("protobuf body without the k8s magic prefix".into()))?;
    let unknown = Value::Object(message(rest, UNKNOWN, "runtime.Unknown")?);
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    let fields = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        _ => {
            return Err(Unsupported(format!(
                "protobuf bodies for {api_version} {kind} are not supported by the sandbox; send JSON or YAML (kubectl create -f)"
            )));
        }
    };
    let mut obj = message(&raw, fields, &kind)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, data: &[u8]) -> Vec<u8> {
        let mut out = vec![
            u8::try_from(n << 3 | 2).unwrap(),
            u8::try_from(data.len()).unwrap(),
        ];
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn decodes_a_config_map() {
        let meta = [
            field(1, b"settings"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
        assert!(decode(&body[..body.len() - 1]).is_err());
    }
}
