//! The Kubernetes manifests under deploy/k8s, assembled per overlay the way kustomize
//! assembles them (resources, components, generated ConfigMaps and Secrets), and checked
//! against the tier rules and the binaries' own settings:
//!
//! - every workload has probes on a port it declares, requests and limits, and runs as
//!   non-root without privilege escalation;
//! - every environment variable is a setting of the binary the container runs, listen
//!   addresses match the declared ports, and `*_FILE` settings point at mounted secret keys;
//! - every Secret and ConfigMap reference resolves to a generated one and one of its keys,
//!   every file a generator reads has an example, and no secret value is committed;
//! - the network policies deny by default and open exactly the edges in the tables below;
//!   the worker alone reaches the internet, on the ports of webhooks and mail, with every
//!   private range left out, and the confirmation URLs it sends point at the public tier;
//! - the HPAs and KEDA's ScaledObject target existing workloads, and KEDA scales the
//!   workers on the same queue, target, bounds and windows as the autoscaler binary;
//! - the stream's applications run one replica each of their worker subcommands, the
//!   firehose with its archive on a ReadWriteOnce claim, replaced by `Recreate`.
//!
//! The schema of every built-in object is checked by scripts/k8s-validate; KEDA's custom
//! resources have no schema there, so their fields are checked here.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use deploy_check::k8s::policy::{Edges, ExternalPeer, edges};
use deploy_check::k8s::{
    binary_args, build, component, container_port, containers, env_names, env_value, id, kind,
    labels, pod_labels, pod_spec, quantity, strata_binary,
};
use deploy_check::settings::{
    LOG_SETTINGS, env_default, env_default_secs, env_default_u64, env_settings, env_settings_of,
};
use deploy_check::yaml::strings;
use deploy_check::{assert_no_problems, load_yaml_documents, repo_root};
use serde_json::Value;

const NAMESPACE: &str = "strata";
const DEMO: &str = "deploy/k8s/overlays/demo";
const MANAGED: &str = "deploy/k8s/overlays/managed";
const OVERLAYS: [&str; 2] = [DEMO, MANAGED];

/// Every pod of the namespace may resolve names through the cluster DNS.
const DNS: [&str; 2] = ["kube-dns:53/UDP", "kube-dns:53/TCP"];

/// The allowed edges of the self-contained demo, besides DNS. `anywhere` is every source,
/// in the cluster or outside it.
const DEMO_EDGES: &[&str] = &[
    "anywhere -> presentation:8080/TCP",
    "presentation -> logic:8081/TCP",
    "prometheus -> logic:8081/TCP",
    "prometheus -> worker:9091/TCP",
    "logic -> postgres:5432/TCP",
    "logic -> redis:6379/TCP",
    "logic -> rabbitmq:5672/TCP",
    "logic -> rabbitmq:15672/TCP",
    "worker -> postgres:5432/TCP",
    "worker -> rabbitmq:5672/TCP",
    "prometheus -> fn-loyalty-points:9091/TCP",
    "fn-loyalty-points -> postgres:5432/TCP",
    "fn-loyalty-points -> rabbitmq:5672/TCP",
    "prometheus -> firehose:9091/TCP",
    "firehose -> postgres:5432/TCP",
    "firehose -> rabbitmq:5672/TCP",
    "prometheus -> analytics:9091/TCP",
    "analytics -> postgres:5432/TCP",
    "analytics -> rabbitmq:5672/TCP",
    "migrate -> postgres:5432/TCP",
    "keda-operator -> rabbitmq:15672/TCP",
];
const DEMO_PODS: &[&str] = &[
    "presentation",
    "logic",
    "worker",
    "fn-loyalty-points",
    "firehose",
    "analytics",
    "migrate",
    "postgres",
    "redis",
    "rabbitmq",
];

/// The allowed edges with managed data services outside the cluster, besides DNS.
const MANAGED_EDGES: &[&str] = &[
    "anywhere -> presentation:8080/TCP",
    "presentation -> logic:8081/TCP",
    "prometheus -> logic:8081/TCP",
    "prometheus -> worker:9091/TCP",
    "logic -> 10.0.0.0/16:5432/TCP",
    "logic -> 10.0.0.0/16:6379/TCP",
    "logic -> 10.0.0.0/16:5671/TCP",
    "logic -> 10.0.0.0/16:443/TCP",
    "worker -> 10.0.0.0/16:5432/TCP",
    "worker -> 10.0.0.0/16:5671/TCP",
    "prometheus -> fn-loyalty-points:9091/TCP",
    "fn-loyalty-points -> 10.0.0.0/16:5432/TCP",
    "fn-loyalty-points -> 10.0.0.0/16:5671/TCP",
    "prometheus -> firehose:9091/TCP",
    "firehose -> 10.0.0.0/16:5432/TCP",
    "firehose -> 10.0.0.0/16:5671/TCP",
    "prometheus -> analytics:9091/TCP",
    "analytics -> 10.0.0.0/16:5432/TCP",
    "analytics -> 10.0.0.0/16:5671/TCP",
    "migrate -> 10.0.0.0/16:5432/TCP",
];
const MANAGED_PODS: &[&str] = &[
    "presentation",
    "logic",
    "worker",
    "fn-loyalty-points",
    "firehose",
    "analytics",
    "migrate",
];

/// The worker's deliveries (webhooks on HTTP and HTTPS, mail on SMTP and submission).
const DELIVERY_PORTS: [u64; 5] = [80, 443, 25, 465, 587];
/// The internet as the worker's policy opens it: everything but the private, loopback,
/// link-local (the metadata service) and shared ranges.
const INTERNET: [&str; 2] = [
    "0.0.0.0/0-[0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,127.0.0.0/8,169.254.0.0/16,172.16.0.0/12,192.168.0.0/16]",
    "::/0-[::ffff:0:0/96,fc00::/7,fe80::/10]",
];
/// Ranges a rule to the internet must leave out.
const PRIVATE_RANGES: [&str; 9] = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::ffff:0:0/96",
    "fc00::/7",
    "fe80::/10",
];

/// The worker's edges to the internet, as the tables expect them.
fn internet_edges() -> impl Iterator<Item = String> {
    INTERNET.into_iter().flat_map(|block| {
        DELIVERY_PORTS
            .into_iter()
            .map(move |port| format!("worker -> {block}:{port}/TCP"))
    })
}

/// The peers outside the namespace that the policies may name.
const EXTERNAL_PEERS: [ExternalPeer; 3] = [
    ExternalPeer {
        name: "keda-operator",
        namespace: "keda",
        labels: &[("app", "keda-operator")],
    },
    ExternalPeer {
        name: "prometheus",
        namespace: "monitoring",
        labels: &[("app.kubernetes.io/name", "prometheus")],
    },
    ExternalPeer {
        name: "kube-dns",
        namespace: "kube-system",
        labels: &[("k8s-app", "kube-dns")],
    },
];

/// Secret settings: given to a container only as a `*_FILE` path.
const SECRET_SETTINGS: [&str; 7] = [
    "DATABASE_URL",
    "REDIS_URL",
    "AMQP_URL",
    "ADMIN_TOKEN",
    "COOKIE_KEY",
    "OPS_PASSWORD_HASH",
    "LOGIC_ADMIN_TOKEN",
];

// ------------------------------------------------------------------ workloads

#[test]
fn overlays_put_every_object_in_the_namespace() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        assert!(
            b.find("Namespace", NAMESPACE).is_some(),
            "{overlay}: no namespace"
        );
        let failures = b
            .objects
            .iter()
            .filter(|o| kind(o) != "Namespace" && o["metadata"]["namespace"] != NAMESPACE)
            .map(|o| format!("{} is not in namespace {NAMESPACE}", id(o)))
            .collect();
        assert_no_problems(overlay, failures);
    }
}

#[test]
fn workloads_have_probes_resources_and_run_as_non_root() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        let mut failures = Vec::new();
        for w in b.workloads() {
            let pod = pod_spec(w);
            let security = &pod["securityContext"];
            if security["runAsNonRoot"] != true {
                failures.push(format!("{}: runAsNonRoot is not true", id(w)));
            }
            if security["runAsUser"].as_u64().is_none_or(|uid| uid == 0) {
                failures.push(format!("{}: no non-zero runAsUser", id(w)));
            }
            if security["seccompProfile"]["type"] != "RuntimeDefault" {
                failures.push(format!("{}: no RuntimeDefault seccomp profile", id(w)));
            }
            if pod["automountServiceAccountToken"] != false {
                failures.push(format!("{}: mounts a service account token", id(w)));
            }
            for c in containers(w) {
                let at = format!("{} container {}", id(w), c["name"]);
                check_container_security(&at, c, &mut failures);
                check_resources(&at, c, &mut failures);
                if kind(w) != "Job" {
                    check_probes(&at, c, &mut failures);
                }
            }
        }
        assert_no_problems(overlay, failures);
    }
}

fn check_container_security(at: &str, c: &Value, failures: &mut Vec<String>) {
    let security = &c["securityContext"];
    if security["allowPrivilegeEscalation"] != false {
        failures.push(format!("{at}: allowPrivilegeEscalation is not false"));
    }
    if !strings(&security["capabilities"]["drop"]).contains(&"ALL".to_owned()) {
        failures.push(format!("{at}: does not drop all capabilities"));
    }
    if security["runAsUser"] == 0 || security["privileged"] == true {
        failures.push(format!("{at}: runs as root or privileged"));
    }
    if strata_binary(c).is_some() && security["readOnlyRootFilesystem"] != true {
        failures.push(format!("{at}: Strata's binaries need no writable root"));
    }
}

fn check_resources(at: &str, c: &Value, failures: &mut Vec<String>) {
    for resource in ["cpu", "memory"] {
        let request = quantity(&c["resources"]["requests"][resource]);
        let limit = quantity(&c["resources"]["limits"][resource]);
        match (request, limit) {
            (Some(request), Some(limit)) if request <= limit => {}
            (Some(_), Some(_)) => failures.push(format!("{at}: {resource} request > limit")),
            _ => failures.push(format!("{at}: no {resource} request and limit")),
        }
    }
}

fn check_probes(at: &str, c: &Value, failures: &mut Vec<String>) {
    for probe in ["livenessProbe", "readinessProbe"] {
        if c[probe].is_null() {
            failures.push(format!("{at}: no {probe}"));
        }
    }
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let port = if c[probe]["httpGet"].is_object() {
            &c[probe]["httpGet"]["port"]
        } else {
            &c[probe]["tcpSocket"]["port"]
        };
        if !port.is_null() && container_port(c, port).is_none() {
            failures.push(format!("{at}: {probe} port {port} is not declared"));
        }
    }
}

#[test]
fn containers_set_only_their_binarys_settings_and_listen_on_declared_ports() {
    let known: BTreeMap<&str, clap::Command> = BTreeMap::from([
        ("logic", logic::cli::Cli::command()),
        ("presentation", presentation::config::Cli::command()),
        ("worker", worker::WorkerSettings::command()),
    ]);
    for overlay in OVERLAYS {
        let b = build(overlay);
        let mut failures = Vec::new();
        for w in b.workloads() {
            for c in containers(w) {
                let Some(binary) = strata_binary(c) else {
                    continue;
                };
                let at = format!("{} container {}", id(w), c["name"]);
                let Some(command) = known.get(binary) else {
                    failures.push(format!("{at}: runs {binary}, not a tier's binary"));
                    continue;
                };
                // `worker firehose` reads the worker's settings and the firehose's.
                let settings = env_settings_of(command.clone(), &binary_args(c));
                for var in env_names(c) {
                    if !settings.contains(var) && !LOG_SETTINGS.contains(&var) {
                        failures.push(format!("{at}: {binary} has no setting {var}"));
                    }
                    if SECRET_SETTINGS.contains(&var) {
                        failures.push(format!("{at}: {var} given inline; use {var}_FILE"));
                    }
                }
                for var in ["LISTEN_ADDR", "HEALTH_LISTEN"] {
                    let Some(address) = env_value(c, var) else {
                        continue;
                    };
                    let (host, port) = address.rsplit_once(':').expect("host:port");
                    if host != "0.0.0.0" {
                        failures.push(format!("{at}: {var} {address} is not reachable"));
                    }
                    let port = Value::from(port.parse::<u64>().expect("a port"));
                    if container_port(c, &port).is_none() {
                        failures.push(format!("{at}: {var} port {port} is not declared"));
                    }
                }
            }
        }
        for s in b.of_kind("Service") {
            let selector = labels(&s["spec"]["selector"]);
            let selected: Vec<&Value> = b
                .objects
                .iter()
                .filter(|w| matches!(kind(w), "Deployment" | "StatefulSet"))
                .filter(|w| {
                    selector
                        .iter()
                        .all(|(k, v)| pod_labels(w).get(k) == Some(v))
                })
                .collect();
            if selected.is_empty() {
                failures.push(format!("{}: selects no workload", id(s)));
            }
            for port in s["spec"]["ports"].as_array().into_iter().flatten() {
                for w in &selected {
                    if !containers(w).any(|c| container_port(c, &port["targetPort"]).is_some()) {
                        let target = &port["targetPort"];
                        failures.push(format!("{}: {} has no port {target}", id(s), id(w)));
                    }
                }
            }
        }
        assert_no_problems(overlay, failures);
    }
}

// ------------------------------------------------------------------ secrets and config

#[test]
fn every_secret_and_config_reference_resolves_to_a_generated_key() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        let mut failures = Vec::new();
        let mut resolve = |at: &str, k: &str, n: &str, key: Option<&str>| match b
            .generated
            .get(&(k.to_owned(), n.to_owned()))
        {
            None => failures.push(format!("{at}: no {k} {n}")),
            Some(keys) => {
                if let Some(key) = key.filter(|key| !keys.contains(*key)) {
                    failures.push(format!("{at}: {k} {n} has no key {key}"));
                }
            }
        };
        for w in b.workloads() {
            for v in pod_spec(w)["volumes"].as_array().into_iter().flatten() {
                let at = format!("{} volume {}", id(w), v["name"]);
                for (field, k, name_field) in [
                    ("secret", "Secret", "secretName"),
                    ("configMap", "ConfigMap", "name"),
                ] {
                    let source = &v[field];
                    if source.is_null() {
                        continue;
                    }
                    let n = source[name_field].as_str().expect("a name");
                    resolve(&at, k, n, None);
                    for item in source["items"].as_array().into_iter().flatten() {
                        resolve(&at, k, n, item["key"].as_str());
                    }
                }
            }
            for c in containers(w) {
                let at = format!("{} container {}", id(w), c["name"]);
                for e in c["env"].as_array().into_iter().flatten() {
                    for (field, k) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")]
                    {
                        let r = &e["valueFrom"][field];
                        if let Some(n) = r["name"].as_str() {
                            resolve(&at, k, n, r["key"].as_str());
                        }
                    }
                }
            }
        }
        for t in b.of_kind("TriggerAuthentication") {
            for r in t["spec"]["secretTargetRef"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let n = r["name"].as_str().expect("a secret name");
                resolve(&id(t), "Secret", n, r["key"].as_str());
            }
        }
        for w in b.workloads() {
            for c in containers(w) {
                check_secret_files(w, c, &mut failures);
            }
        }
        assert_no_problems(overlay, failures);
    }
}

/// Every `*_FILE` setting names a file of a mounted secret volume.
fn check_secret_files(w: &Value, c: &Value, failures: &mut Vec<String>) {
    let at = format!("{} container {}", id(w), c["name"]);
    let volumes = pod_spec(w)["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for e in c["env"].as_array().into_iter().flatten() {
        let var = e["name"].as_str().expect("env name");
        if !var.ends_with("_FILE") {
            continue;
        }
        let path = e["value"].as_str().unwrap_or_default();
        let found = c["volumeMounts"].as_array().into_iter().flatten().any(|m| {
            let mount = m["mountPath"].as_str().unwrap_or_default();
            let Some(file) = path.strip_prefix(mount).and_then(|p| p.strip_prefix('/')) else {
                return false;
            };
            volumes.iter().any(|v| {
                v["name"] == m["name"]
                    && v["secret"]["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|item| item["path"] == file)
            })
        });
        if !found {
            failures.push(format!("{at}: {var}={path} is not a mounted secret key"));
        }
    }
}

#[test]
fn no_secret_value_is_committed_and_every_secret_file_has_an_example() {
    let ignore = std::fs::read_to_string(repo_root().join("deploy/k8s/.gitignore"))
        .expect("deploy/k8s/.gitignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "overlays/*/secrets/"),
        "the overlays' secrets/ directories must be ignored by git"
    );
    for overlay in OVERLAYS {
        let b = build(overlay);
        let mut failures: Vec<String> = b
            .of_kind("Secret")
            .map(|s| format!("{} is written out; generate it from files", id(s)))
            .collect();
        assert!(!b.secret_files.is_empty(), "{overlay}: no secret generator");
        for file in &b.secret_files {
            let relative = file.strip_prefix(overlay).expect("inside the overlay");
            let Ok(rest) = relative.strip_prefix("secrets") else {
                failures.push(format!("{} is not under secrets/", file.display()));
                continue;
            };
            let example = repo_root().join(overlay).join("secrets.example").join(rest);
            match std::fs::read_to_string(&example) {
                Err(_) => failures.push(format!("{} has no example", file.display())),
                Ok(text) if !text.contains("CHANGE-ME") => {
                    failures.push(format!("{} looks like a real value", example.display()))
                }
                Ok(text) if !rest.to_string_lossy().ends_with(".conf") && text.ends_with('\n') => {
                    failures.push(format!(
                        "{} ends in a newline, which a URL or token must not",
                        example.display()
                    ))
                }
                Ok(_) => {}
            }
        }
        assert_no_problems(overlay, failures);
    }
}

#[test]
fn presentation_holds_no_data_tier_credentials() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        let presentation = b.find("Deployment", "presentation").expect("presentation");
        let data_urls = ["DATABASE_URL", "REDIS_URL", "AMQP_URL"];
        for c in containers(presentation) {
            for var in env_names(c) {
                assert!(
                    !data_urls.iter().any(|d| var.starts_with(d)),
                    "{overlay}: presentation is given {var}"
                );
            }
        }
        for v in pod_spec(presentation)["volumes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_ne!(
                v["secret"]["secretName"], "strata-data",
                "{overlay}: presentation mounts the data tier's URLs"
            );
        }
    }
}

// ------------------------------------------------------------------ network policies

#[test]
fn network_policies_deny_by_default_and_open_exactly_the_tier_edges() {
    for (overlay, table, pods) in [
        (DEMO, DEMO_EDGES, DEMO_PODS),
        (MANAGED, MANAGED_EDGES, MANAGED_PODS),
    ] {
        let b = build(overlay);
        let deny = b.of_kind("NetworkPolicy").find(|p| {
            let spec = &p["spec"];
            spec["podSelector"]
                .as_object()
                .is_some_and(|s| s.is_empty())
                && strings(&spec["policyTypes"]) == ["Ingress", "Egress"]
                && spec["ingress"].is_null()
                && spec["egress"].is_null()
        });
        assert!(
            deny.is_some(),
            "{overlay}: no default deny of ingress and egress"
        );
        let mut present: Vec<String> = b.workloads().map(component).collect();
        present.sort();
        present.dedup();
        let mut listed: Vec<String> = pods.iter().map(|p| (*p).to_owned()).collect();
        listed.sort();
        assert_eq!(present, listed, "{overlay}: the tables name other pods");

        let Edges {
            open: actual,
            half_open,
        } = edges(&b, &EXTERNAL_PEERS);
        let mut expected: BTreeSet<String> = table
            .iter()
            .map(|e| (*e).to_owned())
            .chain(internet_edges())
            .collect();
        for pod in pods {
            for dns in DNS {
                expected.insert(format!("{pod} -> {dns}"));
            }
        }
        let extra: Vec<&String> = actual.difference(&expected).collect();
        let missing: Vec<&String> = expected.difference(&actual).collect();
        assert!(
            extra.is_empty() && missing.is_empty() && half_open.is_empty(),
            "{overlay}: network policies differ from the table\n  opened but not in the table: \
             {extra:?}\n  in the table but not opened: {missing:?}\n  one-sided: {half_open:?}"
        );
    }
}

/// Problems with the way out of the namespace: a rule to addresses outside the pod
/// network's private ranges is the worker's alone, on the delivery ports, and leaves out
/// every private range; the worker has such a rule for every delivery port.
fn internet_problems(edges: &BTreeSet<String>) -> Vec<String> {
    let mut p = Vec::new();
    let mut worker_ports = BTreeSet::new();
    for edge in edges {
        let Some((from, rest)) = edge.split_once(" -> ") else {
            continue;
        };
        let Some((target, port)) = rest.rsplit_once(':') else {
            continue;
        };
        let cidr = target.split("-[").next().unwrap_or(target);
        if cidr != "0.0.0.0/0" && cidr != "::/0" && target != "anywhere" {
            continue;
        }
        if from != "worker" {
            p.push(format!("{from} reaches the internet: {edge}"));
            continue;
        }
        let number: u64 = port
            .split('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if !DELIVERY_PORTS.contains(&number) || !port.ends_with("/TCP") {
            p.push(format!(
                "worker reaches the internet beyond deliveries: {edge}"
            ));
        }
        let left_out: BTreeSet<&str> = target
            .split_once("-[")
            .map(|(_, list)| list.trim_end_matches(']').split(',').collect())
            .unwrap_or_default();
        let v6 = cidr.contains(':');
        for range in PRIVATE_RANGES {
            if range.contains(':') == v6 && !left_out.contains(range) {
                p.push(format!(
                    "worker's {cidr} does not leave out {range}: {edge}"
                ));
            }
        }
        if cidr == "0.0.0.0/0" {
            worker_ports.insert(number);
        }
    }
    for port in DELIVERY_PORTS {
        if !worker_ports.contains(&port) {
            p.push(format!("worker cannot reach the internet on {port}/TCP"));
        }
    }
    p
}

/// The value of a strata-config literal in `overlay`: its own (merged) value, else the
/// base's.
fn config_literal(overlay: &str, key: &str) -> Option<String> {
    [overlay, "deploy/k8s/base"].into_iter().find_map(|dir| {
        let docs = load_yaml_documents(format!("{dir}/kustomization.yaml")).expect("loads");
        docs[0]["configMapGenerator"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"] == "strata-config")
            .flat_map(|g| strings(&g["literals"]))
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
    })
}

#[test]
fn the_worker_alone_reaches_the_internet_for_its_deliveries() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        let Edges { open, .. } = edges(&b, &EXTERNAL_PEERS);
        let mut problems = internet_problems(&open);
        // Its confirmation URLs point at the public tier: logic is private.
        match config_literal(overlay, "PUBLIC_API_URL") {
            None => problems.push("strata-config has no PUBLIC_API_URL".to_owned()),
            Some(url) if url.contains("logic") || url.contains(":8081") => {
                problems.push(format!("PUBLIC_API_URL {url} is private logic"));
            }
            Some(_) => {}
        }
        if config_literal(overlay, "SMTP_URL").is_none() {
            problems.push("strata-config has no SMTP_URL".to_owned());
        }
        assert_no_problems(format_args!("{overlay}: the worker's way out"), problems);
    }
    // The rule notices each break.
    let good: BTreeSet<String> = internet_edges().collect();
    assert!(internet_problems(&good).is_empty());
    let breaks: [(&str, &str); 4] = [
        ("logic -> 0.0.0.0/0:443/TCP", "logic reaches the internet"),
        ("worker -> 0.0.0.0/0:5432/TCP", "beyond deliveries"),
        ("worker -> anywhere:0/any", "beyond deliveries"),
        (
            "worker -> 0.0.0.0/0-[10.0.0.0/8]:443/TCP",
            "does not leave out 169.254.0.0/16",
        ),
    ];
    for (edge, expected) in breaks {
        let mut broken = good.clone();
        broken.insert(edge.to_owned());
        let problems = internet_problems(&broken);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{edge}: expected {expected:?} in {problems:?}"
        );
    }
    let mut closed = good.clone();
    closed.retain(|e| !e.contains(":25/"));
    assert!(
        internet_problems(&closed)
            .iter()
            .any(|p| p.contains("cannot reach the internet on 25/TCP"))
    );
}

// ------------------------------------------------------------------ autoscaling

#[test]
fn hpas_scale_presentation_and_logic_on_cpu() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        let mut scaled = BTreeSet::new();
        for h in b.of_kind("HorizontalPodAutoscaler") {
            assert_eq!(h["apiVersion"], "autoscaling/v2", "{overlay}: {}", id(h));
            let target = &h["spec"]["scaleTargetRef"];
            let t = target["name"].as_str().expect("a target");
            let deployment = b
                .find(target["kind"].as_str().unwrap_or_default(), t)
                .unwrap_or_else(|| panic!("{overlay}: {} targets missing {t}", id(h)));
            assert!(
                h["spec"]["minReplicas"].as_u64() <= h["spec"]["maxReplicas"].as_u64(),
                "{overlay}: {}: min above max",
                id(h)
            );
            let cpu = h["spec"]["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| {
                    m["resource"]["name"] == "cpu"
                        && m["resource"]["target"]["type"] == "Utilization"
                });
            assert!(
                cpu,
                "{overlay}: {} does not scale on CPU utilization",
                id(h)
            );
            // Utilization is a share of the request: without one the HPA cannot compute it.
            for c in containers(deployment) {
                assert!(
                    quantity(&c["resources"]["requests"]["cpu"]).is_some(),
                    "{overlay}: {t} has no CPU request"
                );
            }
            assert!(
                deployment["spec"]["replicas"].is_null(),
                "{overlay}: {t} sets replicas, which every apply would reset"
            );
            scaled.insert(t.to_owned());
        }
        let expected = BTreeSet::from(["logic".to_owned(), "presentation".to_owned()]);
        assert_eq!(scaled, expected, "{overlay}: HPAs");
    }
}

/// The fields KEDA 2.x defines for its ScaledObject and TriggerAuthentication (those these
/// manifests may use), by path; `*` is any key (label maps). A misspelt optional field is
/// otherwise silently ignored by a cluster that accepts the object.
const KEDA_FIELDS: &[(&str, &[&str])] = &[
    ("", &["apiVersion", "kind", "metadata", "spec"]),
    ("metadata", &["name", "namespace", "labels", "annotations"]),
    ("metadata.labels", &["*"]),
    ("metadata.annotations", &["*"]),
    (
        "ScaledObject.spec",
        &[
            "scaleTargetRef",
            "pollingInterval",
            "cooldownPeriod",
            "initialCooldownPeriod",
            "idleReplicaCount",
            "minReplicaCount",
            "maxReplicaCount",
            "fallback",
            "advanced",
            "triggers",
        ],
    ),
    (
        "ScaledObject.spec.scaleTargetRef",
        &["apiVersion", "kind", "name", "envSourceContainerName"],
    ),
    (
        "ScaledObject.spec.advanced",
        &[
            "restoreToOriginalReplicaCount",
            "horizontalPodAutoscalerConfig",
            "scalingModifiers",
        ],
    ),
    (
        "ScaledObject.spec.advanced.horizontalPodAutoscalerConfig",
        &["name", "behavior"],
    ),
    (
        "ScaledObject.spec.triggers",
        &[
            "type",
            "name",
            "metadata",
            "authenticationRef",
            "metricType",
            "useCachedMetrics",
        ],
    ),
    (
        "ScaledObject.spec.triggers.metadata",
        &[
            "queueName",
            "mode",
            "value",
            "activationValue",
            "protocol",
            "vhostName",
            "useRegex",
            "excludeUnacknowledged",
            "pageSize",
            "operation",
            "timeout",
            "unsafeSsl",
        ],
    ),
    (
        "ScaledObject.spec.triggers.authenticationRef",
        &["name", "kind"],
    ),
    (
        "TriggerAuthentication.spec",
        &[
            "secretTargetRef",
            "env",
            "configMapTargetRef",
            "podIdentity",
        ],
    ),
    (
        "TriggerAuthentication.spec.secretTargetRef",
        &["parameter", "name", "key"],
    ),
];

fn check_keda_fields(at: &str, path: &str, value: &Value, failures: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for item in items {
                check_keda_fields(at, path, item, failures);
            }
        }
        Value::Object(map) => {
            let Some((_, allowed)) = KEDA_FIELDS.iter().find(|(p, _)| *p == path) else {
                return; // a subtree KEDA passes on as is (the HPA behavior: checked by k8s-validate)
            };
            for (key, child) in map {
                if !allowed.contains(&"*") && !allowed.contains(&key.as_str()) {
                    failures.push(format!("{at}: {path}.{key} is not a KEDA field"));
                }
                let child_path = match path {
                    "" if key == "spec" => format!("{}.spec", kind(value)),
                    "" => key.clone(),
                    _ => format!("{path}.{key}"),
                };
                check_keda_fields(at, &child_path, child, failures);
            }
        }
        _ => {}
    }
}

#[test]
fn keda_objects_use_only_fields_keda_defines() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        let mut failures = Vec::new();
        let mut seen = 0;
        for o in b
            .objects
            .iter()
            .filter(|o| o["apiVersion"] == "keda.sh/v1alpha1")
        {
            seen += 1;
            if !matches!(kind(o), "ScaledObject" | "TriggerAuthentication") {
                failures.push(format!("{}: not a kind these tests know", id(o)));
            }
            check_keda_fields(&id(o), "", o, &mut failures);
        }
        assert_eq!(
            seen, 3,
            "{overlay}: the workers' and the function's ScaledObjects, a TriggerAuthentication"
        );
        assert_no_problems(overlay, failures);
    }
}

#[test]
fn keda_scales_workers_on_the_fulfil_queue_like_the_autoscaler() {
    let scaler = autoscaler::AutoscalerSettings::command();
    for overlay in OVERLAYS {
        let b = build(overlay);
        let scaled: Vec<&Value> = b
            .of_kind("ScaledObject")
            .filter(|o| o["metadata"]["name"] == "worker")
            .collect();
        assert_eq!(
            scaled.len(),
            1,
            "{overlay}: one ScaledObject of the workers"
        );
        let s = &scaled[0]["spec"];
        assert_eq!(s["scaleTargetRef"]["name"], "worker");
        let worker = b
            .find("Deployment", "worker")
            .expect("the worker Deployment");
        assert!(
            !b.of_kind("HorizontalPodAutoscaler")
                .any(|h| h["spec"]["scaleTargetRef"]["name"] == "worker"),
            "{overlay}: a second HPA fights KEDA's over the workers"
        );
        assert!(worker["spec"]["replicas"].is_null(), "KEDA owns the count");

        assert_eq!(
            s["minReplicaCount"],
            env_default_u64(&scaler, "AUTOSCALER_MIN")
        );
        assert_eq!(
            s["maxReplicaCount"],
            env_default_u64(&scaler, "AUTOSCALER_MAX")
        );
        assert!(s["cooldownPeriod"].as_u64().is_some(), "a cooldownPeriod");
        let behavior = &s["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
        assert_eq!(
            behavior["scaleDown"]["stabilizationWindowSeconds"],
            env_default_secs(&scaler, "SCALE_DOWN_WINDOW"),
            "{overlay}: scale-down window"
        );
        let step = behavior["scaleUp"]["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["type"] == "Pods")
            .expect("a scale-up step in pods");
        assert_eq!(step["value"], env_default_u64(&scaler, "MAX_STEP_UP"));

        let triggers = s["triggers"].as_array().expect("triggers");
        assert_eq!(triggers.len(), 1, "{overlay}: one trigger");
        let t = &triggers[0];
        let m = &t["metadata"];
        assert_eq!(t["type"], "rabbitmq");
        assert_eq!(m["queueName"], contracts::FULFIL_QUEUE);
        assert_eq!(
            m["queueName"].as_str(),
            Some(env_default(&scaler, "SCALE_QUEUE").as_str())
        );
        assert_eq!(m["mode"], "QueueLength");
        // Ready + unacked, as the autoscaler counts: only the management API reports both.
        assert_eq!(m["protocol"], "http");
        assert_ne!(m["excludeUnacknowledged"], "true");
        assert_ne!(m["useRegex"], "true");
        assert_eq!(
            m["value"].as_str().and_then(|v| v.parse::<u64>().ok()),
            Some(env_default_u64(&scaler, "TARGET_BACKLOG")),
            "{overlay}: target backlog per worker"
        );
        for inline in ["host", "hostFromEnv", "username", "password"] {
            assert!(
                m[inline].is_null(),
                "{overlay}: {inline} belongs in the Secret"
            );
        }
        let auth = t["authenticationRef"]["name"]
            .as_str()
            .expect("authenticationRef");
        let auth = b
            .find("TriggerAuthentication", auth)
            .unwrap_or_else(|| panic!("{overlay}: no TriggerAuthentication {auth}"));
        let host = auth["spec"]["secretTargetRef"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["parameter"] == "host")
            .expect("host from a Secret");
        let key = host["key"].as_str().expect("a key");
        let secret = host["name"].as_str().expect("a Secret");
        let keys = b
            .generated
            .get(&("Secret".to_owned(), secret.to_owned()))
            .unwrap_or_else(|| panic!("{overlay}: no Secret {secret}"));
        assert!(
            keys.contains(key),
            "{overlay}: Secret {secret} has no {key}"
        );

        // Workers drain on SIGTERM: give them at least the autoscaler's drain timeout.
        let grace = pod_spec(worker)["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        assert!(
            grace >= 60.max(env_default_secs(&scaler, "DRAIN_TIMEOUT")),
            "{overlay}: workers get {grace} s to drain"
        );
    }
}

#[test]
fn keda_scales_the_function_from_zero_on_its_queue() {
    let worker = worker::WorkerSettings::command();
    for overlay in OVERLAYS {
        let b = build(overlay);
        let function = b
            .find("Deployment", "fn-loyalty-points")
            .unwrap_or_else(|| panic!("{overlay}: the function's Deployment"));
        assert_eq!(function["spec"]["replicas"], 0, "{overlay}: none at rest");
        let c = containers(function).next().expect("a container");
        assert_eq!(
            env_value(c, "WORKER_FUNCTION"),
            Some("loyalty-points"),
            "{overlay}: the worker runs the handler only"
        );
        assert!(
            env_settings(worker.clone()).contains("WORKER_FUNCTION"),
            "a worker setting"
        );
        let s = &b
            .find("ScaledObject", "fn-loyalty-points")
            .unwrap_or_else(|| panic!("{overlay}: the function's ScaledObject"))["spec"];
        assert_eq!(s["scaleTargetRef"]["name"], "fn-loyalty-points");
        assert_eq!(s["minReplicaCount"], 0, "{overlay}: scaled from zero");
        assert_eq!(s["maxReplicaCount"], 1);
        let t = &s["triggers"][0];
        assert_eq!(t["type"], "rabbitmq");
        let m = &t["metadata"];
        assert_eq!(
            m["queueName"].as_str(),
            Some(contracts::function_queue_name("loyalty-points").as_str())
        );
        // Activation as soon as the queue holds anything, ready or unacked.
        assert_eq!(m["activationValue"], "0");
        assert_eq!(m["protocol"], "http");
        assert_ne!(m["excludeUnacknowledged"], "true");
        assert!(
            b.find(
                "TriggerAuthentication",
                t["authenticationRef"]["name"].as_str().unwrap_or("")
            )
            .is_some(),
            "{overlay}: its TriggerAuthentication"
        );
    }
}

#[test]
fn the_demo_management_url_points_at_the_brokers_api() {
    let b = build(DEMO);
    let example = std::fs::read_to_string(
        repo_root()
            .join(DEMO)
            .join("secrets.example/rabbitmq-management-url"),
    )
    .expect("example");
    let rest = example
        .strip_prefix("http://")
        .expect("http, in the cluster");
    let (credentials, rest) = rest.split_once('@').expect("credentials");
    assert!(credentials.contains(':'), "user:password");
    let (authority, vhost) = rest.split_once('/').expect("a vhost path");
    assert_eq!(vhost, "%2F", "the default vhost, escaped");
    let (host, port) = authority.rsplit_once(':').expect("a port");
    assert_eq!(
        host,
        format!("rabbitmq.{NAMESPACE}.svc"),
        "KEDA runs in another namespace"
    );
    let service = b.find("Service", "rabbitmq").expect("the rabbitmq Service");
    let served = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["name"] == "management" && p["port"].as_u64() == port.parse().ok());
    assert!(served, "the Service serves the management API on {port}");
}

// ------------------------------------------------------------------ the stream's applications

/// Problems with the stream's applications in one rendered overlay: one replica each of
/// `worker firehose` and `worker analytics`, neither autoscaled; the firehose's archive
/// on a ReadWriteOnce claim mounted writable at its FIREHOSE_DIR, so the Deployment
/// replaces its pod with `Recreate` (a rolling update's second pod could not mount it).
fn stream_problems(b: &deploy_check::k8s::Build) -> Vec<String> {
    let mut p = Vec::new();
    let worker = worker::WorkerSettings::command();
    for (name, sub) in [("firehose", "firehose"), ("analytics", "analytics")] {
        let Some(d) = b.find("Deployment", name) else {
            p.push(format!("no Deployment {name}"));
            continue;
        };
        if d["spec"]["replicas"] != 1 {
            p.push(format!("{name}: replicas {}, not 1", d["spec"]["replicas"]));
        }
        let scaled = b
            .objects
            .iter()
            .filter(|o| matches!(kind(o), "HorizontalPodAutoscaler" | "ScaledObject"))
            .any(|o| o["spec"]["scaleTargetRef"]["name"] == name);
        if scaled {
            p.push(format!("{name} is autoscaled; it runs one instance"));
        }
        let Some(c) = containers(d).next() else {
            p.push(format!("{name}: no container"));
            continue;
        };
        if strata_binary(c) != Some("worker") || binary_args(c) != [sub] {
            p.push(format!("{name} does not run `worker {sub}`"));
        }
        if worker.find_subcommand(sub).is_none() {
            p.push(format!("the worker has no subcommand {sub}"));
        }
    }
    let Some(firehose) = b.find("Deployment", "firehose") else {
        return p;
    };
    let Some(c) = containers(firehose).next() else {
        return p;
    };
    let Some(dir) = env_value(c, "FIREHOSE_DIR") else {
        p.push("firehose: FIREHOSE_DIR is not set (its default is relative)".to_owned());
        return p;
    };
    let mount = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir);
    let Some(mount) = mount else {
        p.push(format!(
            "firehose: nothing mounted at FIREHOSE_DIR {dir}: the archive would be lost with the pod"
        ));
        return p;
    };
    if mount["readOnly"] == true {
        p.push(format!(
            "firehose: the archive at {dir} is mounted read-only"
        ));
    }
    let volume = pod_spec(firehose)["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"]);
    let claim = volume.and_then(|v| v["persistentVolumeClaim"]["claimName"].as_str());
    let Some(claim) = claim else {
        p.push(format!(
            "firehose: the archive at {dir} is not a PersistentVolumeClaim"
        ));
        return p;
    };
    match b.find("PersistentVolumeClaim", claim) {
        None => p.push(format!("firehose: no PersistentVolumeClaim {claim}")),
        Some(pvc) => {
            let modes = strings(&pvc["spec"]["accessModes"]);
            if modes
                .iter()
                .any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod")
                && firehose["spec"]["strategy"]["type"] != "Recreate"
            {
                p.push(format!(
                    "firehose: claim {claim} is {modes:?} but the Deployment's strategy is not Recreate"
                ));
            }
            if quantity(&pvc["spec"]["resources"]["requests"]["storage"]).is_none() {
                p.push(format!("firehose: claim {claim} requests no storage"));
            }
        }
    }
    // fsGroup gives the unprivileged user the volume.
    if pod_spec(firehose)["securityContext"]["fsGroup"]
        .as_u64()
        .is_none()
    {
        p.push("firehose: no fsGroup: its user could not write the archive".to_owned());
    }
    p
}

#[test]
fn the_streams_applications_run_once_and_the_archive_is_claimed() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        assert_no_problems(overlay, stream_problems(&b));
    }
    // The rule notices each break.
    type Break = fn(&mut Value);
    let breaks: [(&str, Break, &str); 6] = [
        (
            "two firehoses",
            |d| d["spec"]["replicas"] = 2.into(),
            "firehose: replicas 2",
        ),
        (
            "a rolling update",
            |d| {
                d["spec"].as_object_mut().unwrap().remove("strategy");
            },
            "strategy is not Recreate",
        ),
        (
            "the plain worker",
            |d| {
                d["spec"]["template"]["spec"]["containers"][0]["command"] =
                    serde_json::json!(["/usr/local/bin/worker"])
            },
            "does not run `worker firehose`",
        ),
        (
            "the archive read-only",
            |d| {
                d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1]["readOnly"] =
                    true.into()
            },
            "mounted read-only",
        ),
        (
            "the archive in the pod",
            |d| {
                d["spec"]["template"]["spec"]["volumes"][1] =
                    serde_json::json!({"name": "archive", "emptyDir": {}})
            },
            "not a PersistentVolumeClaim",
        ),
        (
            "no FIREHOSE_DIR",
            |d| {
                d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|e| e["name"] != "FIREHOSE_DIR");
            },
            "FIREHOSE_DIR is not set",
        ),
    ];
    let good = build(DEMO);
    for (what, break_it, expected) in breaks {
        let mut b = build(DEMO);
        let d = b
            .objects
            .iter_mut()
            .find(|o| kind(o) == "Deployment" && o["metadata"]["name"] == "firehose")
            .expect("the firehose Deployment");
        break_it(d);
        let problems = stream_problems(&b);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected {expected:?} in {problems:?}"
        );
    }
    assert!(stream_problems(&good).is_empty());
}

/// Connections Postgres accepts from ordinary roles with its defaults: `max_connections`
/// 100 less the 3 `superuser_reserved_connections`.
const POSTGRES_BUDGET: u64 = 97;

/// Connections a Strata process opens besides its pool: logic's outbox relay two (one
/// listening, one for its batches), a worker's relay (or, without one, its notifier) one;
/// the stream applications and the one-off commands none.
fn own_connections(container: &Value) -> u64 {
    let subcommand = binary_args(container).into_iter().next();
    match (strata_binary(container), subcommand) {
        (Some("logic"), None) if env_value(container, "OUTBOX_RELAY") != Some("false") => 2,
        (Some("worker"), None) => 1,
        _ => 0,
    }
}

#[test]
fn every_workload_at_its_maximum_scale_fits_postgres_connection_budget() {
    for overlay in OVERLAYS {
        let b = build(overlay);
        // The most replicas of each workload: its HPA's or ScaledObject's maximum, else
        // its own replicas (a Job runs one pod at a time).
        let mut most: BTreeMap<String, u64> = BTreeMap::new();
        for h in b.of_kind("HorizontalPodAutoscaler") {
            let target = h["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .expect("a target");
            most.insert(
                target.to_owned(),
                h["spec"]["maxReplicas"].as_u64().expect("max"),
            );
        }
        for s in b.of_kind("ScaledObject") {
            let target = s["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .expect("a target");
            let max = s["spec"]["maxReplicaCount"]
                .as_u64()
                .expect("maxReplicaCount");
            most.insert(target.to_owned(), max);
        }
        let mut sum = 0;
        let mut parts = Vec::new();
        for w in b.workloads() {
            let replicas = most
                .get(deploy_check::k8s::name(w))
                .copied()
                .unwrap_or_else(|| w["spec"]["replicas"].as_u64().unwrap_or(1));
            for c in containers(w) {
                let names = env_names(c);
                if !names.contains(&"DATABASE_URL") && !names.contains(&"DATABASE_URL_FILE") {
                    continue;
                }
                // The binaries' default pool when the manifest sets none.
                let pool = env_value(c, "DATABASE_MAX_CONNECTIONS")
                    .map(|v| v.parse::<u64>().expect("a number"))
                    .unwrap_or(10);
                let own = own_connections(c);
                sum += replicas * (pool + own);
                parts.push(format!("{} {replicas} x ({pool} + {own})", id(w)));
            }
        }
        assert!(
            sum <= POSTGRES_BUDGET,
            "{overlay}: {sum} Postgres connections at the most, over {POSTGRES_BUDGET}: {}",
            parts.join(", ")
        );
        assert!(sum > 0, "{overlay}: no workload counted");
        eprintln!(
            "{overlay}: {sum} of {POSTGRES_BUDGET}: {}",
            parts.join(", ")
        );
    }
}
