//! Human reports of a finished job's result, written next to `result.json`.

pub mod compliance;
pub mod propensity;
pub mod segment;
