//! The version skew policy, the support calendar and the upgrade path planner.
