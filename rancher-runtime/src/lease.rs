//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! One replica holds the Lease and renews it every `retry_period`; the others read
//! it every `retry_period` and take over once it has not been renewed for
//! `lease_duration`, measured on their own clock from when they last saw it change
//! (as client-go does, so clock skew between replicas does not matter); a standby's
//! round is timed to that moment rather than the next retry tick. Writes use the Lease's resourceVersion,
//! so two candidates can never both win. On shutdown the holder releases the Lease
//! so a standby takes over at once.
//!
//! Controllers ask [`Leadership::is_leader`] before writing status and can await
//! [`Leadership::changed`] to learn when they gain or lose it.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

/// Errors from one election round.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the Lease failed.
    #[error("failed to read lease {name}")]
    Get {
        /// The Lease's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Creating or updating the Lease failed.
    #[error("failed to write lease {name}")]
    Write {
        /// The Lease's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Result of an election round.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Leader election settings.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct LeaderArgs {
    /// Run leader election; without it this replica always acts as the leader.
    #[cfg_attr(feature = "clap", arg(long = "leader-elect", default_value_t = false))]
    pub enabled: bool,

    /// The Lease's name.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "leader-elect-lease-name",
            value_name = "NAME",
            default_value = ""
        )
    )]
    pub lease_name: String,

    /// The Lease's namespace (default: `$POD_NAMESPACE`, else `default`).
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "leader-elect-namespace",
            value_name = "NS",
            env = "POD_NAMESPACE"
        )
    )]
    pub namespace: Option<String>,

    /// This replica's identity (default: `$POD_NAME`, else the host name and pid).
    #[cfg_attr(
        feature = "clap",
        arg(long = "leader-elect-identity", value_name = "ID", env = "POD_NAME")
    )]
    pub identity: Option<String>,

    /// How long a Lease stays valid after its last renewal.
    #[cfg_attr(feature = "clap", arg(long = "leader-elect-lease-duration", value_name = "DURATION", default_value = "15s", value_parser = crate::duration::parse))]
    pub lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives up leadership.
    #[cfg_attr(feature = "clap", arg(long = "leader-elect-renew-deadline", value_name = "DURATION", default_value = "10s", value_parser = crate::duration::parse))]
    pub renew_deadline: Duration,

    /// The interval between election rounds.
    #[cfg_attr(feature = "clap", arg(long = "leader-elect-retry-period", value_name = "DURATION", default_value = "2s", value_parser = crate::duration::parse))]
    pub retry_period: Duration,
}

impl Default for LeaderArgs {
    fn default() -> Self {
        Self {
            enabled: false,
            lease_name: String::new(),
            namespace: None,
            identity: None,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderArgs {
    /// Election on the Lease `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            enabled: true,
            lease_name: name.into(),
            namespace: Some(namespace.into()),
            ..Self::default()
        }
    }

    /// Uses `name` as the Lease name when none was given on the command line.
    #[must_use]
    pub fn with_default_name(mut self, name: &str) -> Self {
        if self.lease_name.is_empty() {
            self.lease_name = name.to_owned();
        }
        self
    }

    /// This replica's identity: as configured, else the host name and process id.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// Starts the election (or, when disabled, returns an always-leader handle).
    ///
    /// The returned task runs until `shutdown` is cancelled, then releases the Lease
    /// if it holds it; spawn it on the shutdown's task tracker so the release
    /// finishes before the process exits.
    pub fn start(
        &self,
        client: kube::Client,
        shutdown: CancellationToken,
    ) -> (
        Leadership,
        Option<impl Future<Output = ()> + Send + 'static>,
    ) {
        if !self.enabled {
            return (Leadership::always(), None);
        }
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let elector = Elector::new(
            Api::namespaced(client, &namespace),
            self.lease_name.clone(),
            self.identity(),
            self,
        );
        let leadership = elector.leadership();
        (leadership, Some(elector.run(shutdown)))
    }
}

/// Whether this replica leads. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    // Keeps the channel open for `always()`.
    _tx: Option<std::sync::Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// A handle that always leads: for single-replica runs without election.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Self {
            rx,
            _tx: Some(std::sync::Arc::new(tx)),
        }
    }

    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until leadership changes and returns the new state, or `None` once the
    /// election has stopped.
    pub async fn changed(&mut self) -> Option<bool> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// Waits until this replica leads. Returns `false` if the election stopped first.
    pub async fn wait_leader(&mut self) -> bool {
        self.rx.wait_for(|leader| *leader).await.is_ok()
    }
}

/// Runs leader election on one Lease.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    tx: watch::Sender<bool>,
    /// The Lease as last read, and when it was last seen to change.
    observed: Option<(Lease, Instant)>,
    /// When this replica last renewed successfully.
    renewed: Option<Instant>,
}

impl Elector {
    /// An elector for `api`'s Lease `name`, identifying itself as `identity`.
    pub fn new(api: Api<Lease>, name: String, identity: String, args: &LeaderArgs) -> Self {
        let (tx, _) = watch::channel(false);
        Self {
            api,
            name,
            identity,
            lease_duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            retry_period: args.retry_period,
            tx,
            observed: None,
            renewed: None,
        }
    }

    /// A handle that follows this elector's state.
    pub fn leadership(&self) -> Leadership {
        Leadership {
            rx: self.tx.subscribe(),
            _tx: None,
        }
    }

    /// Runs election rounds every `retry_period` until `shutdown` is cancelled, then
    /// releases the Lease if held.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            match self.round().await {
                Ok(leader) => self.set_leader(leader),
                Err(error) => {
                    tracing::warn!(lease = %self.name, error = &error as &dyn std::error::Error, "leader election round failed");
                    let expired = self
                        .renewed
                        .is_none_or(|at| at.elapsed() >= self.renew_deadline);
                    if self.is_leader() && expired {
                        tracing::warn!(lease = %self.name, "could not renew within the deadline; stepping down");
                        self.set_leader(false);
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.until_next_round()) => {}
            }
        }
        if self.is_leader() {
            if let Err(error) = self.release().await {
                tracing::warn!(lease = %self.name, error = &error as &dyn std::error::Error, "failed to release lease");
            }
            self.set_leader(false);
        }
    }

    fn is_leader(&self) -> bool {
        *self.tx.borrow()
    }

    /// The time until the next round: `retry_period`, or less when another
    /// holder's Lease expires sooner, so a standby takes over as soon as it
    /// may rather than up to a retry period later.
    fn until_next_round(&self) -> Duration {
        if self.is_leader() {
            return self.retry_period;
        }
        match &self.observed {
            Some((_, seen)) => {
                let expires = *seen + self.lease_duration;
                let left = expires.saturating_duration_since(Instant::now());
                // Zero if it has expired already (a round right after a lost
                // race): wait a little rather than spin.
                if left.is_zero() {
                    self.retry_period
                } else {
                    left.min(self.retry_period)
                }
            }
            None => self.retry_period,
        }
    }

    fn set_leader(&mut self, leader: bool) {
        let was = self.tx.send_replace(leader);
        if was != leader {
            tracing::info!(lease = %self.name, identity = %self.identity, leader, "leadership changed");
        }
    }

    /// One round: read the Lease, then create, renew or take it over if we may.
    /// Returns whether this replica leads afterwards.
    pub async fn round(&mut self) -> Result<bool> {
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| Error::Get {
                name: self.name.clone(),
                source,
            })?;
        let Some(lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.renewed = Some(Instant::now());
                    self.observe(created);
                    Ok(true)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(source) => Err(Error::Write {
                    name: self.name.clone(),
                    source,
                }),
            };
        };
        self.observe(lease.clone());
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        let vacant = holder.is_empty();
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|(_, seen)| seen.elapsed() >= self.lease_duration);
        if !ours && !vacant && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (acquired, transitions) = if ours {
            (spec.acquire_time.map_or(now, |t| t.0), transitions)
        } else {
            (now, transitions.saturating_add(1))
        };
        let mut updated = lease;
        updated.spec = Some(self.spec(acquired, now, transitions));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                self.renewed = Some(Instant::now());
                self.observe(written);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(Error::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Gives the Lease up: no holder, a one-second duration, so others take it now.
    pub async fn release(&mut self) -> Result<()> {
        let Some((lease, _)) = self.observed.clone() else {
            return Ok(());
        };
        let now = MicroTime(Timestamp::now());
        let mut released = lease;
        let spec = released.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        self.api
            .replace(&self.name, &PostParams::default(), &released)
            .await
            .map_err(|source| Error::Write {
                name: self.name.clone(),
                source,
            })?;
        Ok(())
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Records the Lease as read; the expiry clock restarts whenever its holder or
    /// renew time changes.
    fn observe(&mut self, lease: Lease) {
        let key = |l: &Lease| {
            l.spec
                .as_ref()
                .map(|s| (s.holder_identity.clone(), s.renew_time.clone()))
        };
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(old, _)| key(old) != key(&lease));
        let seen = match (&self.observed, changed) {
            (Some((_, seen)), false) => *seen,
            _ => Instant::now(),
        };
        self.observed = Some((lease, seen));
    }
}
