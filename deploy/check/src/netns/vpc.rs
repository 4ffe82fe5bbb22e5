//! Strata's network built from namespaces, after `deploy/netns/addresses.nft`:
//!
//! ```text
//!  internet ns            router ns (the VPC's implicit router)
//!  client .10 eth0 ---- igw  198.51.100.1          internet gateway side
//!                       br-public 10.40.1.1  ---- presentation ns 10.40.1.10
//!                       br-app    10.40.2.1  -+-- logic ns        10.40.2.10
//!                                             +-- worker ns       10.40.2.20
//!                       br-data   10.40.3.1  ---- data ns         10.40.3.10
//! ```
//!
//! Each subnet is a bridge in the router namespace; every host namespace has one veth into
//! its subnet's bridge and a default route to the router, which forwards between all of
//! them. Without rules every host reaches every other (the routes exist): isolation comes
//! only from the network ACLs (`nacl.nft`, in the router) and the security groups
//! (`sg-*.nft`, one per host).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::Netns;

/// The definitions of `deploy/netns/addresses.nft` (`define name = value`).
#[derive(Debug, Clone)]
pub struct Plan {
    values: HashMap<String, String>,
}

impl Plan {
    pub fn load() -> anyhow::Result<Plan> {
        let path = rules_dir().join("addresses.nft");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Plan::parse(&text))
    }

    pub fn parse(text: &str) -> Plan {
        let values = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("define "))
            .filter_map(|def| def.split_once('='))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Plan { values }
    }

    fn value(&self, name: &str) -> anyhow::Result<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("addresses.nft defines no {name}"))
    }

    /// An address definition (`logic_addr`).
    pub fn addr(&self, name: &str) -> anyhow::Result<Ipv4Addr> {
        let value = self.value(name)?;
        value
            .parse()
            .with_context(|| format!("{name} = {value} is not an IPv4 address"))
    }

    /// A port definition (`api_port`).
    pub fn port(&self, name: &str) -> anyhow::Result<u16> {
        let value = self.value(name)?;
        value
            .parse()
            .with_context(|| format!("{name} = {value} is not a port"))
    }

    /// The prefix length of a network definition (`app_net` = 10.40.2.0/24 -> 24).
    pub fn prefix_len(&self, net: &str) -> anyhow::Result<u8> {
        let value = self.value(net)?;
        let (_, len) = value
            .split_once('/')
            .with_context(|| format!("{net} = {value} is not a network"))?;
        Ok(len.parse()?)
    }

    /// `addr` definition and `port` definition as a socket address.
    pub fn socket(&self, addr: &str, port: &str) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from((self.addr(addr)?, self.port(port)?)))
    }
}

/// `deploy/netns`, where the rule files are.
pub fn rules_dir() -> PathBuf {
    crate::repo_root().join("deploy/netns")
}

/// The namespaces of one run; dropping it deletes them all.
pub struct Vpc {
    pub plan: Plan,
    pub internet: Netns,
    pub router: Netns,
    pub presentation: Netns,
    pub logic: Netns,
    pub worker: Netns,
    pub data: Netns,
}

/// The subnets: (bridge in the router, network definition, gateway definition).
const SUBNETS: [(&str, &str, &str); 3] = [
    ("br-public", "public_net", "public_gw"),
    ("br-app", "app_net", "app_gw"),
    ("br-data", "data_net", "data_gw"),
];

impl Vpc {
    /// Creates the namespaces, links and routes (no rules yet). `run_id` makes the names
    /// unique to this run.
    pub fn build(run_id: &str) -> anyhow::Result<Vpc> {
        let plan = Plan::load()?;
        let router = Netns::create(run_id, "router")?;
        let internet = Netns::create(run_id, "internet")?;
        let presentation = Netns::create(run_id, "presentation")?;
        let logic = Netns::create(run_id, "logic")?;
        let worker = Netns::create(run_id, "worker")?;
        let data = Netns::create(run_id, "data")?;

        for (bridge, net, gw) in SUBNETS {
            let cidr = format!("{}/{}", plan.addr(gw)?, plan.prefix_len(net)?);
            router.ip(&["link", "add", bridge, "type", "bridge"])?;
            router.ip(&["addr", "add", &cidr, "dev", bridge])?;
            router.ip(&["link", "set", bridge, "up"])?;
        }
        let hosts = [
            (
                &presentation,
                "to-web",
                "br-public",
                "presentation_addr",
                "public",
            ),
            (&logic, "to-logic", "br-app", "logic_addr", "app"),
            (&worker, "to-worker", "br-app", "worker_addr", "app"),
            (&data, "to-data", "br-data", "data_addr", "data"),
        ];
        for (host, port, bridge, addr, subnet) in hosts {
            veth(host, "eth0", &router, port)?;
            router.ip(&["link", "set", port, "master", bridge, "up"])?;
            let cidr = format!(
                "{}/{}",
                plan.addr(addr)?,
                plan.prefix_len(&format!("{subnet}_net"))?
            );
            let gw = plan.addr(&format!("{subnet}_gw"))?.to_string();
            host.ip(&["addr", "add", &cidr, "dev", "eth0"])?;
            host.ip(&["link", "set", "eth0", "up"])?;
            host.ip(&["route", "add", "default", "via", &gw])?;
        }

        // The internet gateway: the client's only way in, and the VPC's only way out.
        veth(&internet, "eth0", &router, "igw")?;
        let igw = format!(
            "{}/{}",
            plan.addr("igw_addr")?,
            plan.prefix_len("internet_net")?
        );
        let client = format!(
            "{}/{}",
            plan.addr("client_addr")?,
            plan.prefix_len("internet_net")?
        );
        router.ip(&["addr", "add", &igw, "dev", "igw"])?;
        router.ip(&["link", "set", "igw", "up"])?;
        internet.ip(&["addr", "add", &client, "dev", "eth0"])?;
        internet.ip(&["link", "set", "eth0", "up"])?;
        internet.ip(&[
            "route",
            "add",
            "default",
            "via",
            &plan.addr("igw_addr")?.to_string(),
        ])?;

        router.sysctl("net.ipv4.ip_forward", "1")?;
        // Where the kernel bridges into netfilter, traffic inside a subnet would meet the
        // router's forward chain; network ACLs only see traffic between subnets.
        if router.has_sysctl("net.bridge.bridge-nf-call-iptables") {
            router.sysctl("net.bridge.bridge-nf-call-iptables", "0")?;
        }
        Ok(Vpc {
            plan,
            internet,
            router,
            presentation,
            logic,
            worker,
            data,
        })
    }

    /// The hosts with a security group, and its file.
    fn security_groups(&self) -> [(&Netns, &'static str); 4] {
        [
            (&self.presentation, "sg-presentation.nft"),
            (&self.logic, "sg-logic.nft"),
            (&self.worker, "sg-worker.nft"),
            (&self.data, "sg-data.nft"),
        ]
    }

    /// Loads `nacl.nft` into the router.
    pub fn apply_network_acls(&self) -> anyhow::Result<()> {
        self.router.load_rules(&rules_dir().join("nacl.nft"))
    }

    pub fn remove_network_acls(&self) -> anyhow::Result<()> {
        self.router
            .nft(&["delete", "table", "ip", "strata_nacl"])
            .map(drop)
    }

    /// Loads each host's `sg-<host>.nft` into its namespace.
    pub fn apply_security_groups(&self) -> anyhow::Result<()> {
        for (host, file) in self.security_groups() {
            host.load_rules(&rules_dir().join(file))?;
        }
        Ok(())
    }

    pub fn remove_security_groups(&self) -> anyhow::Result<()> {
        for (host, _) in self.security_groups() {
            host.nft(&["delete", "table", "inet", "strata_sg"])?;
        }
        Ok(())
    }

    /// The deny counter of a subnet's network ACL list: `list` is `public_in`,
    /// `app_out`, ...
    pub fn nacl_denied(&self, list: &str) -> DropCounter {
        DropCounter {
            namespace: self.router.name().to_owned(),
            family: "ip",
            table: "strata_nacl",
            name: format!("{list}_denied"),
        }
    }

    /// The deny counter of a host's security group, inbound or outbound.
    pub fn sg_denied(host: &Netns, direction: Direction) -> DropCounter {
        DropCounter {
            namespace: host.name().to_owned(),
            family: "inet",
            table: "strata_sg",
            name: match direction {
                Direction::Inbound => "denied_in",
                Direction::Outbound => "denied_out",
            }
            .to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A named counter of the rule files, on the rule that denies what no other rule
/// allowed: it shows which layer dropped a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DropCounter {
    namespace: String,
    family: &'static str,
    table: &'static str,
    name: String,
}

impl DropCounter {
    /// Packets counted so far; 0 while the table is not loaded.
    pub fn packets(&self) -> anyhow::Result<u64> {
        let args = ["-j", "list", "counter", self.family, self.table, &self.name];
        let Ok(json) = super::nft(&self.namespace, &args) else {
            return Ok(0);
        };
        let value: serde_json::Value = serde_json::from_str(&json)?;
        value["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|item| item["counter"]["packets"].as_u64())
            .with_context(|| format!("no packets in {json}"))
    }
}

impl std::fmt::Display for DropCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} in {}", self.table, self.name, self.namespace)
    }
}

/// A veth pair created straight into two namespaces (names only need to be unique there).
fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> anyhow::Result<()> {
    if a_name.len() > 15 || b_name.len() > 15 {
        bail!("interface names are at most 15 bytes: {a_name}, {b_name}");
    }
    super::run(
        "ip",
        &[
            "link",
            "add",
            a_name,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_name,
            "netns",
            b.name(),
        ],
    )
    .map(drop)
}
