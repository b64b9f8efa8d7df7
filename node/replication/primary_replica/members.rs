//! The nodes a primary–replica cluster is known to have, by name.
//!
//! A primary counts every replica it has known for `majority` (a silent one too: a
//! promotion elsewhere would count it), and a replica counts every node it has known
//! for a promotion's quorum. Keyed by the node's certificate name (`node-3`), or by
//! its cluster address where nodes have no certificates (`--insecure-dev`), so a
//! replica that comes back on a new address is the same member, not a second one;
//! a retired one is removed with `needle replica forget NAME`. Kept in the store,
//! so a restart does not forget part of the cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::Database;

use crate::meta_keys::MEMBERS as MEMBERS_META;

/// A node's name for replication: its certificate's node name, else its address.
pub(crate) fn member_name(names: &[String], addr: SocketAddr) -> String {
    needle_transport::certs::node_name(names).map_or_else(|| addr.to_string(), str::to_string)
}

/// One known node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Where its transport was last seen.
    pub addr: SocketAddr,
}

/// Known nodes, name → last address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownMembers {
    by_name: BTreeMap<String, SocketAddr>,
}

/// A list of members as stored or sent: named, or (from the first versions) bare
/// addresses, each then named by its address.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum MemberList {
    Named(Vec<Member>),
    Addresses(Vec<SocketAddr>),
}

impl MemberList {
    pub fn into_members(self) -> Vec<Member> {
        match self {
            MemberList::Named(members) => members,
            MemberList::Addresses(addrs) => addrs
                .into_iter()
                .map(|addr| Member {
                    name: addr.to_string(),
                    addr,
                })
                .collect(),
        }
    }
}

impl KnownMembers {
    pub fn load(db: &Database) -> Result<KnownMembers> {
        Ok(match db.meta_json::<MemberList>(MEMBERS_META)? {
            None => KnownMembers::default(),
            Some(list) => KnownMembers::from_members(list.into_members()),
        })
    }

    /// The members given; an entry named by its bare address (from the first
    /// versions, or from a node without a certificate then) is dropped where a named
    /// entry has the same address: it is the same node.
    pub fn from_members(members: Vec<Member>) -> KnownMembers {
        let mut known = KnownMembers::default();
        for m in members {
            known.insert(&m.name, m.addr);
        }
        let named: Vec<SocketAddr> = known
            .by_name
            .iter()
            .filter(|(name, addr)| **name != addr.to_string())
            .map(|(_, &addr)| addr)
            .collect();
        known
            .by_name
            .retain(|name, addr| *name != addr.to_string() || !named.contains(addr));
        known
    }

    pub fn store(&self, db: &Database) -> Result<()> {
        db.set_meta_json(MEMBERS_META, Some(&self.members()))
    }

    /// Adds (or moves) a member; whether anything changed. A named member replaces
    /// an entry named by its bare address (the same node, known before by address).
    pub fn insert(&mut self, name: &str, addr: SocketAddr) -> bool {
        let bare = addr.to_string();
        let replaced = name != bare && self.by_name.remove(&bare).is_some();
        self.by_name.insert(name.to_string(), addr) != Some(addr) || replaced
    }

    /// Forgets a member; whether it was known.
    pub fn forget(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    pub fn members(&self) -> Vec<Member> {
        self.by_name
            .iter()
            .map(|(name, &addr)| Member {
                name: name.clone(),
                addr,
            })
            .collect()
    }

    /// Members other than the nodes at the addresses given (this node, say, or the
    /// primary being replaced), one per address: a node is never counted twice.
    pub fn others(&self, addrs: &[SocketAddr]) -> Vec<Member> {
        let mut seen = Vec::new();
        self.members()
            .into_iter()
            .filter(|m| {
                let fresh = !addrs.contains(&m.addr) && !seen.contains(&m.addr);
                seen.push(m.addr);
                fresh
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_member_that_moves_is_still_one_member_and_forget_removes_it() {
        let mut known = KnownMembers::default();
        assert!(known.insert("node-2", addr(5002)));
        assert!(!known.insert("node-2", addr(5002)));
        assert!(
            known.insert("node-2", addr(6002)),
            "a new address is a change"
        );
        assert!(known.insert("node-3", addr(5003)));
        assert_eq!(known.len(), 2);
        assert_eq!(known.others(&[addr(5003)]).len(), 1);
        assert_eq!(known.others(&[addr(6002)])[0].name, "node-3");
        assert!(known.forget("node-3"));
        assert!(!known.forget("node-3"));
        assert_eq!(
            known.members(),
            vec![Member {
                name: "node-2".into(),
                addr: addr(6002)
            }]
        );
    }

    #[test]
    fn a_node_known_by_address_and_by_name_counts_once() {
        let old = vec![
            Member {
                name: "127.0.0.1:5003".into(),
                addr: addr(5003),
            },
            Member {
                name: "node-3".into(),
                addr: addr(5003),
            },
            Member {
                name: "node-4".into(),
                addr: addr(5004),
            },
            Member {
                name: "127.0.0.1:5005".into(),
                addr: addr(5005),
            },
        ];
        let known = KnownMembers::from_members(old);
        assert_eq!(known.len(), 3, "{:?}", known.members());
        let mut known = known;
        // A node first seen by address, then with its certificate name.
        assert!(known.insert("node-5", addr(5005)));
        assert_eq!(known.len(), 3);
        // Two names at one address still count as one node.
        known.insert("alias", addr(5004));
        assert_eq!(known.others(&[]).len(), 3);
    }

    #[test]
    fn the_old_stored_form_still_reads() {
        let old: MemberList = serde_json::from_str(r#"["127.0.0.1:5002"]"#).unwrap();
        assert_eq!(old.into_members()[0].name, "127.0.0.1:5002");
        let new: MemberList =
            serde_json::from_str(r#"[{"name":"node-2","addr":"127.0.0.1:5002"}]"#).unwrap();
        assert_eq!(new.into_members()[0].name, "node-2");
    }

    #[test]
    fn names_come_from_certificates_or_addresses() {
        let names = vec!["needle".to_string(), "node-4".into(), "localhost".into()];
        assert_eq!(member_name(&names, addr(1)), "node-4");
        assert_eq!(member_name(&[], addr(1)), "127.0.0.1:1");
    }
}
