//! # fedbank-bench
//!
//! The benchmarks behind `fedbank bench`, each printing its baseline from the same run:
//!
//! - [`secagg`]: what secure aggregation costs each role (participant, coordinator, committee)
//!   against a plaintext sum and tfhe's high-level `FheUint32` addition;
//! - [`load`]: many participants against one coordinator process on loopback (wall time per
//!   round, the coordinator's peak memory, bytes received), with a smaller consortium as the
//!   baseline;
//! - [`large_table`]: one participant with a large generated transaction log in a segmentation
//!   job (its time to read the log, time per round, peak memory), against a tenth of the rows;
//! - [`wan`]: shipped jobs with every node behind a delaying, lossy link, against the same jobs
//!   on plain loopback, and the round trips per round the difference implies.
//!
//! The settings of each are `clap` arguments, which the CLI flattens into its subcommands; the
//! load and large-table benchmarks run their nodes as child processes of the `fedbank` binary
//! they are given, so that each node's peak memory is its own.
//!
//! What it does not do: assert speed goals (benchmarks print figures; tests do not time), or
//! run on a network other than loopback (the WAN is emulated there).

pub mod large_table;
pub mod load;
pub mod secagg;
pub mod wan;
