//! The affinities at run time, beside the pools (not inside them): for each pool, its own
//! `affinity` section and every named class a route applies to it, each with its tables and
//! shared stores. Built once at start-up; the proxy's routes, the admin API and the metrics ask
//! it. Two routes that apply the same class to the same pool share one [`Affinity`] (Stingray:
//! persistence classes share their cache space).

use super::custom::ExtensionLookup;
use super::persistence::Affinity;
use super::sessions::{SessionTable, TableStats};
use super::store::{RedisStore, StoreStats};
use crate::config::{ClassConfig, Config, DefaultRoute, RouteClass};
use crate::pool::Pool;
use std::sync::Arc;

/// Every pool's affinities, by pool index (the order of `sticky.pools`).
#[derive(Default)]
pub struct Registry {
    pools: Vec<PoolAffinities>,
}

/// One pool's affinities: its own section, and the named classes routes apply to it.
#[derive(Default)]
pub struct PoolAffinities {
    /// The pool's own `affinity` section, if any.
    own: Option<Arc<Affinity>>,
    /// The named classes routes apply to this pool, by class index.
    classes: Vec<(usize, Arc<Affinity>)>,
}

impl PoolAffinities {
    /// The pool's backends changed at run time: every affinity applied to it learns of it
    /// ([`Affinity::backends_changed`]).
    pub fn backends_changed(&self, pool: &Pool) {
        for affinity in self.own.iter().chain(self.classes.iter().map(|(_, a)| a)) {
            affinity.backends_changed(pool);
        }
    }
}

impl Registry {
    /// The affinities of every pool: its own section, and each class a route (or the default
    /// route) applies to it. `pools` are the run-time pools of `config.pools`, in order;
    /// `extensions` must be the ones the configuration was checked against.
    pub fn build(
        config: &Config,
        pools: &[Arc<Pool>],
        extensions: &dyn ExtensionLookup,
    ) -> Registry {
        let pools = config
            .pools
            .iter()
            .zip(pools)
            .enumerate()
            .map(|(index, (pool_config, pool))| {
                let own = pool_config
                    .affinity
                    .as_ref()
                    .map(|a| Arc::new(Affinity::new(a, None, pool, extensions)));
                let classes = classes_used_on(config, index)
                    .into_iter()
                    .filter_map(|(class_index, class)| {
                        let a = class.affinity.as_ref()?;
                        let affinity = Affinity::new(a, Some(class.name.clone()), pool, extensions);
                        Some((class_index, Arc::new(affinity)))
                    })
                    .collect();
                PoolAffinities { own, classes }
            })
            .collect();
        Registry { pools }
    }

    /// The affinities of pool `index` (none for an index past the pools).
    pub fn pool(&self, index: usize) -> &PoolAffinities {
        static NONE: PoolAffinities = PoolAffinities {
            own: None,
            classes: Vec::new(),
        };
        self.pools.get(index).unwrap_or(&NONE)
    }

    /// Every pool's affinities, in pool order.
    pub fn pools(&self) -> &[PoolAffinities] {
        &self.pools
    }
}

/// The named classes that routes (or the default route) apply to pool `index`, each once, in
/// class order.
fn classes_used_on(config: &Config, index: usize) -> Vec<(usize, &ClassConfig)> {
    let mut used: Vec<usize> = config
        .routes
        .iter()
        .filter(|r| r.pool == index)
        .map(|r| r.class)
        .chain(match config.default_route {
            DefaultRoute::Pool { pool, class } if pool == index => Some(class),
            _ => None,
        })
        .filter_map(|c| match c {
            RouteClass::Class(c) => Some(c),
            _ => None,
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    used.into_iter()
        .filter_map(|c| Some((c, config.classes.get(c)?)))
        .collect()
}

impl PoolAffinities {
    /// The affinity a route's class applies to this pool (`None`: no affinity).
    pub fn affinity_for(&self, class: RouteClass) -> Option<Arc<Affinity>> {
        match class {
            RouteClass::PoolDefault => self.own.clone(),
            RouteClass::None => None,
            RouteClass::Class(index) => self
                .classes
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, a)| a.clone()),
        }
    }

    /// Every affinity on this pool: its own, then the classes'.
    pub fn affinities(&self) -> impl Iterator<Item = &Arc<Affinity>> {
        self.own.iter().chain(self.classes.iter().map(|(_, a)| a))
    }

    /// Statistics of every session table on this pool, by table name (`learn`, `client_ip`,
    /// `<class>.learn`, `<class>.client_ip`).
    pub fn table_stats(&self) -> Vec<(String, TableStats)> {
        self.affinities()
            .flat_map(|a| a.tables())
            .map(|(name, table)| (name, table.stats()))
            .collect()
    }

    /// Every shared session store on this pool, by table name.
    pub fn stores(&self) -> Vec<(String, Arc<RedisStore>)> {
        self.affinities()
            .flat_map(|a| a.stores())
            .map(|(name, store)| (name, store.clone()))
            .collect()
    }

    /// Statistics of every shared session store on this pool, by table name.
    pub fn store_stats(&self) -> Vec<(String, StoreStats)> {
        self.stores()
            .into_iter()
            .map(|(name, store)| (name, store.stats()))
            .collect()
    }

    /// The session table called `name`, with the affinity it belongs to.
    pub fn table(&self, name: &str) -> Option<(&Affinity, &SessionTable)> {
        self.affinities().find_map(|a| {
            a.tables()
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| (a.as_ref(), t))
        })
    }
}
