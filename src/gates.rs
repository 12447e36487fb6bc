//! Gates (SPEC §5): nodes and pod restarts evaluated from observations (pure), and the HTTP
//! gates — Prometheus and an HTTP endpoint — evaluated against live services.
