//! Sentinel mode: the primary is the one the sentinels name for `service`, found with the
//! `redis` crate's own Sentinel client (it asks the sentinels in turn, skips a primary they
//! flag down, and checks with `ROLE` that the one named really is the primary). The store's
//! connection then goes to that primary, like a standalone one.
//!
//! Following a failover: while up, the background service's heartbeat is `ROLE` (not `PING`),
//! so a primary that was demoted is noticed within a second; after a failed heartbeat or a
//! demotion the sentinels are asked again at once, and a new primary replaces the connection
//! (logged once) — often before three failures take the store down. While down, every probe
//! asks the sentinels first. Requests never talk to the sentinels.

use super::connection::{self, Connection};
use super::RedisStore;
use crate::config::{RedisStoreConfig, RedisTopology};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{RedisError, Role};
use std::time::Duration;

/// The sentinels, for one store.
pub struct Discovery {
    client: SentinelClient,
}

impl Discovery {
    /// The crate's Sentinel client with the store's two logins (the sentinels' and the data
    /// nodes'), TLS and database. Connects nothing.
    pub fn new(c: &RedisStoreConfig) -> redis::RedisResult<Discovery> {
        let RedisTopology::Sentinel {
            sentinels,
            service,
            username,
            password,
        } = &c.topology
        else {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "not a sentinel store",
            )));
        };
        let addresses = sentinels.iter().map(|at| connection::address(c, at));
        let mut builder =
            SentinelClientBuilder::new(addresses, service, SentinelServerType::Master)?
                .set_client_to_redis_db(i64::from(c.database))
                .set_client_to_redis_protocol(redis::ProtocolVersion::RESP3);
        if let Some(user) = &c.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &c.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(user) = username {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if c.tls_ca_pem.is_some() {
            builder = builder
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        }
        if let Some(certificates) = connection::certificates(c) {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates);
        }
        Ok(Discovery {
            client: builder.build()?,
        })
    }

    /// Ask the sentinels for the primary; if it is not the one the store talks to, replace
    /// the connection (and say so). `Err` when no sentinel names a primary that answers.
    pub async fn discover(&mut self, store: &RedisStore) -> Result<(), String> {
        let c = &store.config;
        // The sentinels, then the primary they name (`ROLE`), each within the connect timeout.
        let found = tokio::time::timeout(c.connect_timeout * 2, self.client.async_get_client())
            .await
            .map_err(|_| "the sentinels did not answer in time".to_string())?
            .map_err(|e| e.to_string())?;
        let primary = found.get_connection_info().addr().to_string();
        let before = store.connection.primary();
        if before.as_deref() == Some(primary.as_str()) {
            return Ok(());
        }
        let connection = connection::manager(c, found).map_err(|e| e.to_string())?;
        store.connection.set(connection, Some(primary.clone()));
        match before {
            Some(before) => log::warn!(
                "session store redis {} ({}): the sentinels name a new primary, {primary} \
                 (was {before}); writing there from now on",
                c.address(),
                store.label
            ),
            None => log::info!(
                "session store redis {} ({}): the sentinels name {primary} the primary",
                c.address(),
                store.label
            ),
        }
        Ok(())
    }

    /// One tick of the background service: while up, `ROLE` on the primary (a heartbeat
    /// that also notices a demotion), asking the sentinels again after a failure; while not
    /// up, ask the sentinels, then probe the primary they name.
    pub async fn tick(&mut self, store: &RedisStore) {
        if !store.health.is_up() {
            match self.discover(store).await {
                Ok(()) => super::service::probe(store).await,
                Err(e) => super::service::report_probe(
                    store,
                    Err(format!("no primary from the sentinels: {e}")),
                ),
            }
            return;
        }
        match role(store).await {
            Ok(Heartbeat::Primary) => store.health.success(),
            Ok(Heartbeat::NotPrimary(role)) => {
                store.failed("heartbeat", &format!("the primary answers as a {role}"));
                let _ = self.discover(store).await;
            }
            Err(e) => {
                store.failed("heartbeat", &e);
                let _ = self.discover(store).await;
            }
        }
    }
}

/// What the heartbeat's `ROLE` said.
#[derive(Debug, PartialEq, Eq)]
pub enum Heartbeat {
    Primary,
    /// `replica` or `sentinel`: not where sessions may be written.
    NotPrimary(&'static str),
}

/// The heartbeat's reading of a `ROLE` reply.
pub fn heartbeat_of(role: &Role) -> Heartbeat {
    match role {
        Role::Primary { .. } => Heartbeat::Primary,
        Role::Replica { .. } => Heartbeat::NotPrimary("replica"),
        Role::Sentinel { .. } => Heartbeat::NotPrimary("sentinel"),
        _ => Heartbeat::NotPrimary("node of another role"),
    }
}

/// `ROLE` on the current connection within the lookup timeout.
async fn role(store: &RedisStore) -> Result<Heartbeat, String> {
    let Some(mut connection): Option<Connection> = store.connection.get() else {
        return Err("not connected".to_string());
    };
    let timeout: Duration = store.config.lookup_timeout;
    match tokio::time::timeout(
        timeout,
        redis::cmd("ROLE").query_async::<Role>(&mut connection),
    )
    .await
    {
        Ok(Ok(role)) => Ok(heartbeat_of(&role)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_primary_passes_the_heartbeat() {
        let primary = Role::Primary {
            replication_offset: 1,
            replicas: vec![],
        };
        assert_eq!(heartbeat_of(&primary), Heartbeat::Primary);
        let replica = Role::Replica {
            primary_ip: "127.0.0.1".into(),
            primary_port: 6379,
            replication_state: "connected".into(),
            data_received: 1,
        };
        assert_eq!(heartbeat_of(&replica), Heartbeat::NotPrimary("replica"));
        let sentinel = Role::Sentinel {
            primary_names: vec!["mymaster".into()],
        };
        assert_eq!(heartbeat_of(&sentinel), Heartbeat::NotPrimary("sentinel"));
    }
}
