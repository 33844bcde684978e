//! The daemon's settings: flags first, then a TOML file whose keys are the
//! long flag names.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::DaemonError;
use crate::model::{ClusterRecord, DEFAULT_CLAIM_GRACE};

/// Read when `--config` is not given (and `--root` is not used).
pub const DEFAULT_CONFIG: &str = "/etc/overlay/daemon.toml";
pub const DEFAULT_INTERVAL: u64 = 5;
pub const DEFAULT_LEASE_TTL: i64 = 15;
/// Lease time to live a host may ask for, seconds.
pub const LEASE_TTL_RANGE: std::ops::RangeInclusive<i64> = 2..=3600;
/// Claim grace a host may set, seconds (up to a year).
pub const CLAIM_GRACE_RANGE: std::ops::RangeInclusive<u64> = 10..=31_536_000;

/// Every setting, from flags or the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    pub interval: Option<u64>,
    pub store: Option<String>,
    pub advertise_addr: Option<Ipv4Addr>,
    pub lease_ttl: Option<i64>,
    pub claim_grace: Option<u64>,
    pub etcd_cacert: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    pub etcd_user: Option<String>,
    pub etcd_password_file: Option<PathBuf>,
    pub host_name: Option<String>,
    pub plugin_socket: Option<PathBuf>,
    /// Docker Engine's API socket, asked for the names of Docker's networks.
    pub docker_socket: Option<PathBuf>,
    /// Upstream resolvers of the container resolver, `IP[:PORT]`.
    pub dns_upstream: Option<Vec<String>>,
    /// Where `/metrics` is served (`IP:PORT`); not at all when unset.
    pub metrics_address: Option<SocketAddr>,
}

impl Settings {
    /// These settings (flags) over `file`'s.
    pub fn over(self, file: Self) -> Self {
        Self {
            interval: self.interval.or(file.interval),
            store: self.store.or(file.store),
            advertise_addr: self.advertise_addr.or(file.advertise_addr),
            lease_ttl: self.lease_ttl.or(file.lease_ttl),
            claim_grace: self.claim_grace.or(file.claim_grace),
            etcd_cacert: self.etcd_cacert.or(file.etcd_cacert),
            etcd_cert: self.etcd_cert.or(file.etcd_cert),
            etcd_key: self.etcd_key.or(file.etcd_key),
            etcd_user: self.etcd_user.or(file.etcd_user),
            etcd_password_file: self.etcd_password_file.or(file.etcd_password_file),
            host_name: self.host_name.or(file.host_name),
            plugin_socket: self.plugin_socket.or(file.plugin_socket),
            docker_socket: self.docker_socket.or(file.docker_socket),
            dns_upstream: self.dns_upstream.or(file.dns_upstream),
            metrics_address: self.metrics_address.or(file.metrics_address),
        }
    }

    /// The container resolver's upstreams, if set (checked: `IP[:PORT]`,
    /// at most three).
    pub fn dns_upstreams(&self) -> Result<Option<Vec<SocketAddrV4>>, DaemonError> {
        let Some(list) = &self.dns_upstream else {
            return Ok(None);
        };
        if list.len() > super::dns::MAX_UPSTREAMS {
            return Err(DaemonError::DnsUpstreams(list.len()));
        }
        list.iter()
            .map(|u| {
                u.parse::<SocketAddrV4>()
                    .or_else(|_| {
                        u.parse::<Ipv4Addr>()
                            .map(|ip| SocketAddrV4::new(ip, super::dns::DNS_PORT))
                    })
                    .map_err(|_| DaemonError::DnsUpstream(u.clone()))
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Checks the values no type rules out.
    pub fn check(&self) -> Result<(), DaemonError> {
        if let Some(ttl) = self.lease_ttl
            && !LEASE_TTL_RANGE.contains(&ttl)
        {
            return Err(DaemonError::LeaseTtl(ttl));
        }
        if let Some(grace) = self.claim_grace
            && !CLAIM_GRACE_RANGE.contains(&grace)
        {
            return Err(DaemonError::ClaimGrace(grace));
        }
        self.dns_upstreams().map(drop)
    }

    /// The cluster record these settings ask for, keeping what `old` had
    /// where they are silent (the same cluster keeps its lease, so a
    /// restart has no gap).
    pub fn cluster_record(
        &self,
        endpoints: Vec<String>,
        old: Option<&ClusterRecord>,
    ) -> ClusterRecord {
        ClusterRecord {
            lease: old
                .filter(|o| o.endpoints == endpoints)
                .map_or(0, |o| o.lease),
            advertise_ip: self
                .advertise_addr
                .or_else(|| old.and_then(|o| o.advertise_ip)),
            lease_ttl: self
                .lease_ttl
                .or_else(|| old.map(|o| o.lease_ttl))
                .unwrap_or(DEFAULT_LEASE_TTL),
            claim_grace: self
                .claim_grace
                .or_else(|| old.map(|o| o.claim_grace))
                .unwrap_or(DEFAULT_CLAIM_GRACE),
            endpoints,
            ca_file: self.etcd_cacert.clone(),
            cert_file: self.etcd_cert.clone(),
            key_file: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
        }
    }
}

/// Reads the config file: `explicit`, else the default one if it exists
/// and `use_default` (a simulated host under `--root` has none).
pub fn load_file(explicit: Option<&Path>, use_default: bool) -> Result<Settings, DaemonError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if use_default && Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(Settings::default()),
    };
    let text = std::fs::read_to_string(&path).map_err(|source| DaemonError::ConfigRead {
        path: path.clone(),
        source,
    })?;
    // One line: toml's own rendering spans several.
    toml::from_str(&text).map_err(|e| DaemonError::Config {
        line: e
            .span()
            .map_or(0, |span| text[..span.start].matches('\n').count() + 1),
        path,
        message: e.message().trim().to_owned(),
    })
}

/// `etcd://a:2379,b:2379` -> `["a:2379", "b:2379"]`.
pub fn etcd_endpoints(url: &str) -> Result<Vec<String>, DaemonError> {
    let Some(list) = url.strip_prefix("etcd://") else {
        return Err(DaemonError::Store(url.to_owned()));
    };
    let endpoints: Vec<String> = list.split(',').map(str::to_owned).collect();
    for e in &endpoints {
        match e.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(DaemonError::EtcdEndpoint(e.clone())),
        }
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            etcd_endpoints("etcd://10.0.0.1:2379,h:1").expect("valid"),
            ["10.0.0.1:2379", "h:1"]
        );
        for bad in [
            "consul://x:1",
            "etcd://10.0.0.1",
            "etcd://:2379",
            "etcd://h:99999",
        ] {
            assert!(etcd_endpoints(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_metrics_address_is_read_from_the_file() {
        let s: Settings = toml::from_str("metrics-address = \"127.0.0.1:9464\"").expect("valid");
        assert_eq!(
            s.metrics_address,
            Some("127.0.0.1:9464".parse().expect("address"))
        );
        assert!(toml::from_str::<Settings>("metrics-address = \"localhost\"").is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let flags = Settings {
            lease_ttl: Some(9),
            ..Settings::default()
        };
        let file = Settings {
            lease_ttl: Some(30),
            host_name: Some("h1".into()),
            ..Settings::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.lease_ttl, Some(9));
        assert_eq!(merged.host_name.as_deref(), Some("h1"));
    }

    #[test]
    fn the_same_cluster_keeps_its_lease() {
        let old = ClusterRecord {
            endpoints: vec!["a:1".into()],
            lease: 42,
            lease_ttl: 20,
            ..ClusterRecord::default()
        };
        let s = Settings::default();
        let same = s.cluster_record(vec!["a:1".into()], Some(&old));
        assert_eq!((same.lease, same.lease_ttl), (42, 20));
        let other = s.cluster_record(vec!["b:1".into()], Some(&old));
        assert_eq!(other.lease, 0);
        let fresh = s.cluster_record(vec!["a:1".into()], None);
        assert_eq!(fresh.lease_ttl, DEFAULT_LEASE_TTL);
        let bad = Settings {
            lease_ttl: Some(1),
            ..Settings::default()
        };
        assert!(bad.check().is_err() && s.check().is_ok());
    }
}
