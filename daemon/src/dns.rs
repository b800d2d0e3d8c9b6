//! DNS answers → allowlist addresses. The classifier copies DNS responses on
//! their way to devices; for a device whose policy allows a domain, the A and
//! AAAA records for that name (following CNAME chains, so CDNs work) become
//! set elements that expire with the record's TTL (with a configured floor).

use std::{collections::BTreeSet, net::IpAddr};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::RData,
};

/// CNAME hops followed; real chains are 1-3 long.
const MAX_CNAME_HOPS: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("not a DNS message: {0}")]
    Parse(String),
    #[error("not a successful response")]
    NotAnAnswer,
}

/// One address from an answer, with every name that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addr: IpAddr,
    pub ttl: u32,
    /// The question name and the CNAME targets on the way, lower case, no trailing dot.
    pub names: Vec<String>,
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The addresses a DNS response gives for its question, with their chains.
pub fn answers(payload: &[u8]) -> Result<Vec<Answer>, DnsError> {
    let msg = Message::from_vec(payload).map_err(|e| DnsError::Parse(e.to_string()))?;
    if msg.message_type() != MessageType::Response || msg.response_code() != ResponseCode::NoError {
        return Err(DnsError::NotAnAnswer);
    }
    let mut out = Vec::new();
    for q in msg.queries() {
        let mut chain = vec![norm(&q.name().to_ascii())];
        let mut known: BTreeSet<String> = chain.iter().cloned().collect();
        for _ in 0..MAX_CNAME_HOPS {
            let next = msg.answers().iter().find_map(|r| match r.data() {
                RData::CNAME(target) if known.contains(&norm(&r.name().to_ascii())) => {
                    Some(norm(&target.0.to_ascii())).filter(|t| !known.contains(t))
                }
                _ => None,
            });
            let Some(next) = next else { break };
            known.insert(next.clone());
            chain.push(next);
        }
        for r in msg.answers() {
            if !known.contains(&norm(&r.name().to_ascii())) {
                continue;
            }
            let addr = match r.data() {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            out.push(Answer { addr, ttl: r.ttl(), names: chain.clone() });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)] // a failing test panics
mod tests {
    use std::str::FromStr;

    use hickory_proto::{
        op::{Message, MessageType, Query},
        rr::{
            rdata::{A, AAAA, CNAME},
            Name, RData, Record, RecordType,
        },
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn response(q: &str, records: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response);
        m.add_query(Query::query(name(q), RecordType::A));
        for r in records {
            m.add_answer(r);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn follows_cname_chains_to_addresses() {
        let bytes = response(
            "Api.Vendor.example.",
            vec![
                Record::from_rdata(name("api.vendor.example."), 300, RData::CNAME(CNAME(name("edge.cdn.example.")))),
                Record::from_rdata(name("edge.cdn.example."), 60, RData::CNAME(CNAME(name("e1.cdn.example.")))),
                Record::from_rdata(name("e1.cdn.example."), 20, RData::A(A::new(198, 51, 100, 20))),
                Record::from_rdata(name("e1.cdn.example."), 20, RData::AAAA(AAAA::from_str("2001:db8::20").unwrap())),
                Record::from_rdata(name("unrelated.example."), 20, RData::A(A::new(192, 0, 2, 1))),
            ],
        );
        let got = answers(&bytes).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].addr, "198.51.100.20".parse::<IpAddr>().unwrap());
        assert_eq!(got[0].ttl, 20);
        assert_eq!(got[0].names, ["api.vendor.example", "edge.cdn.example", "e1.cdn.example"]);
        assert_eq!(got[1].addr, "2001:db8::20".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_queries_errors_and_garbage() {
        let mut m = Message::new();
        m.add_query(Query::query(name("a.example."), RecordType::A));
        assert_eq!(answers(&m.to_vec().unwrap()), Err(DnsError::NotAnAnswer), "a query is not an answer");
        m.set_message_type(MessageType::Response);
        m.set_response_code(ResponseCode::NXDomain);
        assert_eq!(answers(&m.to_vec().unwrap()), Err(DnsError::NotAnAnswer));
        assert!(matches!(answers(&[1, 2, 3]), Err(DnsError::Parse(_))));
        // A CNAME loop ends, it does not hang.
        let looped = response(
            "a.example.",
            vec![
                Record::from_rdata(name("a.example."), 5, RData::CNAME(CNAME(name("b.example.")))),
                Record::from_rdata(name("b.example."), 5, RData::CNAME(CNAME(name("a.example.")))),
            ],
        );
        assert_eq!(answers(&looped).unwrap(), vec![]);
    }
}
