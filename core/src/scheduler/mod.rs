//! The pure scheduler: from a cluster snapshot to placement decisions. (In progress.)
