//! Recording Kubernetes Events (`events.k8s.io/v1`) under a reporting controller's
//! name.
//!
//! Repeats of an event (same object, type, reason, action and note) within six
//! minutes become a series on the first one (`series.count`,
//! `series.lastObservedTime`) instead of new objects, as client-go's recorder
//! does. The events remembered for that are bounded ([`CACHE_ENTRIES`]): a
//! controller that sees many short-lived objects keeps its memory, which
//! kube-runtime's recorder (every event of the last six minutes, and a table
//! that never shrinks) did not.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1 as events},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Resource,
    api::{Patch, PatchParams, PostParams},
};
use parking_lot::Mutex;
use serde_json::json;

/// Whether an event is informational or a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// How long a repeat still counts into the first event's series (client-go's
/// and kube-runtime's six minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How many recent events a recorder remembers for series at most (client-go's
/// older correlator keeps 4 096; a series is for one object's repeated event,
/// and a controller has few of those at a time). Past that the oldest is
/// forgotten, and its next repeat starts a new event. About half a megabyte
/// when full: a table of 4 096 slots of 56 bytes, set up once, and about
/// 250 bytes per event.
pub const CACHE_ENTRIES: usize = 1024;

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
    client: kube::Client,
    controller: String,
    instance: String,
    recent: std::sync::Arc<Mutex<Recent>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// What makes two events the same for a series: type, reason, action, note
/// and the object (apiVersion, kind, namespace, name and uid; not its
/// resourceVersion, which changes with every write), joined into one string
/// so that a remembered event costs one allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key(Box<str>);

impl Key {
    fn new(
        type_: Type,
        reason: &str,
        action: &str,
        note: &str,
        regarding: &ObjectReference,
    ) -> Self {
        let object = [
            &regarding.api_version,
            &regarding.kind,
            &regarding.namespace,
            &regarding.name,
            &regarding.uid,
        ];
        let mut key = String::from(type_.as_str());
        // NUL appears in no Kubernetes name, reason or action; the note,
        // which could hold one, comes last.
        for part in [reason, action]
            .into_iter()
            .chain(object.map(|part| part.as_deref().unwrap_or_default()))
            .chain([note])
        {
            key.push('\0');
            key.push_str(part);
        }
        Self(key.into_boxed_str())
    }
}

/// The Event object a key was last written as (in the namespace the object's
/// events go to).
#[derive(Debug)]
struct Seen {
    name: Box<str>,
    count: i32,
    last: Instant,
}

/// The recent events, at most [`CACHE_ENTRIES`], in a table sized once: with
/// twice as many slots as entries, forgetting and remembering reuse the
/// slots in place and the table never grows.
#[derive(Debug)]
struct Recent {
    seen: HashMap<Key, Seen>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            seen: HashMap::with_capacity(2 * CACHE_ENTRIES),
        }
    }
}

impl Recent {
    /// The Event name and the series count the next write of `key` should
    /// carry, if it repeats a recent event.
    fn repeat(&self, key: &Key, now: Instant) -> Option<(String, i32)> {
        let seen = self.seen.get(key)?;
        (now.duration_since(seen.last) < SERIES_WINDOW)
            .then(|| (seen.name.to_string(), seen.count.saturating_add(1)))
    }

    /// Remembers `key`'s latest write, making room first: events past the
    /// window go, then, if it is still full, the least recently seen one.
    fn remember(&mut self, key: Key, seen: Seen) {
        if !self.seen.contains_key(&key) && self.seen.len() >= CACHE_ENTRIES {
            let now = seen.last;
            self.seen
                .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
            if self.seen.len() >= CACHE_ENTRIES {
                let oldest = self
                    .seen
                    .iter()
                    .min_by_key(|(_, s)| s.last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.seen.remove(&oldest);
                }
            }
        }
        self.seen.insert(key, seen);
    }

    fn forget(&mut self, key: &Key) {
        self.seen.remove(key);
    }
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `rancher.io/ingress`), with this
    /// replica as the instance (`$POD_NAME`, else the controller's name).
    pub fn new(client: kube::Client, controller: impl Into<String>) -> Self {
        let controller = controller.into();
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| controller.clone());
        Self {
            client,
            controller,
            instance,
            recent: std::sync::Arc::default(),
        }
    }

    /// Publishes an event about `object`. Failures are logged, not returned: an
    /// event is best-effort and must never fail a reconcile.
    pub async fn publish<K>(
        &self,
        object: &K,
        type_: Type,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        if let Err(error) = self
            .write(
                reference.clone(),
                type_,
                reason,
                action,
                truncate_note(note.into()),
            )
            .await
        {
            tracing::warn!(
                reason,
                name = reference.name.as_deref().unwrap_or_default(),
                error = &error as &dyn std::error::Error,
                "failed to record event"
            );
        }
    }

    async fn write(
        &self,
        regarding: ObjectReference,
        type_: Type,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = Key::new(type_, reason, action, &note, &regarding);
        // Events go to the object's namespace; a cluster-scoped object's to
        // `default`.
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let api: Api<events::Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Instant::now();
        let repeat = self.recent.lock().repeat(&key, now);
        if let Some((name, count)) = repeat {
            let series = json!({"series": {
                "count": count,
                "lastObservedTime": MicroTime(Timestamp::now()),
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => {
                    let seen = Seen {
                        name: name.into_boxed_str(),
                        count,
                        last: now,
                    };
                    self.recent.lock().remember(key, seen);
                    return Ok(());
                }
                // The event expired on the API server (or was deleted): a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.recent.lock().forget(&key);
                }
                Err(error) => return Err(error),
            }
        }
        let event = self.event(regarding, &namespace, type_, reason, action, note);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        let seen = Seen {
            name: name.into_boxed_str(),
            count: 1,
            last: now,
        };
        self.recent.lock().remember(key, seen);
        Ok(())
    }

    /// A new Event about `regarding`, named as client-go names them
    /// (`<object>.<unique suffix>`).
    fn event(
        &self,
        regarding: ObjectReference,
        namespace: &str,
        type_: Type,
        reason: &str,
        action: &str,
        note: String,
    ) -> events::Event {
        let now = Timestamp::now();
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        events::Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.as_str().to_owned()),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            note: Some(note),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..events::Event::default()
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
        self.publish(object, Type::Normal, reason, action, note)
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
        self.publish(object, Type::Warning, reason, action, note)
            .await;
    }

    /// How many events this recorder remembers for series.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.recent.lock().seen.len()
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

    fn key(name: &str) -> Key {
        let regarding = ObjectReference {
            kind: Some("Ingress".into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        };
        Key::new(Type::Warning, "Failed", "Sync", "no", &regarding)
    }

    fn seen(name: &str, last: Instant) -> Seen {
        Seen {
            name: name.into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn recent_events_stay_bounded_and_the_oldest_go_first() {
        let mut recent = Recent::default();
        let slots = recent.seen.capacity();
        let start = Instant::now();
        for i in 0..CACHE_ENTRIES + 500 {
            let at = start + Duration::from_millis(i as u64);
            recent.remember(key(&format!("a{i}")), seen(&format!("a{i}"), at));
        }
        assert_eq!(recent.seen.len(), CACHE_ENTRIES);
        // The 500 oldest were forgotten; the newest is still a repeat.
        assert!(!recent.seen.contains_key(&key("a0")));
        assert!(!recent.seen.contains_key(&key("a499")));
        let last = start + Duration::from_millis(CACHE_ENTRIES as u64 + 499);
        let newest = key(&format!("a{}", CACHE_ENTRIES + 499));
        assert_eq!(recent.repeat(&newest, last).map(|r| r.1), Some(2));
        // Past the window, everything old goes at once to make room.
        let later = last + SERIES_WINDOW;
        recent.remember(key("b"), seen("b", later));
        assert_eq!(recent.seen.len(), 1);
        assert_eq!(recent.seen.capacity(), slots, "the table never grows");
        assert_eq!(recent.repeat(&newest, later), None);
    }

    #[test]
    fn a_key_is_the_object_and_the_event_not_the_object_version() {
        let object = |uid: &str, version: &str| ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            namespace: Some("default".into()),
            name: Some("web".into()),
            uid: Some(uid.into()),
            resource_version: Some(version.into()),
            ..ObjectReference::default()
        };
        let key = |type_, reason, note, regarding: &ObjectReference| {
            Key::new(type_, reason, "Sync", note, regarding)
        };
        let first = key(Type::Warning, "Failed", "x", &object("u1", "1"));
        assert_eq!(first, key(Type::Warning, "Failed", "x", &object("u1", "2")));
        for other in [
            key(Type::Normal, "Failed", "x", &object("u1", "1")),
            key(Type::Warning, "Synced", "x", &object("u1", "1")),
            key(Type::Warning, "Failed", "y", &object("u1", "1")),
            key(Type::Warning, "Failed", "x", &object("u2", "1")),
        ] {
            assert_ne!(first, other);
        }
    }

    #[tokio::test]
    async fn repeats_become_a_series_and_other_notes_new_events() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let sb = rancher_sandbox::Sandbox::builder()
            .start()
            .await
            .expect("sandbox");
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some("cm".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let recorder = Recorder::new(sb.client(), "example.org/test");
        for _ in 0..3 {
            recorder
                .warning(&object, "Failed", "Sync", "it broke")
                .await;
        }
        recorder.normal(&object, "Synced", "Sync", "fine").await;
        let api: Api<events::Event> = Api::namespaced(sb.client(), "default");
        let mut listed = api.list(&Default::default()).await.expect("list").items;
        listed.sort_by_key(|e| e.reason.clone());
        let summary: Vec<_> = listed
            .iter()
            .map(|e| {
                (
                    e.reason.clone().unwrap_or_default(),
                    e.type_.clone().unwrap_or_default(),
                    e.series.as_ref().map(|s| s.count),
                    e.reporting_controller.clone().unwrap_or_default(),
                    e.regarding.as_ref().and_then(|r| r.name.clone()),
                )
            })
            .collect();
        let controller = "example.org/test".to_owned();
        assert_eq!(
            summary,
            [
                (
                    "Failed".into(),
                    "Warning".into(),
                    Some(3),
                    controller.clone(),
                    Some("cm".into())
                ),
                (
                    "Synced".into(),
                    "Normal".into(),
                    None,
                    controller,
                    Some("cm".into())
                ),
            ]
        );
        assert_eq!(recorder.remembered(), 2);
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let note = "é".repeat(1000);
        let cut = truncate_note(note);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate_note("short".into()), "short");
    }
}
