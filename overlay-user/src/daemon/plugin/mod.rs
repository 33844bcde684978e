//! Docker's network and IPAM plugin protocol (libnetwork's "remote"
//! drivers): HTTP POSTs with JSON bodies on a Unix socket that dockerd
//! finds in `/run/docker/plugins/` (the file's name is the driver's name).
//! Each call is one engine transaction ([`crate::engine::plugin`]), so a
//! call that fails half-way leaves nothing behind. Methods this driver
//! does not implement answer 404, which Docker takes as "not supported";
//! failures answer 500 with the protocol's `{"Err": "..."}`.

use std::{
    collections::BTreeMap,
    io::{BufReader, BufWriter},
    net::Ipv4Addr,
    os::unix::net::{UnixListener, UnixStream},
    sync::mpsc::Sender,
    time::Duration,
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{http, metrics};
use crate::{
    api::error_chain,
    engine::{EngineError, Paths, PluginNetwork, transaction},
    model::{MacAddr, Proto, PublishedPort},
};

/// The driver name Docker knows this plugin by, from its socket's name.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/ebpf-overlay.sock";
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";
/// A connection idle this long is closed (Docker reconnects).
const IDLE: Duration = Duration::from_secs(120);

/// A protocol error: Docker logs and shows the message.
#[derive(Debug)]
struct Failure(String);

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Self(error_chain(&e))
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(msg.into()))
}

/// Serves Docker until the listener fails: a thread per connection,
/// since Docker keeps connections open and may call on several at once
/// (the store's lock orders the transactions). Each network Docker makes
/// is announced on `created` (whose receiver then learns its name).
pub fn serve(listener: &UnixListener, paths: &Paths, created: &Sender<()>) {
    let paths = paths.clone();
    let created = created.clone();
    super::serve_each(listener.incoming(), "plugin call", move |stream| {
        connection(stream, &paths, &created);
    });
}

fn connection(stream: UnixStream, paths: &Paths, created: &Sender<()>) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(write_half);
    loop {
        let req = match http::read_request(&mut reader) {
            Ok(req) => req,
            Err(http::ReadError::Closed) => return,
            Err(e) => {
                let body = json!({ "Err": e.to_string() }).to_string();
                let _ = http::write_response(&mut writer, 400, CONTENT_TYPE, body.as_bytes(), true);
                return;
            }
        };
        let (status, body) = if req.method == "POST" {
            dispatch(paths, &req.path, &req.body, created)
        } else {
            (405, json!({ "Err": "POST only" }))
        };
        tracing::info!(call = %req.path, status, "plugin call");
        // Unknown paths are counted together: a label value per path a
        // client makes up would grow without bound.
        let call = if status == 404 {
            "unknown"
        } else {
            req.path.as_str()
        };
        metrics::telemetry().request("plugin", call, status < 400);
        let body = body.to_string();
        if http::write_response(
            &mut writer,
            status,
            CONTENT_TYPE,
            body.as_bytes(),
            req.close,
        )
        .is_err()
            || req.close
        {
            return;
        }
    }
}

/// Decodes a call's body (empty means `{}`).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Failure(format!("malformed request: {e}")))
}

/// One call: status and JSON body.
fn dispatch(paths: &Paths, path: &str, body: &[u8], created: &Sender<()>) -> (u16, Value) {
    let result = match path {
        "/Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
        "/NetworkDriver.GetCapabilities" => {
            Ok(json!({ "Scope": "local", "ConnectivityScope": "local" }))
        }
        "/NetworkDriver.CreateNetwork" => create_network(paths, body).inspect(|_| {
            // The learner may be gone (it never fails by itself): no name then.
            let _ = created.send(());
        }),
        "/NetworkDriver.DeleteNetwork" => delete_network(paths, body),
        "/NetworkDriver.CreateEndpoint" => create_endpoint(paths, body),
        "/NetworkDriver.DeleteEndpoint" => delete_endpoint(paths, body),
        "/NetworkDriver.EndpointOperInfo" => Ok(json!({ "Value": {} })),
        "/NetworkDriver.Join" => join(paths, body),
        "/NetworkDriver.Leave" => leave(paths, body),
        "/NetworkDriver.DiscoverNew" | "/NetworkDriver.DiscoverDelete" => Ok(json!({})),
        "/NetworkDriver.ProgramExternalConnectivity" => external_connectivity(paths, body),
        "/NetworkDriver.RevokeExternalConnectivity" => revoke_external_connectivity(paths, body),
        "/IpamDriver.GetCapabilities" => Ok(json!({ "RequiresMACAddress": false })),
        "/IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
            "LocalDefaultAddressSpace": "local",
            "GlobalDefaultAddressSpace": "global",
        })),
        "/IpamDriver.RequestPool" => request_pool(paths, body),
        "/IpamDriver.ReleasePool" => release_pool(paths, body),
        "/IpamDriver.RequestAddress" => request_address(paths, body),
        "/IpamDriver.ReleaseAddress" => release_address(paths, body),
        _ => return (404, json!({ "Err": format!("{path} is not implemented") })),
    };
    match result {
        Ok(v) => (200, v),
        Err(Failure(msg)) => {
            tracing::warn!(call = %path, error = %msg, "plugin call failed");
            (500, json!({ "Err": msg }))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamData {
    pool: String,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    aux_addresses: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct CreateNetworkReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "Options", default)]
    options: BTreeMap<String, Value>,
    #[serde(rename = "IPv4Data", default)]
    ipv4: Vec<IpamData>,
    #[serde(rename = "IPv6Data", default)]
    ipv6: Vec<Value>,
}

/// `a.b.c.d/len` (or a bare address) to the address.
fn cidr_address(s: &str) -> Result<Ipv4Addr, Failure> {
    s.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Failure(format!("invalid IPv4 address {s:?}")))
}

fn create_network(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: CreateNetworkReq = decode(body)?;
    if !req.ipv6.is_empty() {
        return fail("IPv6 is not supported by this driver");
    }
    let [data] = req.ipv4.as_slice() else {
        return fail("exactly one IPv4 subnet per network is supported");
    };
    if !data.aux_addresses.is_empty() {
        return fail("auxiliary addresses are not supported");
    }
    let subnet: Ipv4Net = data
        .pool
        .parse()
        .map_err(|_| Failure(format!("invalid subnet {:?}", data.pool)))?;
    let gateway = if data.gateway.is_empty() {
        None
    } else {
        Some(cidr_address(&data.gateway)?)
    };
    let internal = req
        .options
        .get("com.docker.network.internal")
        .is_some_and(|v| v.as_bool() == Some(true));
    // `-o KEY=VALUE` of `docker network create`; `network` names the
    // cluster network to bind to.
    let mut bind = None;
    let mut options = Vec::new();
    if let Some(Value::Object(m)) = req.options.get("com.docker.network.generic") {
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if k == "network" {
                bind = Some(v);
            } else {
                options.push(format!("{k}={v}"));
            }
        }
    }
    let net = PluginNetwork {
        id: req.network_id,
        subnet,
        gateway,
        internal,
        options,
        bind,
    };
    transaction(paths, |e| e.plugin_create_network(&net))?;
    Ok(json!({}))
}

#[derive(Deserialize)]
struct NetworkReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
}

fn delete_network(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: NetworkReq = decode(body)?;
    transaction(paths, |e| e.plugin_delete_network(&req.network_id))?;
    Ok(json!({}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Interface {
    #[serde(default)]
    address: String,
    #[serde(default, rename = "AddressIPv6")]
    address_ipv6: String,
    #[serde(default)]
    mac_address: String,
}

#[derive(Deserialize)]
struct EndpointReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "Interface", default)]
    interface: Option<Interface>,
    #[serde(rename = "SandboxKey", default)]
    sandbox_key: String,
}

fn create_endpoint(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: EndpointReq = decode(body)?;
    let iface = req.interface.unwrap_or_default();
    if !iface.address_ipv6.is_empty() {
        return fail("IPv6 is not supported by this driver");
    }
    if iface.address.is_empty() {
        return fail("no IPv4 address for the endpoint (the IPAM driver gives one)");
    }
    let ip = cidr_address(&iface.address)?;
    let mac = if iface.mac_address.is_empty() {
        None
    } else {
        Some(
            iface
                .mac_address
                .parse::<MacAddr>()
                .map_err(|e| Failure(e.to_string()))?,
        )
    };
    transaction(paths, |e| {
        e.plugin_create_endpoint(&req.network_id, &req.endpoint_id, ip, mac)
    })?;
    // Docker gave the address: the answer's interface must be empty. The
    // MAC, when Docker gave none, is the one the veth is made with.
    Ok(json!({ "Interface": {} }))
}

fn delete_endpoint(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: EndpointReq = decode(body)?;
    transaction(paths, |e| e.plugin_delete_endpoint(&req.endpoint_id))?;
    Ok(json!({}))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InterfaceName {
    src_name: String,
    dst_prefix: String,
}

fn join(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: EndpointReq = decode(body)?;
    if req.sandbox_key.is_empty() {
        return fail("no sandbox to join");
    }
    let info = transaction(paths, |e| e.plugin_join(&req.endpoint_id, &req.sandbox_key))?;
    let mut out = json!({
        "InterfaceName": InterfaceName {
            src_name: info.src_name,
            dst_prefix: "eth".into(),
        },
        "StaticRoutes": [],
        "DisableGatewayService": false,
    });
    if let Some(gw) = info.gateway {
        out["Gateway"] = json!(gw.to_string());
    }
    Ok(out)
}

fn leave(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: EndpointReq = decode(body)?;
    transaction(paths, |e| e.plugin_leave(&req.endpoint_id))?;
    Ok(json!({}))
}

/// One entry of Docker's `com.docker.network.portmap`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PortBinding {
    proto: u8,
    port: u16,
    #[serde(rename = "HostIP", default)]
    host_ip: String,
    #[serde(default)]
    host_port: u16,
}

#[derive(Deserialize)]
struct ConnectivityReq {
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "Options", default)]
    options: BTreeMap<String, Value>,
}

/// `-p`: Docker's port bindings become published ports of the endpoint.
fn external_connectivity(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: ConnectivityReq = decode(body)?;
    let bindings: Vec<PortBinding> = match req.options.get("com.docker.network.portmap") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone())
            .map_err(|e| Failure(format!("malformed port map: {e}")))?,
        _ => Vec::new(),
    };
    let mut ports = Vec::new();
    for b in bindings {
        let proto = match b.proto {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            other => return fail(format!("protocol {other} cannot be published (tcp, udp)")),
        };
        let host_ip = match b.host_ip.as_str() {
            "" | "0.0.0.0" => None,
            ip => Some(cidr_address(ip)?),
        };
        if b.port == 0 {
            return fail("a published port needs the container's port");
        }
        ports.push(PublishedPort {
            proto,
            host_ip,
            host_port: b.host_port,
            port: b.port,
        });
    }
    transaction(paths, |e| e.plugin_publish(&req.endpoint_id, &ports))?;
    Ok(json!({}))
}

fn revoke_external_connectivity(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: ConnectivityReq = decode(body)?;
    transaction(paths, |e| e.plugin_unpublish(&req.endpoint_id))?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PoolReq {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    sub_pool: String,
    #[serde(rename = "V6", default)]
    v6: bool,
}

fn request_pool(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: PoolReq = decode(body)?;
    if req.v6 {
        return fail("IPv6 is not supported by this IPAM driver");
    }
    if !req.sub_pool.is_empty() {
        return fail("--ip-range is not supported by this IPAM driver");
    }
    let pool = if req.pool.is_empty() {
        None
    } else {
        Some(
            req.pool
                .parse::<Ipv4Net>()
                .map_err(|_| Failure(format!("invalid subnet {:?}", req.pool)))?,
        )
    };
    let (id, subnet) = transaction(paths, |e| e.ipam_request_pool(pool))?;
    Ok(json!({ "PoolID": id, "Pool": subnet.to_string(), "Data": {} }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddressReq {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
}

fn request_address(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: AddressReq = decode(body)?;
    let want = if req.address.is_empty() {
        None
    } else {
        Some(cidr_address(&req.address)?)
    };
    let gateway = req
        .options
        .as_ref()
        .and_then(|o| o.get("RequestAddressType"))
        .is_some_and(|t| t == "com.docker.network.gateway");
    let addr = transaction(paths, |e| {
        e.ipam_request_address(&req.pool_id, want, gateway)
    })?;
    Ok(json!({ "Address": addr.to_string(), "Data": {} }))
}

fn release_pool(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: AddressReq = decode(body)?;
    transaction(paths, |e| e.ipam_release_pool(&req.pool_id))?;
    Ok(json!({}))
}

fn release_address(paths: &Paths, body: &[u8]) -> Result<Value, Failure> {
    let req: AddressReq = decode(body)?;
    let ip = cidr_address(&req.address)?;
    transaction(paths, |e| e.ipam_release_address(&req.pool_id, ip))?;
    Ok(json!({}))
}
