//! Topologies: filled in by the integration tests step.
