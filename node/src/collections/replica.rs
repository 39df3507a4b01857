//! The collections subsystem, and the group under each collection.

use std::sync::Arc;

use crate::discovery::{CollectionRole, Discovery, GroupRole, Service};
use crate::groups::{
    Access, Consistency, Group, GroupConfig, GroupError, Groups, TableMachine, Tabled, When,
};
use crate::id::StoreId;

use super::error::CollectionError;

/// The node's collections: open one with [`Map::writer`](super::Map::writer),
/// [`Map::reader`](super::Map::reader) and the like.
pub struct Collections {
    pub(crate) groups: Arc<Groups>,
    pub(crate) discovery: Arc<Discovery>,
    pub(crate) kv: super::config::Declared,
}

impl Collections {
    /// The subsystem on top of `groups`.
    pub fn new(groups: Arc<Groups>, discovery: Arc<Discovery>) -> Arc<Collections> {
        Arc::new(Collections {
            groups,
            discovery,
            kv: super::config::Declared::default(),
        })
    }

    /// Serve the declared collections: each map opens as a writer, retrying
    /// (every few seconds, logged) while the node's ticket does not grant
    /// `write` on it, until `stop` fires.
    pub fn serve_declared(
        self: &Arc<Self>,
        decls: &[super::config::CollectionDecl],
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        for d in decls {
            self.kv.declare(&d.name);
            let (me, name, voters) = (self.clone(), d.name.clone(), d.voters);
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut wait = std::time::Duration::from_millis(500);
                loop {
                    let mut config = Collections::group_config(&name, CollectionRole::Writer);
                    config.voters = voters;
                    let opened =
                        super::config::KvMap::open(&me, &name, CollectionRole::Writer, config)
                            .await;
                    match opened {
                        Ok(map) => {
                            tracing::info!(collection = %name, "serving declared collection");
                            me.kv.opened(&name, map);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(collection = %name, error = %e, retry_in = ?wait, "declared collection not open yet");
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    wait = (wait * 2).min(std::time::Duration::from_secs(10));
                }
            });
        }
    }

    /// The declared key-value maps.
    pub fn declared(&self) -> &super::config::Declared {
        &self.kv
    }

    /// The name of the group that replicates collection `name`.
    pub fn group_name(name: &str) -> String {
        format!("collection/{name}")
    }

    /// The group settings a collection runs with by default: `voters`
    /// writers vote, readers replicate as learners.
    pub fn group_config(name: &str, role: CollectionRole) -> GroupConfig {
        GroupConfig {
            role: match role {
                CollectionRole::Writer => GroupRole::Voter,
                CollectionRole::Reader => GroupRole::Learner,
            },
            access: Access::collection(name),
            ..GroupConfig::default()
        }
    }

    pub(crate) async fn open<T: TableMachine>(
        &self,
        name: &str,
        role: CollectionRole,
        config: GroupConfig,
    ) -> Result<Replica<T>, CollectionError> {
        if name.is_empty() || name.len() > 128 {
            return Err(CollectionError::Invalid(
                "a collection name is 1 to 128 bytes".into(),
            ));
        }
        let group = self
            .groups
            .join::<Tabled<T>>(&Self::group_name(name), config)
            .await?;
        let service = Service::Collection {
            id: StoreId::from_name(name),
            role,
        };
        if let Err(e) = self.discovery.advertise(service) {
            tracing::warn!(collection = name, error = %e, "could not advertise the collection");
        }
        Ok(Replica {
            group,
            name: name.to_string(),
            role,
        })
    }
}

/// One collection's group on this node.
pub(crate) struct Replica<T: TableMachine> {
    pub(crate) group: Group<Tabled<T>>,
    pub(crate) name: String,
    pub(crate) role: CollectionRole,
}

impl<T: TableMachine> Clone for Replica<T> {
    fn clone(&self) -> Self {
        Replica {
            group: self.group.clone(),
            name: self.name.clone(),
            role: self.role,
        }
    }
}

impl<T: TableMachine> Replica<T> {
    /// Apply a write; its version and output.
    pub(crate) async fn write(&self, cmd: T::Command) -> Result<(u64, T::Output), CollectionError> {
        if self.role == CollectionRole::Reader {
            return Err(CollectionError::Invalid(format!(
                "collection {} is open for reading here",
                self.name
            )));
        }
        Ok(self.group.execute_indexed(cmd).await?)
    }

    /// Run a read.
    pub(crate) async fn read(
        &self,
        q: &T::Query,
        consistency: Consistency,
    ) -> Result<T::QueryOutput, CollectionError> {
        match self.group.query(q, consistency).await {
            Ok(v) => Ok(v),
            Err(GroupError::Storage(e)) => Err(CollectionError::Encoding(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// A local read.
    pub(crate) async fn local(&self, q: &T::Query) -> Result<T::QueryOutput, CollectionError> {
        self.read(q, Consistency::Local).await
    }

    pub(crate) fn when(&self) -> When {
        self.group.when()
    }

    pub(crate) fn version(&self) -> u64 {
        self.group.applied()
    }

    /// Wait until a local read `f` gives `Some`, re-reading after every
    /// applied entry.
    pub(crate) async fn await_local<R>(
        &self,
        q: &T::Query,
        mut f: impl FnMut(T::QueryOutput) -> Option<R>,
    ) -> Result<R, CollectionError> {
        let mut applied = self.group.watch_applied();
        loop {
            if let Some(r) = f(self.local(q).await?) {
                return Ok(r);
            }
            if applied.changed().await.is_err() {
                return Err(GroupError::Stopped.into());
            }
        }
    }
}

/// Shared methods of every collection handle.
macro_rules! collection_common {
    () => {
        /// The collection's name.
        pub fn name(&self) -> &str {
            &self.replica.name
        }

        /// Whether this node writes or only reads the collection.
        pub fn role(&self) -> $crate::discovery::CollectionRole {
            self.replica.role
        }

        /// The version this replica has applied (the log index of its last
        /// applied write).
        pub fn version(&self) -> u64 {
            self.replica.version()
        }

        /// Waits on the replica: [`When::reaches`](crate::groups::When::reaches)
        /// a version, [`When::online`](crate::groups::When::online).
        pub fn when(&self) -> $crate::groups::When {
            self.replica.when()
        }

        /// The underlying group's status (leader, members, progress).
        pub fn status(&self) -> $crate::groups::GroupStatus {
            self.replica.group.status()
        }
    };
}
pub(crate) use collection_common;
