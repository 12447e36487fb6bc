//! `fleetwave status`: the per-wave, per-cluster report (pure).
