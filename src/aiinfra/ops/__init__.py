"""Local servers and Kubernetes manifests."""
