"""The Kubernetes operator: Appliance and SigningPolicy custom resources made into services.

`crds` generates the CustomResourceDefinitions from the shared models;
`desired` computes, as pure functions, every object an Appliance needs.
"""
