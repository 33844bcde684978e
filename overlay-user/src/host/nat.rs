//! The NAT table this program owns (`table ip overlay`), rebuilt as a
//! whole from the networks and applied in one nftables transaction through
//! nftables' JSON API: names and subnets are JSON values, never text pasted
//! into a script.

use std::borrow::Cow;

use ipnet::Ipv4Net;
use nftables::{
    batch::Batch,
    expr::{Expression, NamedExpression, Payload, PayloadField, Prefix},
    schema::{Chain, NfListObject, Nftables, Rule, Table},
    stmt::{Match, Operator, Statement},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};

use super::HostError;

/// The nftables table this program owns.
pub const TABLE: &str = "overlay";
const CHAIN: &str = "postrouting";
/// `srcnat`: the standard priority of source NAT.
const SRCNAT_PRIORITY: i32 = 100;

/// A network whose traffic out of its subnet is masqueraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masquerade {
    /// The network's name (the rule's comment).
    pub name: String,
    pub subnet: Ipv4Net,
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    }
}

fn ip_field(field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: "ip".into(),
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

/// The ruleset: the table replaced as a whole (add-then-delete makes that
/// one transaction whether or not it existed), with one masquerade rule
/// per network: `ip saddr S ip daddr != S masquerade`.
pub fn ruleset(masquerade: &[Masquerade]) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    if masquerade.is_empty() {
        return batch.to_nftables();
    }
    batch.add(NfListObject::Table(table()));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(SRCNAT_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    for m in masquerade {
        let expr = vec![
            Statement::Match(Match {
                left: ip_field("saddr"),
                right: prefix(m.subnet),
                op: Operator::EQ,
            }),
            Statement::Match(Match {
                left: ip_field("daddr"),
                right: prefix(m.subnet),
                op: Operator::NEQ,
            }),
            Statement::Masquerade(None),
        ];
        batch.add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: TABLE.into(),
            chain: CHAIN.into(),
            expr: Cow::Owned(expr),
            comment: Some(m.name.clone().into()),
            ..Rule::default()
        }));
    }
    batch.to_nftables()
}

/// Applies [`ruleset`] in the calling thread's namespace (`nft -j -f -`).
pub fn apply(masquerade: &[Masquerade]) -> Result<(), HostError> {
    nftables::helper::apply_ruleset(&ruleset(masquerade)).map_err(HostError::Nftables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_values_not_syntax() {
        let hostile = "x\" ; flush ruleset ; comment \"";
        let rules = ruleset(&[Masquerade {
            name: hostile.into(),
            subnet: "10.1.0.0/24".parse().expect("subnet"),
        }]);
        let json = serde_json::to_value(&rules).expect("json");
        let objects = json["nftables"].as_array().expect("commands");
        assert_eq!(objects.len(), 5, "add, delete, add table; chain; rule");
        let rule = &objects[4]["add"]["rule"];
        assert_eq!(rule["comment"], hostile, "the name is one JSON string");
        assert_eq!(
            rule["expr"][0]["match"]["right"]["prefix"]["addr"],
            "10.1.0.0"
        );
        assert_eq!(rule["expr"][0]["match"]["right"]["prefix"]["len"], 24);
        assert_eq!(rule["expr"][1]["match"]["op"], "!=");
        assert!(rule["expr"][2].get("masquerade").is_some(), "{rule}");
        let chain = &objects[3]["add"]["chain"];
        assert_eq!(chain["hook"], "postrouting");
        assert_eq!(chain["prio"], 100);
    }

    #[test]
    fn no_networks_removes_the_table() {
        let json = serde_json::to_value(ruleset(&[])).expect("json");
        let objects = json["nftables"].as_array().expect("commands");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1]["delete"]["table"]["name"], TABLE);
    }
}
