//! upkeep-lab: a simulated Kubernetes cluster.
