//! The guide the sandbox prints once everything runs: commands to try, built
//! from the objects and addresses in use.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use rancher_client::LoadBalancerService;
use rancher_client::resource::Protocol;
use rancher_client::testing::FakeRancher;

use super::{
    COMMAND_PREFIX, HostSpec, SandboxArgs, ingress_addresses, is_load_balancer, key,
    service_addresses,
};

/// What a guide line that tells what to expect starts with.
pub const EXPECT_PREFIX: &str = "    → ";

/// The annotation value under the prefixed key or the bare one.
pub(super) fn annotation<'a>(ingress: &'a Ingress, keys: [&str; 2]) -> Option<&'a str> {
    let annotations = ingress.metadata.annotations.as_ref()?;
    keys.iter()
        .find_map(|k| annotations.get(*k).map(String::as_str))
}

/// The guide: commands to try, built from the objects and addresses in use.
pub(super) async fn guide(
    args: &SandboxArgs,
    hosts: &[HostSpec],
    client: &kube::Client,
    rancher: Option<&FakeRancher>,
) -> anyhow::Result<String> {
    use rancher_ingress::annotations as a;
    let kubeconfig = args.kubeconfig_out.display();
    let mut g = String::new();
    let cmd = |g: &mut String, line: String| {
        let _ = writeln!(g, "{COMMAND_PREFIX}{line}");
    };
    let _ = writeln!(g, "\nThings to try:\n");
    let _ = writeln!(
        g,
        "Objects, as a cluster shows them (addresses in ADDRESS / EXTERNAL-IP):"
    );
    cmd(
        &mut g,
        format!("kubectl --kubeconfig {kubeconfig} get nodes,ingress,services"),
    );
    workloads(&mut g, args, hosts, client, rancher.is_some()).await?;

    // Ingresses.
    let ingresses: Api<Ingress> = Api::all(client.clone());
    for ingress in ingresses.list(&ListParams::default()).await?.items {
        let addresses = ingress_addresses(&ingress);
        let Some(spec) = ingress.spec.as_ref() else {
            continue;
        };
        let Some((host, path)) = spec.rules.iter().flatten().find_map(|r| {
            let host = r.host.clone()?;
            let path = r
                .http
                .as_ref()?
                .paths
                .first()
                .and_then(|p| p.path.clone())
                .unwrap_or_else(|| "/".to_owned());
            Some((host, path))
        }) else {
            continue;
        };
        let tls = spec
            .tls
            .iter()
            .flatten()
            .any(|t| t.hosts.iter().flatten().any(|h| *h == host));
        let _ = writeln!(
            g,
            "\nIngress {} routes {host}{path}, on {}:",
            key(&ingress.metadata),
            if addresses.is_empty() {
                "no address yet".to_owned()
            } else {
                addresses.join(" and ")
            }
        );
        let allow_http =
            annotation(&ingress, [a::ALLOW_HTTP, a::LEGACY_ALLOW_HTTP]) != Some("false");
        let http_port = annotation(&ingress, [a::HTTP_PORT, a::LEGACY_HTTP_PORT]).unwrap_or("80");
        let https_port =
            annotation(&ingress, [a::HTTPS_PORT, a::LEGACY_HTTPS_PORT]).unwrap_or("443");
        for address in addresses.iter().filter(|_| !args.rancher_fake) {
            if tls {
                cmd(
                    &mut g,
                    format!(
                        "curl -fsS -k --resolve {host}:{https_port}:{address} https://{host}:{https_port}{path}"
                    ),
                );
            } else if allow_http {
                let port = if http_port == "80" {
                    String::new()
                } else {
                    format!(":{http_port}")
                };
                cmd(
                    &mut g,
                    format!("curl -fsS -H 'Host: {host}' http://{address}{port}{path}"),
                );
            }
        }
    }

    // LoadBalancer Services.
    let services: Api<Service> = Api::all(client.clone());
    let services = services.list(&ListParams::default()).await?.items;
    for service in services.iter().filter(|s| is_load_balancer(s)) {
        let addresses = service_addresses(service);
        let port = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map_or(80, |p| p.port);
        let _ = writeln!(
            g,
            "\ntype: LoadBalancer Service {} (TCP; the demo's backends speak HTTP):",
            key(&service.metadata)
        );
        for address in addresses.iter().filter(|_| !args.rancher_fake) {
            cmd(&mut g, format!("curl -fsS http://{address}:{port}/"));
        }
    }

    if let Some(fake) = rancher {
        rancher_services(&mut g, fake);
    }

    // DNS.
    let dig = format!(
        "dig @{} -p {} +short",
        args.dns_listen.ip(),
        args.dns_listen.port()
    );
    let _ = writeln!(g, "\nCluster DNS:");
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let slices = slices.list(&ListParams::default()).await?.items;
    for service in &services {
        let (Some(name), Some(ns)) = (&service.metadata.name, &service.metadata.namespace) else {
            continue;
        };
        let spec = service.spec.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if headless {
            let hostname = slices
                .iter()
                .filter(|s| {
                    s.metadata.namespace.as_deref() == Some(ns)
                        && s.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubernetes.io/service-name"))
                            == Some(name)
                })
                .flat_map(|s| s.endpoints.iter().flatten())
                .find_map(|e| e.hostname.clone());
            if let Some(hostname) = hostname {
                cmd(
                    &mut g,
                    format!("{dig} {hostname}.{name}.{ns}.svc.cluster.local"),
                );
            }
            cmd(&mut g, format!("{dig} {name}.{ns}.svc.cluster.local"));
            if let Some(port) = spec.ports.iter().flatten().find(|p| p.name.is_some()) {
                let port_name = port.name.as_deref().unwrap_or_default();
                let protocol = port.protocol.as_deref().unwrap_or("TCP").to_lowercase();
                cmd(
                    &mut g,
                    format!("{dig} SRV _{port_name}._{protocol}.{name}.{ns}.svc.cluster.local"),
                );
            }
        } else if spec.type_.as_deref().unwrap_or("ClusterIP") == "ClusterIP"
            && !(ns == "default" && name == "kubernetes")
        {
            cmd(&mut g, format!("{dig} {name}.{ns}.svc.cluster.local"));
        }
    }

    // Registry credentials.
    let secrets: Api<Secret> = Api::all(client.clone());
    let provider = credential_provider_command();
    for secret in secrets.list(&ListParams::default()).await?.items {
        if secret.type_.as_deref() != Some("kubernetes.io/dockerconfigjson") {
            continue;
        }
        let Some(registry) = first_registry(&secret) else {
            continue;
        };
        let _ = writeln!(
            g,
            "\nThe kubelet credential provider, answering from Secret {}:",
            key(&secret.metadata)
        );
        cmd(
            &mut g,
            format!(
                "echo '{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"image\":\"{registry}/app:1\"}}' | {provider} --secret {} --kubeconfig {kubeconfig}",
                key(&secret.metadata)
            ),
        );
    }

    let _ = writeln!(g, "\nHealth and metrics of the controllers:");
    cmd(&mut g, format!("curl -fsS http://{}/readyz", args.admin));
    cmd(&mut g, format!("curl -fsS http://{}/metrics", args.admin));
    if !args.rancher_fake {
        let _ = writeln!(
            g,
            "\nHAProxy configurations, one per host: {}/haproxy/",
            std::path::absolute(&args.run_dir)
                .unwrap_or_else(|_| args.run_dir.clone())
                .display()
        );
    }
    Ok(g)
}

/// The `--rancher-fake` part: what the fake Rancher holds, and how to ask it.
fn rancher_services(g: &mut String, fake: &FakeRancher) {
    let _ = writeln!(
        g,
        "\nRancher load balancer services (--rancher-fake: the fake Rancher server only reports \
         where Rancher would run them, and nothing serves traffic; Ingresses on the same ports \
         share one service, so they run on the same hosts):"
    );
    for svc in fake
        .list::<LoadBalancerService>()
        .iter()
        .filter(|s| !s.meta.is_removed())
    {
        let rules: Vec<String> = svc
            .lb_config
            .iter()
            .flat_map(|c| &c.port_rules)
            .map(|r| {
                let (port, protocol) = (r.source_port, r.protocol.as_str());
                match (r.protocol, &r.hostname, &r.path) {
                    (Protocol::Http | Protocol::Https, host, path) => format!(
                        "{port}/{protocol} {}{}",
                        host.as_deref().unwrap_or("*"),
                        path.as_deref().unwrap_or("/")
                    ),
                    _ => format!("{port}/{protocol}"),
                }
            })
            .collect();
        let _ = writeln!(
            g,
            "  {} on {}: {}",
            svc.meta.name.as_deref().unwrap_or(&svc.meta.id),
            svc.public_ips().join(", "),
            rules.join(", ")
        );
    }
    let auth = fake
        .credentials()
        .map(|c| format!("-u {}:{} ", c.access_key, c.secret_key.expose()))
        .unwrap_or_default();
    let _ = writeln!(
        g,
        "{COMMAND_PREFIX}curl -fsS {auth}{}/loadbalancerservices | python3 -m json.tool",
        fake.url()
    );
    let _ = writeln!(
        g,
        "{EXPECT_PREFIX}each service's portRules and publicEndpoints, as the Rancher API shows them"
    );
}

/// The first registry of a `kubernetes.io/dockerconfigjson` Secret.
fn first_registry(secret: &Secret) -> Option<String> {
    let data = secret.data.as_ref()?.get(".dockerconfigjson")?;
    let config: serde_json::Value = serde_json::from_slice(&data.0).ok()?;
    let registry = config.get("auths")?.as_object()?.keys().next()?.clone();
    // Keep the guide's command shell-safe.
    registry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        .then_some(registry)
}

/// How to run the credential provider binary: next to this one when built,
/// else through cargo.
fn credential_provider_command() -> String {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("rancher-credential-provider")))
        .filter(|p| p.is_file());
    match sibling {
        Some(path) => path.display().to_string(),
        None => "cargo run -q -p rancher-examples --bin rancher-credential-provider --".to_owned(),
    }
}

/// The workloads part: the demo's pods, and a Deployment of the reader's own
/// behind an Ingress, scaled and with a pod deleted.
async fn workloads(
    g: &mut String,
    args: &SandboxArgs,
    hosts: &[HostSpec],
    client: &kube::Client,
    rancher_fake: bool,
) -> anyhow::Result<()> {
    let k = format!("kubectl --kubeconfig {}", args.kubeconfig_out.display());
    let cmd = |g: &mut String, line: String| {
        let _ = writeln!(g, "{COMMAND_PREFIX}{line}");
    };
    let expect = |g: &mut String, line: &str| {
        let _ = writeln!(g, "{EXPECT_PREFIX}{line}");
    };
    let _ = writeln!(
        g,
        "\nWorkloads, run by the sandbox's controllers, scheduler and nodes (images are not \
         pulled or run: every container port is an echo server answering with the pod's name):"
    );
    cmd(g, format!("{k} get deployments,statefulsets,pods -o wide"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nginx = pods
        .list(&ListParams::default().labels("app=nginx"))
        .await?
        .items;
    if !nginx.is_empty() {
        cmd(g, format!("{k} logs deployment/nginx --tail=5"));
    }
    let sets: Api<StatefulSet> = Api::all(client.clone());
    for set in sets.list(&ListParams::default()).await?.items {
        let name = set.metadata.name.clone().unwrap_or_default();
        let n = set.spec.replicas.unwrap_or(1);
        let _ = writeln!(
            g,
            "StatefulSet {} runs pods {name}-0 to {name}-{} (the seed's PetSets counted from 1; \
             StatefulSets count from 0).",
            key(&set.metadata),
            n - 1
        );
    }
    let Some(host) = hosts.first() else {
        return Ok(());
    };
    if rancher_fake {
        let _ = writeln!(
            g,
            "\nA Deployment of your own, exposed, behind an Ingress on port 80:"
        );
    } else {
        let _ = writeln!(
            g,
            "\nA Deployment of your own, exposed, behind an Ingress on {} port 80:",
            host.address
        );
    }
    cmd(
        g,
        format!("{k} create deployment web2 --image=nginx --replicas=2"),
    );
    cmd(g, format!("{k} expose deployment web2 --port 80"));
    cmd(
        g,
        format!("{k} create ingress web2 --rule=\"web2.example.com/*=web2:80\""),
    );
    cmd(g, format!("{k} rollout status deployment/web2"));
    if rancher_fake {
        let addresses: Vec<String> = hosts.iter().map(|h| h.address.to_string()).collect();
        cmd(g, format!("{k} get ingress web2"));
        expect(
            g,
            &format!(
                "ADDRESS {} within a few seconds: on port 80 like the seed's Ingresses, its \
                 rules join their shared Rancher service (below) and run on the same hosts",
                addresses.join(",")
            ),
        );
    } else {
        cmd(
            g,
            format!("curl -H 'Host: web2.example.com' http://{}/", host.address),
        );
        expect(
            g,
            "\"web2-<hash>-<id> /\" from one of its two pods within a few seconds (a pod that \
             declares no port serves its Service's target port, 80)",
        );
    }
    let follows = if rancher_fake {
        "the EndpointSlice follows"
    } else {
        "the EndpointSlice and HAProxy follow"
    };
    cmd(g, format!("{k} scale deployment web2 --replicas=3"));
    if rancher_fake {
        expect(
            g,
            "a third pod, and a third endpoint in web2's EndpointSlice",
        );
    } else {
        expect(
            g,
            "a third pod, and HAProxy gets a third server through its runtime API, without a \
             reload",
        );
    }
    if let Some(pod) = nginx.first().and_then(|p| p.metadata.name.clone()) {
        cmd(g, format!("{k} delete pod {pod}"));
        expect(
            g,
            &format!("the ReplicaSet starts a new nginx pod with a new name; {follows}"),
        );
    }
    Ok(())
}
