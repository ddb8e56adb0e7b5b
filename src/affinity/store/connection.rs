//! The connection a store talks through, whatever the mode: one server (standalone, or the
//! primary Sentinel named) through the `redis` crate's tokio `ConnectionManager`, which
//! reconnects by itself; or a Redis Cluster through the crate's cluster connection (slot map,
//! `MOVED`/`ASK`, one multiplexed connection per node). The background service sets it, and
//! replaces it when Sentinel names another primary; requests only clone the current one.
//!
//! Also what every mode shares: the login settings, TLS certificates, and which errors are
//! worth one more try. (A demoted primary is noticed by Sentinel mode's `ROLE` heartbeat,
//! not by the `READONLY` errors of requests.)

use crate::config::{HostPort, RedisStoreConfig};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// A connection to the store's Redis: cheap to clone (a handle on the crate's driver task).
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The store's current connection, and (with Sentinel) the primary it goes to.
#[derive(Default)]
pub struct Current {
    connection: RwLock<Option<(Connection, Option<String>)>>,
}

impl Current {
    /// A clone of the current connection (`None` before the background service made one).
    pub fn get(&self) -> Option<Connection> {
        let current = self
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|(c, _)| c.clone())
    }

    /// The primary Sentinel named last (for logs and the admin API).
    pub fn primary(&self) -> Option<String> {
        let current = self
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        current.as_ref().and_then(|(_, primary)| primary.clone())
    }

    /// Set or replace the connection (only the store's background service does).
    pub fn set(&self, connection: Connection, primary: Option<String>) {
        let mut current = self
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *current = Some((connection, primary));
    }
}

/// The data nodes' login: database, user, password, RESP3 (Redis 6+; `GETEX` needs 6.2
/// anyway: the connection hears of a dropped connection at once and reconnects before the
/// next request needs it).
pub fn settings(c: &RedisStoreConfig) -> redis::RedisConnectionInfo {
    let mut settings = redis::RedisConnectionInfo::default()
        .set_db(i64::from(c.database))
        .set_protocol(redis::ProtocolVersion::RESP3);
    if let Some(user) = &c.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &c.password {
        settings = settings.set_password(password);
    }
    settings
}

/// With `tls` and a `ca_file`: the CA to trust (`None`: the system's, or no TLS).
pub fn certificates(c: &RedisStoreConfig) -> Option<redis::TlsCertificates> {
    if c.tls_ca_pem.is_some() {
        // rustls needs the process's crypto provider (Pingora's ring) before a config.
        pingora_rustls::install_default_crypto_provider();
    }
    match &c.tls_ca_pem {
        Some(ca) if !ca.is_empty() => Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.clone()),
        }),
        _ => None,
    }
}

/// `host:port`, plain or TLS as configured.
pub fn address(c: &RedisStoreConfig, at: &HostPort) -> redis::ConnectionAddr {
    match &c.tls_ca_pem {
        None => redis::ConnectionAddr::Tcp(at.host.clone(), at.port),
        Some(_) => redis::ConnectionAddr::TcpTls {
            host: at.host.clone(),
            port: at.port,
            insecure: false,
            tls_params: None,
        },
    }
}

/// A client for one server (mode `standalone`).
pub fn standalone_client(c: &RedisStoreConfig, at: &HostPort) -> redis::RedisResult<redis::Client> {
    let info = redis::IntoConnectionInfo::into_connection_info(address(c, at))?
        .set_redis_settings(settings(c));
    match certificates(c) {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    }
}

/// The crate's reconnecting connection to `client`'s server; connects on first use.
pub fn manager(c: &RedisStoreConfig, client: redis::Client) -> redis::RedisResult<Connection> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(c.connect_timeout))
        .set_response_timeout(Some(c.connect_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).map(Connection::Single)
}

/// An error after which the same request may succeed on the reconnected connection.
pub fn is_broken_connection(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, ServerErrorKind};

    #[test]
    fn a_broken_connection_is_tried_once_more_and_a_refusal_is_not() {
        let readonly = redis::RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(!is_broken_connection(&readonly));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_broken_connection(&io));
    }
}
