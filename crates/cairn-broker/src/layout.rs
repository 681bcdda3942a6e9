//! The partition directories under `<data-dir>/topics/`, and what a start makes of each entry it
//! finds there.
//!
//! A partition lives in `topics/<topic-id-hex>-<partition>`: 32 hex digits of the topic's id, so
//! the name's length never depends on the topic name's (a 249-character topic name fits) and a
//! topic re-created under an old name, which gets a new id, can never open the old data. Before
//! ids, directories were `topics/<topic-name>-<partition>` and deletion renamed them to
//! `<topic-name>-<partition>.deleted`; a start still recognises both (see [`Entry`]).

use std::collections::HashMap;

use cairn_meta::{TopicId, TopicMeta};

/// Suffix the name-based layout gave a partition directory being deleted.
pub(crate) const LEGACY_DELETED_SUFFIX: &str = ".deleted";

/// The directory name of partition `index` of the topic with id `id`.
pub(crate) fn partition_dir_name(id: TopicId, index: u32) -> String {
    format!("{}-{index}", id.to_hex())
}

/// What an entry of `topics/` is, judged against the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A partition of a live topic, in the id layout.
    Live,
    /// A partition of a live topic in the name layout: rename it to this id-layout name.
    Legacy(String),
    /// Data the metadata says is doomed: a partition of a topic pending deletion, a partition
    /// beyond its topic's count (a CreatePartitions that failed or crashed before it was
    /// committed), or a name-layout directory renamed for deletion. Removed.
    Doomed,
    /// Nothing cairn knows it made. Never removed: moved aside.
    Unrecognised,
}

/// The metadata a start judges `topics/` entries by.
pub(crate) struct Known {
    /// Live topics' partition counts by id.
    live: HashMap<TopicId, u32>,
    /// Live topics' ids and partition counts by name (the name layout).
    by_name: HashMap<String, (TopicId, u32)>,
    /// Topics pending deletion, by id.
    deleting: HashMap<TopicId, u32>,
}

impl Known {
    /// What `topics` (live) and `deleting` (pending deletion) say.
    pub(crate) fn new(
        topics: &[std::sync::Arc<TopicMeta>],
        deleting: &[std::sync::Arc<TopicMeta>],
    ) -> Known {
        Known {
            live: topics.iter().map(|topic| (topic.id, topic.partitions)).collect(),
            by_name: topics
                .iter()
                .map(|topic| (topic.name.to_string(), (topic.id, topic.partitions)))
                .collect(),
            deleting: deleting.iter().map(|topic| (topic.id, topic.partitions)).collect(),
        }
    }

    /// Classifies the entry named `name` (see [`Entry`]).
    pub(crate) fn classify(&self, name: &str) -> Entry {
        let Some((stem, index)) = split_partition(name) else {
            return self.classify_legacy_deleted(name);
        };
        if let Some(id) = TopicId::from_hex(stem) {
            if let Some(&partitions) = self.live.get(&id) {
                return if index < partitions { Entry::Live } else { Entry::Doomed };
            }
            if self.deleting.contains_key(&id) {
                return Entry::Doomed;
            }
        }
        match self.by_name.get(stem) {
            Some(&(id, partitions)) if index < partitions => {
                Entry::Legacy(partition_dir_name(id, index))
            }
            _ => Entry::Unrecognised,
        }
    }

    /// `<name>-<partition>.deleted` of the name layout is doomed; anything else is unknown.
    fn classify_legacy_deleted(&self, name: &str) -> Entry {
        match name.strip_suffix(LEGACY_DELETED_SUFFIX).and_then(split_partition) {
            Some((stem, _)) if !stem.is_empty() => Entry::Doomed,
            _ => Entry::Unrecognised,
        }
    }
}

/// `<stem>-<index>` with a decimal partition index.
fn split_partition(name: &str) -> Option<(&str, u32)> {
    let (stem, index) = name.rsplit_once('-')?;
    let canonical = !index.is_empty() && (index == "0" || !index.starts_with('0'));
    let index = index.parse::<u32>().ok().filter(|_| canonical)?;
    Some((stem, index))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_meta::{TopicConfigs, TopicName};

    use super::*;

    fn topic(name: &str, partitions: u32) -> Arc<TopicMeta> {
        Arc::new(TopicMeta {
            id: TopicId::random(),
            name: TopicName::new(name).expect("valid"),
            partitions,
            replication_factor: 1,
            configs: TopicConfigs::from_overrides(&[]).expect("no overrides"),
        })
    }

    #[test]
    fn entries_are_classified_by_the_metadata() {
        let live = topic("orders", 2);
        let gone = topic("old", 3);
        let known = Known::new(&[Arc::clone(&live)], &[Arc::clone(&gone)]);
        let check =
            |name: &str, expected: Entry| assert_eq!(known.classify(name), expected, "{name}");
        check(&partition_dir_name(live.id, 0), Entry::Live);
        check(&partition_dir_name(live.id, 1), Entry::Live);
        check(&partition_dir_name(live.id, 2), Entry::Doomed);
        check(&partition_dir_name(gone.id, 0), Entry::Doomed);
        check(&partition_dir_name(gone.id, 7), Entry::Doomed);
        check("orders-1", Entry::Legacy(partition_dir_name(live.id, 1)));
        check("orders-2", Entry::Unrecognised);
        check("orders-01", Entry::Unrecognised);
        check("orders-1.deleted", Entry::Doomed);
        check("old-0", Entry::Unrecognised);
        check(&partition_dir_name(TopicId::random(), 0), Entry::Unrecognised);
        check(&format!("{}-0", live.id), Entry::Unrecognised);
        check("00000000000000000000.log", Entry::Unrecognised);
        check("lost+found", Entry::Unrecognised);
        check("-0.deleted", Entry::Unrecognised);
        check(".deleted", Entry::Unrecognised);
    }

    #[test]
    fn directory_names_do_not_grow_with_the_topic_name() {
        let name = partition_dir_name(TopicId::random(), u32::MAX);
        assert_eq!(name.len(), 32 + 1 + 10);
    }
}
