//! Term = leader epoch (RFC 0003 §3): one leader per term, so a term is the Kafka partition
//! leader epoch stamped in every batch its leader appends.
//!
//! openraft's terms are unsigned (`u64`: its conversions are infallible only for unsigned terms,
//! and its storage test suite builds terms from `u64`);
//! Kafka's epochs are `i32`. Terms above `i32::MAX` have no epoch: the facade refuses to vote or
//! campaign for them, which pre-vote makes a matter of decades (2^31 elections).

use cairn_types::LeaderEpoch;

use crate::Term;

/// A term or epoch outside the range both can express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    /// A term above `i32::MAX`: no Kafka leader epoch can carry it. The group stops.
    #[error("term {term} has no kafka leader epoch (above {max})", max = i32::MAX)]
    TermTooLarge {
        /// The term.
        term: Term,
    },
    /// A negative epoch (Kafka's "none", `-1`, or corruption) names no term: refuse the batch.
    #[error("leader epoch {epoch} names no raft term")]
    NegativeEpoch {
        /// The epoch as read.
        epoch: LeaderEpoch,
    },
}

/// The Kafka leader epoch of `term`.
///
/// # Errors
/// [`TermError::TermTooLarge`] for a term above `i32::MAX`.
pub fn epoch_of(term: Term) -> Result<LeaderEpoch, TermError> {
    i32::try_from(term).map(LeaderEpoch).map_err(|_| TermError::TermTooLarge { term })
}

/// The term whose leader stamped `epoch`.
///
/// # Errors
/// [`TermError::NegativeEpoch`] for a negative epoch.
pub fn term_of(epoch: LeaderEpoch) -> Result<Term, TermError> {
    Term::try_from(epoch.0).map_err(|_| TermError::NegativeEpoch { epoch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ends_of_both_ranges() {
        assert_eq!(epoch_of(0), Ok(LeaderEpoch(0)));
        assert_eq!(epoch_of(i32::MAX as u64), Ok(LeaderEpoch(i32::MAX)));
        let too_large = i32::MAX as u64 + 1;
        assert_eq!(epoch_of(too_large), Err(TermError::TermTooLarge { term: too_large }));
        assert_eq!(epoch_of(u64::MAX), Err(TermError::TermTooLarge { term: u64::MAX }));
        assert_eq!(term_of(LeaderEpoch(0)), Ok(0));
        let none = LeaderEpoch(-1);
        assert_eq!(term_of(none), Err(TermError::NegativeEpoch { epoch: none }));
        let min = LeaderEpoch(i32::MIN);
        assert_eq!(term_of(min), Err(TermError::NegativeEpoch { epoch: min }));
    }

    proptest! {
        #[test]
        fn every_epoch_is_a_term_and_back(epoch in 0..=i32::MAX) {
            let term = term_of(LeaderEpoch(epoch)).unwrap();
            prop_assert_eq!(epoch_of(term), Ok(LeaderEpoch(epoch)));
        }

        #[test]
        fn every_term_is_an_epoch_or_refused(term: u64) {
            match epoch_of(term) {
                Ok(epoch) => prop_assert_eq!(term_of(epoch), Ok(term)),
                Err(error) => {
                    prop_assert!(term > i32::MAX as u64);
                    prop_assert_eq!(error, TermError::TermTooLarge { term });
                }
            }
        }
    }
}
