//! A linearizability checker for histories of concurrent operations (RFC 0009's tests), in the
//! manner of porcupine and Wing & Gong: it searches for an order of the operations that
//! respects real time (an operation that returned before another was called comes first) and
//! that a sequential [`Model`] accepts, remembering the (done set, state) pairs it has tried.
//!
//! Operations whose outcome the client never learned (a timeout, a connection lost after the
//! request was sent) are handled as etcd's robustness tests handle them: they may have taken
//! effect at any time after their call, or not at all, and their answer is unknown, so the
//! model's step for them may fork into several states.
//!
//! [`check`] checks one history; [`check_partitioned`] first splits it into independent parts
//! (e.g. one per key: P-compositionality) and checks each, which keeps the search small.

use std::collections::HashSet;
use std::hash::Hash;

/// One operation as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// When the client sent it (any monotonic clock shared by the clients).
    pub call: u64,
    /// When the answer came; `None` if it never did (unknown outcome).
    pub returned: Option<u64>,
    /// What it asked.
    pub input: I,
    /// What it was answered; `None` with an unknown outcome.
    pub output: Option<O>,
}

/// A sequential specification.
pub trait Model {
    /// The state.
    type State: Clone + Eq + Hash;
    /// An operation's request.
    type Input;
    /// An operation's answer.
    type Output;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The states `input` may lead to from `state` and still have answered `output` (`None`:
    /// any answer). Empty if the answer is impossible there.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Vec<Self::State>;
}

/// Why a history is not linearizable: the operations (indexes in the history) of the longest
/// prefix the search could order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotLinearizable {
    /// The longest order of operations found consistent with the model.
    pub longest: Vec<usize>,
}

/// Checks that `history` is linearizable with respect to `model`.
///
/// # Errors
///
/// [`NotLinearizable`] with the longest order the search found.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
) -> Result<(), NotLinearizable> {
    let mut search = Search {
        model,
        history,
        done: vec![false; history.len()],
        order: Vec::new(),
        longest: Vec::new(),
        tried: HashSet::new(),
    };
    if search.run(&model.init()) {
        Ok(())
    } else {
        Err(NotLinearizable { longest: search.longest })
    }
}

/// Splits `history` with `part` (given each operation's index and request; operations with the
/// same part are checked together, and each part must be independent of the others, e.g. one
/// key of a key-value store) and checks each.
///
/// # Errors
///
/// The first part that is not linearizable, with its [`NotLinearizable`] (indexes in `history`).
pub fn check_partitioned<M, K>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    part: impl Fn(usize, &M::Input) -> K,
) -> Result<(), NotLinearizable>
where
    M: Model,
    M::Input: Clone,
    M::Output: Clone,
    K: Ord,
{
    let mut parts: std::collections::BTreeMap<K, Vec<usize>> = std::collections::BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        parts.entry(part(index, &op.input)).or_default().push(index);
    }
    for indexes in parts.values() {
        let sub: Vec<Operation<M::Input, M::Output>> =
            indexes.iter().map(|&i| history[i].clone()).collect();
        check(model, &sub).map_err(|failed| NotLinearizable {
            longest: failed.longest.iter().map(|&i| indexes[i]).collect(),
        })?;
    }
    Ok(())
}

struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    done: Vec<bool>,
    order: Vec<usize>,
    longest: Vec<usize>,
    tried: HashSet<(Vec<bool>, M::State)>,
}

impl<M: Model> Search<'_, M> {
    /// Depth first: the next operation may be any not done whose call came before every
    /// return still to come; done when every operation with a known outcome is.
    fn run(&mut self, state: &M::State) -> bool {
        if self.order.len() > self.longest.len() {
            self.longest.clone_from(&self.order);
        }
        let pending = self.history.iter().zip(&self.done).filter(|(_, done)| !**done);
        let first_return = pending.clone().filter_map(|(op, _)| op.returned).min();
        let Some(first_return) = first_return else {
            // Only operations of unknown outcome remain: they need not have happened.
            return true;
        };
        for index in 0..self.history.len() {
            let op = &self.history[index];
            if self.done[index] || op.call > first_return {
                continue;
            }
            for next in self.model.step(state, &op.input, op.output.as_ref()) {
                self.done[index] = true;
                if self.tried.insert((self.done.clone(), next.clone())) {
                    self.order.push(index);
                    if self.run(&next) {
                        return true;
                    }
                    self.order.pop();
                }
                self.done[index] = false;
            }
        }
        false
    }
}

/// A register of one key, as a key-value store keeps each key: reads, writes and
/// compare-and-set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

/// A [`Register`] request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Write a value.
    Write(u64),
    /// Write `new` if the value is `expected` (`None`: absent).
    CompareAndSet {
        /// The value it must have.
        expected: Option<u64>,
        /// The value to write.
        new: u64,
    },
}

/// A [`Register`] answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read (`None`: absent).
    Read(Option<u64>),
    /// The write was done.
    Written,
    /// Whether the compare-and-set wrote.
    Swapped(bool),
}

impl Model for Register {
    type State = Option<u64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(
        &self,
        state: &Option<u64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Vec<Option<u64>> {
        let (next, answer) = match *input {
            RegisterInput::Read => (*state, RegisterOutput::Read(*state)),
            RegisterInput::Write(value) => (Some(value), RegisterOutput::Written),
            RegisterInput::CompareAndSet { expected, new } => {
                let swapped = *state == expected;
                (if swapped { Some(new) } else { *state }, RegisterOutput::Swapped(swapped))
            }
        };
        if output.is_none_or(|seen| *seen == answer) { vec![next] } else { Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegisterInput::{CompareAndSet, Read, Write};
    use RegisterOutput::{Read as Got, Swapped, Written};

    fn op(
        call: u64,
        returned: Option<u64>,
        input: RegisterInput,
        output: Option<RegisterOutput>,
    ) -> Operation<RegisterInput, RegisterOutput> {
        Operation { call, returned, input, output }
    }

    #[test]
    fn a_read_after_a_write_returned_sees_it() {
        let seen =
            [op(0, Some(10), Write(1), Some(Written)), op(11, Some(12), Read, Some(Got(Some(1))))];
        assert_eq!(check(&Register, &seen), Ok(()));
        let stale =
            [op(0, Some(10), Write(1), Some(Written)), op(11, Some(12), Read, Some(Got(None)))];
        let failed = check(&Register, &stale).expect_err("a stale read");
        assert_eq!(failed.longest, [0], "the write orders, the read cannot follow");
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either() {
        for value in [None, Some(1)] {
            let history =
                [op(0, Some(10), Write(1), Some(Written)), op(5, Some(6), Read, Some(Got(value)))];
            assert_eq!(check(&Register, &history), Ok(()), "{value:?}");
        }
    }

    #[test]
    fn an_unknown_outcome_may_take_effect_late_or_never_but_not_undo_itself() {
        let late = [
            op(0, None, Write(2), None),
            op(5, Some(6), Read, Some(Got(None))),
            op(7, Some(8), Read, Some(Got(Some(2)))),
        ];
        assert_eq!(check(&Register, &late), Ok(()));
        let never = [op(0, None, Write(2), None), op(5, Some(6), Read, Some(Got(None)))];
        assert_eq!(check(&Register, &never), Ok(()));
        let undone = [
            op(0, None, Write(2), None),
            op(5, Some(6), Read, Some(Got(Some(2)))),
            op(7, Some(8), Read, Some(Got(None))),
        ];
        assert!(check(&Register, &undone).is_err());
    }

    #[test]
    fn compare_and_set_wins_once() {
        let both_won = [
            op(0, Some(10), CompareAndSet { expected: None, new: 1 }, Some(Swapped(true))),
            op(1, Some(9), CompareAndSet { expected: None, new: 2 }, Some(Swapped(true))),
        ];
        assert!(check(&Register, &both_won).is_err());
        let one_won = [
            op(0, Some(10), CompareAndSet { expected: None, new: 1 }, Some(Swapped(true))),
            op(1, Some(9), CompareAndSet { expected: None, new: 2 }, Some(Swapped(false))),
            op(11, Some(12), Read, Some(Got(Some(1)))),
        ];
        assert_eq!(check(&Register, &one_won), Ok(()));
    }

    #[test]
    fn parts_are_checked_apart_and_a_failure_names_the_history_s_operations() {
        let history = [
            (1, op(0, Some(1), Write(1), Some(Written))),
            (2, op(0, Some(1), Write(5), Some(Written))),
            (1, op(2, Some(3), Read, Some(Got(Some(1))))),
            (2, op(2, Some(3), Read, Some(Got(Some(1))))),
        ];
        let (keys, ops): (Vec<u32>, Vec<_>) = history.into_iter().unzip();
        let failed =
            check_partitioned(&Register, &ops, |index, _| keys[index]).expect_err("key 2 read 1");
        assert_eq!(failed.longest, [1]);
    }
}
