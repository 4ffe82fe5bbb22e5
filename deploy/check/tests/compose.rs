//! docker-compose.yml and the images it builds, checked against the tier rules:
//!
//! - two networks, `private` internal; each service on exactly the networks of its tier;
//! - a third, `egress`, not internal, for the worker alone: its webhooks and mail leave
//!   through it, while logic, the data services and the broker have no route out; the
//!   confirmation URLs it sends point at the public tier, not at private logic;
//!   only the load balancer publishes a port, and no data service does;
//! - every long-running service has a healthcheck, a restart policy, and waits for what
//!   it needs with `depends_on` conditions; logic waits for the one-shot `migrate`;
//! - secrets are files under deploy/compose/secrets/ (gitignored), reached through the
//!   binaries' `*_FILE` settings; no credential sits in the environment; presentation
//!   holds no database, cache or broker secret;
//! - every environment variable of a Strata container is a setting of its binary, and the
//!   serving tiers run the production profile;
//! - workers drain before compose kills them, and the autoscaler scales them through the
//!   compose backend with the docker socket and this file mounted;
//! - the stream's applications (`worker firehose`, `worker analytics`) are private, and
//!   the archive is a named volume, the one writable place of a read-only container, at
//!   a directory the image gives its unprivileged user; every Strata container but the
//!   autoscalers has a read-only root;
//! - the load test runs under its own profile, from the public side;
//! - deploy/Dockerfile builds every binary a service runs, into a non-root runtime image,
//!   and .dockerignore lets in every workspace member and nothing else.
//!
//! Each rule returns the problems it finds; `every_rule_catches_a_break` breaks the file
//! in memory one rule at a time and asserts that the rule notices.
//!
//! scripts/compose-validate has Docker Compose itself check the file's schema.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use deploy_check::compose::{
    self, assert_rule, duration_ms, environment, is_strata_image, mounted_secrets, services, words,
};
use deploy_check::dockerfile::{self, Stage};
use deploy_check::repo_root;
use deploy_check::settings::{LOG_SETTINGS, env_settings_of};
use deploy_check::yaml::keys;
use serde_json::{Value, json};

const COMPOSE: &str = "docker-compose.yml";
const SECRETS_DIR: &str = "./deploy/compose/secrets/";

/// Each service's networks, by tier.
const NETWORKS: &[(&str, &[&str])] = &[
    ("lb", &["public"]),
    ("presentation", &["private", "public"]),
    ("loadtest", &["public"]),
    ("logic", &["private"]),
    ("migrate", &["private"]),
    ("worker", &["egress", "private"]),
    ("autoscaler", &["private"]),
    ("fn-loyalty-points", &["private"]),
    ("fn-autoscaler", &["private"]),
    ("firehose", &["private"]),
    ("analytics", &["private"]),
    ("postgres", &["private"]),
    ("redis", &["private"]),
    ("rabbitmq", &["private"]),
];
const DATA_SERVICES: [&str; 3] = ["postgres", "redis", "rabbitmq"];
/// Run to completion, not kept running.
const ONE_SHOT: [&str; 2] = ["migrate", "loadtest"];

/// The dependencies each service must wait for, and how.
const DEPENDS_ON: &[(&str, &[(&str, &str)])] = &[
    ("lb", &[("presentation", "service_healthy")]),
    ("presentation", &[("logic", "service_healthy")]),
    (
        "logic",
        &[
            ("migrate", "service_completed_successfully"),
            ("postgres", "service_healthy"),
            ("redis", "service_healthy"),
            ("rabbitmq", "service_healthy"),
        ],
    ),
    ("migrate", &[("postgres", "service_healthy")]),
    (
        "worker",
        &[
            ("postgres", "service_healthy"),
            ("rabbitmq", "service_healthy"),
        ],
    ),
    ("autoscaler", &[("rabbitmq", "service_healthy")]),
    (
        "fn-loyalty-points",
        &[
            ("postgres", "service_healthy"),
            ("rabbitmq", "service_healthy"),
        ],
    ),
    ("fn-autoscaler", &[("rabbitmq", "service_healthy")]),
    (
        "firehose",
        &[
            ("migrate", "service_completed_successfully"),
            ("postgres", "service_healthy"),
            ("rabbitmq", "service_healthy"),
        ],
    ),
    (
        "analytics",
        &[
            ("migrate", "service_completed_successfully"),
            ("postgres", "service_healthy"),
            ("rabbitmq", "service_healthy"),
        ],
    ),
    ("loadtest", &[("lb", "service_healthy")]),
];

/// The stream's applications: service, and the worker's subcommand it runs.
const STREAM_APPS: [(&str, &str); 2] = [("firehose", "firehose"), ("analytics", "analytics")];
/// Where the image keeps its writable directories, owned by its user: `/state/<name>` in
/// the builder, copied to `/var/lib/strata/<name>`.
const STATE_DIR: &str = "/var/lib/strata/";

/// Secrets presentation must never hold: it reaches data only through logic.
const DATA_SECRETS: [&str; 6] = [
    "database_url",
    "redis_url",
    "amqp_url",
    "postgres_password",
    "rabbitmq_password",
    "rabbitmq_conf",
];

/// Settings that carry a credential: only their `_FILE` form may be set.
const CREDENTIAL_SETTINGS: [&str; 12] = [
    "DATABASE_URL",
    "REDIS_URL",
    "AMQP_URL",
    "ADMIN_TOKEN",
    "LOGIC_ADMIN_TOKEN",
    "COOKIE_KEY",
    "OPS_PASSWORD_HASH",
    "RABBITMQ_API_PASSWORD",
    "POSTGRES_PASSWORD",
    "RABBITMQ_DEFAULT_PASS",
    "REDIS_PASSWORD",
    "OPS_PASSWORD",
];

// --- the rules -----------------------------------------------------------------------

fn network_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let declared = keys(&c["networks"]);
    let want: BTreeSet<String> = ["egress", "private", "public"].map(str::to_owned).into();
    if declared != want {
        p.push(format!("networks are {declared:?}, not {want:?}"));
    }
    if c["networks"]["private"]["internal"] != json!(true) {
        p.push("the private network is not internal".to_owned());
    }
    if c["networks"]["public"]["internal"] == json!(true) {
        p.push("the public network is internal: nothing could reach the shop".to_owned());
    }
    let expected: BTreeMap<&str, &[&str]> = NETWORKS.iter().copied().collect();
    for (name, service) in services(c) {
        if service.get("network_mode").is_some() {
            p.push(format!("{name} sets network_mode"));
        }
        let Some(want) = expected.get(name.as_str()) else {
            p.push(format!("{name} is not in the tier table of this test"));
            continue;
        };
        let got = keys(&service["networks"]);
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        if got != want {
            p.push(format!("{name} is on {got:?}, its tier is {want:?}"));
        }
    }
    for name in expected.keys() {
        if !services(c).contains_key(*name) {
            p.push(format!("service {name} is missing"));
        }
    }
    p
}

/// The worker delivers to the internet (webhooks, SMTP): it alone is on `egress`, which
/// has a route out and publishes nothing; what it sends subscribers to confirm is the
/// public tier's address.
fn egress_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let egress = &c["networks"]["egress"];
    if egress.is_null() {
        p.push("no egress network".to_owned());
    } else if egress["internal"] == json!(true) {
        p.push("the egress network is internal: no delivery leaves".to_owned());
    }
    for (name, service) in services(c) {
        let on_egress = keys(&service["networks"]).contains("egress");
        if name == "worker" {
            if !on_egress {
                p.push("worker is not on egress: webhooks and mail cannot leave".to_owned());
            }
        } else if on_egress {
            let what = if DATA_SERVICES.contains(&name.as_str()) {
                "data service"
            } else {
                "service"
            };
            p.push(format!(
                "{what} {name} is on egress; only the worker delivers out"
            ));
        }
        if on_egress && service["ports"].as_array().is_some_and(|a| !a.is_empty()) {
            p.push(format!("{name} publishes ports from egress"));
        }
    }
    let env = environment(&c["services"]["worker"]);
    match env.get("PUBLIC_API_URL") {
        None => p.push("worker: PUBLIC_API_URL is not set".to_owned()),
        Some(url) if url.contains("logic:") || !url.contains("8080") => p.push(format!(
            "worker: PUBLIC_API_URL {url} is not the public entry point"
        )),
        Some(_) => {}
    }
    if !env.contains_key("SMTP_URL") {
        p.push("worker: SMTP_URL cannot be set".to_owned());
    }
    p
}

fn port_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    for (name, service) in services(c) {
        let published = service["ports"].as_array().is_some_and(|a| !a.is_empty());
        if name == "lb" {
            let ports = service["ports"].as_array().cloned().unwrap_or_default();
            if ports.len() != 1 {
                p.push(format!("lb publishes {} ports, not one", ports.len()));
            }
            for port in ports {
                let text = port
                    .as_str()
                    .map_or_else(|| port.to_string(), str::to_owned);
                if !text.ends_with(":8080") {
                    p.push(format!("lb publishes {text}, not its :8080 frontend"));
                }
            }
        } else if published {
            let what = if DATA_SERVICES.contains(&name.as_str()) {
                "data service"
            } else {
                "service"
            };
            p.push(format!("{what} {name} publishes ports; only lb may"));
        }
    }
    p
}

fn health_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    for (name, service) in services(c) {
        let one_shot = ONE_SHOT.contains(&name.as_str());
        if one_shot {
            if service["restart"] != json!("no") {
                p.push(format!("one-shot {name} has a restart policy"));
            }
            continue;
        }
        let test = words(&service["healthcheck"]["test"]);
        match test.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL") if test.len() > 1 => {}
            _ => p.push(format!("long-running {name} has no healthcheck")),
        }
        if service["healthcheck"]["disable"] == json!(true) {
            p.push(format!("{name} disables its healthcheck"));
        }
        if service["restart"] != json!("unless-stopped") && service["restart"] != json!("always") {
            p.push(format!("long-running {name} is not restarted"));
        }
        // Strata's images have no shell or curl: their checks run the probe binary on
        // the service's own listen address.
        if is_strata_image(service) && test.get(1).map(String::as_str) != Some("probe") {
            p.push(format!("{name}'s healthcheck does not run the probe"));
        }
    }
    p
}

fn depends_on_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let all = services(c);
    for (name, service) in all {
        let deps = &service["depends_on"];
        if deps.is_array() {
            p.push(format!(
                "{name}'s depends_on is a list: it waits for no condition"
            ));
        }
        for (dep, spec) in deps.as_object().into_iter().flatten() {
            let condition = spec["condition"].as_str().unwrap_or("service_started");
            let Some(target) = all.get(dep) else {
                p.push(format!("{name} depends on unknown {dep}"));
                continue;
            };
            match condition {
                "service_healthy" if target["healthcheck"]["test"].is_null() => {
                    p.push(format!(
                        "{name} waits for {dep} to be healthy; it has no check"
                    ));
                }
                "service_completed_successfully" if !ONE_SHOT.contains(&dep.as_str()) => {
                    p.push(format!("{name} waits for long-running {dep} to complete"));
                }
                "service_healthy" | "service_completed_successfully" => {}
                other => p.push(format!("{name} waits for {dep} with condition {other}")),
            }
        }
    }
    for (name, wanted) in DEPENDS_ON {
        for (dep, condition) in *wanted {
            let got = &all
                .get(*name)
                .map_or(&Value::Null, |s| &s["depends_on"][dep]);
            if got["condition"] != json!(condition) {
                p.push(format!("{name} must wait for {dep} with {condition}"));
            }
        }
    }
    // Scaling runs `up worker`: a one-shot dependency would run again on every scale-up.
    if let Some(worker) = all.get("worker")
        && keys(&worker["depends_on"])
            .iter()
            .any(|d| ONE_SHOT.contains(&d.as_str()))
    {
        p.push("worker depends on a one-shot service, rerun by each scale-up".to_owned());
    }
    p
}

fn secret_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let declared = c["secrets"].as_object().cloned().unwrap_or_default();
    for (name, secret) in &declared {
        let file = secret["file"].as_str().unwrap_or_default();
        if file != format!("{SECRETS_DIR}{name}") {
            p.push(format!("secret {name} is not the file {SECRETS_DIR}{name}"));
        }
    }
    let mut used = BTreeSet::new();
    for (name, service) in services(c) {
        let env = environment(service);
        let mounted = mounted_secrets(service);
        for (source, path) in &mounted {
            used.insert(source.clone());
            if !declared.contains_key(source) {
                p.push(format!("{name} mounts undeclared secret {source}"));
            }
            // Mounted, so it must be read: a *_FILE setting, a path in the command, or a
            // configuration directory the image reads.
            let read = env.values().any(|v| v == path)
                || words(&service["command"]).iter().any(|w| w == path)
                || path.starts_with("/etc/");
            if !read {
                p.push(format!("{name} mounts {source} but reads it nowhere"));
            }
        }
        for (key, value) in &env {
            let credential_file = key
                .strip_suffix("_FILE")
                .is_some_and(|setting| CREDENTIAL_SETTINGS.contains(&setting));
            if (credential_file || value.starts_with("/run/secrets/"))
                && !mounted.values().any(|path| path == value)
            {
                p.push(format!("{name}: {key}={value} is not a mounted secret"));
            }
            if CREDENTIAL_SETTINGS.contains(&key.as_str()) {
                p.push(format!(
                    "{name} sets the credential {key} in its environment"
                ));
            }
            if value.contains("://") && value.contains('@') {
                p.push(format!("{name}: {key} carries credentials in a URL"));
            }
        }
        if name == "presentation" {
            for secret in DATA_SECRETS {
                if mounted.contains_key(secret) {
                    p.push(format!(
                        "presentation holds {secret}: it must reach data only through logic"
                    ));
                }
            }
        }
    }
    for name in declared.keys() {
        if !used.contains(name) {
            p.push(format!(
                "secret {name} is declared but no service mounts it"
            ));
        }
    }
    p
}

fn drain_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let worker = &c["services"]["worker"];
    let grace = worker["stop_grace_period"].as_str().and_then(duration_ms);
    match grace {
        Some(ms) if ms >= 60_000 => {}
        _ => p.push(format!(
            "worker stop_grace_period {} is under 60s: compose would kill drains",
            worker["stop_grace_period"]
        )),
    }
    for key in ["container_name", "ports"] {
        if !worker[key].is_null() {
            p.push(format!(
                "worker sets {key}: it could not run several replicas"
            ));
        }
    }
    let drain = environment(&c["services"]["autoscaler"])
        .get("DRAIN_TIMEOUT")
        .and_then(|d| duration_ms(d));
    if let (Some(grace), Some(drain)) = (grace, drain)
        && drain < grace
    {
        p.push(format!(
            "the autoscaler's DRAIN_TIMEOUT ({drain} ms) is shorter than the worker's grace ({grace} ms)"
        ));
    }
    p
}

fn autoscaler_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let a = &c["services"]["autoscaler"];
    let env = environment(a);
    let want = [
        ("AUTOSCALER_BACKEND", "compose"),
        ("AUTOSCALER_COMPOSE_SERVICE", "worker"),
        ("COMPOSE_BIN", "docker"),
    ];
    for (key, value) in want {
        if env.get(key).map(String::as_str) != Some(value) {
            p.push(format!("autoscaler: {key} is not {value}"));
        }
    }
    let service = env
        .get("AUTOSCALER_COMPOSE_SERVICE")
        .cloned()
        .unwrap_or_default();
    if !services(c).contains_key(&service) {
        p.push(format!("autoscaler scales {service:?}, not a service"));
    }
    let volumes: Vec<String> = a["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if !volumes
        .iter()
        .any(|v| v.starts_with("/var/run/docker.sock:/var/run/docker.sock"))
    {
        p.push("autoscaler: the docker socket is not mounted".to_owned());
    }
    // The compose file is read inside the container at the path the host's daemon uses.
    let file = env
        .get("AUTOSCALER_COMPOSE_FILE")
        .cloned()
        .unwrap_or_default();
    match file.strip_suffix("/docker-compose.yml") {
        Some(dir) if volumes.iter().any(|v| v == &format!("{dir}:{dir}:ro")) => {}
        _ => p.push(format!(
            "autoscaler: {file:?} is not this file in a checkout mounted at its own path"
        )),
    }
    if env.get("AUTOSCALER_COMPOSE_PROJECT").map(String::as_str) != Some("${COMPOSE_PROJECT_NAME}")
    {
        p.push("autoscaler: the compose project is not this one".to_owned());
    }
    if a["build"]["target"] != json!("autoscaler") {
        p.push("autoscaler: not built from the image target with the docker CLI".to_owned());
    }
    // Every variable the worker's definition interpolates must reach the compose inside.
    let worker_text = c["services"]["worker"].to_string();
    for var in interpolated(&worker_text) {
        if !env.contains_key(var) {
            p.push(format!(
                "autoscaler: {var} is not passed to the compose inside"
            ));
        }
    }
    p
}

/// The variables `${NAME...}` a piece of the file interpolates.
fn interpolated(text: &str) -> BTreeSet<&str> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| {
            let end = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))?;
            Some(&rest[..end])
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn loadtest_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let l = &c["services"]["loadtest"];
    if !keys(&l["profiles"]).contains("loadtest") {
        p.push("loadtest is not under the loadtest profile".to_owned());
    }
    let target = environment(l).get("LOADTEST_TARGET").cloned();
    if target.as_deref() != Some("http://lb:8080") {
        p.push(format!(
            "loadtest targets {target:?}, not the public entry point"
        ));
    }
    for (name, service) in services(c) {
        if name != "loadtest" && !service["profiles"].is_null() {
            p.push(format!(
                "{name} is under a profile: `up` would not start it"
            ));
        }
    }
    p
}

fn migrate_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let command = words(&c["services"]["migrate"]["command"]);
    if command.first().map(String::as_str) != Some("logic")
        || !matches!(command.get(1).map(String::as_str), Some("migrate" | "seed"))
    {
        p.push(format!(
            "migrate runs {command:?}, not `logic migrate` or `logic seed`"
        ));
    }
    p
}

/// The serving tiers refuse development credentials (`STRATA_PROFILE=production`).
fn profile_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    for name in [
        "presentation",
        "logic",
        "worker",
        "autoscaler",
        "fn-loyalty-points",
        "fn-autoscaler",
        "firehose",
        "analytics",
    ] {
        let profile = environment(&c["services"][name])
            .get("STRATA_PROFILE")
            .cloned();
        if profile.as_deref() != Some("production") {
            p.push(format!(
                "{name} runs with profile {profile:?}, not production"
            ));
        }
    }
    p
}

fn image_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let stages = dockerfile::stages("deploy/Dockerfile");
    let stage = |name: &str| stages.iter().find(|s| s.name.as_deref() == Some(name));
    let builder = stage("builder")
        .map(|s| s.body.join("\n"))
        .unwrap_or_default();
    let built: BTreeSet<String> = builder
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    // Each image is built by exactly one service; the others run it by name. Several
    // `build:` of one tag give it a new image id each time, and compose then recreates
    // the containers of the other services.
    let mut builders: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, service) in services(c) {
        if !is_strata_image(service) {
            continue;
        }
        let image = service["image"].as_str().unwrap_or_default().to_owned();
        let build = &service["build"];
        if build.is_null() {
            builders.entry(image).or_default();
        } else {
            builders.entry(image).or_default().push(name);
            if build["context"] != json!(".") || build["dockerfile"] != json!("deploy/Dockerfile") {
                p.push(format!("{name} is not built from deploy/Dockerfile"));
            }
            let target = build["target"].as_str().unwrap_or_default();
            if stage(target).is_none() {
                p.push(format!("{name} builds target {target:?}, not a stage"));
            }
        }
        let run = compose::run(service);
        match run.first() {
            Some(bin) if built.contains(bin) => {}
            other => p.push(format!(
                "{name} runs {other:?}, which the image does not build"
            )),
        }
    }
    for (image, names) in &builders {
        if names.len() != 1 {
            p.push(format!(
                "{image} is built by {} services ({names:?}), not exactly one",
                names.len()
            ));
        }
    }
    if !built.contains("probe") {
        p.push("the image has no probe for its healthchecks".to_owned());
    }
    // The runtime image: distroless, non-root, only files copied from the builder.
    match stage("runtime") {
        Some(Stage { base, body, .. }) => {
            if !base.starts_with("gcr.io/distroless/") {
                p.push(format!("the runtime image is {base}, not distroless"));
            }
            let user = body
                .iter()
                .rev()
                .find_map(|l| l.strip_prefix("USER "))
                .unwrap_or("0");
            let uid = user.split(':').next().unwrap_or("0");
            if uid == "0" || uid == "root" {
                p.push("the runtime image runs as root".to_owned());
            }
            if body.iter().any(|l| l.starts_with("RUN ")) {
                p.push("the runtime stage runs commands (it has no shell)".to_owned());
            }
        }
        None => p.push("deploy/Dockerfile has no runtime stage".to_owned()),
    }
    match stage("autoscaler") {
        Some(Stage { base, body, .. }) => {
            let body = body.join("\n");
            if base != "runtime" {
                p.push("the autoscaler image does not extend the runtime".to_owned());
            }
            for tool in ["/usr/local/bin/docker", "cli-plugins/docker-compose"] {
                if !body.contains(tool) {
                    p.push(format!("the autoscaler image lacks {tool}"));
                }
            }
        }
        None => p.push("deploy/Dockerfile has no autoscaler stage".to_owned()),
    }
    // The default target (the last stage) is the image without the docker CLI.
    if stages.last().map(|s| s.base.as_str()) != Some("runtime") {
        p.push("the last stage (the default target) is not the runtime image".to_owned());
    }
    p
}

fn settings_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let binaries: BTreeMap<&str, clap::Command> = BTreeMap::from([
        ("logic", logic::cli::Cli::command()),
        ("presentation", presentation::config::Cli::command()),
        ("worker", worker::WorkerSettings::command()),
        ("autoscaler", autoscaler::AutoscalerSettings::command()),
        ("loadtest", loadtest::Args::command()),
    ]);
    // Read by the compose the autoscaler runs, when it interpolates this file again.
    let passed_on = [
        "STRATA_HOST_DIR",
        "STRATA_TAG",
        "STRATA_DOCKER_GID",
        "STRATA_PUBLIC_URL",
        "SMTP_URL",
    ];
    for (name, service) in services(c) {
        if !is_strata_image(service) {
            continue;
        }
        let run = compose::run(service);
        let Some(command) = run.first().and_then(|b| binaries.get(b.as_str())) else {
            continue;
        };
        // `worker firehose` reads the worker's settings and the firehose's.
        let settings = env_settings_of(command.clone(), &run[1..]);
        let program = run.join(" ");
        for key in environment(service).keys() {
            let known = settings.contains(key)
                || LOG_SETTINGS.contains(&key.as_str())
                || (name.ends_with("autoscaler") && passed_on.contains(&key.as_str()));
            if !known {
                p.push(format!("{name}: {key} is not a setting of {program}"));
            }
        }
    }
    // Listen addresses must be reachable from other containers, on the checked port.
    let listen = [
        ("presentation", "LISTEN_ADDR", "0.0.0.0:8080"),
        ("logic", "LISTEN_ADDR", "0.0.0.0:8081"),
        ("worker", "HEALTH_LISTEN", "0.0.0.0:9091"),
        ("autoscaler", "AUTOSCALER_LISTEN", "0.0.0.0:9090"),
        ("fn-loyalty-points", "HEALTH_LISTEN", "0.0.0.0:9091"),
        ("fn-autoscaler", "AUTOSCALER_LISTEN", "0.0.0.0:9090"),
        ("firehose", "HEALTH_LISTEN", "0.0.0.0:9091"),
        ("analytics", "HEALTH_LISTEN", "0.0.0.0:9091"),
    ];
    for (name, key, want) in listen {
        let service = &c["services"][name];
        if environment(service).get(key).map(String::as_str) != Some(want) {
            p.push(format!("{name}: {key} is not {want}"));
        }
        let port = want.rsplit(':').next().unwrap();
        let test = words(&service["healthcheck"]["test"]).join(" ");
        if !test.contains(&format!("127.0.0.1:{port}/")) {
            p.push(format!(
                "{name}'s healthcheck does not probe its port {port}"
            ));
        }
    }
    p
}

/// A service's volume mount as (source, target, read-only), from the short form
/// `source:target[:ro]` or the long form; the source is empty for an anonymous volume.
fn mounts(service: &Value) -> Vec<(String, String, bool)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [target] => Some((String::new(), (*target).to_owned(), false)),
                    [source, target] => Some(((*source).to_owned(), (*target).to_owned(), false)),
                    [source, target, mode] => Some((
                        (*source).to_owned(),
                        (*target).to_owned(),
                        mode.split(',').any(|m| m == "ro"),
                    )),
                    _ => None,
                }
            }
            Value::Object(_) => Some((
                v["source"].as_str().unwrap_or_default().to_owned(),
                v["target"].as_str().unwrap_or_default().to_owned(),
                v["read_only"] == json!(true),
            )),
            _ => None,
        })
        .collect()
}

/// The stream's applications run their worker subcommands; the firehose archives into a
/// named volume (kept across `down`), writable, at its FIREHOSE_DIR, which the image
/// creates for its unprivileged user (a new volume takes the owner of the directory it
/// is mounted on; on a directory the image lacks it would be root's, and the archive
/// unwritable).
fn stream_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let worker = worker::WorkerSettings::command();
    for (name, sub) in STREAM_APPS {
        let service = &c["services"][name];
        let run = compose::run(service);
        if run != ["worker", sub] {
            p.push(format!("{name} runs {run:?}, not `worker {sub}`"));
        }
        if worker.find_subcommand(sub).is_none() {
            p.push(format!("the worker has no subcommand {sub}"));
        }
    }
    let firehose = &c["services"]["firehose"];
    let Some(dir) = environment(firehose).get("FIREHOSE_DIR").cloned() else {
        p.push("firehose: FIREHOSE_DIR is not set (its default is relative)".to_owned());
        return p;
    };
    let archive: Vec<_> = mounts(firehose)
        .into_iter()
        .filter(|(_, target, _)| *target == dir)
        .collect();
    match archive.as_slice() {
        [(source, _, read_only)] => {
            if c["volumes"].get(source).is_none() {
                p.push(format!(
                    "firehose: the archive at {dir} is not a named volume (mounts {source:?})"
                ));
            }
            if *read_only {
                p.push(format!("firehose: the archive volume at {dir} is read-only"));
            }
            for (other, service) in services(c) {
                if other != "firehose" && mounts(service).iter().any(|(s, _, _)| s == source) {
                    p.push(format!("{other} mounts the archive volume {source}"));
                }
            }
        }
        _ => p.push(format!(
            "firehose: no volume at FIREHOSE_DIR {dir}: the archive would be lost with the container"
        )),
    }
    // The image's writable directories: made in the builder under /state/, copied to
    // /var/lib/strata/ owned by the runtime's user.
    let stages = dockerfile::stages("deploy/Dockerfile");
    let body = |stage: &str| {
        stages
            .iter()
            .find(|s| s.name.as_deref() == Some(stage))
            .map(|s| s.body.clone())
            .unwrap_or_default()
    };
    let runtime = body("runtime");
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap_or("0")
        .to_owned();
    let copied = runtime.iter().any(|l| {
        l.starts_with("COPY ")
            && l.contains(&format!("--chown={user}"))
            && l.ends_with(&format!(" /state/ {STATE_DIR}"))
    });
    match dir.strip_prefix(STATE_DIR) {
        Some(rest) if !rest.is_empty() && !rest.contains('/') => {
            let made = body("builder")
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == format!("/state/{rest}")));
            if !made || !copied {
                p.push(format!(
                    "firehose: the image does not create {dir} owned by its user {user}"
                ));
            }
        }
        _ => p.push(format!(
            "firehose: FIREHOSE_DIR {dir} is not a directory {STATE_DIR}<name> of the image"
        )),
    }
    p
}

/// Strata's containers write only to their volumes: a read-only root, except the
/// autoscalers' (the compose they run writes its own state).
fn read_only_rules(c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    for (name, service) in services(c) {
        let autoscaler = service["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("strata-autoscaler:"));
        if is_strata_image(service) && !autoscaler && service["read_only"] != json!(true) {
            p.push(format!("{name} has a writable root filesystem"));
        }
    }
    p
}

#[test]
fn networks_keep_the_tiers_apart() {
    assert_rule(COMPOSE, "network", network_rules);
}

#[test]
fn the_worker_alone_has_egress() {
    assert_rule(COMPOSE, "egress", egress_rules);
}

#[test]
fn only_the_load_balancer_publishes_a_port() {
    assert_rule(COMPOSE, "port", port_rules);
}

#[test]
fn long_running_services_have_healthchecks_and_restart() {
    assert_rule(COMPOSE, "health", health_rules);
}

#[test]
fn services_wait_for_their_dependencies() {
    assert_rule(COMPOSE, "depends_on", depends_on_rules);
}

#[test]
fn secrets_are_files_read_through_file_settings() {
    assert_rule(COMPOSE, "secret", secret_rules);
}

#[test]
fn workers_drain_before_compose_kills_them() {
    assert_rule(COMPOSE, "drain", drain_rules);
}

#[test]
fn the_autoscaler_scales_the_worker_service() {
    assert_rule(COMPOSE, "autoscaler", autoscaler_rules);
}

#[test]
fn the_load_test_is_a_profile_on_the_public_side() {
    assert_rule(COMPOSE, "loadtest", loadtest_rules);
}

#[test]
fn migrations_run_once_before_logic() {
    assert_rule(COMPOSE, "migrate", migrate_rules);
}

#[test]
fn serving_tiers_run_the_production_profile() {
    assert_rule(COMPOSE, "profile", profile_rules);
}

#[test]
fn every_service_runs_a_binary_the_image_builds() {
    assert_rule(COMPOSE, "image", image_rules);
}

#[test]
fn every_environment_variable_is_a_setting() {
    assert_rule(COMPOSE, "settings", settings_rules);
}

#[test]
fn the_streams_applications_run_and_the_archive_is_kept() {
    assert_rule(COMPOSE, "stream", stream_rules);
}

#[test]
fn strata_containers_have_a_read_only_root() {
    assert_rule(COMPOSE, "read_only", read_only_rules);
}

#[test]
fn generated_secrets_and_env_never_reach_git_or_an_image() {
    let gitignore = std::fs::read_to_string(repo_root().join("deploy/compose/.gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l.trim() == "secrets/"));
    let root_ignore = std::fs::read_to_string(repo_root().join(".gitignore")).unwrap();
    assert!(root_ignore.lines().any(|l| l.trim() == "/.env"));
    let dockerignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        ".dockerignore starts by leaving everything out"
    );
    for rule in &rules {
        let allowed = rule.trim_start_matches('!').trim_end_matches('/');
        assert!(
            !allowed.starts_with("deploy/compose") && !allowed.contains(".env"),
            ".dockerignore lets {rule} in"
        );
    }
}

#[test]
fn the_build_context_has_every_workspace_member() {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let members_line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("the workspace lists its members");
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(members.contains(&"logic"), "read the members: {members:?}");
    let dockerignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    let allowed: BTreeSet<&str> = dockerignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for needed in members
        .iter()
        .copied()
        .chain(["Cargo.toml", "Cargo.lock", "migrations"])
    {
        assert!(
            allowed.contains(needed),
            ".dockerignore leaves out {needed}, which the build needs"
        );
    }
}

/// Breaks the file in memory, one rule at a time: each rule must notice its break.
#[test]
fn every_rule_catches_a_break() {
    type Rule = fn(&Value) -> Vec<String>;
    type Break = fn(&mut Value);
    let cases: &[(&str, Break, Rule, &str)] = &[
        (
            "private not internal",
            |c| c["networks"]["private"]["internal"] = json!(false),
            network_rules,
            "not internal",
        ),
        (
            "logic on public",
            |c| c["services"]["logic"]["networks"] = json!(["private", "public"]),
            network_rules,
            "logic is on",
        ),
        (
            "lb on private",
            |c| c["services"]["lb"]["networks"] = json!(["public", "private"]),
            network_rules,
            "lb is on",
        ),
        (
            "worker without egress",
            |c| c["services"]["worker"]["networks"] = json!(["private"]),
            egress_rules,
            "worker is not on egress",
        ),
        (
            "postgres on egress",
            |c| c["services"]["postgres"]["networks"] = json!(["private", "egress"]),
            egress_rules,
            "data service postgres is on egress",
        ),
        (
            "logic on egress",
            |c| c["services"]["logic"]["networks"] = json!(["private", "egress"]),
            egress_rules,
            "service logic is on egress",
        ),
        (
            "egress internal",
            |c| c["networks"]["egress"]["internal"] = json!(true),
            egress_rules,
            "egress network is internal",
        ),
        (
            "confirmation URLs at private logic",
            |c| {
                c["services"]["worker"]["environment"]["PUBLIC_API_URL"] =
                    json!("http://logic:8081");
            },
            egress_rules,
            "is not the public entry point",
        ),
        (
            "the worker's variable not passed to the autoscaler",
            |c| {
                c["services"]["autoscaler"]["environment"]
                    .as_object_mut()
                    .unwrap()
                    .remove("SMTP_URL");
            },
            autoscaler_rules,
            "SMTP_URL is not passed",
        ),
        (
            "postgres publishes",
            |c| c["services"]["postgres"]["ports"] = json!(["5432:5432"]),
            port_rules,
            "data service postgres publishes",
        ),
        (
            "presentation publishes",
            |c| c["services"]["presentation"]["ports"] = json!(["8080:8080"]),
            port_rules,
            "presentation publishes",
        ),
        (
            "redis without a healthcheck",
            |c| {
                c["services"]["redis"]
                    .as_object_mut()
                    .unwrap()
                    .remove("healthcheck");
            },
            health_rules,
            "redis has no healthcheck",
        ),
        (
            "logic waits for nothing",
            |c| c["services"]["logic"]["depends_on"] = json!(["migrate", "postgres"]),
            depends_on_rules,
            "is a list",
        ),
        (
            "logic does not wait for migrate",
            |c| {
                c["services"]["logic"]["depends_on"]
                    .as_object_mut()
                    .unwrap()
                    .remove("migrate");
            },
            depends_on_rules,
            "logic must wait for migrate",
        ),
        (
            "worker waits for migrate",
            |c| {
                c["services"]["worker"]["depends_on"]["migrate"] =
                    json!({"condition": "service_completed_successfully"});
            },
            depends_on_rules,
            "rerun by each scale-up",
        ),
        (
            "a password in the environment",
            |c| c["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = json!("secret"),
            secret_rules,
            "sets the credential POSTGRES_PASSWORD",
        ),
        (
            "a URL with credentials",
            |c| {
                c["services"]["logic"]["environment"]["RABBITMQ_API_URL"] =
                    json!("http://strata:pw@rabbitmq:15672");
            },
            secret_rules,
            "carries credentials",
        ),
        (
            "a *_FILE setting without its secret",
            |c| c["services"]["worker"]["secrets"] = json!(["amqp_url"]),
            secret_rules,
            "DATABASE_URL_FILE=/run/secrets/database_url is not a mounted secret",
        ),
        (
            "presentation with the database",
            |c| {
                c["services"]["presentation"]["secrets"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("database_url"));
            },
            secret_rules,
            "presentation holds database_url",
        ),
        (
            "a secret from the environment",
            |c| c["secrets"]["admin_token"] = json!({"environment": "ADMIN_TOKEN"}),
            secret_rules,
            "secret admin_token is not the file",
        ),
        (
            "a short grace period",
            |c| c["services"]["worker"]["stop_grace_period"] = json!("10s"),
            drain_rules,
            "under 60s",
        ),
        (
            "a worker with a fixed name",
            |c| c["services"]["worker"]["container_name"] = json!("worker"),
            drain_rules,
            "worker sets container_name",
        ),
        (
            "the process backend",
            |c| c["services"]["autoscaler"]["environment"]["AUTOSCALER_BACKEND"] = json!("process"),
            autoscaler_rules,
            "AUTOSCALER_BACKEND is not compose",
        ),
        (
            "no docker socket",
            |c| c["services"]["autoscaler"]["volumes"] = json!([]),
            autoscaler_rules,
            "docker socket is not mounted",
        ),
        (
            "loadtest without a profile",
            |c| {
                c["services"]["loadtest"]
                    .as_object_mut()
                    .unwrap()
                    .remove("profiles");
            },
            loadtest_rules,
            "not under the loadtest profile",
        ),
        (
            "migrate serves",
            |c| c["services"]["migrate"]["command"] = json!(["logic"]),
            migrate_rules,
            "not `logic migrate`",
        ),
        (
            "a development worker",
            |c| {
                c["services"]["worker"]["environment"]
                    .as_object_mut()
                    .unwrap()
                    .remove("STRATA_PROFILE");
            },
            profile_rules,
            "worker runs with profile None",
        ),
        (
            "a binary the image lacks",
            |c| c["services"]["worker"]["command"] = json!(["fulfiller"]),
            image_rules,
            "worker runs",
        ),
        (
            "a second build of the strata image",
            |c| c["services"]["worker"]["build"] = c["services"]["logic"]["build"].clone(),
            image_rules,
            "built by 2 services",
        ),
        (
            "no build of the strata image",
            |c| {
                c["services"]["logic"]
                    .as_object_mut()
                    .unwrap()
                    .remove("build");
            },
            image_rules,
            "built by 0 services",
        ),
        (
            "a misspelt setting",
            |c| c["services"]["worker"]["environment"]["HEALTH_LISTENER"] = json!("0.0.0.0:9091"),
            settings_rules,
            "HEALTH_LISTENER is not a setting of worker",
        ),
        (
            "logic on loopback",
            |c| c["services"]["logic"]["environment"]["LISTEN_ADDR"] = json!("127.0.0.1:8081"),
            settings_rules,
            "logic: LISTEN_ADDR is not 0.0.0.0:8081",
        ),
        (
            "firehose on egress",
            |c| c["services"]["firehose"]["networks"] = json!(["private", "egress"]),
            egress_rules,
            "service firehose is on egress",
        ),
        (
            "analytics on public",
            |c| c["services"]["analytics"]["networks"] = json!(["private", "public"]),
            network_rules,
            "analytics is on",
        ),
        (
            "firehose publishes its health port",
            |c| c["services"]["firehose"]["ports"] = json!(["9091:9091"]),
            port_rules,
            "service firehose publishes",
        ),
        (
            "a development firehose",
            |c| {
                c["services"]["firehose"]["environment"]
                    .as_object_mut()
                    .unwrap()
                    .remove("STRATA_PROFILE");
            },
            profile_rules,
            "firehose runs with profile None",
        ),
        (
            "a misspelt firehose setting",
            |c| c["services"]["firehose"]["environment"]["FIREHOSE_DIRECTORY"] = json!("/tmp"),
            settings_rules,
            "FIREHOSE_DIRECTORY is not a setting of worker firehose",
        ),
        (
            "a firehose setting on the plain worker",
            |c| c["services"]["worker"]["environment"]["FIREHOSE_DIR"] = json!("/tmp"),
            settings_rules,
            "FIREHOSE_DIR is not a setting of worker",
        ),
        (
            "analytics runs the plain worker",
            |c| c["services"]["analytics"]["command"] = json!(["worker"]),
            stream_rules,
            "analytics runs",
        ),
        (
            "the archive in the container",
            |c| {
                c["services"]["firehose"]
                    .as_object_mut()
                    .unwrap()
                    .remove("volumes");
            },
            stream_rules,
            "no volume at FIREHOSE_DIR",
        ),
        (
            "the archive read-only",
            |c| {
                c["services"]["firehose"]["volumes"] =
                    json!(["firehose-archive:/var/lib/strata/firehose:ro"]);
            },
            stream_rules,
            "is read-only",
        ),
        (
            "the archive on a bind mount",
            |c| {
                c["services"]["firehose"]["volumes"] = json!(["./archive:/var/lib/strata/firehose"])
            },
            stream_rules,
            "not a named volume",
        ),
        (
            "the archive where the image has no directory",
            |c| {
                c["services"]["firehose"]["environment"]["FIREHOSE_DIR"] =
                    json!("/var/lib/strata/archive");
                c["services"]["firehose"]["volumes"] =
                    json!(["firehose-archive:/var/lib/strata/archive"]);
            },
            stream_rules,
            "the image does not create /var/lib/strata/archive",
        ),
        (
            "a writable firehose",
            |c| c["services"]["firehose"]["read_only"] = json!(false),
            read_only_rules,
            "firehose has a writable root",
        ),
    ];
    let original = compose::load(COMPOSE);
    for (what, break_it, rule, expected) in cases {
        assert!(
            rule(&original).is_empty(),
            "{what}: the rule fails on the unbroken file"
        );
        let mut broken = original.clone();
        break_it(&mut broken);
        let problems = rule(&broken);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected a problem containing {expected:?}, got {problems:?}"
        );
    }
}

#[test]
fn durations_parse_as_compose_writes_them() {
    assert_eq!(duration_ms("90s"), Some(90_000));
    assert_eq!(duration_ms("1m30s"), Some(90_000));
    assert_eq!(duration_ms("2m"), Some(120_000));
    assert_eq!(duration_ms("1h"), Some(3_600_000));
    assert_eq!(duration_ms("500ms"), Some(500));
    assert_eq!(duration_ms("90"), None);
    assert_eq!(duration_ms("soon"), None);
    assert_eq!(duration_ms(""), None);
}
