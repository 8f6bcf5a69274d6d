"""Test support: a local Kubernetes control plane (etcd, kube-apiserver, kwok) and pytest fixtures."""
