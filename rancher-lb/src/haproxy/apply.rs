//! Bringing every host in line with the load balancers placed on it:
//! placement, rendering, `haproxy -c`, then per host the cheapest change
//! (runtime API commands, a reload, or a start). Hosts are checked at once
//! and changed at once, so a batch costs one check and one reload on the
//! slowest host, not their sum.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::future::join_all;

use super::process::{self, Instance};
use super::render::{self, Paths, Rendered, Server, Slots};
use super::{
    Error, HostState, Inner, RUNTIME_TIMEOUT, Result, State, assign_slots, io, mkdir_private,
    runtime, write_file,
};
use crate::driver::{self, Status};
use crate::model::{LbId, LoadBalancer};
use crate::placement::place;

/// The most runtime API commands one change may take before a reload is
/// cheaper (each command is one round trip on the stats socket).
const MAX_RUNTIME_COMMANDS: usize = 2000;

/// A host's new configuration, checked, waiting to be applied.
struct Pending {
    host: IpAddr,
    rendered: Rendered,
    template: String,
    generation: PathBuf,
    /// `Some`: same structure as what runs; these runtime API commands
    /// instead of a reload.
    runtime: Option<Vec<String>>,
}

/// What a host's process needs once its files are in place.
enum Step {
    /// Runtime API commands (a reload if they fail), then the host's state
    /// becomes the rendered one.
    Runtime {
        commands: Vec<String>,
        rendered: Rendered,
        template: String,
    },
    /// A reload into `generation`.
    Reload { generation: PathBuf },
    /// Waiting for a new process started on `generation`.
    Start { generation: PathBuf },
}

/// How a [`Step`] went.
enum Done {
    /// The runtime API took the commands.
    Updated,
    /// The process reloaded (for a runtime change: its commands failed).
    Reloaded,
    /// A new process runs (`false`: not in time; its supervisor goes on).
    Started(bool),
    /// The reload failed.
    Failed(process::Error),
}

impl Inner {
    /// Renders a host once: the configuration with server addresses as
    /// placeholders (the template, to compare structures) and the full
    /// configuration.
    pub(super) fn render_host(
        &self,
        state: &State,
        host: IpAddr,
        lbs: &[&LoadBalancer],
        generation: &Path,
    ) -> (Rendered, String) {
        let dir = self.host_dir(host);
        let paths = Paths {
            generation: generation.display().to_string(),
            admin_socket: dir.join("admin.sock").display().to_string(),
        };
        let mut rendered = render::render(host, lbs, &state.slots, &paths, &self.settings(), false);
        let template = std::mem::take(&mut rendered.config);
        rendered.config = render::fill(&template, &rendered.servers);
        (rendered, template)
    }

    async fn check(&self, generation: &Path) -> Result<(), String> {
        let out = tokio::process::Command::new(&self.config.binary)
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(generation.join("haproxy.cfg"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.config.binary.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("ALERT"))
                .take(5)
                .collect();
            Err(if lines.is_empty() {
                format!("haproxy -c failed: {}", out.status)
            } else {
                lines.join(" | ")
            })
        }
    }

    fn write_generation(&self, generation: &Path, rendered: &Rendered) -> Result<()> {
        mkdir_private(generation)?;
        mkdir_private(&generation.join("maps"))?;
        mkdir_private(&generation.join("certs"))?;
        for f in &rendered.files {
            let mode = if f.private { 0o600 } else { 0o644 };
            write_file(&generation.join(&f.path), &f.contents, mode)?;
        }
        write_file(&generation.join("haproxy.cfg"), &rendered.config, 0o600)
    }

    fn make_current(&self, host: IpAddr, generation: &Path) -> Result<()> {
        let dir = self.host_dir(host);
        let tmp = dir.join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(generation, &tmp)
            .map_err(io(format!("linking {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join("current"))
            .map_err(io(format!("making {} current", generation.display())))
    }

    fn prune_generations(&self, host: IpAddr, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(self.host_dir(host)) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let is_gen = e.file_name().to_string_lossy().starts_with("gen-");
            if is_gen && p != keep {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }

    /// Applies a change that only touches endpoints, without rendering: new
    /// server slots go to the runtime API and into the running
    /// configuration's template. `None` when the change is not of that kind
    /// (or the runtime API failed), for the general path to take over.
    pub(super) async fn endpoints_only(
        &self,
        state: &mut State,
        lbs: &[LoadBalancer],
    ) -> Option<Vec<Status>> {
        let mut new_slots = BTreeMap::new();
        for lb in lbs {
            if !state.lbs.get(lb.id())?.differs_only_in_endpoints(lb) {
                return None;
            }
            for b in lb.backends() {
                let key = (lb.id().clone(), b.name.clone());
                let old = state.slots.get(&key);
                let slots = assign_slots(old, &b.endpoints, self.config.server_slots);
                if old.map(Vec::len) != Some(slots.len()) {
                    return None;
                }
                new_slots.insert(key, slots);
            }
        }
        let mut by_backend: BTreeMap<String, &Slots> = BTreeMap::new();
        for ((id, name), slots) in &new_slots {
            by_backend.insert(render::backend_name(id, name, true), slots);
            by_backend.insert(render::backend_name(id, name, false), slots);
        }
        let mut hosts = BTreeSet::new();
        for lb in lbs {
            hosts.extend(state.outcomes.get(lb.id())?.hosts.iter().copied());
        }
        let mut updates = Vec::new();
        for host in hosts {
            let hs = state
                .host_states
                .get(&host)
                .filter(|h| h.instance.is_running())?;
            let mut servers = hs.servers.clone();
            for s in &mut servers {
                if let Some(slots) = by_backend.get(&s.backend) {
                    let index = s.name.trim_start_matches('s').parse::<usize>().ok()?;
                    s.endpoint = slots.get(index.checked_sub(1)?).copied().flatten();
                }
            }
            let commands = runtime_commands(&hs.servers, &servers);
            let config = render::fill(&hs.template, &servers);
            updates.push((host, servers, commands, config));
        }
        for (host, servers, commands, config) in updates {
            if commands.is_empty() {
                continue;
            }
            let hs = state.host_states.get_mut(&host)?;
            // The live process first, then the file later restarts read.
            let socket = hs.instance.spec().admin_socket();
            if let Err(e) = runtime::run(&socket, &commands, RUNTIME_TIMEOUT).await {
                tracing::warn!(%host, error = %e, "runtime update failed");
                return None;
            }
            hs.servers = servers;
            if let Err(e) = write_file(&hs.generation.join("haproxy.cfg"), &config, 0o600) {
                // The next render rewrites it; a restart before then loses
                // this change until the controller ensures again.
                tracing::warn!(%host, error = %e, "writing the configuration failed");
            }
            state.runtime_updates += 1;
            self.metrics.runtime_updates.inc();
        }
        for lb in lbs {
            state.lbs.insert(lb.id().clone(), lb.clone());
        }
        state.slots.extend(new_slots);
        self.publish(state);
        Some(
            lbs.iter()
                .map(|lb| state.statuses.get(lb.id()).cloned().unwrap_or_default())
                .collect(),
        )
    }

    /// Places every load balancer and brings every host in line. On a failed
    /// check nothing is changed on any host.
    pub(super) async fn apply(&self, state: &mut State, culprit: &LbId) -> driver::Result<()> {
        let lbs: Vec<&LoadBalancer> = state.lbs.values().collect();
        let outcomes = place(&state.hosts, &lbs, &state.assignment);
        let mut per_host: BTreeMap<IpAddr, Vec<LbId>> = BTreeMap::new();
        for (id, o) in &outcomes {
            for h in &o.hosts {
                per_host.entry(*h).or_default().push(id.clone());
            }
        }

        let mut pending = Vec::new();
        for (host, ids) in &per_host {
            let lbs: Vec<&LoadBalancer> = ids.iter().filter_map(|id| state.lbs.get(id)).collect();
            if let Some(p) = self.runtime_change(state, *host, &lbs) {
                pending.extend(p);
                continue;
            }
            state.next_generation += 1;
            let generation = self
                .host_dir(*host)
                .join(format!("gen-{}", state.next_generation));
            let (rendered, template) = self.render_host(state, *host, &lbs, &generation);
            let written = mkdir_private(&self.host_dir(*host))
                .and_then(|()| self.write_generation(&generation, &rendered));
            let new = Pending {
                host: *host,
                rendered,
                template,
                generation,
                runtime: None,
            };
            pending.push(new);
            if let Err(e) = written {
                discard(&pending);
                return Err(driver::Error::other("writing haproxy files", e));
            }
        }

        // Every new configuration is checked, all at once.
        let started = Instant::now();
        let checks = join_all(
            pending
                .iter()
                .filter(|p| p.runtime.is_none())
                .map(|p| async move { (p.host, self.check(&p.generation).await) }),
        )
        .await;
        tracing::debug!(configurations = checks.len(), took = ?started.elapsed(), "haproxy -c");
        if let Some((host, reason)) = checks
            .into_iter()
            .find_map(|(host, checked)| checked.err().map(|reason| (host, reason)))
        {
            self.metrics.rejected.inc();
            discard(&pending);
            return Err(driver::Error::Rejected {
                lb: culprit.clone(),
                reason: format!("the configuration for {host} does not check: {reason}"),
            });
        }

        // Everything checked: commit.
        state.outcomes = outcomes;
        state.assignment = state
            .outcomes
            .iter()
            .map(|(k, v)| (k.clone(), v.hosts.clone()))
            .collect();
        let result = self.commit(state, pending).await;
        // Hosts left without load balancers stop.
        let idle: Vec<IpAddr> = state
            .host_states
            .keys()
            .filter(|h| !per_host.contains_key(h))
            .copied()
            .collect();
        for h in idle {
            if let Some(hs) = state.host_states.remove(&h) {
                hs.instance.stop().await;
            }
        }
        result
    }

    /// The change for `host` when it keeps the running configuration's
    /// structure (compared with the current generation's paths): only server
    /// addresses and map entries differ, and the runtime API changes those.
    /// `Some(None)`: nothing to do. `None`: a new generation is needed.
    fn runtime_change(
        &self,
        state: &State,
        host: IpAddr,
        lbs: &[&LoadBalancer],
    ) -> Option<Option<Pending>> {
        let c = state
            .host_states
            .get(&host)
            .filter(|c| c.instance.is_running())?;
        let generation = c.generation.clone();
        let (rendered, template) = self.render_host(state, host, lbs, &generation);
        if c.template != template {
            return None;
        }
        let mut commands = map_commands(&generation, &c.files, &rendered.files)?;
        commands.extend(runtime_commands(&c.servers, &rendered.servers));
        if commands.is_empty() && rendered.config == read_config(&generation) {
            return Some(None);
        }
        (commands.len() <= MAX_RUNTIME_COMMANDS).then_some(Some(Pending {
            host,
            rendered,
            template,
            generation,
            runtime: Some(commands),
        }))
    }

    /// Applies checked changes: files host by host, then every host's
    /// process at once. Returns the first failure; the other hosts are
    /// changed all the same.
    async fn commit(&self, state: &mut State, pending: Vec<Pending>) -> driver::Result<()> {
        let mut first_error = None;
        let mut steps = Vec::new();
        for p in pending {
            let host = p.host;
            match self.prepare(state, p) {
                Ok(Some(step)) => steps.push((host, step)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%host, error = %e, "applying haproxy changes failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        let started = Instant::now();
        let done = {
            let state = &*state;
            join_all(
                steps
                    .iter()
                    .map(|(host, step)| Self::run_step(state, *host, step)),
            )
            .await
        };
        tracing::debug!(hosts = steps.len(), took = ?started.elapsed(), "haproxy changed");
        for ((host, step), done) in steps.into_iter().zip(done) {
            if let Err(e) = self.record(state, host, step, done) {
                tracing::warn!(%host, error = %e, "applying haproxy changes failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Puts a host's files in place and says what its process needs.
    fn prepare(&self, state: &mut State, p: Pending) -> driver::Result<Option<Step>> {
        let Pending {
            host,
            rendered,
            template,
            generation,
            runtime,
        } = p;
        let other = |context: &str| {
            let context = format!("haproxy on {host}: {context}");
            move |e: Error| driver::Error::other(context, e)
        };
        if let Some(commands) = runtime {
            // Same structure: the files for later reloads and restarts (the
            // changed maps and the configuration, each replaced atomically),
            // then the live process.
            let Some(hs) = state.host_states.get(&host) else {
                return Ok(None);
            };
            for f in &rendered.files {
                if hs.files.iter().any(|old| old == f) {
                    continue;
                }
                let mode = if f.private { 0o600 } else { 0o644 };
                write_file(&generation.join(&f.path), &f.contents, mode)
                    .map_err(other("writing a map file"))?;
            }
            write_file(&generation.join("haproxy.cfg"), &rendered.config, 0o600)
                .map_err(other("writing the configuration"))?;
            return Ok(Some(Step::Runtime {
                commands,
                rendered,
                template,
            }));
        }
        self.make_current(host, &generation)
            .map_err(other("switching generations"))?;
        if let Some(hs) = state.host_states.get_mut(&host) {
            hs.files = rendered.files;
            hs.template = template;
            hs.servers = rendered.servers;
            hs.conflicts = rendered.conflicts;
            hs.generation = generation.clone();
            if hs.instance.is_running() {
                return Ok(Some(Step::Reload { generation }));
            }
            // The supervisor starts it with the new generation.
            self.prune_generations(host, &generation);
            return Ok(None);
        }
        let instance = Instance::start(process::Spec {
            host,
            binary: self.config.binary.clone(),
            dir: self.host_dir(host),
            backoff_min: self.config.restart_backoff_min,
            backoff_max: self.config.restart_backoff_max,
            changed: self.changed.clone(),
        });
        state.host_states.insert(
            host,
            HostState {
                instance,
                files: rendered.files,
                template,
                servers: rendered.servers,
                generation: generation.clone(),
                conflicts: rendered.conflicts,
            },
        );
        Ok(Some(Step::Start { generation }))
    }

    /// Changes a host's process; run for every host at once.
    async fn run_step(state: &State, host: IpAddr, step: &Step) -> Done {
        let Some(hs) = state.host_states.get(&host) else {
            return Done::Failed(process::Error::NotRunning { host });
        };
        match step {
            Step::Runtime { commands, .. } => {
                let socket = hs.instance.spec().admin_socket();
                let Err(e) = runtime::run(&socket, commands, RUNTIME_TIMEOUT).await else {
                    return Done::Updated;
                };
                // The files on disk are complete: a reload reads them.
                tracing::warn!(%host, error = %e, "runtime update failed; reloading instead");
                match hs.instance.reload().await {
                    Ok(()) => Done::Reloaded,
                    Err(e) => Done::Failed(e),
                }
            }
            Step::Reload { .. } => match hs.instance.reload().await {
                Ok(()) => Done::Reloaded,
                Err(e) => Done::Failed(e),
            },
            Step::Start { .. } => {
                Done::Started(hs.instance.wait_running(process::START_TIMEOUT).await)
            }
        }
    }

    /// Records how a host's change went.
    fn record(
        &self,
        state: &mut State,
        host: IpAddr,
        step: Step,
        done: Done,
    ) -> driver::Result<()> {
        match &done {
            Done::Updated => {
                state.runtime_updates += 1;
                self.metrics.runtime_updates.inc();
            }
            Done::Reloaded => {
                state.reloads += 1;
                self.metrics.reloads.inc();
            }
            Done::Started(running) => {
                if !running {
                    tracing::warn!(%host, "haproxy did not start in time; the supervisor keeps trying");
                }
            }
            Done::Failed(_) => {}
        }
        let Some(hs) = state.host_states.get_mut(&host) else {
            return Ok(());
        };
        match (step, done) {
            (Step::Runtime { .. }, Done::Failed(e)) => {
                // HAProxy may hold part of the commands: whatever comes next
                // goes through a new generation.
                hs.template.clear();
                Err(driver::Error::other(
                    format!("reloading haproxy on {host}"),
                    e,
                ))
            }
            (
                Step::Runtime {
                    rendered, template, ..
                },
                _,
            ) => {
                hs.servers = rendered.servers;
                hs.conflicts = rendered.conflicts;
                hs.template = template;
                hs.files = rendered.files;
                Ok(())
            }
            (Step::Reload { .. } | Step::Start { .. }, Done::Failed(e)) => Err(
                driver::Error::other(format!("reloading haproxy on {host}"), e),
            ),
            (Step::Reload { generation } | Step::Start { generation }, _) => {
                self.prune_generations(host, &generation);
                Ok(())
            }
        }
    }
}

/// Removes the new generations of a batch that is not applied.
fn discard(pending: &[Pending]) {
    for p in pending.iter().filter(|p| p.runtime.is_none()) {
        let _ = std::fs::remove_dir_all(&p.generation);
    }
}

fn read_config(generation: &Path) -> String {
    std::fs::read_to_string(generation.join("haproxy.cfg")).unwrap_or_default()
}

/// Escapes a runtime API argument: the stats socket splits commands on `;`
/// and arguments on blanks, with `\\` as the escape.
fn cli_arg(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ';' | ' ' | '\t' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses a rendered map file (`key value` lines) into its entries.
fn map_entries(contents: &str) -> BTreeMap<&str, &str> {
    contents.lines().filter_map(|l| l.split_once(' ')).collect()
}

/// Runtime API commands turning the running generation's `old` files into
/// `new` ones, when only map entries and certificate contents differ:
/// certificates first, then map additions and changes, then removals, so a
/// route that moves is never missing. `None` when another file (a crt-list)
/// or the set of files differs.
fn map_commands(
    generation: &Path,
    old: &[render::File],
    new: &[render::File],
) -> Option<Vec<String>> {
    if old.len() != new.len() {
        return None;
    }
    // Paths before hosts when adding, hosts before paths when removing: a
    // host is never known without its paths, so its requests do not lose
    // the any-host routes in between. Certificates first.
    let (mut path_upserts, mut host_upserts) = (Vec::new(), Vec::new());
    let (mut host_removals, mut path_removals) = (Vec::new(), Vec::new());
    let mut certificates = Vec::new();
    for (o, n) in old.iter().zip(new) {
        if o == n {
            continue;
        }
        if o.path != n.path {
            return None;
        }
        if n.path.starts_with("certs/") && n.path.ends_with(".pem") {
            // A rotated certificate (same file, same SNI names in the
            // crt-list): a transaction with the new PEM, then its commit.
            let file = cli_arg(&generation.join(&n.path).display().to_string());
            let pem: Vec<&str> = n.contents.lines().filter(|l| !l.is_empty()).collect();
            certificates.push(format!("set ssl cert {file} <<\n{}\n", pem.join("\n")));
            certificates.push(format!("commit ssl cert {file}"));
            continue;
        }
        if !n.path.starts_with("maps/") {
            return None;
        }
        let hosts = n.path.starts_with("maps/host-") || n.path.starts_with("maps/wildcard-");
        let (upserts, removals) = if hosts {
            (&mut host_upserts, &mut host_removals)
        } else {
            (&mut path_upserts, &mut path_removals)
        };
        let map = cli_arg(&generation.join(&n.path).display().to_string());
        let (before, after) = (map_entries(&o.contents), map_entries(&n.contents));
        for (key, value) in &after {
            let verb = match before.get(key) {
                Some(v) if v == value => continue,
                Some(_) => "set",
                None => "add",
            };
            upserts.push(format!(
                "{verb} map {map} {} {}",
                cli_arg(key),
                cli_arg(value)
            ));
        }
        for key in before.keys().filter(|k| !after.contains_key(*k)) {
            removals.push(format!("del map {map} {}", cli_arg(key)));
        }
    }
    let mut commands = certificates;
    commands.extend(path_upserts);
    commands.extend(host_upserts);
    commands.extend(host_removals);
    commands.extend(path_removals);
    Some(commands)
}

/// Runtime API commands turning `old` server slots into `new` ones (same
/// structure).
fn runtime_commands(old: &[Server], new: &[Server]) -> Vec<String> {
    let mut out = Vec::new();
    for (o, n) in old.iter().zip(new) {
        if o.endpoint == n.endpoint {
            continue;
        }
        let target = format!("{}/{}", n.backend, n.name);
        match n.endpoint {
            Some(ep) => {
                out.push(format!(
                    "set server {target} addr {} port {}",
                    ep.address, ep.port
                ));
                out.push(format!("set server {target} state ready"));
            }
            None => out.push(format!("set server {target} state maint")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn ep(last: u8) -> Endpoint {
        Endpoint {
            address: IpAddr::from([10, 0, 0, last]),
            port: 80,
        }
    }

    #[test]
    fn runtime_commands_fill_and_free_slots() {
        let server = |name: &str, endpoint| Server {
            backend: "be:h:a:web".into(),
            name: name.into(),
            endpoint,
        };
        let old = vec![server("s1", Some(ep(1))), server("s2", None)];
        let new = vec![server("s1", None), server("s2", Some(ep(2)))];
        assert_eq!(
            runtime_commands(&old, &new),
            vec![
                "set server be:h:a:web/s1 state maint",
                "set server be:h:a:web/s2 addr 10.0.0.2 port 80",
                "set server be:h:a:web/s2 state ready",
            ]
        );
    }

    #[test]
    fn map_commands_add_and_change_before_removing_and_escape_keys() {
        let file = |path: &str, contents: &str| render::File {
            path: path.into(),
            contents: contents.into(),
            private: false,
        };
        let generation = Path::new("/run/lb/gen-3");
        // The host map comes first in the files, as rendered.
        let old = vec![
            file("maps/host-80.map", "a a\nc c\n"),
            file(
                "maps/path-exact-80.map",
                "a/x be:h:a:one\na/y be:h:a:one\nc/ be:h:a:one\n",
            ),
        ];
        let new = vec![
            file("maps/host-80.map", "a a\nb b\n"),
            file(
                "maps/path-exact-80.map",
                "a/x be:h:a:two\na/z;1 be:h:a:one\nb/ be:h:a:one\n",
            ),
        ];
        // Paths before their host when adding, the host before its paths
        // when removing.
        assert_eq!(
            map_commands(generation, &old, &new),
            Some(vec![
                "set map /run/lb/gen-3/maps/path-exact-80.map a/x be:h:a:two".to_owned(),
                "add map /run/lb/gen-3/maps/path-exact-80.map a/z\\;1 be:h:a:one".to_owned(),
                "add map /run/lb/gen-3/maps/path-exact-80.map b/ be:h:a:one".to_owned(),
                "add map /run/lb/gen-3/maps/host-80.map b b".to_owned(),
                "del map /run/lb/gen-3/maps/host-80.map c".to_owned(),
                "del map /run/lb/gen-3/maps/path-exact-80.map a/y".to_owned(),
                "del map /run/lb/gen-3/maps/path-exact-80.map c/".to_owned(),
            ])
        );
        assert_eq!(map_commands(generation, &old, &old), Some(Vec::new()));
        // A rotated certificate: a transaction with the new PEM, committed.
        let cert = vec![file("certs/a:c.pem", "one")];
        let rotated = vec![file("certs/a:c.pem", "-----BEGIN X-----\nAB\n\nCD\n")];
        assert_eq!(
            map_commands(generation, &cert, &rotated),
            Some(vec![
                "set ssl cert /run/lb/gen-3/certs/a:c.pem <<\n-----BEGIN X-----\nAB\nCD\n"
                    .to_owned(),
                "commit ssl cert /run/lb/gen-3/certs/a:c.pem".to_owned(),
            ])
        );
        // A crt-list or a different set of files needs a reload.
        let list = vec![file("certs/crt-list-443.txt", "a")];
        let grown = vec![file("certs/crt-list-443.txt", "a\nb")];
        assert_eq!(map_commands(generation, &list, &grown), None);
        assert_eq!(map_commands(generation, &old, &new[..1]), None);
    }
}
