//! What a node must have before it listens where others can reach it.
//!
//! On loopback everything works without keys, as for development. A node whose HTTP
//! API binds any other address refuses to start without an admin key and a
//! read-write API key, unless `--unsafe-no-auth` says so (logged loudly at every
//! start). A node-to-node transport without authentication (`--insecure-dev`) is
//! refused outright on anything but loopback, wherever the setting came from. A
//! standalone node starts no transport, so its cluster settings expose nothing.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

use crate::config::ServeConfig;

/// Whether every address `addr` (`HOST:PORT`) names is a loopback address.
pub fn is_loopback(addr: &str) -> anyhow::Result<bool> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| format!("{addr} is not HOST:PORT"))?
        .collect();
    Ok(!resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()))
}

/// Refuses settings that would expose the node; returns the warnings to log at
/// start-up for settings that expose it on purpose.
pub fn check(config: &ServeConfig) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (flag, key) in [
        ("--admin-key", &config.admin_key),
        ("--api-key", &config.api_key),
        ("--read-only-api-key", &config.read_only_api_key),
    ] {
        if key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            bail!("{flag} is empty: give a key, or leave the setting out");
        }
    }
    let keys = [
        &config.admin_key,
        &config.api_key,
        &config.read_only_api_key,
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            if a.is_some() && a == b {
                bail!("the admin, read-write and read-only keys must differ from each other");
            }
        }
    }
    if config.read_only_api_key.is_some() && config.api_key.is_none() {
        bail!("--read-only-api-key needs --api-key too (writes would otherwise be open)");
    }
    if config.protect_metrics && keys.iter().all(|k| k.is_none()) {
        bail!("--protect-metrics needs a key to protect them with (--api-key or --admin-key)");
    }
    if let Some(cluster) = config.mode.cluster() {
        if cluster.tls.is_none() && !cluster.addr.ip().is_loopback() {
            bail!(
                "--insecure-dev (unauthenticated node-to-node traffic) is for loopback only; \
                 --cluster-addr {} is reachable from the network: use --tls-cert/--tls-key/--tls-ca \
                 (see `needle certs generate`)",
                cluster.addr
            );
        }
    }
    let listeners = std::iter::once(("--http", config.http.as_str()))
        .chain(config.qdrant_http.as_deref().map(|a| ("--qdrant-http", a)));
    for (flag, addr) in listeners {
        check_listener(config, flag, addr, &mut warnings)?;
    }
    Ok(warnings)
}

/// The key rule for one HTTP listener (`flag` names its setting in messages).
fn check_listener(
    config: &ServeConfig,
    flag: &str,
    addr: &str,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    if !is_loopback(addr)? {
        let missing: Vec<&str> = [
            ("--admin-key", config.admin_key.is_none()),
            ("--api-key", config.api_key.is_none()),
        ]
        .into_iter()
        .filter_map(|(flag, absent)| absent.then_some(flag))
        .collect();
        if !missing.is_empty() {
            if !config.unsafe_no_auth {
                bail!(
                    "{flag} {} is reachable from the network, and this node has no {}: anyone who reaches it could read, \
                     write and administer it. Set the keys, bind 127.0.0.1, or pass --unsafe-no-auth",
                    addr,
                    missing.join(" and ")
                );
            }
            warnings.push(format!(
                "--unsafe-no-auth: the HTTP API on {} is reachable from the network without {}: anyone who reaches it can use it",
                addr,
                missing.join(" or ")
            ));
        }
        if config.http_tls.is_none() {
            warnings.push(format!(
                "the HTTP API on {} is reachable from the network over plain HTTP: keys travel in the clear (see --http-tls-cert)",
                addr
            ));
        }
    }
    Ok(())
}

/// The same rule for the address actually bound (a name may resolve differently at
/// bind time than when it was checked).
pub fn check_bound(config: &ServeConfig, bound: SocketAddr) -> anyhow::Result<()> {
    let keyless = config.admin_key.is_none() || config.api_key.is_none();
    if !bound.ip().is_loopback() && keyless && !config.unsafe_no_auth {
        bail!(
            "the HTTP API is bound to {bound}, reachable from the network, without an admin key and an API key: \
             set them, bind 127.0.0.1, or pass --unsafe-no-auth"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides, RoleChoice};

    fn config(over: Overrides) -> ServeConfig {
        ServeConfig::resolve(&FileConfig::default(), over).unwrap()
    }

    #[test]
    fn loopback_needs_nothing_and_the_network_needs_keys() {
        assert!(check(&config(Overrides::default())).unwrap().is_empty());
        let exposed = Overrides {
            http: Some("0.0.0.0:8080".into()),
            ..Default::default()
        };
        let err = check(&config(exposed.clone())).unwrap_err().to_string();
        assert!(err.contains("--admin-key and --api-key"), "{err}");
        let keyed = Overrides {
            admin_key: Some("a".into()),
            api_key: Some("b".into()),
            ..exposed.clone()
        };
        let warnings = check(&config(keyed)).unwrap();
        assert!(warnings[0].contains("plain HTTP"), "{warnings:?}");
        let unsafe_ = Overrides {
            unsafe_no_auth: Some(true),
            ..exposed
        };
        assert!(check(&config(unsafe_)).unwrap()[0].contains("--unsafe-no-auth"));
    }

    #[test]
    fn the_qdrant_listener_is_held_to_the_same_rule() {
        let exposed = Overrides {
            qdrant_http: Some("0.0.0.0:6333".into()),
            ..Default::default()
        };
        let err = check(&config(exposed.clone())).unwrap_err().to_string();
        assert!(err.contains("--qdrant-http 0.0.0.0:6333"), "{err}");
        let keyed = Overrides {
            admin_key: Some("a".into()),
            api_key: Some("b".into()),
            ..exposed
        };
        assert!(check(&config(keyed)).is_ok());
        let loopback = Overrides {
            qdrant_http: Some("127.0.0.1:6333".into()),
            ..Default::default()
        };
        assert!(check(&config(loopback)).unwrap().is_empty());
    }

    #[test]
    fn empty_or_shared_keys_and_insecure_clusters_off_loopback_are_refused() {
        let empty = Overrides {
            admin_key: Some(String::new()),
            ..Default::default()
        };
        assert!(check(&config(empty))
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let same = Overrides {
            admin_key: Some("k".into()),
            api_key: Some("k".into()),
            ..Default::default()
        };
        assert!(check(&config(same)).is_err());
        let insecure = Overrides {
            role: Some(RoleChoice::Primary),
            insecure_dev: Some(true),
            cluster_addr: Some("0.0.0.0:5000".into()),
            ..Default::default()
        };
        assert!(check(&config(insecure))
            .unwrap_err()
            .to_string()
            .contains("loopback only"));
        let local = Overrides {
            role: Some(RoleChoice::Primary),
            insecure_dev: Some(true),
            cluster_addr: Some("127.0.0.1:5000".into()),
            ..Default::default()
        };
        assert!(check(&config(local)).is_ok());
        // Standalone: no transport is started, so nothing is exposed.
        let standalone = Overrides {
            insecure_dev: Some(true),
            cluster_addr: Some("0.0.0.0:5000".into()),
            ..Default::default()
        };
        assert!(check(&config(standalone)).is_ok());
        assert!(is_loopback("localhost:1").unwrap());
        assert!(!is_loopback("[::]:1").unwrap());
    }
}
