//! One check of one origin: a TCP connect, or an HTTP(S) GET over one fresh connection.
//!
//! HTTPS verifies what a browser would: the certificate chains to a trusted root (the
//! system's, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), is within its validity dates,
//! and names the check's `host` (or, without one, the origin's address or domain name).
//! Nothing is skipped: a check whose certificate does not verify fails, with the reason
//! in `last_error`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use crate::site::{CheckKind, HealthCheck, Target};

/// Runs checks; holds the TLS configuration, built once.
pub struct Prober {
    tls: TlsConnector,
}

impl Prober {
    /// A prober trusting the system's roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub fn new() -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            warn!(%error, "reading trusted certificates for HTTPS health checks");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        info!(
            trusted = added,
            ignored, "root certificates loaded for HTTPS health checks"
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// Checks `target` once; the error says why it failed. A pass carries the weight the
    /// origin reported in the check's `weight_header`, when it has one: a number 0..100,
    /// or why the value cannot be used.
    pub async fn probe(&self, target: &Target, check: &HealthCheck) -> Result<Reported, String> {
        match target {
            Target::Ip(ip) => {
                self.probe_at(SocketAddr::new(*ip, check.port), target, check)
                    .await
            }
            // A domain origin is up while any of its addresses is (SPEC §10).
            Target::Name(name) => {
                let host = name.to_ascii();
                let host = host.trim_end_matches('.');
                let addrs = tokio::net::lookup_host((host, check.port))
                    .await
                    .map_err(|e| format!("cannot resolve {host}: {e}"))?;
                let mut errors = Vec::new();
                for addr in addrs {
                    match self.probe_at(addr, target, check).await {
                        Ok(reported) => return Ok(reported),
                        Err(error) => errors.push(format!("{}: {error}", addr.ip())),
                    }
                }
                match errors.is_empty() {
                    true => Err(format!("{host} resolves to no address")),
                    false => Err(errors.join("; ")),
                }
            }
            Target::WithPort(text) => Err(format!("{text} has a port and is never answered")),
        }
    }

    async fn probe_at(
        &self,
        addr: SocketAddr,
        target: &Target,
        check: &HealthCheck,
    ) -> Result<Reported, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to port {}: {}", check.port, io_reason(&e)))?;
        let header = check.weight_header.as_deref();
        let (status, weight) = match check.kind {
            CheckKind::Tcp => return Ok(None),
            CheckKind::Http => {
                get(stream, &host_header(target, check), &check.path, header).await?
            }
            CheckKind::Https => {
                let name = server_name(target, check)?;
                let stream = self
                    .tls
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                get(stream, &host_header(target, check), &check.path, header).await?
            }
        };
        match check.passes(status) {
            true => Ok(weight),
            false if check.expect_status.is_empty() => {
                Err(format!("HTTP status {status} (expected 2xx or 3xx)"))
            }
            false => Err(format!(
                "HTTP status {status} (expected {})",
                check
                    .expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

/// What a passing check learnt beyond "up": the weight reported in `weight_header`.
pub type Reported = Option<Result<u32, String>>;

/// Sends `GET path` on a fresh connection and returns the response status and, when
/// `weight_header` is given and the response has it, the weight it reports.
async fn get<S>(
    stream: S,
    host: &str,
    path: &str,
    weight_header: Option<&str>,
) -> Result<(u16, Reported), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let request = hyper::Request::get(path)
        .header(header::HOST, host)
        .header(
            header::USER_AGENT,
            concat!("lbdns-health-check/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("HTTP request: {e}"))?;
    let response = sender.send_request(request);
    tokio::pin!(response);
    tokio::pin!(connection);
    let response = tokio::select! {
        biased;
        response = &mut response => response,
        closed = &mut connection => match closed {
            Err(e) => return Err(format!("HTTP: {e}")),
            // Closed after answering (Connection: close): the response is there.
            Ok(()) => response.await,
        },
    };
    let response = response.map_err(|e| format!("HTTP: {e}"))?;
    let weight = weight_header.and_then(|name| {
        let value = response.headers().get(name)?;
        Some(parse_weight(name, value.as_bytes()))
    });
    Ok((response.status().as_u16(), weight))
}

/// A reported weight: a whole number 0..100, spaces around it allowed.
fn parse_weight(header: &str, value: &[u8]) -> Result<u32, String> {
    let text = String::from_utf8_lossy(value);
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|w| *w <= crate::site::MAX_WEIGHT)
        .ok_or_else(|| format!("{header}: {text:?} is not a weight (a whole number 0..100)"))
}

/// The Host header: the check's `host`, else the origin, with the port unless default.
fn host_header(target: &Target, check: &HealthCheck) -> String {
    let host = match (&check.host, target) {
        (Some(host), _) => host.clone(),
        (None, Target::Ip(IpAddr::V6(ip))) => format!("[{ip}]"),
        (None, target) => target.to_string().trim_end_matches('.').to_owned(),
    };
    let default = match check.kind {
        CheckKind::Https => 443,
        _ => 80,
    };
    match check.port == default {
        true => host,
        false => format!("{host}:{}", check.port),
    }
}

/// The name the certificate must carry.
fn server_name(target: &Target, check: &HealthCheck) -> Result<ServerName<'static>, String> {
    let name = match (&check.host, target) {
        (Some(host), _) => host.clone(),
        (None, Target::Ip(ip)) => return Ok(ServerName::IpAddress((*ip).into())),
        (None, target) => target.to_string().trim_end_matches('.').to_owned(),
    };
    ServerName::try_from(name.clone())
        .map_err(|e| format!("TLS: {name:?} is not a server name: {e}"))
}

/// An I/O error as a short reason: "connection refused", not "Connection refused (os error 111)".
fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        _ => error.to_string(),
    }
}
