#!/usr/bin/env bash
# Prints a v1 List of kube-proxy pods, one per node of bench/scenarios/skew-5000.yaml
# (controlplane, worker-00001 ... worker-05000), bound to their nodes, without an owner
# reference (see the scenario's comment); `kubectl create -f` it and the lab's kubelets
# start them.
set -euo pipefail
awk 'BEGIN {
    printf "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": ["
    for (i = 0; i <= 5000; i++) {
        node = (i == 0) ? "controlplane" : sprintf("worker-%05d", i)
        printf "%s{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"kube-proxy-%05d\", \"namespace\": \"kube-system\", \"labels\": {\"k8s-app\": \"kube-proxy\"}",  (i ? "," : ""), i
        printf "}, "
        printf "\"spec\": {\"nodeName\": \"%s\", \"hostNetwork\": true, \"priorityClassName\": \"system-node-critical\", \"tolerations\": [{\"operator\": \"Exists\"}], ", node
        printf "\"containers\": [{\"name\": \"kube-proxy\", \"image\": \"registry.k8s.io/kube-proxy:v1.36.2\"}]}}\n"
    }
    print "]}"
}'
