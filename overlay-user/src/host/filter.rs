//! The nftables table this program owns (`table ip overlay`), rebuilt as a
//! whole from the state and applied in one transaction through nftables'
//! JSON API: names and subnets are JSON values, never text pasted into a
//! script.
//!
//! - `postrouting` (NAT): what a routed network sends out of its subnet is
//!   masqueraded.
//! - `forward` (filter): inbound to containers only as replies to
//!   connections they opened (conntrack); containers' packets to a tunnel
//!   port or a guarded endpoint through the host are dropped (the endpoint
//!   program drops them first; this holds should it be detached).
//! - `input` (filter): the same two guards for what containers send to the
//!   host itself.
//! - `prerouting` and `output` (NAT): published ports, a host port sent
//!   to a container (`-p`), for what arrives at any local address or the
//!   one given; `forward` lets exactly those connections in.
//!
//! nftables runs every base chain of a hook: a drop here is final, an
//! accept here does not override another table's drop. So this table only
//! adds restrictions; a host firewall whose forward policy is drop must
//! still let the containers' traffic out (as for Docker). Every rule also
//! matches our containers' host-side veths (`ovl*`): a Docker bridge
//! network that happens to use one of our subnets (Docker's user-defined
//! networks do not look at host routes) is none of this table's business.

use std::{
    borrow::Cow,
    collections::HashSet,
    net::{Ipv4Addr, SocketAddrV4},
};

use ipnet::Ipv4Net;
use nftables::{
    batch::Batch,
    expr::{
        CT, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload,
        PayloadField, Prefix, SetItem,
    },
    schema::{Chain, NfListObject, Nftables, Rule, Table},
    stmt::{Counter, Match, NAT, Operator, Statement},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};

use super::HostError;
use crate::model::rules;

/// The nftables table this program owns.
pub const TABLE: &str = "overlay";
/// Standard priorities: `dstnat`, `srcnat` and `filter`.
const DSTNAT_PRIORITY: i32 = -100;
const SRCNAT_PRIORITY: i32 = 100;
const FILTER_PRIORITY: i32 = 0;

/// A network, as the filter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilteredNetwork {
    /// The network's name (rule comments).
    pub name: String,
    pub subnet: Ipv4Net,
    /// No NAT: it reaches nothing outside itself.
    pub internal: bool,
}

/// Everything the table is built from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub networks: Vec<FilteredNetwork>,
    /// UDP ports of the tunnel: containers may not send to them.
    pub tunnel_ports: Vec<u16>,
    /// TCP endpoints containers may not reach (the cluster store's).
    pub guarded: Vec<SocketAddrV4>,
    pub published: Vec<Published>,
}

/// A published port: `proto` to `host_port` (on `host_ip`, or any local
/// address) is sent to `dest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub dest: SocketAddrV4,
    /// Rule comments: the container and network.
    pub what: String,
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    }
}

fn field(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn prefix(subnet: Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(subnet.network().to_string().into())),
        len: u32::from(subnet.prefix_len()),
    }))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

/// The packet came in (`iifname`) or goes out (`oifname`) through one of
/// our containers' host-side veths.
fn our_veth(key: MetaKey) -> Statement<'static> {
    matches(
        Expression::Named(NamedExpression::Meta(Meta { key })),
        Operator::EQ,
        Expression::String(format!("{}*", rules::HOST_VETH_PREFIX).into()),
    )
}

fn counted_drop() -> [Statement<'static>; 2] {
    [
        Statement::Counter(Counter::Anonymous(None)),
        Statement::Drop(None),
    ]
}

fn base_chain(
    name: &'static str,
    kind: NfChainType,
    hook: NfHook,
    prio: i32,
) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    comment: String,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::IP,
        table: TABLE.into(),
        chain: chain.into(),
        expr: Cow::Owned(expr),
        comment: Some(comment.into()),
        ..Rule::default()
    })
}

/// A set of ports, `{ p1, p2 }`.
fn port_set(ports: impl Iterator<Item = u16>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        ports
            .map(|p| SetItem::Element(Expression::Number(u32::from(p))))
            .collect(),
    ))
}

/// The guards for what network `n` sends through the host (`forward`:
/// to the guarded endpoints) or to it (`input`: to the guarded ports on
/// any of its addresses, should the store run on this host).
fn guard_rules(chain: &'static str, n: &FilteredNetwork, r: &Ruleset, batch: &mut Batch<'static>) {
    let from = || matches(field("ip", "saddr"), Operator::EQ, prefix(n.subnet));
    if !r.tunnel_ports.is_empty() {
        let mut expr = vec![
            our_veth(MetaKey::Iifname),
            from(),
            matches(
                field("udp", "dport"),
                Operator::EQ,
                port_set(r.tunnel_ports.iter().copied()),
            ),
        ];
        expr.extend(counted_drop());
        batch.add(rule(
            chain,
            expr,
            format!("{}: no tunnel from containers", n.name),
        ));
    }
    if chain == "input" {
        let ports: std::collections::BTreeSet<u16> = r.guarded.iter().map(|g| g.port()).collect();
        if !ports.is_empty() {
            let mut expr = vec![
                our_veth(MetaKey::Iifname),
                from(),
                matches(
                    field("tcp", "dport"),
                    Operator::EQ,
                    port_set(ports.into_iter()),
                ),
            ];
            expr.extend(counted_drop());
            batch.add(rule(chain, expr, format!("{}: guarded ports", n.name)));
        }
        return;
    }
    for g in &r.guarded {
        let mut expr = vec![
            our_veth(MetaKey::Iifname),
            from(),
            matches(
                field("ip", "daddr"),
                Operator::EQ,
                Expression::String(g.ip().to_string().into()),
            ),
            matches(
                field("tcp", "dport"),
                Operator::EQ,
                Expression::Number(u32::from(g.port())),
            ),
        ];
        expr.extend(counted_drop());
        batch.add(rule(chain, expr, format!("{}: guarded {g}", n.name)));
    }
}

/// `fib daddr type local`: addressed to this host.
fn to_local_address() -> Statement<'static> {
    matches(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        Operator::EQ,
        Expression::String("local".into()),
    )
}

/// DNAT of published ports (from outside in `prerouting`, from the host
/// itself in `output`), and the `forward` accepts for them, which come
/// before any network's "nothing else in".
fn publish_rules(r: &Ruleset, batch: &mut Batch<'static>) {
    if r.published.is_empty() {
        return;
    }
    batch.add(base_chain(
        "prerouting",
        NfChainType::NAT,
        NfHook::Prerouting,
        DSTNAT_PRIORITY,
    ));
    batch.add(base_chain(
        "output",
        NfChainType::NAT,
        NfHook::Output,
        DSTNAT_PRIORITY,
    ));
    for p in &r.published {
        for chain in ["prerouting", "output"] {
            let mut expr = vec![match p.host_ip {
                Some(ip) => matches(
                    field("ip", "daddr"),
                    Operator::EQ,
                    Expression::String(ip.to_string().into()),
                ),
                None => to_local_address(),
            }];
            if chain == "output" {
                // The loopback cannot be translated to another host
                // address (route_localnet is off).
                expr.push(matches(
                    field("ip", "daddr"),
                    Operator::NEQ,
                    prefix("127.0.0.0/8".parse().expect("loopback")),
                ));
            }
            expr.push(matches(
                field(p.proto, "dport"),
                Operator::EQ,
                Expression::Number(u32::from(p.host_port)),
            ));
            expr.push(Statement::DNAT(Some(NAT {
                addr: Some(Expression::String(p.dest.ip().to_string().into())),
                family: None,
                port: Some(Expression::Number(u32::from(p.dest.port()))),
                flags: None,
            })));
            batch.add(rule(chain, expr, format!("publish {}", p.what)));
        }
        let ct_status = Expression::Named(NamedExpression::CT(CT {
            key: "status".into(),
            family: None,
            dir: None,
        }));
        batch.add(rule(
            "forward",
            vec![
                matches(
                    field("ip", "daddr"),
                    Operator::EQ,
                    Expression::String(p.dest.ip().to_string().into()),
                ),
                matches(
                    field(p.proto, "dport"),
                    Operator::EQ,
                    Expression::Number(u32::from(p.dest.port())),
                ),
                matches(ct_status, Operator::IN, Expression::String("dnat".into())),
                Statement::Accept(None),
            ],
            format!("publish {}: in", p.what),
        ));
    }
}

/// The table for `r`, replacing the old one in the same transaction
/// (add-then-delete works whether or not it existed); no networks, no
/// table.
pub fn ruleset(r: &Ruleset) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    if r.networks.is_empty() {
        return batch.to_nftables();
    }
    batch.add(NfListObject::Table(table()));
    batch.add(base_chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        SRCNAT_PRIORITY,
    ));
    batch.add(base_chain(
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        FILTER_PRIORITY,
    ));
    batch.add(base_chain(
        "input",
        NfChainType::Filter,
        NfHook::Input,
        FILTER_PRIORITY,
    ));
    publish_rules(r, &mut batch);
    for n in &r.networks {
        if !n.internal {
            let expr = vec![
                our_veth(MetaKey::Iifname),
                matches(field("ip", "saddr"), Operator::EQ, prefix(n.subnet)),
                matches(field("ip", "daddr"), Operator::NEQ, prefix(n.subnet)),
                Statement::Masquerade(None),
            ];
            batch.add(rule("postrouting", expr, n.name.clone()));
        }
        // Inbound: replies to what the containers opened, nothing else.
        let state = Expression::Named(NamedExpression::CT(CT {
            key: "state".into(),
            family: None,
            dir: None,
        }));
        let replies = Expression::List(vec![
            Expression::String("established".into()),
            Expression::String("related".into()),
        ]);
        batch.add(rule(
            "forward",
            vec![
                matches(field("ip", "daddr"), Operator::EQ, prefix(n.subnet)),
                matches(state, Operator::IN, replies),
                Statement::Accept(None),
            ],
            format!("{}: replies in", n.name),
        ));
        let mut expr = vec![
            our_veth(MetaKey::Oifname),
            matches(field("ip", "daddr"), Operator::EQ, prefix(n.subnet)),
        ];
        expr.extend(counted_drop());
        batch.add(rule(
            "forward",
            expr,
            format!("{}: nothing else in", n.name),
        ));
        guard_rules("forward", n, r, &mut batch);
        guard_rules("input", n, r, &mut batch);
    }
    batch.to_nftables()
}

/// Applies [`ruleset`] in the calling thread's namespace (`nft -j -f -`).
pub fn apply(r: &Ruleset) -> Result<(), HostError> {
    nftables::helper::apply_ruleset(&ruleset(r)).map_err(HostError::Nftables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str, internal: bool) -> FilteredNetwork {
        FilteredNetwork {
            name: name.into(),
            subnet: subnet.parse().expect("subnet"),
            internal,
        }
    }

    /// The rules of `chain` with their comments, as JSON.
    fn rules<'a>(json: &'a serde_json::Value, chain: &str) -> Vec<&'a serde_json::Value> {
        json["nftables"]
            .as_array()
            .expect("commands")
            .iter()
            .filter_map(|c| c["add"].get("rule"))
            .filter(|r| r["chain"] == chain)
            .collect()
    }

    #[test]
    fn names_are_values_not_syntax() {
        let hostile = "x\" ; flush ruleset ; comment \"";
        let json = serde_json::to_value(ruleset(&Ruleset {
            networks: vec![net(hostile, "10.1.0.0/24", false)],
            ..Ruleset::default()
        }))
        .expect("json");
        let nat = rules(&json, "postrouting");
        assert_eq!(nat.len(), 1);
        assert_eq!(nat[0]["comment"], hostile, "the name is one JSON string");
        assert_eq!(nat[0]["expr"][0]["match"]["left"]["meta"]["key"], "iifname");
        assert_eq!(
            nat[0]["expr"][0]["match"]["right"], "ovl*",
            "our veths only"
        );
        assert_eq!(
            nat[0]["expr"][1]["match"]["right"]["prefix"]["addr"],
            "10.1.0.0"
        );
        assert_eq!(nat[0]["expr"][1]["match"]["right"]["prefix"]["len"], 24);
        assert_eq!(nat[0]["expr"][2]["match"]["op"], "!=");
        assert!(nat[0]["expr"][3].get("masquerade").is_some(), "{}", nat[0]);
    }

    #[test]
    fn inbound_is_replies_only_and_guards_cover_forward_and_input() {
        let json = serde_json::to_value(ruleset(&Ruleset {
            networks: vec![
                net("pub", "10.1.0.0/24", false),
                net("priv", "10.2.0.0/24", true),
            ],
            tunnel_ports: vec![4789],
            guarded: vec!["192.0.2.9:2379".parse().expect("addr")],
            published: vec![],
        }))
        .expect("json");
        assert_eq!(rules(&json, "postrouting").len(), 1, "no NAT for internal");
        let forward = rules(&json, "forward");
        // Per network: replies in, nothing else in, tunnel, guard.
        assert_eq!(forward.len(), 8, "{forward:#?}");
        assert_eq!(forward[0]["expr"][1]["match"]["op"], "in");
        assert_eq!(forward[0]["expr"][1]["match"]["left"]["ct"]["key"], "state");
        assert!(forward[0]["expr"][2].get("accept").is_some());
        // Drops apply to our containers' veths only.
        assert_eq!(
            forward[1]["expr"][0]["match"]["left"]["meta"]["key"],
            "oifname"
        );
        assert_eq!(forward[1]["expr"][0]["match"]["right"], "ovl*");
        assert!(forward[1]["expr"][2].get("counter").is_some());
        assert!(forward[1]["expr"][3].get("drop").is_some());
        for guard in &forward[2..4] {
            assert_eq!(guard["expr"][0]["match"]["left"]["meta"]["key"], "iifname");
        }
        assert_eq!(
            forward[2]["expr"][2]["match"]["left"]["payload"]["field"],
            "dport"
        );
        assert_eq!(forward[2]["expr"][2]["match"]["right"]["set"][0], 4789);
        assert_eq!(forward[3]["expr"][2]["match"]["right"], "192.0.2.9");
        assert_eq!(forward[3]["expr"][3]["match"]["right"], 2379);
        let input = rules(&json, "input");
        assert_eq!(input.len(), 4, "tunnel and guarded ports, per network");
        assert_eq!(
            input[1]["expr"][0]["match"]["left"]["meta"]["key"],
            "iifname"
        );
        assert_eq!(input[1]["expr"][2]["match"]["right"]["set"][0], 2379);
    }

    #[test]
    fn no_networks_removes_the_table() {
        let json = serde_json::to_value(ruleset(&Ruleset::default())).expect("json");
        let objects = json["nftables"].as_array().expect("commands");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1]["delete"]["table"]["name"], TABLE);
    }

    #[test]
    fn published_ports_are_translated_and_let_in() {
        let json = serde_json::to_value(ruleset(&Ruleset {
            networks: vec![net("pub", "10.1.0.0/24", false)],
            published: vec![
                Published {
                    proto: "tcp",
                    host_ip: None,
                    host_port: 8080,
                    dest: "10.1.0.2:80".parse().expect("addr"),
                    what: "8080:80/tcp to web on pub".into(),
                },
                Published {
                    proto: "udp",
                    host_ip: Some("192.0.2.1".parse().expect("ip")),
                    host_port: 53,
                    dest: "10.1.0.3:5353".parse().expect("addr"),
                    what: "dns".into(),
                },
            ],
            ..Ruleset::default()
        }))
        .expect("json");
        let pre = rules(&json, "prerouting");
        assert_eq!(pre.len(), 2, "{pre:#?}");
        assert_eq!(pre[0]["expr"][0]["match"]["left"]["fib"]["result"], "type");
        assert_eq!(pre[0]["expr"][0]["match"]["right"], "local");
        assert_eq!(
            pre[0]["expr"][1]["match"]["left"]["payload"]["protocol"],
            "tcp"
        );
        assert_eq!(pre[0]["expr"][1]["match"]["right"], 8080);
        assert_eq!(pre[0]["expr"][2]["dnat"]["addr"], "10.1.0.2");
        assert_eq!(pre[0]["expr"][2]["dnat"]["port"], 80);
        assert_eq!(pre[1]["expr"][0]["match"]["right"], "192.0.2.1");
        assert_eq!(
            pre[1]["expr"][1]["match"]["left"]["payload"]["protocol"],
            "udp"
        );
        let out = rules(&json, "output");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["expr"][1]["match"]["op"], "!=", "not the loopback");
        let forward = rules(&json, "forward");
        // The accepts come first, before the network's "nothing else in".
        assert_eq!(forward[0]["expr"][0]["match"]["right"], "10.1.0.2");
        assert_eq!(
            forward[0]["expr"][2]["match"]["left"]["ct"]["key"],
            "status"
        );
        assert!(forward[0]["expr"][3].get("accept").is_some());
        assert_eq!(forward[1]["expr"][1]["match"]["right"], 5353);
        assert_eq!(forward[2]["comment"], "pub: replies in");
    }
}
