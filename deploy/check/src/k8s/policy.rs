//! NetworkPolicy evaluation: which connections between pods and peers the policies open.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Build, Labels, component, containers, labels, pod_labels};
use crate::yaml::strings;

/// A peer outside the namespace that the policies may name.
pub struct ExternalPeer {
    pub name: &'static str,
    pub namespace: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
}

/// The connections the policies open, as `from -> to:port/protocol`.
pub struct Edges {
    /// Connections both ends allow, and those to or from outside the namespace.
    pub open: BTreeSet<String>,
    /// In-namespace connections that only one end allows.
    pub half_open: Vec<String>,
}

/// A pod's view of the policies: does some policy that selects it allow this peer and port.
struct Policies<'a> {
    policies: Vec<&'a Value>,
}

/// Who is on the other end of a connection.
#[derive(Clone, Copy)]
enum Peer<'a> {
    /// A pod of the namespace, by its labels.
    Pod(&'a Labels),
    /// A pod of another namespace.
    External(&'a ExternalPeer),
    /// Any address at all (an ingress rule without `from`).
    Anywhere,
}

impl<'a> Policies<'a> {
    fn selecting(&self, pod: &Labels, direction: &str) -> Vec<&'a Value> {
        self.policies
            .iter()
            .copied()
            .filter(|p| {
                strings(&p["spec"]["policyTypes"]).contains(&direction.to_owned())
                    && selects(&p["spec"]["podSelector"], pod)
            })
            .collect()
    }

    /// Whether `pod` lets `peer` in (direction Ingress) or out to it (Egress) on `port`.
    fn allows(&self, pod: &Labels, direction: &str, peer: Peer, port: (u64, &str)) -> bool {
        let (field, peers) = match direction {
            "Ingress" => ("ingress", "from"),
            _ => ("egress", "to"),
        };
        self.selecting(pod, direction).iter().any(|p| {
            p["spec"][field]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| {
                    rule_port_matches(rule, port)
                        && match rule[peers].as_array() {
                            None => true,
                            Some(list) => list.iter().any(|entry| peer_matches(entry, peer)),
                        }
                })
        })
    }
}

/// Panics on `matchExpressions`, which the evaluation does not reproduce.
fn selects(selector: &Value, pod: &Labels) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "matchExpressions: extend the tests"
    );
    labels(&selector["matchLabels"])
        .iter()
        .all(|(k, v)| pod.get(k) == Some(v))
}

fn rule_port_matches(rule: &Value, (port, protocol): (u64, &str)) -> bool {
    match rule["ports"].as_array() {
        None => true,
        Some(ports) => ports.iter().any(|p| {
            p["port"].as_u64() == Some(port) && p["protocol"].as_str().unwrap_or("TCP") == protocol
        }),
    }
}

fn peer_matches(entry: &Value, peer: Peer) -> bool {
    let namespace = &entry["namespaceSelector"];
    let pods = &entry["podSelector"];
    match peer {
        Peer::Anywhere => false,
        Peer::Pod(labels) => {
            entry["ipBlock"].is_null() && namespace.is_null() && selects(pods, labels)
        }
        Peer::External(external) => {
            let ns_labels = BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                external.namespace.to_owned(),
            )]);
            let pod_labels = external
                .labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            !namespace.is_null() && selects(namespace, &ns_labels) && selects(pods, &pod_labels)
        }
    }
}

/// An ipBlock as an edge's target: `cidr`, or `cidr-[except,...]` with the ranges it
/// leaves out.
pub fn ip_block(cidr: &str, except: &Value) -> String {
    let except = strings(except);
    if except.is_empty() {
        cidr.to_owned()
    } else {
        format!("{cidr}-[{}]", except.join(","))
    }
}

/// The pods of one tier: their labels and the ports they listen on.
struct Tier {
    labels: Labels,
    ports: Vec<(u64, String)>,
}

/// Every edge the policies of `b` open between its workloads' pods (named by their
/// component), from and to the `external` peers, and to address blocks. Egress out of
/// the namespace is read from the rules themselves: the other end is not in the build.
pub fn edges(b: &Build, external: &[ExternalPeer]) -> Edges {
    let policies = Policies {
        policies: b.of_kind("NetworkPolicy").collect(),
    };
    let mut edges = BTreeSet::new();
    let mut half_open = Vec::new();
    let pods: BTreeMap<String, Tier> = b
        .workloads()
        .map(|w| {
            let ports = containers(w)
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .map(|p| {
                    let protocol = p["protocol"].as_str().unwrap_or("TCP").to_owned();
                    (p["containerPort"].as_u64().expect("a port"), protocol)
                })
                .collect();
            let labels = pod_labels(w);
            (component(w), Tier { labels, ports })
        })
        .collect();
    for (
        to,
        Tier {
            labels: to_labels,
            ports,
        },
    ) in &pods
    {
        for (port, protocol) in ports {
            let port = (*port, protocol.as_str());
            let edge = |from: &str| format!("{from} -> {to}:{}/{protocol}", port.0);
            if policies.allows(to_labels, "Ingress", Peer::Anywhere, port) {
                edges.insert(edge("anywhere"));
                continue;
            }
            for (
                from,
                Tier {
                    labels: from_labels,
                    ..
                },
            ) in &pods
            {
                let out = policies.allows(from_labels, "Egress", Peer::Pod(to_labels), port);
                let ins = policies.allows(to_labels, "Ingress", Peer::Pod(from_labels), port);
                if out && ins {
                    edges.insert(edge(from));
                } else if out != ins {
                    half_open.push(format!("{} is allowed at one end only", edge(from)));
                }
            }
            for peer in external {
                if policies.allows(to_labels, "Ingress", Peer::External(peer), port) {
                    edges.insert(edge(peer.name));
                }
            }
        }
    }
    for (
        from,
        Tier {
            labels: from_labels,
            ..
        },
    ) in &pods
    {
        for p in policies.selecting(from_labels, "Egress") {
            for rule in p["spec"]["egress"].as_array().into_iter().flatten() {
                let ports: Vec<(u64, String)> = match rule["ports"].as_array() {
                    None => vec![(0, "any".to_owned())],
                    Some(ports) => ports
                        .iter()
                        .map(|p| {
                            let protocol = p["protocol"].as_str().unwrap_or("TCP").to_owned();
                            (p["port"].as_u64().expect("a numeric port"), protocol)
                        })
                        .collect(),
                };
                let targets: Vec<String> = match rule["to"].as_array() {
                    None => vec!["anywhere".to_owned()],
                    Some(list) => list
                        .iter()
                        .filter_map(|entry| {
                            if let Some(cidr) = entry["ipBlock"]["cidr"].as_str() {
                                return Some(ip_block(cidr, &entry["ipBlock"]["except"]));
                            }
                            if entry["namespaceSelector"].is_null() {
                                return None; // in the namespace: counted above
                            }
                            let named = external
                                .iter()
                                .find(|peer| peer_matches(entry, Peer::External(peer)));
                            Some(named.map_or("another namespace", |e| e.name).to_owned())
                        })
                        .collect(),
                };
                for target in &targets {
                    for (port, protocol) in &ports {
                        edges.insert(format!("{from} -> {target}:{port}/{protocol}"));
                    }
                }
            }
        }
    }
    Edges {
        open: edges,
        half_open,
    }
}
