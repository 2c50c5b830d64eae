//! The engine: leader election and placement. (In progress.)
