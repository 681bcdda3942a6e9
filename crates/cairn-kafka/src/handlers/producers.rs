//! InitProducerId for idempotent producers (RFC 0006 §4): a producer id no other producer of
//! the cluster had, epoch 0, as Kafka gives a producer without a transactional id (a producer
//! that sends its old id and epoch gets a new id too: its state stays with its old id, which
//! it no longer writes under). Transactions are not served: a transactional id is refused.

use cairn_meta::{MetaError, MetadataStore};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::errors;
use crate::server::Ctx;

/// Serves InitProducerId.
pub(crate) async fn init_producer_id<M: MetadataStore>(
    ctx: &Ctx<M>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return refused(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match ctx.broker.new_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id.0))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::warn!(%error, "no producer id to hand out");
            refused(match error {
                // The core is electing or unreachable: the client retries.
                MetaError::NotController(_) | MetaError::TimedOut(_) => {
                    ResponseError::CoordinatorNotAvailable.code()
                }
                other => errors::meta_code(&other),
            })
        }
    }
}
