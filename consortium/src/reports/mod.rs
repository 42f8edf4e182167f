//! Human reports of a finished job's result, written next to `result.json`, and the compliance
//! officer's audit report of a run (`audit`).

pub mod audit;
pub mod compliance;
