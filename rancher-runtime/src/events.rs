//! Recording Kubernetes Events (`events.k8s.io/v1`) under a reporting controller's
//! name.
//!
//! A thin layer over kube-runtime's recorder, which deduplicates repeated events
//! into series; this one fixes the reporting controller and instance once and adds
//! one-line helpers for the two event types.

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder as KubeRecorder, Reporter},
};

pub use kube::runtime::events::EventType as Type;

/// An error and its causes on one line (`outer: cause: root cause`), for
/// event notes and status messages, which show no source chain by
/// themselves. A cause whose text the line already holds is left out.
///
/// ```
/// #[derive(Debug)]
/// struct Writing(std::io::Error);
///
/// impl std::fmt::Display for Writing {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("writing the map file")
///     }
/// }
///
/// impl std::error::Error for Writing {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let error = Writing(std::io::Error::other("disk full"));
/// assert_eq!(
///     rancher_runtime::events::error_chain(&error),
///     "writing the map file: disk full"
/// );
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Records events for one controller. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: KubeRecorder,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `rancher.io/ingress`), with this
    /// replica as the instance (`$POD_NAME`, else none).
    pub fn new(client: kube::Client, controller: impl Into<String>) -> Self {
        let reporter = Reporter {
            controller: controller.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            inner: KubeRecorder::new(client, reporter),
        }
    }

    /// Publishes an event about `object`. Failures are logged, not returned: an
    /// event is best-effort and must never fail a reconcile.
    pub async fn publish<K>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate_note(note.into())),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = object.object_ref(&());
        if let Err(error) = self.inner.publish(&event, &reference).await {
            tracing::warn!(
                reason,
                name = reference.name.as_deref().unwrap_or_default(),
                error = &error as &dyn std::error::Error,
                "failed to record event"
            );
        }
    }

    /// Publishes a `Normal` event.
    pub async fn normal<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        self.publish(object, EventType::Normal, reason, action, note)
            .await;
    }

    /// Publishes a `Warning` event.
    pub async fn warning<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        self.publish(object, EventType::Warning, reason, action, note)
            .await;
    }
}

/// The API rejects notes over 1 kB.
fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let note = "é".repeat(1000);
        let cut = truncate_note(note);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate_note("short".into()), "short");
    }
}
