//! The background side of a Redis session store, run by Pingora as a background service (so
//! `-t` never connects): it creates the connection (the `redis` crate's tokio
//! `ConnectionManager`, which reconnects by itself), pings Redis every second (a heartbeat while
//! up, a probe that can bring it back while down), and runs the one writer task that drains the bounded write queue in pipelined batches.

use super::{Op, RedisStore, State};
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;

/// How often a store that is not up is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The most writes sent in one pipeline.
const MAX_BATCH: usize = 256;

/// Keeps one store connected and writes its queue.
pub struct StoreService(pub Arc<RedisStore>);

#[async_trait]
impl BackgroundService for StoreService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let store = &self.0;
        let manager = match connection_manager(store) {
            Ok(m) => m,
            Err(e) => {
                log::error!(
                    "session store redis {} ({}): cannot be set up: {e}; using the local table alone",
                    store.config.address(),
                    store.label
                );
                return;
            }
        };
        // Only this service sets it, once.
        let _ = store.connection.set(manager);
        let receiver = store
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let writer = receiver.map(|r| tokio::spawn(write_loop(store.clone(), r)));
        loop {
            if store.health.is_up() {
                heartbeat(store).await;
            } else {
                probe(store).await;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
        }
        if let Some(writer) = writer {
            writer.abort();
        }
    }
}

fn connection_manager(store: &RedisStore) -> redis::RedisResult<ConnectionManager> {
    let c = &store.config;
    // RESP3 (Redis 6+; `GETEX` needs 6.2 anyway): the manager hears of a dropped connection
    // at once and reconnects before the next request needs it.
    let mut settings = redis::RedisConnectionInfo::default()
        .set_db(i64::from(c.database))
        .set_protocol(redis::ProtocolVersion::RESP3);
    if let Some(user) = &c.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &c.password {
        settings = settings.set_password(password);
    }
    let addr = match &c.tls_ca_pem {
        None => redis::ConnectionAddr::Tcp(c.host.clone(), c.port),
        Some(_) => redis::ConnectionAddr::TcpTls {
            host: c.host.clone(),
            port: c.port,
            insecure: false,
            tls_params: None,
        },
    };
    let info = redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(settings);
    if c.tls_ca_pem.is_some() {
        // rustls needs the process's crypto provider (Pingora's ring) before a config.
        pingora_rustls::install_default_crypto_provider();
    }
    let client = match &c.tls_ca_pem {
        Some(ca) if !ca.is_empty() => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        )?,
        _ => redis::Client::open(info)?,
    };
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(c.connect_timeout))
        .set_response_timeout(Some(c.connect_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// While up: one PING within the lookup timeout, counted like a request, so that a Redis that
/// went away is noticed (and shown) even when no request needs it.
async fn heartbeat(store: &RedisStore) {
    let Some(connection) = store.connection.get() else {
        return;
    };
    let mut connection = connection.clone();
    let answer = tokio::time::timeout(
        store.config.lookup_timeout,
        redis::cmd("PING").query_async::<String>(&mut connection),
    )
    .await;
    match answer {
        Ok(Ok(_)) => store.health.success(),
        Ok(Err(e)) => store.failed("heartbeat", &e.to_string()),
        Err(_) => store.failed("heartbeat", "timed out"),
    }
}

/// PING once to (re)connect, then once more within the lookup timeout: a Redis that answers
/// but slower than requests may wait is not up.
async fn probe(store: &RedisStore) {
    let Some(connection) = store.connection.get() else {
        return;
    };
    let connection = connection.clone();
    let ping = |timeout: Duration, mut connection: ConnectionManager| async move {
        match tokio::time::timeout(
            timeout,
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await
        {
            Ok(Ok(_)) => Ok(connection),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    };
    let result = match ping(store.config.connect_timeout, connection).await {
        Ok(c) => ping(store.config.lookup_timeout, c).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let address = store.config.address();
    match result {
        Ok(()) => match store.health.probe_succeeded() {
            Some(State::Starting) => {
                log::info!("session store redis {address} ({}): connected", store.label)
            }
            Some(_) => log::warn!(
                "session store redis {address} ({}): up again; sessions are shared again",
                store.label
            ),
            None => {}
        },
        Err(e) => {
            if store.health.probe_failed() {
                log::warn!(
                    "session store redis {address} ({}): down at start ({e}); using the local \
                     table alone until it answers",
                    store.label
                );
            }
        }
    }
}

/// Drain the queue in batches, one pipeline per batch.
async fn write_loop(store: Arc<RedisStore>, mut receiver: tokio::sync::mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match store.connection.get().filter(|_| store.health.is_up()) {
            Some(connection) => write_batch(&store, &mut connection.clone(), &batch).await,
            None => store.count_writes(0, 0, batch.len()),
        }
        batch.clear();
    }
}

/// Send one batch; where Redis knows better than the local table (another instance recorded
/// the session elsewhere), the local table follows Redis; entries Redis lost (a restart
/// without persistence) are written again.
async fn write_batch(store: &RedisStore, connection: &mut ConnectionManager, batch: &[Op]) {
    let ttl = store.ttl_seconds();
    let mut pipe = redis::pipe();
    for op in batch {
        match *op {
            Op::Set { key, backend } => {
                if let Some(value) = store.encode(backend) {
                    pipe.cmd("SET")
                        .arg(store.redis_key(key))
                        .arg(value)
                        .arg("EX")
                        .arg(ttl)
                        .ignore();
                }
            }
            Op::SetIfAbsent { key, backend } => {
                if let Some(value) = store.encode(backend) {
                    let k = store.redis_key(key);
                    pipe.cmd("SET")
                        .arg(&k)
                        .arg(value)
                        .arg("EX")
                        .arg(ttl)
                        .arg("NX")
                        .ignore();
                    pipe.cmd("GET").arg(k);
                }
            }
            Op::Refresh { key, .. } => {
                pipe.cmd("GETEX")
                    .arg(store.redis_key(key))
                    .arg("EX")
                    .arg(ttl);
            }
            Op::Delete { key } => {
                pipe.cmd("DEL").arg(store.redis_key(key)).ignore();
            }
        }
    }
    let Some(values) = send(store, connection, &pipe, batch.len()).await else {
        return;
    };
    // One value per GET / GETEX, in order.
    let mut values = values.into_iter();
    let mut restore = redis::pipe();
    let mut restored = 0;
    for op in batch {
        let (key, backend) = match *op {
            Op::SetIfAbsent { key, backend } if store.encode(backend).is_some() => (key, backend),
            Op::Refresh { key, backend } => (key, backend),
            _ => continue,
        };
        let stored = values.next().flatten();
        match stored.as_deref().map(|v| store.decode(v)) {
            Some(Some(theirs)) if theirs != backend => {
                store.table.insert(key, theirs);
            }
            None if matches!(op, Op::Refresh { .. }) => {
                if let Some(value) = store.encode(backend) {
                    restore
                        .cmd("SET")
                        .arg(store.redis_key(key))
                        .arg(value)
                        .arg("EX")
                        .arg(ttl)
                        .arg("NX")
                        .ignore();
                    restored += 1;
                }
            }
            _ => {}
        }
    }
    if restored > 0 {
        send(store, connection, &restore, restored).await;
    }
}

/// Send a pipeline within the connect timeout; count it; `None` on failure.
async fn send(
    store: &RedisStore,
    connection: &mut ConnectionManager,
    pipe: &redis::Pipeline,
    writes: usize,
) -> Option<Vec<Option<String>>> {
    let deadline = tokio::time::Instant::now() + store.config.connect_timeout;
    let mut retried = false;
    let result = loop {
        let result = tokio::time::timeout_at(
            deadline,
            pipe.query_async::<Vec<Option<String>>>(connection),
        )
        .await;
        match result {
            // The connection broke (Redis restarted): once more on the reconnected one.
            Ok(Err(e)) if !retried && super::is_broken_connection(&e) => retried = true,
            result => break result,
        }
    };
    match result {
        Ok(Ok(values)) => {
            store.health.success();
            store.count_writes(writes, 0, 0);
            Some(values)
        }
        Ok(Err(e)) => {
            store.count_writes(0, writes, 0);
            store.failed("write", &e.to_string());
            None
        }
        Err(_) => {
            store.count_writes(0, writes, 0);
            store.failed("write", "timed out");
            None
        }
    }
}
