//! fleet's cluster state in etcd v3. (In progress.)
