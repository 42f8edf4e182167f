//! The contract between a node's sans-IO machine and the shell that drives it.
//!
//! Every role (coordinator, participant, auditor) is a plain state machine: the shell hands it
//! inputs with the time in milliseconds since the node started, takes its outputs (messages to
//! send, trail events, files to write) and carries them out, and wakes it at the deadline it
//! asks for. [`NodeMachine`] is that contract; `fedbank-transport`'s driver is the one loop that
//! drives any role through it, and each role's shell supplies only its effects.
//!
//! It does not say how inputs arrive or how outputs are carried out: that is the shell's.

/// What a client node's shell hands its machine: a new connection to the coordinator, or a
/// message from it.
#[derive(Debug)]
pub enum Delivery<M> {
    /// The connection to the coordinator is (re)established.
    Connected,
    /// A message from the coordinator.
    Message(M),
}

/// A node's protocol as a state machine a shell drives. Inputs of type `I`.
pub trait NodeMachine<I> {
    /// What the machine asks its shell to do.
    type Output;
    /// Why an input was refused (the machine's state is unchanged).
    type Violation: std::fmt::Display;
    /// How the node's part of the job ended.
    type Status;

    /// Takes one input at time `now` (milliseconds since the node started).
    fn handle(&mut self, input: I, now: u64) -> Result<(), Self::Violation>;
    /// The next output, if any.
    fn poll_output(&mut self) -> Option<Self::Output>;
    /// The time at which the machine wants [`NodeMachine::on_deadline`]; `None` when only
    /// inputs wake it.
    fn poll_timeout(&self) -> Option<u64>;
    /// The deadline it asked for has passed.
    fn on_deadline(&mut self, now: u64) -> Result<(), Self::Violation>;
    /// `Some` once the node's part is over.
    fn ended(&self) -> Option<Self::Status>;
}
