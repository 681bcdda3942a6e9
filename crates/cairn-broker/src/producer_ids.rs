//! [`ProducerIds`]: the producer ids this node hands to idempotent producers (InitProducerId),
//! one by one from blocks the consistent core allocates (RFC 0006 §4), so that no two
//! producers anywhere in the cluster share an id. A block left when the node stops is never
//! handed out again: ids are plentiful (2^63), and reusing one is what must not happen.

use std::ops::Range;

use cairn_meta::{MetaError, MetadataStore};
use cairn_types::ProducerId;

/// This node's block of producer ids (module docs).
#[derive(Debug, Default)]
pub(crate) struct ProducerIds {
    /// The ids of the current block not handed out yet.
    block: tokio::sync::Mutex<Range<i64>>,
}

impl ProducerIds {
    /// The next id, from the current block or, when it is used up, a new one.
    ///
    /// # Errors
    /// As [`MetadataStore::allocate_producer_ids`]; and [`MetaError::Refused`] for a block
    /// the store answers that holds no ids.
    pub(crate) async fn next<M: MetadataStore>(&self, meta: &M) -> Result<ProducerId, MetaError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            let (first, count) = meta.allocate_producer_ids().await?;
            let end = first.0.checked_add(count).filter(|_| count > 0 && first.0 >= 0);
            let Some(end) = end else {
                return Err(MetaError::Refused(format!("an empty block of ids at {first:?}")));
            };
            *block = first.0..end;
        }
        let id = block.start;
        block.start += 1;
        Ok(ProducerId(id))
    }
}
