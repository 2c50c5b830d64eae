//! fleetd's gRPC API. (In progress.)
