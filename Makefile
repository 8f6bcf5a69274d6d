PYTHON ?= python
CONTROLPLANE_ARGS ?= --with-controller-manager --nodes 4

.PHONY: controlplane-build controlplane-up

# Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.
controlplane-build:
	hack/controlplane/build.sh

# Run a local control plane with fake GPU nodes until Ctrl-C (prints export KUBECONFIG=...).
controlplane-up: controlplane-build
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) -m kai.testing.controlplane up $(CONTROLPLANE_ARGS)
