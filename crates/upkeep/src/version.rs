//! Kubernetes versions as clusters, images and package repositories report them.
