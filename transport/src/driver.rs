//! The one loop that drives any node's machine ([`NodeMachine`]) on its own OS thread: take
//! the machine's outputs and hand them to the role's [`Effects`] (send, trail, checkpoint,
//! local files), then sleep until an input arrives or the machine's deadline passes. Nothing
//! polls: the thread is woken by its inbox or by the deadline the machine asked for.
//!
//! Each input may carry an attachment (for the coordinator, the permit that lets the reader of
//! that connection take its next message); it is dropped once the input is handled.

use fedbank_common::node_machine::NodeMachine;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What a role's shell does with its machine's outputs.
pub(crate) trait Effects<I, M: NodeMachine<I>> {
    /// Why the node must stop (a trail or a state that cannot be written).
    type Error;
    /// Carries out one output. An error stops the node before any later output.
    fn carry_out(&mut self, output: M::Output) -> Result<(), Self::Error>;
    /// The machine refused an input.
    fn refused(&mut self, violation: &M::Violation);
    /// Just before `input` is handled.
    fn before(&mut self, _input: &I) {}
    /// Just after the input is handled.
    fn after(&mut self) {}
}

/// Drives `machine` until its part is over (its status) or its inbox is closed with no deadline
/// pending (`None`). Time is milliseconds since `start`.
pub(crate) fn drive<I, A, M, E>(
    machine: &mut M,
    inbox: &Receiver<(I, A)>,
    effects: &mut E,
    start: Instant,
) -> Result<Option<M::Status>, E::Error>
where
    M: NodeMachine<I>,
    E: Effects<I, M>,
{
    let now = || start.elapsed().as_millis() as u64;
    loop {
        while let Some(output) = machine.poll_output() {
            effects.carry_out(output)?;
        }
        if let Some(status) = machine.ended() {
            return Ok(Some(status));
        }
        let next = match machine.poll_timeout() {
            Some(deadline) => {
                let wait = Duration::from_millis(deadline.saturating_sub(now()));
                match inbox.recv_timeout(wait) {
                    Ok(delivery) => Some(delivery),
                    Err(RecvTimeoutError::Timeout) => None,
                    // No more inputs, but a deadline is pending: wait for it.
                    Err(RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(Duration::from_millis(deadline.saturating_sub(now())));
                        None
                    }
                }
            }
            None => match inbox.recv() {
                Ok(delivery) => Some(delivery),
                Err(_) => return Ok(None),
            },
        };
        let handled = match next {
            Some((input, attachment)) => {
                effects.before(&input);
                let handled = machine.handle(input, now());
                effects.after();
                drop(attachment);
                handled
            }
            None => machine.on_deadline(now()),
        };
        if let Err(violation) = handled {
            effects.refused(&violation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Counts to a target: each input adds to it, each deadline adds 100; outputs echo.
    struct Counter {
        total: u32,
        deadline: Option<u64>,
        outputs: Vec<u32>,
    }

    impl NodeMachine<u32> for Counter {
        type Output = u32;
        type Violation = String;
        type Status = u32;
        fn handle(&mut self, input: u32, _now: u64) -> Result<(), String> {
            if input == 0 {
                return Err("zero".into());
            }
            self.total += input;
            self.outputs.push(self.total);
            Ok(())
        }
        fn poll_output(&mut self) -> Option<u32> {
            (!self.outputs.is_empty()).then(|| self.outputs.remove(0))
        }
        fn poll_timeout(&self) -> Option<u64> {
            self.deadline
        }
        fn on_deadline(&mut self, _now: u64) -> Result<(), String> {
            self.deadline = None;
            self.total += 100;
            self.outputs.push(self.total);
            Ok(())
        }
        fn ended(&self) -> Option<u32> {
            (self.total >= 1000).then_some(self.total)
        }
    }

    #[derive(Default)]
    struct Log {
        seen: Vec<u32>,
        refused: Vec<String>,
        stop_at: Option<u32>,
    }

    impl Effects<u32, Counter> for Log {
        type Error = u32;
        fn carry_out(&mut self, output: u32) -> Result<(), u32> {
            if Some(output) == self.stop_at {
                return Err(output);
            }
            self.seen.push(output);
            Ok(())
        }
        fn refused(&mut self, violation: &String) {
            self.refused.push(violation.clone());
        }
    }

    #[test]
    fn inputs_and_deadlines_drive_the_machine_to_its_end_in_order() {
        let (tx, rx) = mpsc::channel();
        let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
        // Each input carries a sender; it is dropped once the input is handled.
        for input in [1u32, 0, 2, 897] {
            tx.send((input, Some(dropped_tx.clone()))).expect("send");
        }
        drop(dropped_tx);
        // The inbox stays open (`tx` lives): once it is empty, only the deadline wakes the
        // machine, which then reaches its end.
        let mut machine = Counter {
            total: 0,
            deadline: Some(0),
            outputs: vec![],
        };
        let mut log = Log::default();
        let ended = drive(&mut machine, &rx, &mut log, Instant::now()).expect("no effect error");
        assert_eq!(ended, Some(1000));
        assert_eq!(log.seen, [1, 3, 900, 1000]);
        assert_eq!(log.refused, ["zero"]);
        assert!(dropped_rx.recv().is_err(), "every attachment was dropped");
        drop(tx);
    }

    #[test]
    fn a_closed_inbox_without_a_deadline_ends_the_drive_and_an_effect_error_stops_it() {
        let (tx, rx) = mpsc::channel::<(u32, ())>();
        tx.send((5, ())).expect("send");
        drop(tx);
        let mut machine = Counter {
            total: 0,
            deadline: None,
            outputs: vec![],
        };
        let mut log = Log::default();
        assert_eq!(
            drive(&mut machine, &rx, &mut log, Instant::now()).expect("ok"),
            None
        );
        assert_eq!(log.seen, [5]);
        let (tx, rx) = mpsc::channel::<(u32, ())>();
        tx.send((1, ())).expect("send");
        tx.send((1, ())).expect("send");
        let mut log = Log {
            stop_at: Some(6),
            ..Log::default()
        };
        assert_eq!(drive(&mut machine, &rx, &mut log, Instant::now()), Err(6));
        assert!(log.seen.is_empty(), "nothing after the failed effect");
    }
}
