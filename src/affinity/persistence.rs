//! A persistence class at run time: the affinity mechanisms one route (or a pool's own
//! `affinity` section) applies to one pool, with their tables and failure policy.
//!
//! Built once per (pool, class) pair at start-up, so two routes that use the same class on the
//! same pool share its tables (Stingray: persistence classes share their cache space).

use super::custom::{BackendNamer, ExtensionLookup};
use super::decision::Mechanisms;
use super::hash::HashAffinity;
use super::learned::{ClientIpTable, LearnedSessions};
use super::sessions::SessionTable;
use super::store::RedisStore;
use super::CookieAffinity;
use crate::config::{AffinityConfig, FailurePolicy};
use crate::pool::Pool;
use std::sync::Arc;

/// One persistence class applied to one pool.
pub struct Affinity {
    /// The class name; `None` for the pool's own `affinity` section.
    pub class: Option<String>,
    pub cookie: Option<CookieAffinity>,
    pub hash: Option<HashAffinity>,
    pub learned: Option<LearnedSessions>,
    pub ip_table: Option<ClientIpTable>,
    pub named_node: Option<Arc<dyn BackendNamer>>,
    pub failure: FailurePolicy,
}

impl Affinity {
    /// Build `config` (the pool's own section when `class` is `None`) for `pool`'s backends.
    pub fn new(
        config: &AffinityConfig,
        class: Option<String>,
        pool: &Pool,
        extensions: &dyn ExtensionLookup,
    ) -> Self {
        let slots = &pool.slots();
        let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
        let pool = pool.name.as_str();
        Affinity {
            cookie: config
                .cookie
                .as_ref()
                .map(|c| CookieAffinity::new(c, pool, &names)),
            hash: config
                .hash
                .as_ref()
                .map(|h| HashAffinity::new(h, slots, extensions)),
            learned: config.learn.as_ref().map(|l| {
                let table = table_name(class.as_deref(), "learn");
                LearnedSessions::new(l, pool, &table, &names)
            }),
            ip_table: config.client_ip_table.as_ref().map(ClientIpTable::new),
            named_node: config
                .named_node
                .as_deref()
                .and_then(|n| extensions.backend_namer(n)),
            failure: config.failure.clone(),
            class,
        }
    }

    /// The pool's backends changed at run time (added, removed, added back): every part that
    /// depends on them is built again — cookie values, the hash ring, the shared store's names.
    /// Session tables keep their entries (indexes never change meaning).
    pub fn backends_changed(&self, pool: &Pool) {
        let slots = pool.slots();
        let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
        if let Some(cookie) = &self.cookie {
            cookie.backends_changed(&names);
        }
        if let Some(hash) = &self.hash {
            hash.backends_changed(&slots);
        }
        if let Some(store) = self.learned.as_ref().and_then(|l| l.store.as_ref()) {
            store.backends_changed(names.iter().map(|n| n.to_string()).collect());
        }
    }

    pub fn mechanisms(&self) -> Mechanisms {
        Mechanisms {
            cookie: self.cookie.is_some(),
            tables: self.learned.is_some() || self.ip_table.is_some(),
            keeps_sessions: self.failure != FailurePolicy::Rebalance,
        }
    }

    /// The class's session tables, named as the admin API and metrics show them: `learn` and
    /// `client_ip`, prefixed by `<class>.` for a named class.
    pub fn tables(&self) -> Vec<(String, &SessionTable)> {
        let class = self.class.as_deref();
        let mut out = Vec::new();
        if let Some(learned) = &self.learned {
            out.push((table_name(class, "learn"), &*learned.table));
        }
        if let Some(ip) = &self.ip_table {
            out.push((table_name(class, "client_ip"), &ip.table));
        }
        out
    }

    /// The class's shared session stores, by table name.
    pub fn stores(&self) -> Vec<(String, &Arc<RedisStore>)> {
        let learned = self.learned.as_ref();
        learned
            .and_then(|l| l.store.as_ref())
            .map(|s| (table_name(self.class.as_deref(), "learn"), s))
            .into_iter()
            .collect()
    }
}

/// `learn` / `client_ip`, prefixed by `<class>.` for a named class.
fn table_name(class: Option<&str>, table: &str) -> String {
    match class {
        Some(c) => format!("{c}.{table}"),
        None => table.to_string(),
    }
}
