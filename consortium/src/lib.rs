//! The fedbank consortium as a library, shared by the `fedbank` command and the tests.
//!
//! - [`config`]: node and job configuration files, parsed and validated;
//! - [`launch`]: one node (coordinator, participant or auditor) run from its configuration,
//!   its local data loaded and its results written;
//! - [`simulate`]: a whole consortium on this machine over real QUIC, with a development CA,
//!   synthetic or split data, trails, their verification and a summary;
//! - [`impaired_link`]: a UDP relay on loopback that delays, jitters, drops and rate-limits
//!   packets, standing in for a wide-area network (`fedbank bench wan`);
//! - [`in_memory`]: the coordinator's and participants' state machines driven to the end of a
//!   job in memory, every message through its wire encoding (no network, no clock);
//! - [`pooled`]: the same computation on the pooled rows, the baseline a simulation compares
//!   the federated result with;
//! - [`reports`]: the human reports of a segment, propensity or compliance result.
//!
//! It does not parse command-line arguments, install a tracing subscriber or choose exit codes:
//! the binary does. Errors are `anyhow` chains with context, as an operator reads them: every
//! caller prints them; the role crates below keep their typed errors.

pub mod config;
pub mod impaired_link;
pub mod in_memory;
pub mod launch;
pub mod pooled;
pub mod reports;
pub mod simulate;
