//! Drain: pod classification rules (pure), the drain plan, the eviction engine.
