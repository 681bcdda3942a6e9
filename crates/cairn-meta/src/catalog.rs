//! [`Topics`]: the topics of a metadata store and the rules every change to them follows.
//!
//! Both stores hold one: [`crate::LocalMetadata`] (one node, one file) and the consistent
//! core's [`crate::CoreState`] (replicated). Each change is checked here, in the same order and
//! with the same errors whichever store makes it, so a topic the single node refuses is refused
//! by the core too. What differs, the replication factor and where replicas go, stays with each
//! store.
//!
//! Everything here is pure: no clock, no randomness (ids come from the caller), no IO.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_types::limits::{CLUSTER_PARTITIONS_MAX, TOPIC_PARTITIONS_MAX, TOPICS_MAX};

use crate::{ConfigChange, MetaError, TopicConfigs, TopicId, TopicMeta, TopicName};

/// The live topics and the deleted ones whose data is still being removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Topics {
    /// Every live topic, by name.
    pub(crate) live: BTreeMap<TopicName, Arc<TopicMeta>>,
    /// Deleted topics whose data is still being removed, by id (see
    /// [`crate::MetadataStore::pending_deletions`]). At most [`TOPICS_MAX`].
    pub(crate) deleting: BTreeMap<TopicId, Arc<TopicMeta>>,
}

impl Topics {
    /// Partitions of all live topics together.
    pub(crate) fn partition_count(&self) -> u64 {
        self.live.values().map(|topic| u64::from(topic.partitions)).sum()
    }

    /// Checks that `added` more partitions fit under [`CLUSTER_PARTITIONS_MAX`]; `count` is the
    /// count the request asked for, quoted in the error.
    fn check_cluster_partitions(&self, count: u32, added: u32) -> Result<(), MetaError> {
        if self.partition_count() + u64::from(added) > CLUSTER_PARTITIONS_MAX {
            return Err(MetaError::InvalidPartitions {
                count: i64::from(count),
                reason: "the cluster would exceed CLUSTER_PARTITIONS_MAX partitions",
            });
        }
        Ok(())
    }

    /// Checks a new topic's name and partition count, in Kafka's order: existence, name
    /// collision, topic count, partitions. The replication factor and the configs come next,
    /// checked by the caller.
    ///
    /// # Errors
    /// [`MetaError::TopicExists`], [`MetaError::InvalidTopic`], [`MetaError::TooManyTopics`] or
    /// [`MetaError::InvalidPartitions`].
    pub(crate) fn check_create(&self, name: &TopicName, partitions: u32) -> Result<(), MetaError> {
        if self.live.contains_key(name) {
            return Err(MetaError::TopicExists(name.to_string()));
        }
        if let Some(existing) = self.live.keys().find(|other| other.collides_with(name)) {
            return Err(MetaError::InvalidTopic(format!(
                "topic {name} collides with existing topic {existing}: '.' and '_' are \
                 interchangeable in metric names"
            )));
        }
        if self.live.len() >= TOPICS_MAX {
            return Err(MetaError::TooManyTopics { limit: TOPICS_MAX });
        }
        check_partitions(partitions)?;
        self.check_cluster_partitions(partitions, partitions)
    }

    /// Whether `id` is free for a new topic: no topic has it, live or being deleted (a deleted
    /// topic's data may still be on disk under its id), and its hex form is no topic's name
    /// (partition directories are named by id, and before that were named by topic name).
    pub(crate) fn id_is_free(&self, id: TopicId) -> bool {
        !self.deleting.contains_key(&id)
            && !self.live.values().any(|topic| topic.id == id)
            && !self.live.contains_key(id.to_hex().as_str())
    }

    /// The topic `name` as it would be with `count` partitions, if that is a valid change.
    ///
    /// # Errors
    /// [`MetaError::UnknownTopic`] or [`MetaError::InvalidPartitions`].
    pub(crate) fn grown(&self, name: &str, count: u32) -> Result<Arc<TopicMeta>, MetaError> {
        let topic = self.live.get(name).ok_or_else(|| unknown(name))?;
        let invalid = |reason| MetaError::InvalidPartitions { count: i64::from(count), reason };
        if count == topic.partitions {
            return Err(invalid("the topic already has that many partitions"));
        }
        if count < topic.partitions {
            return Err(invalid("partitions can only be added, never removed"));
        }
        check_partitions(count)?;
        self.check_cluster_partitions(count, count - topic.partitions)?;
        Ok(Arc::new(TopicMeta { partitions: count, ..TopicMeta::clone(topic) }))
    }

    /// The topic `name` with `changes` applied, and whether anything changed.
    ///
    /// # Errors
    /// [`MetaError::UnknownTopic`] or [`MetaError::Config`].
    pub(crate) fn altered(
        &self,
        name: &str,
        changes: &[ConfigChange],
    ) -> Result<(Arc<TopicMeta>, bool), MetaError> {
        let topic = self.live.get(name).ok_or_else(|| unknown(name))?;
        let configs = topic.configs.apply(changes)?;
        if configs == topic.configs {
            return Ok((Arc::clone(topic), false));
        }
        Ok((Arc::new(TopicMeta { configs, ..TopicMeta::clone(topic) }), true))
    }

    /// The live topic `name`, if it may be deleted now.
    ///
    /// # Errors
    /// [`MetaError::UnknownTopic`], or [`MetaError::Storage`] (retriable) while
    /// [`TOPICS_MAX`] deleted topics still have data being removed.
    pub(crate) fn check_delete(&self, name: &str) -> Result<Arc<TopicMeta>, MetaError> {
        let topic = self.live.get(name).ok_or_else(|| unknown(name))?;
        if self.deleting.len() >= TOPICS_MAX {
            return Err(MetaError::Storage(format!(
                "{} deleted topics still have data being removed; retry once they are gone",
                self.deleting.len()
            )));
        }
        Ok(Arc::clone(topic))
    }

    /// Moves `topic` (checked by [`Topics::check_delete`]) from the live topics to the
    /// pending deletions.
    pub(crate) fn delete(&mut self, topic: &Arc<TopicMeta>) {
        self.live.remove(&topic.name);
        self.deleting.insert(topic.id, Arc::clone(topic));
    }

    /// Inserts or replaces the live topic `topic`.
    pub(crate) fn put(&mut self, topic: &Arc<TopicMeta>) {
        self.live.insert(topic.name.clone(), Arc::clone(topic));
    }

    /// Topics read back from storage or imported, checked as strictly as requests are: counts
    /// within [`TOPICS_MAX`], ids unique across both lists, no two live names colliding, the
    /// partitions within [`CLUSTER_PARTITIONS_MAX`]. Each topic itself was validated when it was
    /// made (see [`topic_from_parts`]).
    ///
    /// # Errors
    /// The first rule broken, as text for the caller's error.
    pub(crate) fn from_lists(
        live: Vec<TopicMeta>,
        deleting: Vec<TopicMeta>,
    ) -> Result<Topics, String> {
        if live.len() > TOPICS_MAX {
            return Err(format!("{} topics exceed TOPICS_MAX", live.len()));
        }
        if deleting.len() > TOPICS_MAX {
            return Err(format!("{} pending deletions exceed TOPICS_MAX", deleting.len()));
        }
        let mut topics = Topics::default();
        let mut ids = BTreeSet::new();
        let mut collision_keys = BTreeSet::new();
        for topic in live {
            if !ids.insert(topic.id) {
                return Err(format!("topic id {} appears twice", topic.id));
            }
            if !collision_keys.insert(topic.name.collision_key()) {
                return Err(format!("topic {} appears twice or collides with another", topic.name));
            }
            topics.live.insert(topic.name.clone(), Arc::new(topic));
        }
        for topic in deleting {
            if !ids.insert(topic.id) {
                return Err(format!("topic id {} appears twice", topic.id));
            }
            topics.deleting.insert(topic.id, Arc::new(topic));
        }
        if topics.partition_count() > CLUSTER_PARTITIONS_MAX {
            return Err("partitions exceed CLUSTER_PARTITIONS_MAX".into());
        }
        Ok(topics)
    }
}

/// A topic from stored or imported parts, validated as a request is: the name by
/// [`TopicName::new`] (the caller), the partitions, a replication factor above 0, the configs
/// by [`TopicConfigs::from_overrides`].
///
/// # Errors
/// The first rule broken, as text naming the topic.
pub(crate) fn topic_from_parts(
    id: TopicId,
    name: TopicName,
    partitions: u32,
    replication_factor: u16,
    configs: &[(String, String)],
) -> Result<TopicMeta, String> {
    check_partitions(partitions).map_err(|error| format!("topic {name}: {error}"))?;
    if replication_factor == 0 {
        return Err(format!("topic {name}: replication factor 0"));
    }
    let configs =
        TopicConfigs::from_overrides(configs).map_err(|error| format!("topic {name}: {error}"))?;
    Ok(TopicMeta { id, name, partitions, replication_factor, configs })
}

/// [`MetaError::UnknownTopic`] for `name`.
pub(crate) fn unknown(name: &str) -> MetaError {
    MetaError::UnknownTopic(name.to_owned())
}

/// Checks a topic's partition count against `1..=TOPIC_PARTITIONS_MAX`.
///
/// # Errors
/// [`MetaError::InvalidPartitions`].
pub(crate) fn check_partitions(count: u32) -> Result<(), MetaError> {
    let reason = if count == 0 {
        "a topic needs at least one partition"
    } else if count > TOPIC_PARTITIONS_MAX {
        "more than TOPIC_PARTITIONS_MAX partitions"
    } else {
        return Ok(());
    };
    Err(MetaError::InvalidPartitions { count: i64::from(count), reason })
}
