//! Container machines on one host. (In progress.)
