//! Counting D-Bus calls by kind, so tests and benchmarks can check that a batch costs
//! one call and not one per unit.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many D-Bus calls of each kind a manager made: lets tests and benchmarks check that
/// a batch costs one call, not one per unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub link_unit_files: u64,
    pub enable_unit_files: u64,
    pub disable_unit_files: u64,
    pub reset_failed_unit: u64,
    pub reload: u64,
    pub start_unit: u64,
    pub stop_unit: u64,
    pub list_units_by_names: u64,
    pub list_units: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) link_unit_files: AtomicU64,
    pub(crate) enable_unit_files: AtomicU64,
    pub(crate) disable_unit_files: AtomicU64,
    pub(crate) reset_failed_unit: AtomicU64,
    pub(crate) reload: AtomicU64,
    pub(crate) start_unit: AtomicU64,
    pub(crate) stop_unit: AtomicU64,
    pub(crate) list_units_by_names: AtomicU64,
    pub(crate) list_units: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CallCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CallCounts {
            link_unit_files: get(&self.link_unit_files),
            enable_unit_files: get(&self.enable_unit_files),
            disable_unit_files: get(&self.disable_unit_files),
            reset_failed_unit: get(&self.reset_failed_unit),
            reload: get(&self.reload),
            start_unit: get(&self.start_unit),
            stop_unit: get(&self.stop_unit),
            list_units_by_names: get(&self.list_units_by_names),
            list_units: get(&self.list_units),
        }
    }
}
