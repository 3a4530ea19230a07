//! Seeding a cluster from a directory of YAML (or JSON) manifests.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::managed::Writer;
use crate::resource::APIEXTENSIONS_GROUP;
use crate::store::{Part, State};

/// The field manager of objects loaded from manifests, as `kubectl create -f` names itself.
pub const SEED_MANAGER: &str = "kubectl-create";

/// One manifest document that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: document {document}: {reason}", file.display())]
#[non_exhaustive]
pub struct SeedError {
    /// The manifest file.
    pub file: PathBuf,
    /// The document's position in the file, counting from 1.
    pub document: usize,
    /// Why it was not loaded.
    pub reason: String,
}

/// Errors reading the manifests directory itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory (or a file in it) could not be read.
    #[error("reading manifests from {path}")]
    Read {
        /// What was being read.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Seeding result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Splits a multi-document YAML stream on `---` lines; returns (1-based index, text).
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut index = 1;
    let mut started = false;
    for line in text.lines() {
        if line.starts_with("---") && line[3..].trim().is_empty() || line.starts_with("--- ") {
            if started || !cur.trim().is_empty() {
                docs.push((index, std::mem::take(&mut cur)));
                index += 1;
            }
            started = true;
            if let Some(rest) = line.strip_prefix("--- ") {
                cur.push_str(rest);
                cur.push('\n');
            }
            continue;
        }
        if line.trim() == "..." {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        docs.push((index, cur));
    }
    docs
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// The manifest files in `dir`, sorted by name.
pub(crate) fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if path.is_file() && matches!(ext, "yaml" | "yml" | "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A parsed document waiting to be created.
struct Pending {
    file: PathBuf,
    document: usize,
    object: Value,
}

fn priority(obj: &Value) -> u8 {
    match (obj["apiVersion"].as_str(), obj["kind"].as_str()) {
        (Some("v1"), Some("Namespace")) => 0,
        (Some(av), Some("CustomResourceDefinition")) if av.starts_with(APIEXTENSIONS_GROUP) => 1,
        _ => 2,
    }
}

/// Loads every object in the manifest `files` into `state`. Bad documents are reported and
/// skipped; the good ones load.
pub(crate) fn load(state: &mut State, files: &[PathBuf]) -> Result<Vec<SeedError>> {
    let mut errors = Vec::new();
    let mut pending = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        for (document, doc) in documents(&text) {
            if is_blank(&doc) {
                continue;
            }
            let err = |reason: String| SeedError {
                file: file.clone(),
                document,
                reason,
            };
            let value = match crate::server::decode(doc.as_bytes(), true) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(err(e.message));
                    continue;
                }
            };
            let items = if value["kind"].as_str().is_some_and(|k| k.ends_with("List"))
                && value["items"].is_array()
            {
                value["items"].as_array().cloned().unwrap_or_default()
            } else {
                vec![value]
            };
            for object in items {
                pending.push(Pending {
                    file: file.clone(),
                    document,
                    object,
                });
            }
        }
    }
    pending.sort_by_key(|p| priority(&p.object));
    let by = Writer::named(SEED_MANAGER);
    for p in pending {
        let err = |reason: String| SeedError {
            file: p.file.clone(),
            document: p.document,
            reason,
        };
        let (Some(api_version), Some(kind)) =
            (p.object["apiVersion"].as_str(), p.object["kind"].as_str())
        else {
            errors.push(err("apiVersion and kind must be set".to_string()));
            continue;
        };
        let Some(rt) = state.registry.find_kind(api_version, kind) else {
            errors.push(err(format!(
                "no kind {kind:?} is registered for version {api_version:?}"
            )));
            continue;
        };
        let ns = if rt.namespaced {
            p.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let status = p.object.get("status").cloned();
        match state.create(&rt, &ns, p.object, &by) {
            Ok(created) => {
                if rt.status
                    && let Some(status) =
                        status.filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
                {
                    let name = created["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut with_status = created.value.clone();
                    with_status["status"] = status;
                    if let Err(e) = state.update(&rt, &ns, &name, with_status, Part::Status, &by) {
                        errors.push(err(format!("status not loaded: {}", e.message)));
                    }
                }
            }
            Err(e) => errors.push(err(e.message)),
        }
    }
    for e in &errors {
        tracing::warn!(file = %e.file.display(), document = e.document, reason = %e.reason, "manifest not loaded");
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_counts_from_one() {
        let docs = documents("a: 1\n---\nb: 2\n--- \n# only a comment\n---\nc: 3\n");
        let idx: Vec<usize> = docs.iter().map(|d| d.0).collect();
        assert_eq!(idx, vec![1, 2, 3, 4]);
        assert!(is_blank(&docs[2].1));
        assert!(docs[3].1.contains("c: 3"));
    }
}
