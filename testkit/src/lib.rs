//! A real etcd for tests. (In progress.)
