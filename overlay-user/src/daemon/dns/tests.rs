//! Every verdict of [`respond`]: a query in, the reply (or forward, or
//! silence) out, checked field by field.

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};

use super::*;
use crate::model::names::fixture::{ip, snapshot};

/// A query for `name` of type `qtype` with ID 0x1234, recursion desired.
fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("test name"),
        qtype,
    ));
    m.to_vec().expect("encodes")
}

/// What a reply says, in a form a table can hold.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Answer {
        code: ResponseCode,
        records: Vec<String>,
    },
    Forward,
    Drop,
}

fn got(r: Reply) -> Got {
    match r {
        Reply::Send(bytes) => {
            let m = Message::from_vec(&bytes).expect("our reply parses");
            assert_eq!(m.metadata.id, 0x1234, "the query's ID");
            assert_eq!(m.metadata.message_type, MessageType::Response);
            Got::Answer {
                code: m.metadata.response_code,
                records: m
                    .answers
                    .iter()
                    .map(|r| match &r.data {
                        RData::A(a) => format!("A {}", a.0),
                        RData::PTR(p) => format!("PTR {}", p.0),
                        other => format!("{other:?}"),
                    })
                    .collect(),
            }
        }
        Reply::Forward => Got::Forward,
        Reply::Drop => Got::Drop,
    }
}

fn answer(code: ResponseCode, records: &[&str]) -> Got {
    Got::Answer {
        code,
        records: records.iter().map(|r| (*r).to_owned()).collect(),
    }
}

#[test]
fn every_verdict() {
    let table = NameTable::from_snapshot(&snapshot());
    let (gw, web) = (ip("10.1.0.1"), ip("10.1.0.2"));
    let ok = ResponseCode::NoError;
    let mut two_questions = Message::new(0x1234, MessageType::Query, OpCode::Query);
    for n in ["db.", "web."] {
        two_questions.add_query(Query::query(
            Name::from_ascii(n).expect("name"),
            RecordType::A,
        ));
    }
    let mut chaos = Message::new(0x1234, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("db.").expect("name"), RecordType::A);
    q.set_query_class(DNSClass::CH);
    chaos.add_query(q);
    let mut response = Message::new(0x1234, MessageType::Response, OpCode::Query);
    response.add_query(Query::query(
        Name::from_ascii("db.").expect("name"),
        RecordType::A,
    ));
    let mut update = Message::new(0x1234, MessageType::Query, OpCode::Update);
    update.add_query(Query::query(
        Name::from_ascii("db.").expect("name"),
        RecordType::SOA,
    ));
    let encode = |m: &Message| m.to_vec().expect("encodes");
    let mut truncated = query("db.", RecordType::A);
    truncated.truncate(truncated.len() - 3);
    // Header of a query, then a name whose label runs past the end.
    let mut bad_label = query("db.", RecordType::A)[..12].to_vec();
    bad_label.extend_from_slice(&[40, b'd', b'b']);
    let cases: Vec<(&str, Vec<u8>, Got)> = vec![
        (
            "A by name",
            query("db.", RecordType::A),
            answer(ok, &["A 10.1.0.3"]),
        ),
        (
            "relative name",
            query("db", RecordType::A),
            answer(ok, &["A 10.1.0.3"]),
        ),
        (
            "case",
            query("DB.", RecordType::A),
            answer(ok, &["A 10.1.0.3"]),
        ),
        (
            "alias",
            query("database.", RecordType::A),
            answer(ok, &["A 10.1.0.3"]),
        ),
        (
            "remote",
            query("api.", RecordType::A),
            answer(ok, &["A 10.1.0.9"]),
        ),
        (
            "AAAA of a name: empty",
            query("db.", RecordType::AAAA),
            answer(ok, &[]),
        ),
        (
            "MX of a name: empty",
            query("db.", RecordType::MX),
            answer(ok, &[]),
        ),
        (
            "PTR",
            query("3.0.1.10.in-addr.arpa.", RecordType::PTR),
            answer(ok, &["PTR db."]),
        ),
        (
            "another network's name",
            query("cache.", RecordType::A),
            Got::Forward,
        ),
        (
            "the world",
            query("example.org.", RecordType::A),
            Got::Forward,
        ),
        (
            "a name with a dot in a label",
            query("db\\.x.", RecordType::A),
            Got::Forward,
        ),
        (
            "two questions",
            encode(&two_questions),
            answer(ResponseCode::FormErr, &[]),
        ),
        (
            "class CH",
            encode(&chaos),
            answer(ResponseCode::NotImp, &[]),
        ),
        (
            "an update",
            encode(&update),
            answer(ResponseCode::NotImp, &[]),
        ),
        ("a response", encode(&response), Got::Drop),
        ("truncated", truncated, answer(ResponseCode::FormErr, &[])),
        (
            "label past the end",
            bad_label,
            answer(ResponseCode::FormErr, &[]),
        ),
        ("shorter than a header", vec![0x12, 0x34, 0, 0], Got::Drop),
        ("empty", Vec::new(), Got::Drop),
    ];
    let mut failures = Vec::new();
    for (what, packet, want) in cases {
        let have = got(respond(&table, gw, web, &packet));
        if have != want {
            failures.push(format!("{what}: got {have:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn who_asks_decides() {
    let table = NameTable::from_snapshot(&snapshot());
    let q = query("db.", RecordType::A);
    assert_eq!(
        got(respond(&table, ip("10.1.0.1"), ip("10.1.0.200"), &q)),
        answer(ResponseCode::Refused, &[]),
        "not an endpoint of that network"
    );
    assert_eq!(
        got(respond(
            &table,
            ip("10.3.0.1"),
            ip("10.3.0.2"),
            &query("example.org.", RecordType::A)
        )),
        answer(ResponseCode::NXDomain, &[]),
        "an internal network's container gets nothing from upstream"
    );
}

#[test]
fn upstreams_from_resolv_conf() {
    let text = "# x\nsearch example.com\nnameserver 10.0.0.53\nnameserver ::1\n\
                nameserver 10.0.0.54\nnameserver 10.0.0.55\nnameserver 10.0.0.56\n";
    let got: Vec<String> = upstreams_of(text).iter().map(ToString::to_string).collect();
    assert_eq!(got, ["10.0.0.53:53", "10.0.0.54:53", "10.0.0.55:53"]);
}

#[test]
fn a_flood_is_bounded() {
    let resolver = Arc::new(Resolver {
        names: Names {
            store_dir: std::env::temp_dir().join("ovl-dns-bound-test-unused"),
            cached: Mutex::new(None),
        },
        upstreams: Vec::new(),
        in_flight: AtomicUsize::new(0),
    });
    let held: Vec<InFlight> = (0..MAX_IN_FLIGHT)
        .map(|_| InFlight::take(&resolver).expect("under the bound"))
        .collect();
    assert!(InFlight::take(&resolver).is_none(), "one past the bound");
    drop(held);
    assert!(InFlight::take(&resolver).is_some(), "slots come back");
    assert_eq!(resolver.in_flight.load(Ordering::Relaxed), 0);
}
