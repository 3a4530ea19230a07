//! Just enough of Kubernetes' protobuf encoding to accept the bodies typed clients send
//! for what kubectl's generators post: Namespaces, ConfigMaps, Secrets, ServiceAccounts
//! (`kubectl create namespace|configmap|secret|serviceaccount`), Services (`kubectl create
//! service`, `kubectl expose`), Deployments (`kubectl create deployment`) and Ingresses
//! (`kubectl create ingress`). Other kinds, and fields the sandbox does not know (volumes,
//! probes, affinity, ...), are refused with 415 naming the field rather than guessed at.

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
    /// An integer JSON omits when zero (a non-pointer Go field).
    Int,
    /// An integer kept even when zero (a pointer Go field: `replicas: 0`).
    OptInt,
    /// A boolean JSON omits when false (a non-pointer Go field).
    Bool,
    /// A boolean kept even when false (a pointer Go field).
    OptBool,
    StrMap,
    BytesMap,
    StrList,
    Msg(&'static [F]),
    /// A repeated message: a JSON array.
    MsgList(&'static [F]),
    /// A message whose fields JSON puts in the parent (`IngressRule.http`).
    Inline(&'static [F]),
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
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
// What `kubectl auth can-i` and `kubectl auth whoami` post.
const RESOURCE_ATTRIBUTES: &[F] = &[
    (1, "namespace", Kind::Str),
    (2, "verb", Kind::Str),
    (3, "group", Kind::Str),
    (4, "version", Kind::Str),
    (5, "resource", Kind::Str),
    (6, "subresource", Kind::Str),
    (7, "name", Kind::Str),
    (8, "fieldSelector", Kind::Skip),
    (9, "labelSelector", Kind::Skip),
];
const NON_RESOURCE_ATTRIBUTES: &[F] = &[(1, "path", Kind::Str), (2, "verb", Kind::Str)];
const SELF_SUBJECT_ACCESS_REVIEW_SPEC: &[F] = &[
    (1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Kind::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
];
const SELF_SUBJECT_ACCESS_REVIEW: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
    (3, "status", Kind::Skip),
];
const SELF_SUBJECT_RULES_REVIEW: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(&[(1, "namespace", Kind::Str)])),
    (3, "status", Kind::Skip),
];
const SELF_SUBJECT_REVIEW: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "status", Kind::Skip),
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
    (4, "immutable", Kind::OptBool),
];
const SECRET: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::BytesMap),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::StrMap),
    (5, "immutable", Kind::OptBool),
];
const LOCAL_OBJECT_REFERENCE: &[F] = &[(1, "name", Kind::Str)];
const OBJECT_REFERENCE: &[F] = &[
    (1, "kind", Kind::Str),
    (2, "namespace", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "fieldPath", Kind::Str),
];
const SERVICE_ACCOUNT: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "secrets", Kind::MsgList(OBJECT_REFERENCE)),
    (3, "imagePullSecrets", Kind::MsgList(LOCAL_OBJECT_REFERENCE)),
    (4, "automountServiceAccountToken", Kind::OptBool),
];
const SERVICE_PORT: &[F] = &[
    (1, "name", Kind::Str),
    (2, "protocol", Kind::Str),
    (3, "port", Kind::Int),
    (4, "targetPort", Kind::IntOrString),
    (5, "nodePort", Kind::Int),
    (6, "appProtocol", Kind::Str),
];
const SERVICE_SPEC: &[F] = &[
    (1, "ports", Kind::MsgList(SERVICE_PORT)),
    (2, "selector", Kind::StrMap),
    (3, "clusterIP", Kind::Str),
    (4, "type", Kind::Str),
    (5, "externalIPs", Kind::StrList),
    (7, "sessionAffinity", Kind::Str),
    (8, "loadBalancerIP", Kind::Str),
    (9, "loadBalancerSourceRanges", Kind::StrList),
    (10, "externalName", Kind::Str),
    (11, "externalTrafficPolicy", Kind::Str),
    (12, "healthCheckNodePort", Kind::Int),
    (13, "publishNotReadyAddresses", Kind::Bool),
    (17, "ipFamilyPolicy", Kind::Str),
    (18, "clusterIPs", Kind::StrList),
    (19, "ipFamilies", Kind::StrList),
    (20, "allocateLoadBalancerNodePorts", Kind::OptBool),
    (21, "loadBalancerClass", Kind::Str),
    (22, "internalTrafficPolicy", Kind::Str),
    (23, "trafficDistribution", Kind::Str),
];
const SERVICE: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(SERVICE_SPEC)),
    (3, "status", Kind::Skip),
];
const LABEL_SELECTOR_REQUIREMENT: &[F] = &[
    (1, "key", Kind::Str),
    (2, "operator", Kind::Str),
    (3, "values", Kind::StrList),
];
const LABEL_SELECTOR: &[F] = &[
    (1, "matchLabels", Kind::StrMap),
    (
        2,
        "matchExpressions",
        Kind::MsgList(LABEL_SELECTOR_REQUIREMENT),
    ),
];
const CONTAINER_PORT: &[F] = &[
    (1, "name", Kind::Str),
    (2, "hostPort", Kind::Int),
    (3, "containerPort", Kind::Int),
    (4, "protocol", Kind::Str),
    (5, "hostIP", Kind::Str),
];
const ENV_VAR: &[F] = &[(1, "name", Kind::Str), (2, "value", Kind::Str)];
/// Only empty resource requirements (`resources: {}`) decode: quantities
/// are refused.
const RESOURCE_REQUIREMENTS: &[F] = &[];
const CONTAINER: &[F] = &[
    (1, "name", Kind::Str),
    (2, "image", Kind::Str),
    (3, "command", Kind::StrList),
    (4, "args", Kind::StrList),
    (5, "workingDir", Kind::Str),
    (6, "ports", Kind::MsgList(CONTAINER_PORT)),
    (7, "env", Kind::MsgList(ENV_VAR)),
    (8, "resources", Kind::Msg(RESOURCE_REQUIREMENTS)),
    (13, "terminationMessagePath", Kind::Str),
    (14, "imagePullPolicy", Kind::Str),
    (16, "stdin", Kind::Bool),
    (17, "stdinOnce", Kind::Bool),
    (18, "tty", Kind::Bool),
    (20, "terminationMessagePolicy", Kind::Str),
];
const POD_SPEC: &[F] = &[
    (2, "containers", Kind::MsgList(CONTAINER)),
    (3, "restartPolicy", Kind::Str),
    (4, "terminationGracePeriodSeconds", Kind::OptInt),
    (5, "activeDeadlineSeconds", Kind::OptInt),
    (6, "dnsPolicy", Kind::Str),
    (7, "nodeSelector", Kind::StrMap),
    (8, "serviceAccountName", Kind::Str),
    (9, "serviceAccount", Kind::Str),
    (10, "nodeName", Kind::Str),
    (11, "hostNetwork", Kind::Bool),
    (12, "hostPID", Kind::Bool),
    (13, "hostIPC", Kind::Bool),
    (
        15,
        "imagePullSecrets",
        Kind::MsgList(LOCAL_OBJECT_REFERENCE),
    ),
    (16, "hostname", Kind::Str),
    (17, "subdomain", Kind::Str),
    (19, "schedulerName", Kind::Str),
    (20, "initContainers", Kind::MsgList(CONTAINER)),
    (21, "automountServiceAccountToken", Kind::OptBool),
    (24, "priorityClassName", Kind::Str),
];
const POD_TEMPLATE_SPEC: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(POD_SPEC)),
];
const DEPLOYMENT_STRATEGY: &[F] = &[(1, "type", Kind::Str)];
const DEPLOYMENT_SPEC: &[F] = &[
    (1, "replicas", Kind::OptInt),
    (2, "selector", Kind::Msg(LABEL_SELECTOR)),
    (3, "template", Kind::Msg(POD_TEMPLATE_SPEC)),
    (4, "strategy", Kind::Msg(DEPLOYMENT_STRATEGY)),
    (5, "minReadySeconds", Kind::Int),
    (6, "revisionHistoryLimit", Kind::OptInt),
    (7, "paused", Kind::Bool),
    (9, "progressDeadlineSeconds", Kind::OptInt),
];
const DEPLOYMENT: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(DEPLOYMENT_SPEC)),
    (3, "status", Kind::Skip),
];
const SERVICE_BACKEND_PORT: &[F] = &[(1, "name", Kind::Str), (2, "number", Kind::Int)];
const INGRESS_SERVICE_BACKEND: &[F] = &[
    (1, "name", Kind::Str),
    (2, "port", Kind::Msg(SERVICE_BACKEND_PORT)),
];
const TYPED_LOCAL_OBJECT_REFERENCE: &[F] = &[
    (1, "apiGroup", Kind::Str),
    (2, "kind", Kind::Str),
    (3, "name", Kind::Str),
];
const INGRESS_BACKEND: &[F] = &[
    (3, "resource", Kind::Msg(TYPED_LOCAL_OBJECT_REFERENCE)),
    (4, "service", Kind::Msg(INGRESS_SERVICE_BACKEND)),
];
const HTTP_INGRESS_PATH: &[F] = &[
    (1, "path", Kind::Str),
    (2, "backend", Kind::Msg(INGRESS_BACKEND)),
    (3, "pathType", Kind::Str),
];
const HTTP_INGRESS_RULE_VALUE: &[F] = &[(1, "paths", Kind::MsgList(HTTP_INGRESS_PATH))];
const INGRESS_RULE_VALUE: &[F] = &[(1, "http", Kind::Msg(HTTP_INGRESS_RULE_VALUE))];
const INGRESS_RULE: &[F] = &[
    (1, "host", Kind::Str),
    (2, "ingressRuleValue", Kind::Inline(INGRESS_RULE_VALUE)),
];
const INGRESS_TLS: &[F] = &[(1, "hosts", Kind::StrList), (2, "secretName", Kind::Str)];
const INGRESS_SPEC: &[F] = &[
    (1, "defaultBackend", Kind::Msg(INGRESS_BACKEND)),
    (2, "tls", Kind::MsgList(INGRESS_TLS)),
    (3, "rules", Kind::MsgList(INGRESS_RULE)),
    (4, "ingressClassName", Kind::Str),
];
const INGRESS: &[F] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(INGRESS_SPEC)),
    (3, "status", Kind::Skip),
];
const INT_OR_STRING: &[F] = &[
    (1, "type", Kind::Int),
    (2, "intVal", Kind::Int),
    (3, "strVal", Kind::Str),
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
            (Kind::Int | Kind::OptInt, 0) => {
                // int32 and int64 fields: negative values are sign-extended.
                #[allow(clippy::cast_possible_wrap)]
                let v = r.varint()? as i64;
                if v != 0 || matches!(kind, Kind::OptInt) {
                    out.insert(name, json!(v));
                }
            }
            (Kind::Bool | Kind::OptBool, 0) => {
                let v = r.varint()? != 0;
                if v || matches!(kind, Kind::OptBool) {
                    out.insert(name, json!(v));
                }
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
            (Kind::MsgList(inner), 2) => {
                let v = Value::Object(message(r.bytes()?, inner, &name)?);
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(v);
                }
            }
            (Kind::Inline(inner), 2) => {
                out.extend(message(r.bytes()?, inner, &name)?);
            }
            (Kind::IntOrString, 2) => {
                let v = message(r.bytes()?, INT_OR_STRING, &name)?;
                let value = if v.get("type").and_then(Value::as_i64) == Some(1) {
                    v.get("strVal").cloned().unwrap_or_else(|| json!(""))
                } else {
                    v.get("intVal").cloned().unwrap_or_else(|| json!(0))
                };
                out.insert(name, value);
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
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("networking.k8s.io/v1", "Ingress") => INGRESS,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_SUBJECT_RULES_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
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
