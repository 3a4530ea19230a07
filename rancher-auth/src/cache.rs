//! Bounded caches with separate positive and negative lifetimes, and
//! [`CachingAuthenticator`], which puts one in front of any authenticator.
//!
//! The rules, from how kube-apiserver caches webhook answers and what Guard and kube-api-auth
//! users ran into:
//!
//! - Definite answers are cached: a yes for the positive TTL, a no for the (shorter)
//!   negative TTL. A revoked member therefore loses access at most one positive TTL after
//!   the revocation (plus kube-apiserver's own cache, `--authentication-token-webhook-cache-ttl`).
//! - Errors are never cached: the next request asks again.
//! - The cache is bounded: when full, expired entries go first, then the oldest.
//! - Concurrent misses for the same token share one lookup (single flight), so a burst of
//!   `kubectl` requests costs Rancher one call.
//! - Tokens are not kept: entries are keyed by the token's SHA-256.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::authn::{Authentication, TokenAuthenticator};
use crate::error::{Error, Result};
use crate::identity::Token;

/// Cache lifetimes and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a yes is kept.
    pub positive_ttl: Duration,
    /// How long a no is kept.
    pub negative_ttl: Duration,
    /// At most this many entries (0 disables the cache).
    pub capacity: usize,
}

impl Default for CacheConfig {
    /// 10 s positive, 5 s negative, 10 000 entries: short next to kube-apiserver's 2-minute
    /// cache, so revocation is bounded by the apiserver's TTL, not ours.
    fn default() -> Self {
        Self {
            positive_ttl: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(5),
            capacity: 10_000,
        }
    }
}

struct Entry<V> {
    value: V,
    expires: Instant,
    generation: u64,
}

struct Inner<K, V> {
    map: HashMap<K, Entry<V>>,
    order: VecDeque<(K, u64)>,
    next_generation: u64,
}

/// A bounded map whose entries expire, each with its own lifetime.
///
/// Time is tokio's clock, so tests can pause it.
pub struct TtlCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("len", &self.inner.lock().map.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                next_generation: 0,
            }),
            capacity,
        }
    }

    /// The value for `key`, if present and not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        match inner.map.get(key) {
            Some(entry) if entry.expires > now => Some(entry.value.clone()),
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key` for `ttl`; a zero `ttl` or capacity stores nothing.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let generation = inner.next_generation;
        inner.next_generation += 1;
        inner.map.insert(
            key.clone(),
            Entry {
                value,
                expires: now + ttl,
                generation,
            },
        );
        inner.order.push_back((key, generation));
        while inner.map.len() > self.capacity {
            let Some((old, old_generation)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .map
                .get(&old)
                .is_some_and(|e| e.generation == old_generation)
            {
                inner.map.remove(&old);
            }
        }
        // Keep the order queue from growing past the live entries by much (replaced keys
        // leave stale generations behind).
        if inner.order.len() > 2 * self.capacity.max(16) {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    /// Drops `key`.
    pub fn remove(&self, key: &K) {
        self.inner.lock().map.remove(key);
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.map.clear();
        inner.order.clear();
    }

    /// Entries held, expired ones included until they are touched.
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The cache.
    Hit,
    /// The authenticator behind the cache.
    Miss,
    /// Another request's lookup of the same token, still in flight.
    Joined,
}

impl Source {
    /// `hit`, `miss` or `joined`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Joined => "joined",
        }
    }
}

type Key = [u8; 32];
type Flight = Shared<BoxFuture<'static, std::result::Result<Authentication, Arc<Error>>>>;

/// A [`TokenAuthenticator`] that remembers answers (see the module docs for the rules).
pub struct CachingAuthenticator {
    inner: Arc<dyn TokenAuthenticator>,
    config: CacheConfig,
    state: Arc<CacheState>,
}

struct CacheState {
    cache: TtlCache<Key, Authentication>,
    in_flight: Mutex<HashMap<Key, Flight>>,
}

impl std::fmt::Debug for CachingAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingAuthenticator")
            .field("config", &self.config)
            .field("cache", &self.state.cache)
            .finish_non_exhaustive()
    }
}

impl CachingAuthenticator {
    /// Caches the answers of `inner`.
    pub fn new(inner: Arc<dyn TokenAuthenticator>, config: CacheConfig) -> Self {
        Self {
            inner,
            config,
            state: Arc::new(CacheState {
                cache: TtlCache::new(config.capacity),
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.state.cache.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.state.cache.is_empty()
    }

    /// Forgets every answer (after a revocation the operator wants applied now).
    pub fn clear(&self) {
        self.state.cache.clear();
    }

    /// Judges `token` and says where the answer came from.
    pub async fn lookup(&self, token: &Token) -> (Result<Authentication>, Source) {
        let key = key_of(token);
        if let Some(answer) = self.state.cache.get(&key) {
            return (Ok(answer), Source::Hit);
        }
        let (flight, source) = {
            let mut in_flight = self.state.in_flight.lock();
            match in_flight.get(&key) {
                Some(flight) => (flight.clone(), Source::Joined),
                None => {
                    let flight = self.flight(key, token.clone());
                    in_flight.insert(key, flight.clone());
                    (flight, Source::Miss)
                }
            }
        };
        let answer = flight
            .await
            .map_err(|shared| match Arc::try_unwrap(shared) {
                Ok(error) => error,
                Err(shared) => Error::unavailable("authenticator", shared.one_line()),
            });
        (answer, source)
    }

    /// One lookup, shared by every request for the same token until it ends. Whoever polls
    /// it to the end (the first requester, or a later one if the first went away) stores the
    /// answer and then forgets the flight, so a request arriving in between finds one or the
    /// other.
    fn flight(&self, key: Key, token: Token) -> Flight {
        let inner = self.inner.clone();
        let state = self.state.clone();
        let config = self.config;
        async move {
            let answer = inner.authenticate(&token).await;
            if let Ok(answer) = &answer {
                let ttl = match answer {
                    Authentication::Authenticated(_) => config.positive_ttl,
                    Authentication::Unauthenticated { .. } => config.negative_ttl,
                };
                state.cache.insert(key, answer.clone(), ttl);
            }
            state.in_flight.lock().remove(&key);
            answer.map_err(Arc::new)
        }
        .boxed()
        .shared()
    }
}

fn key_of(token: &Token) -> Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[async_trait]
impl TokenAuthenticator for CachingAuthenticator {
    async fn authenticate(&self, token: &Token) -> Result<Authentication> {
        self.lookup(token).await.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::UserInfo;
    use crate::testing::FakeAuthenticator;

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let cache = TtlCache::new(3);
        for i in 0..3 {
            cache.insert(i, i, Duration::from_secs(60));
        }
        cache.insert(0, 100, Duration::from_secs(60)); // refresh 0: now the newest
        cache.insert(3, 3, Duration::from_secs(60));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&1), None, "the oldest went");
        assert_eq!(cache.get(&0), Some(100));
        assert_eq!(cache.get(&3), Some(3));
        for i in 10..1000 {
            cache.insert(i, i, Duration::from_secs(60));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.inner.lock().order.len() <= 32);
        let none = TtlCache::new(0);
        none.insert(1, 1, Duration::from_secs(1));
        assert!(none.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn yes_and_no_expire_on_their_own_ttls_and_errors_are_not_kept() {
        let fake = Arc::new(FakeAuthenticator::new().with_token("AK:SK", UserInfo::new("alice")));
        let cached = CachingAuthenticator::new(
            fake.clone(),
            CacheConfig {
                positive_ttl: Duration::from_secs(10),
                negative_ttl: Duration::from_secs(2),
                capacity: 100,
            },
        );
        let good = Token::new("AK:SK");
        let bad = Token::new("AK:nope");
        assert_eq!(cached.lookup(&good).await.1, Source::Miss);
        assert_eq!(cached.lookup(&good).await.1, Source::Hit);
        assert_eq!(cached.lookup(&bad).await.1, Source::Miss);
        assert_eq!(cached.lookup(&bad).await.1, Source::Hit);
        assert_eq!(fake.calls(), 2);

        // Revoke alice: the cache still says yes until the positive TTL ends.
        fake.remove_token("AK:SK");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(cached.lookup(&bad).await.1, Source::Miss, "no expired");
        let (answer, source) = cached.lookup(&good).await;
        assert_eq!(
            (answer.unwrap().user().is_some(), source),
            (true, Source::Hit)
        );
        tokio::time::advance(Duration::from_secs(8)).await;
        let (answer, source) = cached.lookup(&good).await;
        assert_eq!(
            (answer.unwrap().user().is_some(), source),
            (false, Source::Miss)
        );

        // Errors: asked again every time.
        fake.fail(true);
        let other = Token::new("B:C");
        assert!(cached.lookup(&other).await.0.is_err());
        assert!(cached.lookup(&other).await.0.is_err());
        let calls = fake.calls();
        fake.fail(false);
        assert_eq!(cached.lookup(&other).await.1, Source::Miss);
        assert_eq!(fake.calls(), calls + 1);
    }

    #[tokio::test]
    async fn a_lookup_whose_requester_went_away_is_finished_by_the_next() {
        let fake = Arc::new(
            FakeAuthenticator::new()
                .with_token("AK:SK", UserInfo::new("alice"))
                .with_delay(Duration::from_millis(20)),
        );
        let cached = CachingAuthenticator::new(fake.clone(), CacheConfig::default());
        let token = Token::new("AK:SK");
        // The first requester gives up (a client that disconnected) mid-lookup.
        let gave_up = tokio::time::timeout(Duration::from_millis(1), cached.lookup(&token)).await;
        assert!(gave_up.is_err());
        let (answer, source) = cached.lookup(&token).await;
        assert_eq!(answer.unwrap().user().unwrap().username, "alice");
        assert_eq!(source, Source::Joined);
        assert!(cached.state.in_flight.lock().is_empty());
        assert_eq!(cached.lookup(&token).await.1, Source::Hit);
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_lookup() {
        let fake = Arc::new(
            FakeAuthenticator::new()
                .with_token("AK:SK", UserInfo::new("alice"))
                .with_delay(Duration::from_millis(50)),
        );
        let cached = Arc::new(CachingAuthenticator::new(
            fake.clone(),
            CacheConfig::default(),
        ));
        let lookups = (0..20).map(|_| {
            let cached = cached.clone();
            tokio::spawn(async move { cached.lookup(&Token::new("AK:SK")).await })
        });
        let results = futures::future::join_all(lookups).await;
        let mut sources = Vec::new();
        for r in results {
            let (answer, source) = r.unwrap();
            assert_eq!(answer.unwrap().user().unwrap().username, "alice");
            sources.push(source);
        }
        assert_eq!(fake.calls(), 1, "{sources:?}");
        assert_eq!(sources.iter().filter(|s| **s == Source::Miss).count(), 1);
    }
}
